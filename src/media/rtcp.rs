//! RTCP (RFC 3550 §6) and call quality, pure: what we measure of the peer's
//! stream (loss, interarrival jitter), the reports we send (SR, RR and
//! the SDES CNAME every compound packet carries), what the peer reports
//! of ours (its loss and jitter, and from LSR/DLSR the round-trip time),
//! and a MOS from the ITU-T G.107 E-model. Times are arguments: `ntp` is
//! the wall clock in NTP format (RFC 3550 §4), `arrival` a packet's
//! receive time in RTP timestamp units.
//!
//! Packets are read and written here by hand, as RTP is (`rtp.rs`): a few
//! fixed fields, from anyone on the network, every index checked. The
//! tests check both directions against webrtc-rs's `rtc-rtcp`.

use serde::Serialize;

/// The RTP clock of the engine's codecs (G.711, telephone-event).
pub const CLOCK_RATE: u32 = 8000;

const SR: u8 = 200;
const RR: u8 = 201;
const SDES: u8 = 202;
const BYE: u8 = 203;

/// How far a sequence number may jump ahead and still be the same stream
/// (RFC 3550 A.1), and how far back it is a late packet.
const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

/// Whether a datagram on the RTP port is RTCP multiplexed onto it (RFC
/// 5761 §4: its second byte is an RTCP packet type, 200 to 204).
pub fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 8 && packet[0] >> 6 == 2 && (192..=223).contains(&packet[1])
}

/// The NTP timestamp (RFC 3550 §4) of a time since the Unix epoch.
pub fn ntp(since_unix: std::time::Duration) -> u64 {
    let secs = since_unix.as_secs() + 2_208_988_800;
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// The middle 32 bits of an NTP timestamp (LSR, and the unit of RTT).
fn middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// One report block (RFC 3550 §6.4.1): how one source's stream arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    pub ssrc: u32,
    /// Lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Lost since the start (may be negative with duplicates), 24 bits.
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// The middle of the last SR's NTP time, and the delay since it in
    /// 1/65536 s (both 0 without an SR).
    pub lsr: u32,
    pub dlsr: u32,
}

/// What we measure of the peer's stream: RFC 3550 A.1 (sequence numbers),
/// A.3 (loss) and A.8 (jitter).
#[derive(Debug, Clone, Default)]
pub struct Reception {
    ssrc: Option<u32>,
    base_seq: u32,
    max_seq: u16,
    /// Wraps of the sequence number, shifted (a multiple of 65536).
    cycles: u32,
    /// A jump too far to be loss: the next packet must follow it to
    /// restart the count (a new stream without a new SSRC).
    bad_seq: Option<u16>,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    transit: Option<u32>,
    /// In timestamp units.
    jitter: f64,
    /// The last SR: the middle of its NTP time, and our NTP time when it came.
    last_sr: Option<(u32, u64)>,
}

