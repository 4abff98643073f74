//! The in-band DTMF detector must not hear digits in what callers hear and
//! say: 60 s of the shipped hold music and every speech prompt, through
//! G.711 as on a real call.

use hotline::media::dtmf::InbandDetector;
use hotline::media::{g711, PromptCache};
use hotline::sdp::Codec;

fn run_through(
    prompt: &hotline::media::Prompt,
    codec: Codec,
    repeats: usize,
    det: &mut InbandDetector,
) -> usize {
    let mut digits = Vec::new();
    for _ in 0..repeats {
        for i in 0..prompt.frames() {
            let pcm: Vec<i16> = prompt
                .frame(codec, i)
                .iter()
                .map(|&b| match codec {
                    Codec::Pcmu => g711::ulaw_decode(b),
                    Codec::Pcma => g711::alaw_decode(b),
                })
                .collect();
            det.push(&pcm, &mut digits);
        }
    }
    digits.len()
}

#[test]
fn no_false_digits_on_hold_music_or_speech() {
    let cache =
        PromptCache::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sounds"))
            .unwrap();
    let music = cache.get("music/default").expect("hold music");
    let repeats = (60_000 / music.duration().as_millis() as usize) + 1;
    for codec in [Codec::Pcmu, Codec::Pcma] {
        let mut det = InbandDetector::default();
        assert_eq!(
            run_through(&music, codec, repeats, &mut det),
            0,
            "hold music"
        );
        let mut speech_seconds = 0.0;
        for name in cache.names().filter(|n| !n.starts_with("music/")) {
            let p = cache.get(name).unwrap();
            speech_seconds += p.duration().as_secs_f64();
            let mut det = InbandDetector::default();
            assert_eq!(run_through(&p, codec, 1, &mut det), 0, "prompt {name}");
        }
        assert!(
            speech_seconds > 60.0,
            "only {speech_seconds} s of speech checked"
        );
    }
}
