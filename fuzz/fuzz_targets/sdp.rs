//! SDP: parse, negotiate and answer whatever a caller offers; never a panic,
//! and our answer always parses back.
#![no_main]

use hotline::sdp::{answer, negotiate, parse, Origin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(offer) = parse(data) {
        if let Ok(n) = negotiate(&offer) {
            let mut origin = Origin::new([127, 0, 0, 1].into());
            let body = answer(&mut origin, 20000, &n);
            assert!(parse(&body).is_ok(), "our answer must parse");
        }
    }
});