impl Reception {
    /// A packet of the peer's; `arrival` in timestamp units; `audio`: it
    /// is paced by the clock (telephone-events repeat their timestamp and
    /// would read as jitter).
    pub fn on_packet(&mut self, ssrc: u32, seq: u16, timestamp: u32, arrival: u32, audio: bool) {
        if self.ssrc != Some(ssrc) {
            *self = Reception {
                last_sr: self.last_sr,
                ..Reception::default()
            };
            self.ssrc = Some(ssrc);
            self.restart(seq);
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(1 << 16);
                }
                self.max_seq = seq;
            } else if delta <= u16::MAX - MAX_MISORDER {
                // A big jump: a second packet in sequence after it
                // means the peer restarted its stream.
                if self.bad_seq == Some(seq) {
                    self.restart(seq);
                } else {
                    self.bad_seq = Some(seq.wrapping_add(1));
                    return;
                }
            }
            // Else a duplicate or a late packet: counted, nothing moves.
        }
        self.received = self.received.wrapping_add(1);
        if audio {
            let transit = arrival.wrapping_sub(timestamp);
            if let Some(prev) = self.transit {
                let d = f64::from((transit.wrapping_sub(prev) as i32).unsigned_abs());
                self.jitter += (d - self.jitter) / 16.0;
            }
            self.transit = Some(transit);
        }
    }

    fn restart(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.cycles = 0;
        self.bad_seq = None;
        self.received = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
        self.transit = None;
    }

    /// A sender report from the peer arrived at `ntp` (ours).
    pub fn on_sender_report(&mut self, their_ntp: u64, ntp: u64) {
        self.last_sr = Some((middle(their_ntp), ntp));
    }

    fn extended_max(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn expected(&self) -> u32 {
        self.extended_max()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// Packets received, and lost (never negative), since the stream began.
    pub fn totals(&self) -> (u64, u64) {
        if self.ssrc.is_none() {
            return (0, 0);
        }
        let expected = u64::from(self.expected());
        let received = u64::from(self.received);
        (received, expected.saturating_sub(received))
    }

    /// Interarrival jitter, in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(CLOCK_RATE)
    }

    /// The block for our next report, `None` before the peer sent
    /// anything; starts the next interval.
    pub fn block(&mut self, ntp: u64) -> Option<Block> {
        let ssrc = self.ssrc?;
        let expected = self.expected();
        let lost = i64::from(expected) - i64::from(self.received);
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (lsr, dlsr) = match self.last_sr {
            Some((lsr, at)) => (lsr, middle(ntp.wrapping_sub(at))),
            None => (0, 0),
        };
        Some(Block {
            ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
            highest_seq: self.extended_max(),
            jitter: self.jitter as u32,
            lsr,
            dlsr,
        })
    }
}

/// What we sent, for our sender reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sending {
    pub ssrc: u32,
    pub packets: u32,
    /// Payload octets.
    pub octets: u32,
    /// The RTP timestamp of our last packet, and our NTP time then.
    pub timestamp: u32,
}

/// What the peer reports of our stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Remote {
    /// Our packets it lost since the start, of those it expected.
    pub lost: i64,
    pub expected: u64,
    pub jitter_ms: f64,
    pub rtt_ms: Option<f64>,
}

/// One RTCP packet of a compound one, as far as the engine reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Who sent it.
    pub ssrc: u32,
    /// A sender report: its NTP time.
    pub ntp: Option<u64>,
    pub blocks: Vec<Block>,
}

/// Reads a compound RTCP packet: its SRs and RRs (SDES, BYE and the rest
/// are skipped). `None` when it is not RTCP or a length does not fit.
pub fn parse(packet: &[u8]) -> Option<Vec<Report>> {
    let mut reports = Vec::new();
    let mut rest = packet;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let head = rest.get(..4)?;
        if head[0] >> 6 != 2 {
            return None;
        }
        let count = usize::from(head[0] & 0x1f);
        let len = 4 * (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1);
        let body = rest.get(4..len)?;
        rest = &rest[len..];
        let be32 = |b: &[u8], i: usize| -> Option<u32> {
            Some(u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?))
        };
        let (ssrc, ntp, blocks_at) = match head[1] {
            SR => {
                let hi = be32(body, 4)?;
                let lo = be32(body, 8)?;
                (
                    be32(body, 0)?,
                    Some((u64::from(hi) << 32) | u64::from(lo)),
                    24,
                )
            }
            RR => (be32(body, 0)?, None, 4),
            _ => continue,
        };
        let mut blocks = Vec::with_capacity(count);
        for i in 0..count {
            let b = body.get(blocks_at + 24 * i..blocks_at + 24 * (i + 1))?;
            let lost = be32(b, 4)?;
            // 24 bits, signed.
            let cumulative_lost = ((lost << 8) as i32) >> 8;
            blocks.push(Block {
                ssrc: be32(b, 0)?,
                fraction_lost: (lost >> 24) as u8,
                cumulative_lost,
                highest_seq: be32(b, 8)?,
                jitter: be32(b, 12)?,
                lsr: be32(b, 16)?,
                dlsr: be32(b, 20)?,
            });
        }
        reports.push(Report { ssrc, ntp, blocks });
    }
    Some(reports)
}

