//! Writing what the caller said to a WAV file: 16-bit mono PCM, the format
//! every player and speech-to-text service reads.

use std::io::Write;
use std::path::Path;

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
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&1u16.to_le_bytes()); // mono
    bytes.extend_from_slice(&rate.to_le_bytes());
    bytes.extend_from_slice(&(rate * 2).to_le_bytes()); // byte rate
    bytes.extend_from_slice(&2u16.to_le_bytes()); // block align
    bytes.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
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
}
