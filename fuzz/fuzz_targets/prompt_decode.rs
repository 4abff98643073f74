//! Prompt files (WAV, MP3, OGG, FLAC) as any bytes: decoded to 8 kHz
//! samples or refused with a reason, never a panic.
#![no_main]

use std::path::Path;

use hotline::media::prompt::decode_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    let name = ["p.wav", "p.mp3", "p.ogg", "p.flac"][usize::from(kind % 4)];
    let _ = decode_bytes(bytes.to_vec(), Path::new(name));
});