/// Puts a compound packet's RTP-clock fields through `scale`: a sender
/// report's RTP time and every report block's jitter. For a leg whose
/// wire clock is not the one the engine counts in (Opus's 48 kHz against
/// the caller's 8 kHz). What is not a well-formed SR or RR is left as it is.
pub fn rescale(packet: &mut [u8], scale: impl Fn(u32) -> u32) {
    let mut at = 0;
    while let Some(head) = packet.get(at..at + 4) {
        if head[0] >> 6 != 2 {
            return;
        }
        let count = usize::from(head[0] & 0x1f);
        let len = 4 * (usize::from(u16::from_be_bytes([head[2], head[3]])) + 1);
        let kind = head[1];
        let Some(body) = packet.get_mut(at + 4..at + len) else {
            return;
        };
        let mut field = |i: usize| {
            if let Some(b) = body.get_mut(i..i + 4) {
                let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                b.copy_from_slice(&scale(v).to_be_bytes());
            }
        };
        let blocks_at = match kind {
            SR => {
                field(12);
                24
            }
            RR => 4,
            _ => {
                at += len;
                continue;
            }
        };
        for i in 0..count {
            field(blocks_at + 24 * i + 12);
        }
        at += len;
    }
}

fn put_block(out: &mut Vec<u8>, b: &Block) {
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    let lost = (b.cumulative_lost as u32) & 0x00ff_ffff;
    out.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
    out.extend_from_slice(&b.highest_seq.to_be_bytes());
    out.extend_from_slice(&b.jitter.to_be_bytes());
    out.extend_from_slice(&b.lsr.to_be_bytes());
    out.extend_from_slice(&b.dlsr.to_be_bytes());
}

fn put_header(out: &mut Vec<u8>, count: u8, kind: u8, words_after: usize) {
    out.push(0x80 | (count & 0x1f));
    out.push(kind);
    out.extend_from_slice(&(words_after as u16).to_be_bytes());
}

/// Writes our report into `out` (cleared first): an SR when we sent since
/// the last one (else an RR), with `block` about the peer's stream, then
/// the SDES CNAME; with `bye`, a BYE after them (the leg ends).
pub fn write(
    out: &mut Vec<u8>,
    ssrc: u32,
    sent: Option<(Sending, u64)>,
    block: Option<&Block>,
    cname: &str,
    bye: bool,
) {
    out.clear();
    let blocks = usize::from(block.is_some());
    match sent {
        Some((s, ntp)) => {
            put_header(out, blocks as u8, SR, 6 + 6 * blocks);
            out.extend_from_slice(&s.ssrc.to_be_bytes());
            out.extend_from_slice(&ntp.to_be_bytes());
            out.extend_from_slice(&s.timestamp.to_be_bytes());
            out.extend_from_slice(&s.packets.to_be_bytes());
            out.extend_from_slice(&s.octets.to_be_bytes());
        }
        None => {
            put_header(out, blocks as u8, RR, 1 + 6 * blocks);
            out.extend_from_slice(&ssrc.to_be_bytes());
        }
    }
    if let Some(b) = block {
        put_block(out, b);
    }
    // SDES: one chunk, the CNAME item, a terminating zero, padded to 32 bits.
    let name = &cname.as_bytes()[..cname.len().min(255)];
    let chunk = 4 + 2 + name.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    put_header(out, 1, SDES, padded / 4);
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.push(1);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.resize(out.len() + padded - chunk + 1, 0);
    if bye {
        put_header(out, 1, BYE, 1);
        out.extend_from_slice(&ssrc.to_be_bytes());
    }
}

