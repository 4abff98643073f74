//! The prompt cache: every sound file is decoded (symphonia), mixed to mono,
//! resampled to 8 kHz (rubato) and encoded to 20 ms PCMU and PCMA frames once,
//! at load. Calls share the frames through an `Arc`; playing copies nothing.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rubato::{FftFixedInOut, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use tracing::{info, warn};

use super::g711;
use crate::sdp::Codec;

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;
const RATE: u32 = 8000;
const EXTENSIONS: [&str; 4] = ["wav", "mp3", "ogg", "flac"];

/// Why a sound could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{path}: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One prompt, ready to send: whole 20 ms frames in both laws.
#[derive(Debug)]
pub struct Prompt {
    pub name: String,
    pcmu: Box<[u8]>,
    pcma: Box<[u8]>,
}

impl Prompt {
    /// Encodes 8 kHz mono samples; the last frame is padded with silence.
    pub fn from_samples(name: &str, samples: &[i16]) -> Prompt {
        let frames = samples.len().div_ceil(FRAME_SAMPLES).max(1);
        let mut pcmu = vec![g711::ULAW_SILENCE; frames * FRAME_SAMPLES];
        let mut pcma = vec![g711::ALAW_SILENCE; frames * FRAME_SAMPLES];
        for (i, &s) in samples.iter().enumerate() {
            pcmu[i] = g711::ulaw_encode(s);
            pcma[i] = g711::alaw_encode(s);
        }
        Prompt {
            name: name.to_owned(),
            pcmu: pcmu.into(),
            pcma: pcma.into(),
        }
    }

    pub fn frames(&self) -> usize {
        self.pcmu.len() / FRAME_SAMPLES
    }

    /// Frame `i` (160 bytes) in the given codec.
    pub fn frame(&self, codec: Codec, i: usize) -> &[u8] {
        let data = match codec {
            Codec::Pcmu => &self.pcmu,
            Codec::Pcma => &self.pcma,
        };
        &data[i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES]
    }

    pub fn duration(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.frames() as u64 * 20)
    }
}

/// Every prompt under the sounds directory, by name (`menu/main` for
/// `sounds/menu/main.wav`).
#[derive(Debug, Default, Clone)]
pub struct PromptCache {
    prompts: HashMap<String, Arc<Prompt>>,
}

impl PromptCache {
    /// Loads every sound file below `dir`. A file that cannot be decoded is
    /// logged and skipped, so one bad file does not keep the line down; a
    /// flow that names it is refused by validation.
    pub fn load_dir(dir: &Path) -> Result<PromptCache, PromptError> {
        let mut files = Vec::new();
        collect(dir, &mut files).map_err(|source| PromptError::Io {
            path: dir.to_owned(),
            source,
        })?;
        files.sort();
        let mut cache = PromptCache::default();
        for path in files {
            let Ok(rel) = path.strip_prefix(dir) else {
                continue;
            };
            let name = rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            match decode_file(&path) {
                Ok(samples) => {
                    if cache.get(&name).is_some() {
                        warn!(prompt = %name, file = %path.display(), "two sound files have this name; the later one is used");
                    }
                    cache.insert(Prompt::from_samples(&name, &samples));
                }
                Err(e) => warn!(error = %e, "sound skipped"),
            }
        }
        info!(dir = %dir.display(), prompts = cache.prompts.len(), "prompts loaded");
        Ok(cache)
    }

    pub fn insert(&mut self, prompt: Prompt) {
        self.prompts.insert(prompt.name.clone(), Arc::new(prompt));
    }

    pub fn get(&self, name: &str) -> Option<Arc<Prompt>> {
        self.prompts.get(name).cloned()
    }

