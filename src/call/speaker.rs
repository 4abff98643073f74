//! `hotline simulate --audio`: the prompts a caller would hear, played on
//! this machine's default sound device, so a flow author hears the flow.
//! Only with the `local-audio` feature (cpal); the default build needs no
//! audio library.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::SampleFormat;

use crate::media::{g711, Prompt};
use crate::sdp::Codec;

pub struct Speaker {
    // A Mutex, not a channel: the sound card's callback thread must take
    // exactly as many samples as it asks for, without blocking on a sender.
    queue: Arc<Mutex<VecDeque<f32>>>,
    rate: u32,
    _stream: cpal::Stream,
}

fn fill<T>(
    data: &mut [T],
    channels: usize,
    queue: &Mutex<VecDeque<f32>>,
    convert: impl Fn(f32) -> T,
) {
    let Ok(mut q) = queue.lock() else {
        return;
    };
    for frame in data.chunks_mut(channels.max(1)) {
        let s = q.pop_front().unwrap_or(0.0);
        for out in frame.iter_mut() {
            *out = convert(s);
        }
    }
}

impl Speaker {
    pub fn open() -> Result<Speaker, String> {
        let host = cpal::default_host();
        let device = host
            .default_output_device()
            .ok_or("no sound output device")?;
        let supported = device
            .default_output_config()
            .map_err(|e| format!("the sound device: {e}"))?;
        let config = supported.config();
        let channels = usize::from(config.channels);
        let rate = config.sample_rate;
        let queue = Arc::new(Mutex::new(VecDeque::new()));
        let q = queue.clone();
        let on_error = |e| eprintln!("sound device error: {e}");
        let stream = match supported.sample_format() {
            SampleFormat::F32 => device.build_output_stream::<f32, _, _>(
                config,
                move |data: &mut [f32], _| fill(data, channels, &q, |s| s),
                on_error,
                None,
            ),
            SampleFormat::I16 => device.build_output_stream::<i16, _, _>(
                config,
                move |data: &mut [i16], _| fill(data, channels, &q, |s| (s * 32767.0) as i16),
                on_error,
                None,
            ),
            other => {
                return Err(format!(
                    "the sound device wants {other:?} samples, which is not supported"
                ))
            }
        }
        .map_err(|e| format!("cannot open the sound device: {e}"))?;
        stream
            .play()
            .map_err(|e| format!("cannot start the sound device: {e}"))?;
        Ok(Speaker {
            queue,
            rate,
            _stream: stream,
        })
    }

    /// Plays the prompts one after another and returns once they are heard.
    pub fn play(&self, prompts: &[Arc<Prompt>]) {
        let mut samples = Vec::new();
        for p in prompts {
            for i in 0..p.frames() {
                samples.extend(
                    p.frame(Codec::Pcmu, i)
                        .iter()
                        .map(|&b| g711::ulaw_decode(b)),
                );
            }
        }
        if samples.is_empty() {
            return;
        }
        // Linear interpolation from 8 kHz to the device's rate is plenty
        // for speech prompts heard while writing a flow.
        let step = 8000.0 / f64::from(self.rate);
        let n = (samples.len() as f64 / step) as usize;
        let resampled: Vec<f32> = (0..n)
            .map(|i| {
                let pos = i as f64 * step;
                let j = pos as usize;
                let frac = pos - j as f64;
                let a = f64::from(samples[j.min(samples.len() - 1)]);
                let b = f64::from(samples[(j + 1).min(samples.len() - 1)]);
                ((a + (b - a) * frac) / 32768.0) as f32
            })
            .collect();
        if let Ok(mut q) = self.queue.lock() {
            q.extend(resampled);
        }
        std::thread::sleep(Duration::from_secs_f64(samples.len() as f64 / 8000.0));
    }
}
