//! Conversations with agents are recorded as stereo WAV files (caller left,
//! agent right), always or when the agent asks with the record feature
//! code, and the record of the call names the file.

mod common;

use std::time::Duration;

use common::{keys_scenario_with, phone, register, rtp_sink, scenario, Engine};

/// A 16-bit WAV file: (channels, rate, samples interleaved).
fn read_wav(path: &str) -> (u16, u32, Vec<i16>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(&bytes[0..4], b"RIFF");
    let channels = u16::from_le_bytes([bytes[22], bytes[23]]);
    let rate = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    let len = u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize;
    assert_eq!(len, bytes.len() - 44, "the header's data length");
    let samples = bytes[44..]
        .chunks(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    (channels, rate, samples)
}

fn one_cdr(engine: &Engine) -> hotline::store::Cdr {
    assert!(engine.wait_log("call ended", Duration::from_secs(10)));
    let mut store = hotline::store::SqliteStore::open(&engine.dir.join("data")).unwrap();
    let mut cdrs = hotline::store::Store::cdrs(&mut store).unwrap();
    assert_eq!(cdrs.len(), 1, "{cdrs:?}");
    cdrs.remove(0)
}

const QUEUE_FLOW: &str = "entry: q\nnodes:\n  q: { queue: support }\n";

fn agents(record: &str) -> String {
    format!(
        "queues:\n  support: {{ announce-position: false, record: {record} }}\nagents:\n  - {{ id: '1001', password: 1001pass, queues: [support], auto-login: true }}\nregistrar: {{ algorithms: [MD5], keepalive: 0s }}\ncalls: {{ leg-check: 0s }}\n"
    )
}

#[test]
fn a_recorded_queue_keeps_the_caller_left_and_the_agent_right_in_step() {
    let engine = Engine::with_flow(QUEUE_FLOW, &agents("true"));
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = phone("agent-answer.xml", agent_port, true);
    std::thread::sleep(Duration::from_millis(300));
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(8));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 6000, true);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    drop(sink.join());
    let (ok, out) = common::finish(agent);
    assert!(ok, "{out}");

    let cdr = one_cdr(&engine);
    assert_eq!(cdr.outcome, "agent");
    let path = cdr
        .recording
        .clone()
        .expect("the record names the recording");
    let (channels, rate, samples) = read_wav(&path);
    assert_eq!((channels, rate), (2, 8000));
    let seconds = samples.len() as f64 / 2.0 / 8000.0;
    let talk = cdr.talk_ms.unwrap() as f64 / 1000.0;
    assert!(
        (seconds - talk).abs() < 1.0,
        "{seconds:.1} s recorded of {talk:.1} s of talk"
    );
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();

    // What the caller said, 20 ms at a time, as the engine decodes it.
    let spoken: Vec<Vec<i16>> = std::fs::read(scenario("load-audio.ulaw"))
        .unwrap()
        .chunks(160)
        .map(|c| {
            c.iter()
                .map(|&b| hotline::media::g711::ulaw_decode(b))
                .collect()
        })
        .collect();
    let is_spoken = |s: &[i16]| spoken.iter().any(|c| c.as_slice() == s);
    // Left is the caller: most 20 ms frames are the caller's audio as sent.
    let frames = left.len() / 160;
    let caller_frames = (0..frames)
        .filter(|&i| is_spoken(&left[i * 160..(i + 1) * 160]))
        .count();
    assert!(
        caller_frames * 10 >= frames * 7,
        "{caller_frames} of {frames} left frames are the caller's"
    );
    // Right is the agent, who echoes the caller: the same audio, a little
    // later (the echo's round trip), never earlier.
    let mut lags = Vec::new();
    for i in (frames / 4..frames * 3 / 4).step_by(25) {
        let f = &left[i * 160..(i + 1) * 160];
        if !is_spoken(f) || f.iter().all(|&s| s.abs() < 200) {
            continue;
        }
        if let Some(lag) =
            (0..=25).find(|&k| right.get((i + k) * 160..(i + k + 1) * 160) == Some(f))
        {
            lags.push(lag);
        }
    }
    assert!(
        lags.len() >= 3,
        "the agent's side does not follow the caller's: {lags:?}"
    );
    assert!(
        lags.iter().all(|l| (1..=10).contains(l)),
        "echo lags in frames: {lags:?}"
    );
}

#[test]
fn an_agent_starts_and_stops_recording_with_the_feature_code_and_the_caller_never_hears_it() {
    let engine = Engine::with_flow(QUEUE_FLOW, &agents("on-demand"));
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = phone("agent-record.xml", agent_port, true);
    std::thread::sleep(Duration::from_millis(300));
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(10));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 8000, true);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let report = sink.join().unwrap();
    let (ok, out) = common::finish(agent);
    assert!(ok, "{out}\n{}", engine.log());

    // The caller heard exactly one key from the agent: the 5.
    let events: Vec<u8> = common::payloads_of_busiest(&report)
        .into_iter()
        .zip(report.by_source.values().max_by_key(|p| p.len()).unwrap())
        .filter(|(_, (_, raw))| raw.get(1).map(|b| b & 0x7f) == Some(101))
        .map(|(payload, _)| payload[0])
        .collect();
    let mut keys = events.clone();
    keys.dedup();
    assert_eq!(keys, vec![5], "telephone-events the caller got: {events:?}");

    let cdr = one_cdr(&engine);
    let path = cdr
        .recording
        .clone()
        .expect("the record names the recording");
    assert!(!path.contains('\n'), "one recording: {path}");
    let (channels, _, samples) = read_wav(&path);
    assert_eq!(channels, 2);
    let seconds = samples.len() as f64 / 2.0 / 8000.0;
    assert!(
        (2.6..=3.8).contains(&seconds),
        "recorded {seconds:.2} s between the two presses (3.2 s apart)"
    );
}
