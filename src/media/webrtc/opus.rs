//! Opus on a browser leg (RFC 7587), transcoded to and from the caller's
//! G.711 at the leg's edge, so the rest of the media path (relay, DTMF,
//! recording) sees G.711 as on any leg.
//!
//! The RTP clock is Opus's 48 kHz; the codec itself works at 8 kHz, which
//! is all G.711 carries: the decoder renders what the browser sent at
//! 8 kHz and the encoder codes 8 kHz input, so no resampler sits on the
//! path (the codec does it, as libopus's API defines). The offer asks the
//! browser for narrowband (`maxplaybackrate=8000`), so it spends no bits
//! on audio the trunk would drop. The codec is `opus-rs`, a pure Rust
//! port of libopus (see the README's dependency notes).

use bytes::Bytes;
use opus_rs::{Application, OpusDecoder, OpusEncoder};

use crate::media::g711;
use crate::media::rtp::RtpInfo;
use crate::sdp::Codec;

/// The payload type offered for Opus.
pub const OPUS_PT: u8 = 111;
/// The codec's own sample rate on our side.
const RATE: i32 = 8000;
/// RTP clock ticks (48 kHz) per sample at [`RATE`].
pub const TICKS: u32 = 6;
/// One frame we encode: 20 ms.
const FRAME: usize = 160;
/// The longest a packet may decode to: 120 ms.
const MAX_DECODED: usize = 960;
/// Our encoder's bitrate: narrowband speech (SILK) at G.711's quality.
const BITRATE: i32 = 16_000;
/// The encoder's effort (0–10). Measured here (opus-rs 0.1.40, release,
/// SILK narrowband, 20 ms frames): 91 µs a frame at 5, 34 µs at 1, which
/// is most of a leg's cost; G.711-sourced narrowband speech gains little
/// from more.
const COMPLEXITY: i32 = 1;

/// The fmtp of our offer: 20 ms or less a packet, narrowband both ways.
pub const FMTP: &str = "minptime=10;maxplaybackrate=8000;sprop-maxcapturerate=8000";