    pub fn len(&self) -> usize {
        self.prompts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prompts.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.prompts.keys().map(String::as_str)
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Decodes a sound file to 8 kHz mono 16-bit samples.
pub fn decode_file(path: &Path) -> Result<Vec<i16>, PromptError> {
    let fail = |message: String| PromptError::Decode {
        path: path.to_owned(),
        message,
    };
    let file = File::open(path).map_err(|source| PromptError::Io {
        path: path.to_owned(),
        source,
    })?;
    decode_source(Box::new(file), path).map_err(fail)
}

/// Decodes a sound file's bytes (named `path`, for the format's hint and
/// the error) as [`decode_file`] does.
pub fn decode_bytes(bytes: Vec<u8>, path: &Path) -> Result<Vec<i16>, PromptError> {
    decode_source(Box::new(std::io::Cursor::new(bytes)), path).map_err(|message| {
        PromptError::Decode {
            path: path.to_owned(),
            message,
        }
    })
}

fn decode_source(
    source: Box<dyn symphonia::core::io::MediaSource>,
    path: &Path,
) -> Result<Vec<i16>, String> {
    let fail = std::convert::identity::<String>;
    let mss = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| fail(format!("unsupported or damaged audio: {e}")))?;
    let mut format = probed.format;
    let track = format
        .default_track()
        .ok_or_else(|| fail("no audio track".into()))?;
    let track_id = track.id;
    let rate = track
        .codec_params
        .sample_rate
        .ok_or_else(|| fail("unknown sample rate".into()))?;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| fail(format!("no decoder: {e}")))?;
    let mut mono: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => return Err(fail(format!("cannot read: {e}"))),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymphoniaError::DecodeError(_)) => continue, // skip a damaged packet
            Err(e) => return Err(fail(format!("cannot decode: {e}"))),
        };
        let spec = *decoded.spec();
        let channels = spec.channels.count().max(1);
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        for frame in buf.samples().chunks(channels) {
            mono.push(frame.iter().sum::<f32>() / channels as f32);
        }
    }
    if mono.is_empty() {
        return Err(fail("no audio samples".into()));
    }
    let resampled = if rate == RATE {
        mono
    } else {
        resample(&mono, rate, RATE).map_err(fail)?
    };
    Ok(resampled
        .iter()
        .map(|&x| (x * 32767.0).clamp(-32768.0, 32767.0) as i16)
        .collect())
}

/// Resamples mono audio with rubato's FFT resampler, trimming its delay.
fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    let mut r = FftFixedInOut::<f32>::new(from as usize, to as usize, 1024, 1)
        .map_err(|e| format!("cannot resample {from} Hz: {e}"))?;
    let want = (input.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    let delay = r.output_delay();
    let mut out = Vec::with_capacity(want + delay + 2048);
    let mut pos = 0;
    while out.len() < want + delay {
        let need = r.input_frames_next();
        let chunk: Vec<f32> = if pos + need <= input.len() {
            input[pos..pos + need].to_vec()
        } else {
            let mut c = input[pos.min(input.len())..].to_vec();
            c.resize(need, 0.0);
            c
        };
        pos += need;
        let res = r
            .process(&[chunk], None)
            .map_err(|e| format!("resampling failed: {e}"))?;
        out.extend_from_slice(&res[0]);
    }
    Ok(out[delay..delay + want].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a 16-bit PCM WAV by hand, so tests need no sound tools.
    pub(crate) fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
        let data_len = (samples.len() * 2) as u32;
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + data_len).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * 2 * u32::from(channels)).to_le_bytes());
        b.extend_from_slice(&(2 * channels).to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&data_len.to_le_bytes());
        for s in samples {
            b.extend_from_slice(&s.to_le_bytes());
        }
        std::fs::write(path, b).unwrap();
    }

    fn tone(rate: u32, secs: f32, hz: f32) -> Vec<i16> {
        (0..(rate as f32 * secs) as usize)
            .map(|n| {
                ((2.0 * std::f32::consts::PI * hz * n as f32 / rate as f32).sin() * 8000.0) as i16
            })
            .collect()
    }

    #[test]
    fn loads_resamples_and_mixes_down() {
        let dir = std::env::temp_dir().join(format!("hotline-prompts-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("menu")).unwrap();
        write_wav(&dir.join("plain.wav"), 8000, 1, &tone(8000, 1.0, 440.0));
        // One second at 16 kHz stereo must become one second at 8 kHz.
        let t = tone(16000, 1.0, 440.0);
        let stereo: Vec<i16> = t.iter().flat_map(|&s| [s, s]).collect();
        write_wav(&dir.join("menu/wide.wav"), 16000, 2, &stereo);
        std::fs::write(dir.join("broken.wav"), b"RIFFnonsense").unwrap();

        let cache = PromptCache::load_dir(&dir).unwrap();
        assert_eq!(cache.len(), 2, "the damaged file is skipped");
        let plain = cache.get("plain").unwrap();
        assert_eq!(plain.frames(), 50);
        let wide = cache.get("menu/wide").unwrap();
        assert_eq!(wide.frames(), 50);
        // The resampled tone keeps its level (decoded RMS near 8000/√2).
        let pcm: Vec<f32> = (10..40)
            .flat_map(|i| wide.frame(Codec::Pcmu, i).to_vec())
            .map(|b| f32::from(g711::ulaw_decode(b)))
            .collect();
        let rms = (pcm.iter().map(|x| x * x).sum::<f32>() / pcm.len() as f32).sqrt();
        assert!((rms - 5657.0).abs() < 500.0, "rms {rms}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn frames_are_padded_with_silence() {
        let p = Prompt::from_samples("x", &[1000; 200]);
        assert_eq!(p.frames(), 2);
        assert_eq!(p.frame(Codec::Pcmu, 1)[100], g711::ULAW_SILENCE);
        assert_eq!(p.frame(Codec::Pcma, 1)[100], g711::ALAW_SILENCE);
    }
}