/// What the peer's report block about our stream says: `first_seq` is
/// our stream's first sequence number, `ntp` when the report came.
pub fn remote(block: &Block, first_seq: u16, ntp: u64) -> Remote {
    // Its highest sequence number, extended, counted from our first.
    let expected = u64::from(block.highest_seq.wrapping_sub(u32::from(first_seq))) + 1;
    let rtt_ms = (block.lsr != 0).then(|| {
        let rtt = middle(ntp).wrapping_sub(block.lsr).wrapping_sub(block.dlsr) as i32;
        match rtt {
            // A near-zero round trip can read a little negative (the
            // peer's DLSR is coarse): none.
            r if r < 0 && r > -(1 << 16) / 10 => Some(0.0),
            // Older than a minute, or further in the future: no RTT.
            r if !(0..60 << 16).contains(&r) => None,
            r => Some(f64::from(r) * 1000.0 / 65536.0),
        }
    });
    Remote {
        lost: i64::from(block.cumulative_lost),
        expected,
        jitter_ms: f64::from(block.jitter) * 1000.0 / f64::from(CLOCK_RATE),
        rtt_ms: rtt_ms.flatten(),
    }
}

/// The E-model's transmission rating R (ITU-T G.107) for G.711 with packet
/// loss concealment (Ie = 0, Bpl = 25.1, random loss) at `loss` (0–1) and
/// a one-way delay of `delay_ms` (the delay impairment Id in the common
/// simplified form: 0.024·d, plus 0.11·(d − 177.3) beyond 177.3 ms).
pub fn r_factor(loss: f64, delay_ms: f64) -> f64 {
    let ppl = (loss * 100.0).clamp(0.0, 100.0);
    let ie_eff = 95.0 * ppl / (ppl + 25.1);
    let d = delay_ms.max(0.0);
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    93.2 - id - ie_eff
}

/// The MOS (1–4.5) an R factor predicts (G.107 Annex B).
pub fn mos_of(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// Calls scored below this are poor (the report lists them).
pub const POOR_MOS: f64 = 3.6;

/// One leg's quality, as the call record, the API and the metrics show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Quality {
    /// The peer's packets we received, and those that never came.
    pub received: u64,
    pub lost: u64,
    /// `lost` of those expected, 0–1.
    pub loss: f64,
    pub jitter_ms: f64,
    /// Our packets sent.
    pub sent: u64,
    /// What the peer's reports say of our stream (none without RTCP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_jitter_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// RTCP reports received from the peer.
    pub reports: u32,
    /// From the worse direction's loss and the delay (half the RTT plus
    /// twice the jitter, what a jitter buffer adds); none before any audio.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mos: Option<f64>,
}

impl Quality {
    /// The figures of a leg now.
    pub fn of(reception: &Reception, sent: u64, remote: Option<&Remote>, reports: u32) -> Quality {
        let (received, lost) = reception.totals();
        let expected = received + lost;
        let loss = if expected == 0 {
            0.0
        } else {
            lost as f64 / expected as f64
        };
        let remote_loss = remote.map(|r| {
            if r.expected == 0 {
                0.0
            } else {
                (r.lost.max(0) as f64 / r.expected as f64).min(1.0)
            }
        });
        let jitter_ms = reception.jitter_ms();
        let rtt_ms = remote.and_then(|r| r.rtt_ms);
        let mos = (received > 0 || remote.is_some()).then(|| {
            let worst = loss.max(remote_loss.unwrap_or(0.0));
            let jitter = jitter_ms.max(remote.map_or(0.0, |r| r.jitter_ms));
            let delay = rtt_ms.unwrap_or(0.0) / 2.0 + 2.0 * jitter;
            (mos_of(r_factor(worst, delay)) * 100.0).round() / 100.0
        });
        Quality {
            received,
            lost,
            loss: (loss * 10_000.0).round() / 10_000.0,
            jitter_ms: (jitter_ms * 10.0).round() / 10.0,
            sent,
            remote_loss: remote_loss.map(|l| (l * 10_000.0).round() / 10_000.0),
            remote_jitter_ms: remote.map(|r| (r.jitter_ms * 10.0).round() / 10.0),
            rtt_ms: rtt_ms.map(|r| (r * 10.0).round() / 10.0),
            reports,
            mos,
        }
    }
}

