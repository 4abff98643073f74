//! RTP packets through the `rtp` crate, wrapped so that another RTP crate
//! (e.g. `rtc-rtp`) can replace it here alone. Neither direction allocates
//! for plain audio packets.

use rtp::header::Header;
use webrtc_util::marshal::{Marshal, MarshalSize, Unmarshal};

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
/// for anything that is not RTP version 2 with a consistent length.
pub fn parse(packet: &[u8]) -> Option<(RtpInfo, &[u8])> {
    let mut buf = packet;
    let header = Header::unmarshal(&mut buf).ok()?;
    if header.version != 2 {
        return None;
    }
    let start = header.marshal_size();
    let mut end = packet.len();
    if header.padding {
        let pad = usize::from(*packet.last()?);
        end = end.checked_sub(pad)?;
    }
    if start > end {
        return None;
    }
    Some((
        RtpInfo {
            payload_type: header.payload_type,
            sequence: header.sequence_number,
            timestamp: header.timestamp,
            ssrc: header.ssrc,
            marker: header.marker,
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
}
