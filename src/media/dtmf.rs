//! DTMF in all three forms a caller's phone may use: RFC 4733 telephone-events,
//! SIP INFO bodies and in-band tones (Goertzel). Each produces a [`Digit`].

use std::fmt;

/// One key: `0-9`, `*`, `#`, `A-D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit(char);

impl Digit {
    pub fn from_char(c: char) -> Option<Digit> {
        let c = c.to_ascii_uppercase();
        matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(Digit(c))
    }

    /// RFC 4733 §3.2 event codes 0–15.
    pub fn from_event(code: u8) -> Option<Digit> {
        let c = match code {
            0..=9 => (b'0' + code) as char,
            10 => '*',
            11 => '#',
            12..=15 => (b'A' + code - 12) as char,
            _ => return None,
        };
        Some(Digit(c))
    }

    pub fn event_code(self) -> u8 {
        match self.0 {
            '0'..='9' => self.0 as u8 - b'0',
            '*' => 10,
            '#' => 11,
            c => c as u8 - b'A' + 12,
        }
    }

    pub fn as_char(self) -> char {
        self.0
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a digit reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitSource {
    Rfc4733,
    SipInfo,
    InBand,
}

/// Turns a stream of RFC 4733 packets into one digit per event.
///
/// An event is identified by its RTP timestamp: every packet of one key press
/// (start, updates, the three end packets) carries the same one, so a long
/// press is one digit however long its duration grows. A new timestamp is a
/// new press; so is a start packet (marker bit) after the event ended, which
/// is what a sender that replays the same event (SIPp's pcaps) produces. An
/// update without the marker after the end is one that came late
/// (reordered by the network): the same press, not another.
#[derive(Debug, Default)]
pub struct Rfc4733Receiver {
    last: Option<(u32, bool)>,
}

impl Rfc4733Receiver {
    pub fn on_packet(&mut self, timestamp: u32, marker: bool, payload: &[u8]) -> Option<Digit> {
        if payload.len() < 4 {
            return None;
        }
        let digit = Digit::from_event(payload[0])?;
        let end = payload[1] & 0x80 != 0;
        let (new, ended) = match self.last {
            // The same event again from its start: a replayed press.
            Some((ts, true)) if ts == timestamp && marker && !end => (true, false),
            // The same event: its end stays seen, whatever comes late.
            Some((ts, ended)) if ts == timestamp => (false, ended || end),
            _ => (true, end),
        };
        self.last = Some((timestamp, ended));
        new.then_some(digit)
    }
}

/// The telephone-event payloads that send one digit (RFC 4733 §2.5):
/// updates every 20 ms, then the end packet three times.
#[derive(Debug, Clone)]
pub struct Rfc4733Tone {
    event: u8,
    length: u16,
    sent: u16,
    ends_left: u8,
}

/// A sent digit lasts this many 8 kHz samples (100 ms).
const TONE_SAMPLES: u16 = 800;
const VOLUME: u8 = 10;

impl Rfc4733Tone {
    pub fn new(digit: Digit) -> Rfc4733Tone {
        Rfc4733Tone {
            event: digit.event_code(),
            length: TONE_SAMPLES,
            sent: 0,
            ends_left: 3,
        }
    }

    /// The next payload, and whether it is the first packet of the event;
    /// `None` once the event is complete.
    pub fn next_payload(&mut self) -> Option<([u8; 4], bool)> {
        if self.ends_left == 0 {
            return None;
        }
        let first = self.sent == 0;
        self.sent = (self.sent + 160).min(self.length);
        let end = self.sent >= self.length;
        if end {
            self.ends_left -= 1;
        }
        let flags = if end { 0x80 } else { 0 } | VOLUME;
        let d = self.sent.to_be_bytes();
        Some(([self.event, flags, d[0], d[1]], first))
    }
}

/// Reads a DTMF SIP INFO body (`application/dtmf-relay` or `application/dtmf`).
pub fn parse_info(content_type: &str, body: &[u8]) -> Option<Digit> {
    let body = std::str::from_utf8(body).ok()?;
    let ct = content_type.to_ascii_lowercase();
    if ct.starts_with("application/dtmf-relay") {
        body.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            if !k.trim().eq_ignore_ascii_case("signal") {
                return None;
            }
            let v = v.trim();
            match v.parse::<u8>() {
                Ok(code) if v.len() > 1 => Digit::from_event(code),
                _ => Digit::from_char(v.chars().next()?),
            }
        })
    } else if ct.starts_with("application/dtmf") {
        let v = body.trim();
        match v.parse::<u8>() {
            Ok(code) if v.len() > 1 => Digit::from_event(code),
            _ => Digit::from_char(v.chars().next()?),
        }
    } else {
        None
    }
}