#[cfg(test)]
mod rescale_tests {
    use super::*;

    #[test]
    fn an_sr_s_rtp_time_and_its_blocks_jitter_change_clock_and_nothing_else() {
        let block = Block {
            ssrc: 7,
            fraction_lost: 3,
            cumulative_lost: 9,
            highest_seq: 1000,
            jitter: 40,
            lsr: 0x1234,
            dlsr: 0x10,
        };
        let sent = Sending {
            ssrc: 5,
            packets: 50,
            octets: 8000,
            timestamp: 7840,
        };
        let mut packet = Vec::new();
        write(
            &mut packet,
            5,
            Some((sent, 1 << 40)),
            Some(&block),
            "c@h",
            true,
        );
        let before = parse(&packet).unwrap();
        rescale(&mut packet, |v| v.wrapping_mul(6));
        let after = parse(&packet).unwrap();
        assert_eq!(after[0].blocks[0].jitter, 240);
        assert_eq!(
            after[0].blocks[0],
            Block {
                jitter: 240,
                ..before[0].blocks[0]
            }
        );
        assert_eq!(packet[16..20], (7840u32 * 6).to_be_bytes());
        // And back.
        rescale(&mut packet, |v| v / 6);
        assert_eq!(parse(&packet).unwrap(), before);
        // Garbage is left alone, without a panic.
        let mut junk = vec![0x81, 200, 0xff, 0xff, 1, 2];
        rescale(&mut junk, |v| v * 6);
        assert_eq!(junk, [0x81, 200, 0xff, 0xff, 1, 2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rtc_shared::marshal::{Marshal, Unmarshal};

    #[test]
    fn the_e_model_gives_what_the_issue_and_g107_say() {
        let m = |loss: f64| mos_of(r_factor(loss, 0.0));
        assert!((m(0.0) - 4.41).abs() < 0.01, "{}", m(0.0));
        assert!((m(0.05) - 3.92).abs() < 0.01, "{}", m(0.05));
        assert!((m(0.10) - 3.41).abs() < 0.01, "{}", m(0.10));
        assert!(m(0.10) < POOR_MOS && m(0.0) >= 4.2);
        // Delay alone: 150 ms one way costs a little, 400 ms a lot.
        assert!(mos_of(r_factor(0.0, 150.0)) > 4.2);
        assert!(mos_of(r_factor(0.0, 400.0)) < 3.6);
        assert_eq!(mos_of(-5.0), 1.0);
        assert_eq!(mos_of(120.0), 4.5);
    }

    /// A peer sending 20 ms packets: `lose` says which are lost.
    fn stream(n: u16, first: u16, lose: impl Fn(u16) -> bool) -> Reception {
        let mut r = Reception::default();
        for i in 0..n {
            if lose(i) {
                continue;
            }
            let ts = 1000u32.wrapping_add(160 * u32::from(i));
            r.on_packet(7, first.wrapping_add(i), ts, 5_000 + ts, true);
        }
        r
    }

    #[test]
    fn loss_is_counted_across_a_wrap_and_reported_per_interval() {
        let mut r = stream(1000, 65_000, |i| i % 10 == 3);
        assert_eq!(r.totals(), (900, 100));
        let b = r.block(0).unwrap();
        assert_eq!(b.cumulative_lost, 100);
        assert_eq!(
            b.highest_seq,
            65_536 + u32::from(65_000u16.wrapping_add(999))
        );
        assert_eq!(b.fraction_lost, (100 * 256 / 1000) as u8);
        assert_eq!(b.jitter, 0, "a perfectly paced stream has no jitter");
        // Nothing new: the next interval lost nothing.
        assert_eq!(r.block(0).unwrap().fraction_lost, 0);
        let q = Quality::of(&r, 0, None, 0);
        assert_eq!(q.loss, 0.1);
        assert!((q.mos.unwrap() - 3.41).abs() < 0.01);
    }

    #[test]
    fn duplicates_late_packets_and_a_restarted_stream_are_not_loss() {
        let mut r = Reception::default();
        for (seq, ts) in [(10u16, 0u32), (11, 160), (11, 160), (13, 480), (12, 320)] {
            r.on_packet(1, seq, ts, ts, true);
        }
        // 4 expected (10–13), 5 received: nothing lost.
        assert_eq!(r.totals(), (5, 0));
        // The peer restarts at another number: one stray is ignored, two
        // in a row start the count again.
        r.on_packet(1, 40_000, 640, 640, true);
        assert_eq!(r.totals(), (5, 0));
        r.on_packet(1, 40_001, 800, 800, true);
        assert_eq!(r.totals(), (1, 0));
        // A new SSRC starts again too.
        r.on_packet(2, 5, 0, 0, true);
        r.on_packet(2, 7, 320, 320, true);
        assert_eq!(r.totals(), (2, 1));
    }

    #[test]
    fn jitter_follows_rfc3550() {
        // Every other packet 10 ms (80 units) late: |D| is 80 each time
        // after the first, and J converges on it.
        let mut r = Reception::default();
        for i in 0..400u32 {
            let ts = 160 * i;
            let late = if i % 2 == 1 { 80 } else { 0 };
            r.on_packet(1, i as u16, ts, ts + late, true);
        }
        assert!((r.jitter_ms() - 10.0).abs() < 0.1, "{}", r.jitter_ms());
        // Telephone-events repeat their timestamp: they do not count.
        let before = r.jitter_ms();
        r.on_packet(1, 400, 0, 999_999, false);
        assert_eq!(r.jitter_ms(), before);
    }

    #[test]
    fn the_round_trip_comes_from_lsr_and_dlsr() {
        let ours = ntp(std::time::Duration::from_secs(1_000_000));
        // The peer got our SR, held it 1 s, and its RR came 1.25 s after our SR.
        let block = Block {
            ssrc: 5,
            fraction_lost: 0,
            cumulative_lost: 3,
            highest_seq: 65_536 + 99,
            jitter: 80,
            lsr: middle(ours),
            dlsr: 65_536,
        };
        let later = ours + (5u64 << 30); // + 1.25 s
        let r = remote(&block, 100, later);
        assert!((r.rtt_ms.unwrap() - 250.0).abs() < 0.1, "{:?}", r.rtt_ms);
        assert_eq!(r.expected, 65_536);
        assert_eq!(r.jitter_ms, 10.0);
        // No SR yet: no RTT.
        let none = remote(&Block { lsr: 0, ..block }, 100, later);
        assert_eq!(none.rtt_ms, None);
        // On loopback the peer's delay can exceed the round trip a little.
        let close = remote(
            &Block {
                dlsr: (5 << 14) + 100,
                ..block
            },
            100,
            later,
        );
        assert_eq!(close.rtt_ms, Some(0.0));
        let skewed = remote(
            &Block {
                dlsr: 3 << 16,
                ..block
            },
            100,
            later,
        );
        assert_eq!(skewed.rtt_ms, None);
    }

    #[test]
    fn what_we_write_rtc_rtcp_reads_and_what_it_writes_we_read() {
        let mut r = stream(100, 1, |i| i == 50);
        r.on_sender_report(ntp(std::time::Duration::from_secs(10)), 1 << 40);
        let block = r.block((1 << 40) + (1 << 31)).unwrap();
        let sent = Sending {
            ssrc: 0xabcd,
            packets: 321,
            octets: 321 * 160,
            timestamp: 99_999,
        };
        let mut out = Vec::new();
        write(
            &mut out,
            0xabcd,
            Some((sent, 0x1122_3344_5566_7788)),
            Some(&block),
            "hotline-test",
            true,
        );
        let mut buf = Bytes::from(out.clone());
        let packets = rtc_rtcp::packet::unmarshal(&mut buf).unwrap();
        let sr = packets[0]
            .as_any()
            .downcast_ref::<rtc_rtcp::sender_report::SenderReport>()
            .unwrap();
        assert_eq!(
            (sr.ssrc, sr.ntp_time, sr.packet_count),
            (0xabcd, 0x1122_3344_5566_7788, 321)
        );
        let rb = &sr.reports[0];
        assert_eq!(
            (rb.ssrc, rb.total_lost, rb.last_sender_report, rb.delay),
            (7, 1, block.lsr, 1 << 15)
        );
        assert_eq!(rb.fraction_lost, block.fraction_lost);
        let sdes = packets[1]
            .as_any()
            .downcast_ref::<rtc_rtcp::source_description::SourceDescription>()
            .unwrap();
        assert_eq!(&sdes.chunks[0].items[0].text[..], b"hotline-test");
        assert!(packets[2]
            .as_any()
            .downcast_ref::<rtc_rtcp::goodbye::Goodbye>()
            .is_some());
        // And back.
        let parsed = parse(&out).unwrap();
        assert_eq!(parsed[0].ntp, Some(0x1122_3344_5566_7788));
        assert_eq!(parsed[0].blocks, vec![block]);
        assert_eq!(parsed.len(), 1, "SDES and BYE are skipped");

        let rr = rtc_rtcp::receiver_report::ReceiverReport {
            ssrc: 9,
            reports: vec![rtc_rtcp::reception_report::ReceptionReport {
                ssrc: 0xabcd,
                fraction_lost: 25,
                total_lost: 0x7f_fff0,
                last_sequence_number: 70_000,
                jitter: 44,
                last_sender_report: 1234,
                delay: 5678,
            }],
            ..Default::default()
        };
        let bytes = rr.marshal().unwrap();
        let got = parse(&bytes).unwrap();
        assert_eq!(got[0].ssrc, 9);
        assert_eq!(
            got[0].blocks[0],
            Block {
                ssrc: 0xabcd,
                fraction_lost: 25,
                cumulative_lost: 0x7f_fff0,
                highest_seq: 70_000,
                jitter: 44,
                lsr: 1234,
                dlsr: 5678
            }
        );
        // An RR without a block, as we send before hearing anything.
        write(&mut out, 3, None, None, "x", false);
        let mut buf = Bytes::from(out.clone());
        let rr = rtc_rtcp::receiver_report::ReceiverReport::unmarshal(&mut buf).unwrap();
        assert_eq!((rr.ssrc, rr.reports.len()), (3, 0));
    }

    #[test]
    fn anything_else_is_refused_without_a_panic() {
        assert!(parse(&[]).is_none());
        assert!(
            !is_rtcp(&[0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            "RTP with PT 0"
        );
        assert!(is_rtcp(&[0x80, 200, 0, 6, 0, 0, 0, 0]));
        let mut out = Vec::new();
        let block = stream(10, 1, |_| false).block(0).unwrap();
        write(&mut out, 1, None, Some(&block), "cname", false);
        // Every truncation, and every byte flipped, reads or fails cleanly.
        for n in 0..out.len() {
            let _ = parse(&out[..n]);
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[n] ^= 1 << bit;
                let _ = parse(&bad);
            }
        }
        // A length word pointing past the end.
        assert!(parse(&[0x81, 201, 0xff, 0xff, 0, 0, 0, 1]).is_none());
    }
}