/// Why the codec could not be set up.
#[derive(Debug)]
pub struct OpusError(pub &'static str);

/// One leg's Opus encoder and decoder, and where their timestamps stand.
pub struct Transcoder {
    g711: Codec,
    encoder: OpusEncoder,
    decoder: OpusDecoder,
    /// Audio for the browser not yet a whole frame, and the 8 kHz
    /// timestamp of its first sample.
    pending: Vec<i16>,
    pending_ts: u32,
    decoded: Vec<f32>,
    packet: Vec<u8>,
    /// The last timestamp from the browser, at 48 kHz and mapped to 8 kHz.
    from_browser: Option<(u32, u32)>,
}

impl Transcoder {
    /// A transcoder between Opus and `g711` (the caller's codec).
    pub fn new(g711: Codec) -> Result<Transcoder, OpusError> {
        let mut encoder = OpusEncoder::new(RATE, 1, Application::Voip).map_err(OpusError)?;
        encoder.bitrate_bps = BITRATE;
        encoder.complexity = COMPLEXITY;
        let decoder = OpusDecoder::new(RATE, 1).map_err(OpusError)?;
        Ok(Transcoder {
            g711,
            encoder,
            decoder,
            pending: Vec::with_capacity(FRAME * 4),
            pending_ts: 0,
            decoded: vec![0.0; MAX_DECODED],
            packet: vec![0; 1276],
            from_browser: None,
        })
    }

    /// A browser timestamp (48 kHz) on our 8 kHz clock, following the
    /// browser's own steps (so reordering and wrapping carry over).
    fn on_our_clock(&mut self, ts: u32) -> u32 {
        let ours = match self.from_browser {
            None => ts / TICKS,
            Some((theirs, ours)) => {
                ours.wrapping_add_signed(ts.wrapping_sub(theirs) as i32 / TICKS as i32)
            }
        };
        self.from_browser = Some((ts, ours));
        ours
    }

    /// A packet from the browser as the rest of the path takes it: Opus
    /// decoded into G.711 (`g711_pt`), a telephone-event on the 8 kHz
    /// clock. None for what cannot be decoded or is not ours.
    pub fn from_browser(
        &mut self,
        info: RtpInfo,
        payload: &[u8],
        g711_pt: u8,
        dtmf_pt: u8,
    ) -> Option<(RtpInfo, Bytes)> {
        if info.payload_type == dtmf_pt {
            let timestamp = self.on_our_clock(info.timestamp);
            let mut event = payload.to_vec();
            if let Some(d) = event.get_mut(2..4) {
                let duration = u16::from_be_bytes([d[0], d[1]]) / TICKS as u16;
                d.copy_from_slice(&duration.to_be_bytes());
            }
            return Some((RtpInfo { timestamp, ..info }, Bytes::from(event)));
        }
        if info.payload_type != OPUS_PT {
            return None;
        }
        // What a browser sends reaches a decoder that is not ours: should
        // it panic on some packet, the packet is dropped and the decoder
        // made anew, and the media clock goes on.
        let (decoder, decoded) = (&mut self.decoder, &mut self.decoded);
        let n = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decoder.decode(payload, MAX_DECODED, decoded)
        })) {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => return None,
            Err(_) => {
                metrics::counter!("hotline_opus_decoder_panics_total").increment(1);
                self.decoder = OpusDecoder::new(RATE, 1).ok()?;
                return None;
            }
        };
        let timestamp = self.on_our_clock(info.timestamp);
        let encode = match self.g711 {
            Codec::Pcmu => g711::ulaw_encode,
            Codec::Pcma => g711::alaw_encode,
        };
        let g711: Vec<u8> = self.decoded[..n.min(MAX_DECODED)]
            .iter()
            .map(|&s| encode((s * 32768.0).clamp(-32768.0, 32767.0) as i16))
            .collect();
        Some((
            RtpInfo {
                payload_type: g711_pt,
                timestamp,
                ..info
            },
            Bytes::from(g711),
        ))
    }

    /// A packet for the browser, as the media path wrote it (G.711 or a
    /// telephone-event on the 8 kHz clock): `send` gets each packet to
    /// go, Opus frames of 20 ms (none while a frame is not whole) or the
    /// event on the 48 kHz clock.
    pub fn to_browser(
        &mut self,
        info: &RtpInfo,
        payload: &[u8],
        dtmf_pt: u8,
        mut send: impl FnMut(&RtpInfo, &[u8]),
    ) {
        if info.payload_type == dtmf_pt {
            let n = payload.len().min(self.packet.len());
            self.packet[..n].copy_from_slice(&payload[..n]);
            if let Some(d) = self.packet.get_mut(2..4.min(n)) {
                if d.len() == 2 {
                    let duration = u16::from_be_bytes([d[0], d[1]]).saturating_mul(TICKS as u16);
                    d.copy_from_slice(&duration.to_be_bytes());
                }
            }
            let out = RtpInfo {
                timestamp: info.timestamp.wrapping_mul(TICKS),
                ..*info
            };
            return send(&out, &self.packet[..n]);
        }
        let decode = match self.g711 {
            Codec::Pcmu => g711::ulaw_decode,
            Codec::Pcma => g711::alaw_decode,
        };
        if self.pending.is_empty() {
            self.pending_ts = info.timestamp;
        }
        self.pending.extend(payload.iter().map(|&b| decode(b)));
        let mut first = true;
        while self.pending.len() >= FRAME {
            let Ok(len) = self
                .encoder
                .encode_i16(&self.pending[..FRAME], FRAME, &mut self.packet)
            else {
                // A frame the encoder refuses is dropped, not retried.
                self.pending.clear();
                return;
            };
            let out = RtpInfo {
                payload_type: OPUS_PT,
                timestamp: self.pending_ts.wrapping_mul(TICKS),
                marker: info.marker && first,
                ..*info
            };
            send(&out, &self.packet[..len]);
            first = false;
            self.pending.drain(..FRAME);
            self.pending_ts = self.pending_ts.wrapping_add(FRAME as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_audio::{power, tone};
    use super::*;

    fn info(pt: u8, seq: u16, ts: u32) -> RtpInfo {
        RtpInfo {
            payload_type: pt,
            sequence: seq,
            timestamp: ts,
            ssrc: 7,
            marker: false,
        }
    }

    #[test]
    fn a_tone_crosses_to_opus_and_back_on_the_right_clocks() {
        let mut ours = Transcoder::new(Codec::Pcmu).unwrap();
        let mut theirs = Transcoder::new(Codec::Pcmu).unwrap();
        let mut heard = Vec::new();
        let mut sent = Vec::new();
        for k in 0..50u16 {
            // 30 ms G.711 packets come out as 20 ms Opus frames.
            let pcm = tone(400.0, 240, usize::from(k) * 240);
            let g711: Vec<u8> = pcm.iter().map(|&s| g711::ulaw_encode(s)).collect();
            let ts = 1000 + u32::from(k) * 240;
            ours.to_browser(&info(0, k, ts), &g711, 101, |i, p| {
                sent.push((*i, p.to_vec()));
            });
        }
        assert_eq!(sent.len(), 50 * 240 / 160, "one Opus frame per 20 ms");
        for (n, (i, _)) in sent.iter().enumerate() {
            assert_eq!(i.payload_type, OPUS_PT);
            assert_eq!(i.timestamp, (1000 + n as u32 * 160) * 6, "48 kHz clock");
        }
        // The far side decodes them into G.711 on its 8 kHz clock.
        let mut last_ts = None;
        for (i, p) in &sent {
            let (out, g711) = theirs.from_browser(*i, p, 0, 101).expect("decoded");
            assert_eq!(out.payload_type, 0);
            assert_eq!(g711.len(), 160);
            if let Some(t) = last_ts {
                assert_eq!(out.timestamp.wrapping_sub(t), 160);
            }
            last_ts = Some(out.timestamp);
            heard.extend(g711.iter().map(|&b| g711::ulaw_decode(b)));
        }
        // Past the codec's start-up, the tone is there and little else.
        let settled = &heard[1600..];
        let (at, off) = (power(settled, 400.0), power(settled, 1700.0));
        assert!(at > 1000.0 * off, "400 Hz {at:.3e} vs 1.7 kHz {off:.3e}");
    }

    #[test]
    fn telephone_events_change_clock_and_garbage_is_refused() {
        let mut t = Transcoder::new(Codec::Pcma).unwrap();
        // From the browser: 48 kHz duration 4800 (100 ms) is 800 at 8 kHz.
        let event = [5u8, 0x0a, 0x12, 0xc0];
        let (i, p) = t
            .from_browser(info(101, 1, 48_000), &event, 8, 101)
            .unwrap();
        assert_eq!(i.payload_type, 101);
        assert_eq!(i.timestamp, 8_000);
        assert_eq!(&p[..], &[5, 0x0a, 0x03, 0x20]);
        // To the browser: 800 is 4800 again.
        let mut out = Vec::new();
        t.to_browser(&info(101, 2, 8_000), &[5, 0x0a, 0x03, 0x20], 101, |i, p| {
            out.push((*i, p.to_vec()));
        });
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0.timestamp, 48_000);
        assert_eq!(out[0].1, vec![5, 0x0a, 0x12, 0xc0]);
        // Not Opus, or not decodable: nothing reaches the path.
        assert!(t
            .from_browser(info(0, 3, 0), &[0xff; 160], 8, 101)
            .is_none());
        // Code 3 with no frames (RFC 6716 §3.4, R5).
        assert!(t
            .from_browser(info(OPUS_PT, 4, 960), &[0x03, 0x00], 8, 101)
            .is_none());
        // Whatever a browser (or a forger past SRTP) sends: no panic.
        let mut x: u32 = 12345;
        for k in 0..3000u32 {
            let len = (k % 200) as usize;
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (x >> 24) as u8
                })
                .collect();
            if let Some((_, g711)) = t.from_browser(info(OPUS_PT, k as u16, k * 960), &junk, 8, 101)
            {
                assert!(g711.len() <= MAX_DECODED);
            }
        }
    }
}