const ROWS: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const COLS: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// 205 samples at 8 kHz: the classic block, fine enough to tell the tones apart.
const BLOCK: usize = 205;

/// In-band DTMF detection (Goertzel) for calls without telephone-event.
///
/// A block counts as a key when the two strongest tones carry most of the
/// block's energy, their levels are within twist limits, and the signal is
/// loud enough; a digit is reported after two such blocks in a row (≈50 ms)
/// and the key must be released (two blocks of something else) before the
/// next. Music and speech rarely put 70 % of their energy in one row and one
/// column tone, which is what keeps false digits away.
#[derive(Debug)]
pub struct InbandDetector {
    coeff: [f32; 8],
    buf: Vec<f32>,
    candidate: Option<char>,
    hits: u8,
    misses: u8,
    reported: Option<char>,
}

impl Default for InbandDetector {
    fn default() -> Self {
        let mut coeff = [0f32; 8];
        for (i, f) in ROWS.iter().chain(COLS.iter()).enumerate() {
            coeff[i] = 2.0 * (2.0 * std::f32::consts::PI * f / 8000.0).cos();
        }
        InbandDetector {
            coeff,
            buf: Vec::with_capacity(BLOCK),
            candidate: None,
            hits: 0,
            misses: 0,
            reported: None,
        }
    }
}

impl InbandDetector {
    /// Feeds 8 kHz samples; returns the digits completed by them.
    pub fn push(&mut self, samples: &[i16], out: &mut Vec<Digit>) {
        for &s in samples {
            self.buf.push(f32::from(s));
            if self.buf.len() == BLOCK {
                let key = self.analyse();
                self.buf.clear();
                if let Some(d) = self.debounce(key) {
                    out.push(d);
                }
            }
        }
    }

