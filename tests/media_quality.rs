//! What a caller hears, checked packet by packet: the negotiated payload
//! type, the prompt's frames in order, 20 ms pacing, and sequence/timestamp
//! continuity when one prompt replaces another. DTMF sent by the caller is
//! proved by the prompt the demo line speaks back.

mod common;

use std::time::Duration;

use common::ua::{Packet, TestUa};
use common::Engine;
use hotline::media::{dtmf, PromptCache};
use hotline::sdp::Codec;

fn prompts() -> PromptCache {
    PromptCache::load_dir(&common::root().join("sounds")).unwrap()
}

/// Index of the packet at which `prompt`'s frames start, all of them in
/// order (or as many as were received, at least 25). Prompts begin with
/// silence, so every start position is tried.
fn find_prompt(packets: &[Packet], cache: &PromptCache, name: &str, codec: Codec) -> Option<usize> {
    let prompt = cache.get(name).unwrap();
    let payloads: Vec<&[u8]> = packets.iter().map(|p| p.payload.as_slice()).collect();
    (0..packets.len()).find(|&start| {
        let n = prompt.frames().min(packets.len() - start);
        n >= prompt.frames().min(25) && common::prompt_run(&payloads, start, &prompt, codec) == n
    })
}

fn gaps_ms(packets: &[Packet]) -> Vec<f64> {
    packets
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64() * 1000.0)
        .collect()
}

#[test]
fn caller_hears_the_welcome_prompt_paced_and_continuous_across_prompts() {
    let engine = Engine::start("");
    let cache = prompts();
    let p = engine.ports;
    // PCMA offered first: the engine must answer PCMA and send A-law frames.
    let mut ua = TestUa::call(engine.sip, p.spare(0), p.spare(1), "100", "8 0 101");
    assert!(ua.answer.contains("m=audio"), "{}", ua.answer);
    let first = ua.receive(Duration::from_millis(2500));
    ua.press_rfc4733('5');
    let second = ua.receive(Duration::from_millis(1500));
    ua.bye();

    assert!(first.len() > 100, "received {} packets", first.len());
    assert!(
        first.iter().all(|p| p.info.payload_type == 8),
        "PCMA negotiated"
    );
    assert!(
        first[0].info.marker,
        "a talkspurt starts with the marker bit"
    );
    assert_eq!(
        find_prompt(&first, &cache, "welcome", Codec::Pcma),
        Some(0),
        "the welcome prompt's frames, in order, from the first packet"
    );

    let mut gaps = gaps_ms(&first);
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    gaps.sort_by(|a, b| a.total_cmp(b));
    let p99 = gaps[gaps.len() * 99 / 100];
    let max = gaps[gaps.len() - 1];
    println!("outbound RTP gaps: mean {mean:.2} ms, p99 {p99:.2} ms, max {max:.2} ms");
    assert!((mean - 20.0).abs() < 1.5, "mean gap {mean}");
    assert!(max < 60.0, "max gap {max}");

    // The digit replaced the welcome with "five": seq +1, ts +160, marker set.
    let all: Vec<Packet> = first.into_iter().chain(second).collect();
    let start = find_prompt(&all, &cache, "digits/5", Codec::Pcma).expect("digits/5 was played");
    let (before, at) = (&all[start - 1].info, &all[start].info);
    assert!(at.marker);
    for w in all.windows(2) {
        assert_eq!(
            w[1].info.sequence,
            w[0].info.sequence.wrapping_add(1),
            "sequence gap"
        );
        assert_eq!(
            w[1].info.timestamp,
            w[0].info.timestamp.wrapping_add(160),
            "timestamp jump"
        );
        assert_eq!(w[1].info.ssrc, w[0].info.ssrc);
    }
    assert_eq!(at.sequence, before.sequence.wrapping_add(1));
}

#[test]
fn inband_tones_are_detected_without_telephone_event() {
    let engine = Engine::start("");
    let cache = prompts();
    let p = engine.ports;
    // No telephone-event offered: the engine must listen for tones.
    let mut ua = TestUa::call(engine.sip, p.spare(0), p.spare(1), "100", "0");
    assert!(!ua.answer.contains("telephone-event"));
    std::thread::sleep(Duration::from_millis(300));
    let mut audio = dtmf::synthesize('7', 100, 12000.0);
    audio.extend(vec![0i16; 800]);
    ua.send_pcmu(&audio);
    let heard = ua.receive(Duration::from_millis(1500));
    ua.bye();
    assert!(
        find_prompt(&heard, &cache, "digits/7", Codec::Pcmu).is_some(),
        "the engine did not say 7 back"
    );
    assert!(engine.log().contains("digit=7 source=InBand"));
    assert_eq!(common::digits_reported(&engine.log()), "7");
}

#[test]
fn pound_says_goodbye_and_the_engine_hangs_up() {
    let engine = Engine::start("");
    let cache = prompts();
    let p = engine.ports;
    let mut ua = TestUa::call(engine.sip, p.spare(0), p.spare(1), "100", "0 101");
    std::thread::sleep(Duration::from_millis(300));
    ua.press_rfc4733('#');
    let goodbye = cache.get("goodbye").unwrap();
    let heard = ua.receive(goodbye.duration() + Duration::from_millis(200));
    assert!(
        find_prompt(&heard, &cache, "goodbye", Codec::Pcmu).is_some(),
        "the goodbye prompt was not played"
    );
    assert!(
        ua.expect_bye(Duration::from_secs(3)),
        "the engine did not hang up"
    );
    assert!(engine.wait_log("ending=WeHungUp", Duration::from_secs(3)));
}
