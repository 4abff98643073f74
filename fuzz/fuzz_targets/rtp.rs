//! RTP and RFC 4733 payloads: any datagram parses or is refused; what
//! parses writes back to the same header; a telephone-event payload gives
//! at most one key per event, whatever order its packets come in.
#![no_main]

use hotline::media::dtmf::Rfc4733Receiver;
use hotline::media::rtp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rx = Rfc4733Receiver::default();
    // The input as one packet, then as a run of 16-byte packets.
    for packet in std::iter::once(data).chain(data.chunks(16)) {
        if let Some((info, payload)) = rtp::parse(packet) {
            let mut out = vec![0u8; 12 + payload.len()];
            if let Some(n) = rtp::write(&info, payload, &mut out) {
                let (again, p2) = rtp::parse(&out[..n]).expect("what we write parses");
                assert_eq!(again.sequence, info.sequence);
                assert_eq!(again.timestamp, info.timestamp);
                assert_eq!(again.payload_type, info.payload_type);
                assert_eq!(p2, payload);
            }
            let _ = rx.on_packet(info.timestamp, info.marker, payload);
        }
    }
    // Every packet of one event (one timestamp) without a start marker
    // after the first: one key at most.
    let mut rx = Rfc4733Receiver::default();
    let keys = data
        .chunks(4)
        .enumerate()
        .filter_map(|(i, p)| rx.on_packet(7, i == 0, p))
        .count();
    assert!(keys <= 1, "{keys} keys from one event");
});
