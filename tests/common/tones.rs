//! Tones for the browser tests: what a browser's microphone plays (a tone
//! file), what the caller says, and whether the caller hears the browser.

use std::time::{Duration, Instant};

use super::ua::TestUa;

/// The browser's microphone: a 1 kHz tone. The caller says 400 Hz.
pub const MIC_HZ: f64 = 1000.0;
pub const CALLER_HZ: f64 = 400.0;

/// `hz` at `rate` for `seconds`.
pub fn tone(hz: f64, rate: u32, seconds: u32) -> Vec<i16> {
    (0..rate * seconds)
        .map(|i| {
            let t = f64::from(i) / f64::from(rate);
            (9000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
        })
        .collect()
}

/// The power of `hz` in `samples` (8 kHz), by Goertzel, per sample.
pub fn power(samples: &[i16], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len().max(1) as f64
}

/// A tone file for Chromium's fake microphone (`--use-file-for-fake-audio-capture`).
pub fn mic_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("mic-1khz.wav");
    hotline::media::wav::write(&path, &tone(MIC_HZ, 48000, 10), 48000).unwrap();
    path
}

/// What the caller hears for `time` (8 kHz samples after the first 1.5 s).
pub fn listen(caller: &TestUa, time: Duration) -> std::thread::JoinHandle<Vec<i16>> {
    let rx = caller.rtp.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut pcm = Vec::new();
        let mut buf = [0u8; 2048];
        let start = Instant::now();
        while start.elapsed() < time {
            if let Ok(n) = rx.recv(&mut buf) {
                if let Some((info, payload)) = hotline::media::rtp::parse(&buf[..n]) {
                    if info.payload_type == 0 && start.elapsed() > Duration::from_millis(1500) {
                        pcm.extend(
                            payload
                                .iter()
                                .map(|&b| hotline::media::g711::ulaw_decode(b)),
                        );
                    }
                }
            }
        }
        pcm
    })
}

pub fn assert_hears_the_browser(pcm: &[i16]) {
    assert!(pcm.len() >= 8000, "the caller got {} samples", pcm.len());
    let (at_mic, elsewhere) = (power(pcm, MIC_HZ), power(pcm, 1700.0));
    assert!(
        at_mic > 20.0 * elsewhere.max(1.0),
        "the caller does not hear the browser's tone: {at_mic:.0} at 1 kHz, {elsewhere:.0} at 1.7 kHz"
    );
}
