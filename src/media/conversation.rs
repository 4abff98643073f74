//! A conversation being recorded on a channel: both sides placed by their
//! RTP timestamps, so jitter and loss neither shift nor stretch a side, and
//! handed out as interleaved stereo a second at a time.

use super::prompt::FRAME_SAMPLES;

/// Samples kept in memory per side before they are handed out: late
/// packets up to a second can still be placed.
const CONVERSATION_WINDOW: usize = 8000;

/// One side of a recorded conversation. Packets are placed by their RTP
/// timestamp, so jitter and loss neither shift nor stretch the side.
#[derive(Default)]
pub(crate) struct Track {
    /// The first packet's timestamp and where (in samples since the
    /// recording began) it was placed.
    pub(crate) anchor: Option<(u32, usize)>,
    /// Samples from `flushed` on.
    pub(crate) buf: Vec<i16>,
}

impl Track {
    pub(crate) fn put(&mut self, ts: u32, pcm: &[i16], now: usize, flushed: usize) {
        let (ts0, at) = *self.anchor.get_or_insert((ts, now));
        let mut pos = at + ts.wrapping_sub(ts0) as usize;
        // A new stream (another SSRC after a re-INVITE) or a jump of more
        // than a second: placed from now on.
        if pos.abs_diff(now) > CONVERSATION_WINDOW {
            self.anchor = Some((ts, now));
            pos = now;
        }
        let mut pcm = pcm;
        if pos < flushed {
            let late = flushed - pos;
            let Some(rest) = pcm.get(late..) else {
                return;
            };
            pcm = rest;
            pos = flushed;
        }
        let i = pos - flushed;
        if self.buf.len() < i + pcm.len() {
            self.buf.resize(i + pcm.len(), 0);
        }
        self.buf[i..i + pcm.len()].copy_from_slice(pcm);
    }
}

/// A conversation being recorded on a channel.
pub(crate) struct Conversation {
    pub(crate) token: u64,
    pub(crate) left: Track,
    pub(crate) right: Track,
    /// Samples since the recording began (one frame a tick).
    pub(crate) now: usize,
    /// Samples already handed out.
    pub(crate) flushed: usize,
    /// Paused since this sample (PCI): silence from there on.
    paused_from: Option<usize>,
    /// Stretches paused and resumed, not yet all handed out: silence.
    silent: Vec<(usize, usize)>,
}

impl Conversation {
    pub(crate) fn new(token: u64) -> Conversation {
        Conversation {
            token,
            left: Track::default(),
            right: Track::default(),
            now: 0,
            flushed: 0,
            paused_from: None,
            silent: Vec::new(),
        }
    }

    /// Pauses the recording from now (or resumes it). Audio is placed by
    /// its RTP time, so what was said while paused is silence even when its
    /// packets come late, and what was said before stays.
    pub(crate) fn pause(&mut self, paused: bool) {
        match (paused, self.paused_from) {
            (true, None) => self.paused_from = Some(self.now),
            (false, Some(from)) => {
                self.paused_from = None;
                self.silent.push((from, self.now));
            }
            _ => {}
        }
    }

    fn is_silent(&self, at: usize) -> bool {
        self.paused_from.is_some_and(|from| at >= from)
            || self.silent.iter().any(|&(a, b)| (a..b).contains(&at))
    }

    /// Hands out everything before `upto`, interleaved (silence where a
    /// side had nothing, and where the recording was paused).
    fn take(&mut self, upto: usize) -> Vec<i16> {
        let n = upto.saturating_sub(self.flushed);
        let mut out = Vec::with_capacity(n * 2);
        let pauses = self.paused_from.is_some() || !self.silent.is_empty();
        for i in 0..n {
            if pauses && self.is_silent(self.flushed + i) {
                out.extend([0, 0]);
                continue;
            }
            out.push(self.left.buf.get(i).copied().unwrap_or(0));
            out.push(self.right.buf.get(i).copied().unwrap_or(0));
        }
        let upto = self.flushed + n;
        self.silent.retain(|&(_, b)| b > upto);
        for t in [&mut self.left, &mut self.right] {
            t.buf.drain(..n.min(t.buf.len()));
        }
        self.flushed += n;
        out
    }

