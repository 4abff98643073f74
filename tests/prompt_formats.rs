//! The prompt cache reads every format a flow author may drop into
//! `sounds/`: FLAC (16 kHz stereo), OGG/Vorbis (22.05 kHz) and MP3 (44.1 kHz),
//! each one second of a 440 Hz tone at a quarter of full scale.

use hotline::media::prompt::decode_file;
use hotline::media::PromptCache;

#[test]
fn flac_ogg_and_mp3_become_one_second_at_8khz_with_their_level() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    for ext in ["flac", "ogg", "mp3"] {
        let samples = decode_file(&dir.join(format!("tone.{ext}"))).unwrap();
        let secs = samples.len() as f64 / 8000.0;
        // MP3 adds encoder padding; a few tens of ms either way is fine.
        assert!((secs - 1.0).abs() < 0.08, "{ext}: {secs} s");
        let mid = &samples[2000..6000];
        let rms =
            (mid.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / mid.len() as f64).sqrt();
        // 0.25 of full scale: RMS ≈ 0.25 × 32767 / √2 ≈ 5793.
        assert!((rms - 5793.0).abs() < 600.0, "{ext}: rms {rms}");
    }
    // The three files share the name "tone": one is kept, 50 frames long.
    let cache = PromptCache::load_dir(&dir).unwrap();
    assert_eq!(cache.len(), 1);
    assert!((45..=55).contains(&cache.get("tone").unwrap().frames()));
}
