//! SIP over TCP framing (RFC 3261 §18.3): a stream cut anywhere into
//! segments frames into exactly the messages the whole stream does.
#![no_main]

use hotline::sip::transport::{frame, Framing};
use libfuzzer_sys::fuzz_target;

/// Frames what can be framed from `buf`, as the connection does.
fn drain(buf: &mut Vec<u8>, out: &mut Vec<Vec<u8>>) {
    loop {
        match frame(buf) {
            Framing::Incomplete => return,
            Framing::Skip(n) => {
                assert!(n > 0 && n <= buf.len());
                buf.drain(..n);
            }
            Framing::Message(n) => {
                assert!(n > 0);
                if n > buf.len() {
                    return;
                }
                out.push(buf.drain(..n).collect());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let mut whole_buf = stream.to_vec();
    let mut whole = Vec::new();
    drain(&mut whole_buf, &mut whole);
    let step = usize::from(cut % 31) + 1;
    let mut buf = Vec::new();
    let mut pieces = Vec::new();
    for segment in stream.chunks(step) {
        buf.extend_from_slice(segment);
        drain(&mut buf, &mut pieces);
    }
    assert_eq!(whole, pieces);
    assert_eq!(whole_buf, buf);
});