    fn analyse(&self) -> Option<char> {
        let energy: f32 = self.buf.iter().map(|x| x * x).sum();
        // Below about -36 dBm0 nothing counts.
        if energy < BLOCK as f32 * 300.0 * 300.0 {
            return None;
        }
        let mut power = [0f32; 8];
        for (i, c) in self.coeff.iter().enumerate() {
            let (mut s1, mut s2) = (0f32, 0f32);
            for &x in &self.buf {
                let s0 = x + c * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            // |X|² scaled so a pure tone's share of the block energy is ≈1.
            power[i] = (s1 * s1 + s2 * s2 - c * s1 * s2) * 2.0 / (BLOCK as f32 * energy);
        }
        let best = |p: &[f32]| {
            let mut idx = 0;
            for i in 1..4 {
                if p[i] > p[idx] {
                    idx = i;
                }
            }
            idx
        };
        let (r, c) = (best(&power[..4]), best(&power[4..]));
        let (pr, pc) = (power[r], power[4 + c]);
        // The pair must dominate the block, and neither tone be faint (twist).
        if pr + pc < 0.7 || pr < 0.12 || pc < 0.12 {
            return None;
        }
        // Every other DTMF tone must be far below the chosen ones.
        for (i, &p) in power.iter().enumerate() {
            if i != r && i != 4 + c && p > 0.1 * pr.min(pc) {
                return None;
            }
        }
        Some(KEYS[r][c])
    }

    fn debounce(&mut self, key: Option<char>) -> Option<Digit> {
        match key {
            Some(k) if Some(k) == self.candidate => {
                self.hits = self.hits.saturating_add(1);
                self.misses = 0;
            }
            Some(k) => {
                self.candidate = Some(k);
                self.hits = 1;
                self.misses = 0;
            }
            None => {
                self.misses = self.misses.saturating_add(1);
                if self.misses >= 2 {
                    self.candidate = None;
                    self.hits = 0;
                    self.reported = None;
                }
            }
        }
        if self.hits >= 2 && self.reported != self.candidate {
            self.reported = self.candidate;
            return self.candidate.and_then(Digit::from_char);
        }
        None
    }
}

/// Synthesises a DTMF key press (for tests and tools): `ms` of tone, 8 kHz.
pub fn synthesize(key: char, ms: usize, amplitude: f32) -> Vec<i16> {
    let Some((r, c)) = KEYS.iter().enumerate().find_map(|(r, row)| {
        row.iter()
            .position(|&k| k == key.to_ascii_uppercase())
            .map(|c| (r, c))
    }) else {
        return Vec::new();
    };
    (0..ms * 8)
        .map(|n| {
            let t = n as f32 / 8000.0;
            let v = (2.0 * std::f32::consts::PI * ROWS[r] * t).sin()
                + (2.0 * std::f32::consts::PI * COLS[c] * t).sin();
            (v * amplitude / 2.0) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4733_one_digit_per_event() {
        let mut rx = Rfc4733Receiver::default();
        let mut got = vec![];
        let mut send = |rx: &mut Rfc4733Receiver, ts: u32| {
            let mut tone = Rfc4733Tone::new(Digit::from_char('5').unwrap());
            while let Some((p, first)) = tone.next_payload() {
                got.extend(rx.on_packet(ts, first, &p));
            }
        };
        send(&mut rx, 1000);
        // The same key again is a new event with a new timestamp.
        send(&mut rx, 2600);
        // A replay of the same event (same timestamp, from its start packet)
        // after its end is a new press.
        send(&mut rx, 2600);
        assert_eq!(got, vec![Digit('5'), Digit('5'), Digit('5')]);
        assert_eq!(rx.on_packet(5, true, &[200, 0, 0, 0]), None);
        assert_eq!(rx.on_packet(5, true, &[1]), None);
    }

    #[test]
    fn rfc4733_packets_reordered_or_lost_are_still_one_press() {
        let packets: Vec<([u8; 4], bool)> = {
            let mut tone = Rfc4733Tone::new(Digit::from_char('7').unwrap());
            std::iter::from_fn(|| tone.next_payload()).collect()
        };
        // An update that comes after the first end packet (reordered).
        let mut rx = Rfc4733Receiver::default();
        let n = packets.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.swap(n - 4, n - 3);
        let got: Vec<Digit> = order
            .iter()
            .filter_map(|&i| rx.on_packet(40, packets[i].1, &packets[i].0))
            .collect();
        assert_eq!(got, vec![Digit('7')]);
        // The start packet lost: the first update starts the press.
        let mut rx = Rfc4733Receiver::default();
        let got: Vec<Digit> = packets[1..]
            .iter()
            .filter_map(|(p, m)| rx.on_packet(80, *m, p))
            .collect();
        assert_eq!(got, vec![Digit('7')]);
        // Every end packet lost: the next press (a new timestamp) counts.
        let mut rx = Rfc4733Receiver::default();
        let mut got: Vec<Digit> = packets[..n - 3]
            .iter()
            .filter_map(|(p, m)| rx.on_packet(120, *m, p))
            .collect();
        got.extend(
            packets
                .iter()
                .filter_map(|(p, m)| rx.on_packet(1720, *m, p)),
        );
        assert_eq!(got, vec![Digit('7'), Digit('7')]);
    }

    #[test]
    fn rfc4733_tone_has_three_end_packets() {
        let mut tone = Rfc4733Tone::new(Digit::from_char('#').unwrap());
        let packets: Vec<_> = std::iter::from_fn(|| tone.next_payload()).collect();
        assert!(packets[0].1);
        assert_eq!(packets.iter().filter(|(p, _)| p[1] & 0x80 != 0).count(), 3);
        assert!(packets.iter().all(|(p, _)| p[0] == 11));
    }

    #[test]
    fn info_bodies() {
        assert_eq!(
            parse_info("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Digit::from_char('5')
        );
        assert_eq!(
            parse_info("application/dtmf-relay", b"Signal=#\r\n"),
            Digit::from_char('#')
        );
        assert_eq!(
            parse_info("application/dtmf-relay", b"Signal=11\r\n"),
            Digit::from_char('#')
        );
        assert_eq!(parse_info("application/dtmf", b"7"), Digit::from_char('7'));
        assert_eq!(parse_info("text/plain", b"7"), None);
        assert_eq!(parse_info("application/dtmf-relay", b"Signal=x"), None);
    }

    #[test]
    fn inband_detects_every_key_once() {
        let mut det = InbandDetector::default();
        let mut got = vec![];
        for key in "123A456B789C*0#D".chars() {
            det.push(&synthesize(key, 80, 12000.0), &mut got);
            det.push(&vec![0i16; 480], &mut got);
        }
        let s: String = got.iter().map(|d| d.as_char()).collect();
        assert_eq!(s, "123A456B789C*0#D");
    }

    #[test]
    fn inband_ignores_a_single_tone_and_short_blips() {
        let mut det = InbandDetector::default();
        let mut got = vec![];
        let tone: Vec<i16> = (0..8000)
            .map(|n| {
                ((2.0 * std::f32::consts::PI * 697.0 * n as f32 / 8000.0).sin() * 10000.0) as i16
            })
            .collect();
        det.push(&tone, &mut got);
        det.push(&synthesize('5', 20, 12000.0), &mut got);
        assert!(got.is_empty(), "{got:?}");
    }
}