    /// One tick on: a second's worth is handed out once two are kept.
    pub(crate) fn tick(&mut self) -> Option<Vec<i16>> {
        self.now += FRAME_SAMPLES;
        (self.now - self.flushed >= 2 * CONVERSATION_WINDOW)
            .then(|| self.take(self.now - CONVERSATION_WINDOW))
    }

    pub(crate) fn finish(&mut self) -> Vec<i16> {
        let end = self.flushed + self.left.buf.len().max(self.right.buf.len());
        self.take(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_places_each_side_by_timestamp_despite_jitter_and_loss() {
        let mut c = Conversation::new(1);
        let frame = |v: i16| vec![v; FRAME_SAMPLES];
        let mut out = Vec::new();
        // Left: packets 0..150 in order, except 10 arriving a tick late
        // and 20 lost. Right starts 5 ticks later, all in order.
        for tick in 0..150u32 {
            let now = c.now;
            if tick != 10 && tick != 20 {
                c.left
                    .put(1000 + tick * 160, &frame(tick as i16 + 1), now, c.flushed);
            }
            if tick == 11 {
                c.left.put(1000 + 10 * 160, &frame(11), now, c.flushed);
            }
            if tick >= 5 {
                c.right.put(
                    77 + (tick - 5) * 160,
                    &frame(-(tick as i16)),
                    now,
                    c.flushed,
                );
            }
            out.extend(c.tick().unwrap_or_default());
        }
        out.extend(c.finish());
        let left = |i: usize| out[2 * i * FRAME_SAMPLES];
        let right = |i: usize| out[2 * i * FRAME_SAMPLES + 1];
        assert_eq!(out.len(), 2 * 150 * FRAME_SAMPLES);
        assert_eq!((left(0), left(9), left(10), left(11)), (1, 10, 11, 12));
        assert_eq!(left(20), 0, "a lost packet is silence");
        assert_eq!((right(4), right(5), right(149)), (0, -5, -149));
    }

    #[test]
    fn what_is_said_while_paused_is_silence_even_when_its_packets_come_late() {
        let mut c = Conversation::new(1);
        let frame = |v: i16| vec![v; FRAME_SAMPLES];
        let mut out = Vec::new();
        // Ticks 0..100: paused from tick 30 to tick 60; the packet of tick
        // 59 arrives at tick 65 (after the resume), that of 29 at tick 31.
        for tick in 0..100u32 {
            if tick == 30 {
                c.pause(true);
            }
            if tick == 60 {
                c.pause(false);
            }
            let now = c.now;
            if tick != 59 && tick != 29 {
                c.left.put(tick * 160, &frame(1000), now, c.flushed);
                c.right.put(tick * 160, &frame(-1000), now, c.flushed);
            }
            if tick == 65 {
                c.left.put(59 * 160, &frame(1000), now, c.flushed);
            }
            if tick == 31 {
                c.left.put(29 * 160, &frame(1000), now, c.flushed);
            }
            out.extend(c.tick().unwrap_or_default());
        }
        out.extend(c.finish());
        let left = |i: usize| out[2 * i * FRAME_SAMPLES];
        let right = |i: usize| out[2 * i * FRAME_SAMPLES + 1];
        assert_eq!(
            out.len(),
            2 * 100 * FRAME_SAMPLES,
            "the timeline stays whole"
        );
        assert_eq!(
            (left(29), right(28)),
            (1000, -1000),
            "said before the pause"
        );
        for t in 30..60 {
            assert_eq!(
                (left(t), right(t)),
                (0, 0),
                "tick {t} was said while paused"
            );
        }
        assert_eq!(
            (left(60), right(99)),
            (1000, -1000),
            "said after the resume"
        );
        assert!(c.silent.is_empty(), "a stretch handed out is forgotten");
    }
}
