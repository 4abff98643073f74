//! Writing what the caller said to a WAV file: 16-bit PCM, the format
//! every player and speech-to-text service reads. Mono messages are written
//! at once; a conversation (stereo) is streamed to disk as it goes.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The 44-byte header of a 16-bit PCM WAV file.
fn header(channels: u16, rate: u32, data_len: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    let block = channels * 2;
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36u32.saturating_add(data_len)).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * u32::from(block)).to_le_bytes()); // byte rate
    h[32..34].copy_from_slice(&block.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes()); // bits per sample
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

/// A WAV file written as samples come: to `NAME.wav.part` until
/// [`finish`](StreamWriter::finish) fixes the header's sizes, syncs and
/// renames it, so a crash leaves no half-written file under the final name.
pub struct StreamWriter {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    tmp: PathBuf,
    channels: u16,
    rate: u32,
    data_len: u64,
}

impl StreamWriter {
    pub fn create(path: &Path, channels: u16, rate: u32) -> std::io::Result<StreamWriter> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("wav.part");
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        file.write_all(&header(channels, rate, 0))?;
        Ok(StreamWriter {
            file,
            path: path.to_owned(),
            tmp,
            channels,
            rate,
            data_len: 0,
        })
    }

    /// Appends interleaved samples.
    pub fn append(&mut self, samples: &[i16]) -> std::io::Result<()> {
        for s in samples {
            self.file.write_all(&s.to_le_bytes())?;
        }
        self.data_len += samples.len() as u64 * 2;
        Ok(())
    }

    /// How long the audio written so far lasts.
    pub fn duration(&self) -> std::time::Duration {
        let frames = self.data_len / (u64::from(self.channels) * 2);
        std::time::Duration::from_millis(frames * 1000 / u64::from(self.rate.max(1)))
    }

    pub fn finish(self) -> std::io::Result<PathBuf> {
        let data_len = u32::try_from(self.data_len)
            .map_err(|_| std::io::Error::other("recording too long for a WAV file"))?;
        let mut file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header(self.channels, self.rate, data_len))?;
        file.sync_all()?;
        std::fs::rename(&self.tmp, &self.path)?;
        Ok(self.path)
    }
}

/// Writes `samples` at `rate` Hz to `path`, durably: a temporary file is
/// written and synced, then renamed into place, so a crash never leaves a
/// half-written message under the final name.
pub fn write(path: &Path, samples: &[i16], rate: u32) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let data_len = u32::try_from(samples.len() * 2)
        .map_err(|_| std::io::Error::other("recording too long for a WAV file"))?;
    let mut bytes = Vec::with_capacity(44 + samples.len() * 2);
    bytes.extend_from_slice(&header(1, rate, data_len));
    for s in samples {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    let tmp = path.with_extension("wav.part");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn written_wav_decodes_to_the_same_samples() {
        let dir = std::env::temp_dir().join(format!("hotline-wav-{}", std::process::id()));
        let path = dir.join("a/b/msg.wav");
        let samples: Vec<i16> = (0..8000)
            .map(|i| ((i % 100) * 300 - 15000) as i16)
            .collect();
        super::write(&path, &samples, 8000).unwrap();
        let back = crate::media::prompt::decode_file(&path).unwrap();
        assert_eq!(back.len(), samples.len());
        // The decoder goes through floats: allow one step of rounding.
        let worst = back
            .iter()
            .zip(&samples)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max();
        assert!(worst <= Some(1), "{worst:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_streamed_stereo_file_has_both_channels_and_its_length_in_the_header() {
        let dir = std::env::temp_dir().join(format!("hotline-wav2-{}", std::process::id()));
        let path = dir.join("talk.wav");
        let mut w = super::StreamWriter::create(&path, 2, 8000).unwrap();
        assert!(dir.join("talk.wav.part").exists() && !path.exists());
        // Left rises, right is constant: 1 s in two pieces.
        let chunk = |from: i16| -> Vec<i16> { (from..from + 4000).flat_map(|i| [i, -7]).collect() };
        w.append(&chunk(0)).unwrap();
        w.append(&chunk(4000)).unwrap();
        assert_eq!(w.duration(), std::time::Duration::from_secs(1));
        let done = w.finish().unwrap();
        assert_eq!(done, path);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 44 + 8000 * 4);
        assert_eq!(&bytes[22..24], &2u16.to_le_bytes());
        assert_eq!(&bytes[40..44], &(8000u32 * 4).to_le_bytes());
        let sample = |i: usize| i16::from_le_bytes([bytes[44 + 2 * i], bytes[45 + 2 * i]]);
        assert_eq!((sample(0), sample(1)), (0, -7));
        assert_eq!((sample(2 * 7999), sample(2 * 7999 + 1)), (7999, -7));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
