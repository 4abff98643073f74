//! Test audio for the WebRTC unit tests: tones at 8 kHz and their power.

/// `samples` of a `hz` tone at 8 kHz, from sample `from` on.
pub fn tone(hz: f64, samples: usize, from: usize) -> Vec<i16> {
    (from..from + samples)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin()) as i16)
        .collect()
}

/// Goertzel power of `hz` in 8 kHz samples.
pub fn power(pcm: &[i16], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in pcm {
        let s = f64::from(x) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2
}
