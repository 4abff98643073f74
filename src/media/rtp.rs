//! RTP packets: received ones are read here by hand (a dozen bytes and two
//! lengths, on the hot path, from anyone on the network: the `rtp` crate's
//! header parser panicked on a crafted extension, which fuzzing found);
//! sent ones are written through the `rtp` crate, wrapped so that another
//! RTP crate (e.g. `rtc-rtp`) can replace it here alone. Neither direction
//! allocates.

use rtp::header::Header;
use webrtc_util::marshal::Marshal;

/// The fields of a received packet the engine acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpInfo {
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
}

/// Parses a datagram; returns the header fields and the payload, or `None`
/// for anything that is not RTP version 2 with a consistent length (RFC
/// 3550 §5.1: the fixed header, CSRCs, an extension whose declared length
/// fits, padding that fits). Extensions are skipped, not read.
pub fn parse(packet: &[u8]) -> Option<(RtpInfo, &[u8])> {
    let fixed = packet.get(..12)?;
    if fixed[0] >> 6 != 2 {
        return None;
    }
    let padding = fixed[0] & 0x20 != 0;
    let extension = fixed[0] & 0x10 != 0;
    let csrcs = usize::from(fixed[0] & 0x0f);
    let mut start = 12 + 4 * csrcs;
    if extension {
        let ext = packet.get(start..start + 4)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        start += 4 + 4 * words;
    }
    let mut end = packet.len();
    if padding {
        let pad = usize::from(*packet.last()?);
        if pad == 0 {
            return None;
        }
        end = end.checked_sub(pad)?;
    }
    if start > end {
        return None;
    }
    let be32 = |i: usize| u32::from_be_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
    Some((
        RtpInfo {
            payload_type: fixed[1] & 0x7f,
            sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
            timestamp: be32(4),
            ssrc: be32(8),
            marker: fixed[1] & 0x80 != 0,
        },
        &packet[start..end],
    ))
}

/// Writes header and payload into `out`; returns the packet length.
pub fn write(info: &RtpInfo, payload: &[u8], out: &mut [u8]) -> Option<usize> {
    let header = Header {
        version: 2,
        marker: info.marker,
        payload_type: info.payload_type,
        sequence_number: info.sequence,
        timestamp: info.timestamp,
        ssrc: info.ssrc,
        ..Default::default()
    };
    let n = header.marshal_to(out).ok()?;
    let end = n + payload.len();
    out.get_mut(n..end)?.copy_from_slice(payload);
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let info = RtpInfo {
            payload_type: 8,
            sequence: 65535,
            timestamp: 0xdead_beef,
            ssrc: 42,
            marker: true,
        };
        let mut buf = [0u8; 200];
        let n = write(&info, &[1, 2, 3], &mut buf).unwrap();
        assert_eq!(n, 15);
        let (back, payload) = parse(&buf[..n]).unwrap();
        assert_eq!(back, info);
        assert_eq!(payload, &[1, 2, 3]);
        assert!(parse(&[0x80, 0, 0]).is_none());
        assert!(parse(&[0x40; 20]).is_none(), "version 1");
        let mut padded = buf[..n].to_vec();
        padded[0] |= 0x20;
        padded.push(200); // padding longer than the packet
        assert!(parse(&padded).is_none());
    }

    #[test]
    fn csrcs_and_extensions_are_skipped_by_their_lengths() {
        // Two CSRCs and a one-word extension, then the payload.
        let mut p = vec![0x92, 0x00, 0, 7, 0, 0, 0, 160, 0, 0, 0, 9];
        p.extend([0u8; 8]);
        p.extend([0xbe, 0xde, 0, 1, 0x10, 0xaa, 0, 0]);
        p.extend([5, 6, 7]);
        let (info, payload) = parse(&p).unwrap();
        assert_eq!((info.sequence, info.timestamp, info.ssrc), (7, 160, 9));
        assert_eq!(payload, &[5, 6, 7]);
        // An extension longer than the packet, or CSRCs that are not there.
        p[22] = 0xff;
        assert!(parse(&p).is_none());
        assert!(parse(&[0x8f, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0]).is_none());
    }

    /// Fuzzing found that the `rtp` crate's parser panicked on this packet
    /// (its extension's elements claim more than the extension holds); any
    /// datagram from the network must be parsed or refused. Its extension's
    /// own length fits, so it is a packet, with the extension skipped.
    #[test]
    fn the_fuzzers_crashers_are_parsed_or_refused_not_panicked_on() {
        let crash = include_bytes!("../../fuzz/seeds/rtp/regression-extension-overrun");
        let (info, payload) = parse(crash).expect("a packet");
        assert_eq!(info.payload_type, 0);
        assert_eq!(payload.len(), crash.len() - 12 - 4 - 4 * 0x12);
        for chunk in crash.chunks(16) {
            let _ = parse(chunk);
        }
    }
}
