//! SIP INFO DTMF bodies (`application/dtmf-relay`, `application/dtmf`):
//! any body gives a key or nothing, never a panic.
#![no_main]

use hotline::media::dtmf::parse_info;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let ctype = match kind % 4 {
        0 => "application/dtmf-relay",
        1 => "application/dtmf",
        2 => "Application/DTMF-Relay; charset=utf-8",
        _ => "text/plain",
    };
    if let Some(d) = parse_info(ctype, body) {
        assert!("0123456789*#ABCD".contains(d.as_char()));
    }
});
