//! Callers queued by a flow reach agents: SIPp agents register with digest
//! from their own port, then answer there; the ACD offers the caller to the
//! longest-idle agent, skips (and pauses) one that refuses, and the engine
//! bridges the caller to the one who answers, audio both ways.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    keys_scenario_with, payloads_of_busiest, phone, register, register_phone, rtp_sink, scenario,
    Engine,
};

#[test]
fn a_queued_caller_skips_a_busy_agent_and_is_bridged_to_the_next() {
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        "queues:\n  support: { ring-timeout: 5s }\nagents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\n  - { id: '1002', password: 1002pass, queues: [support], auto-login: true }\nregistrar: { algorithms: [MD5], keepalive: 0s }\ncalls: { leg-check: 2s, leg-check-timeout: 2s }\n",
    );
    let busy_port = common::Ports::next().spare(0);
    let answer_port = common::Ports::next().spare(0);
    // 1001 registers first (idle longest) but refuses; 1002 answers and echoes.
    register(&engine, "1001", busy_port);
    std::thread::sleep(Duration::from_millis(50));
    register(&engine, "1002", answer_port);
    let busy = common::sipp_side(
        &["-sf", &scenario("uas-busy.xml").display().to_string()],
        busy_port,
        None,
    );
    let agent = phone("agent-answer.xml", answer_port, true);
    std::thread::sleep(Duration::from_millis(300));

    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(10));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 8000, true);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let report = sink.join().unwrap();

    let (ok, out) = common::finish(busy);
    assert!(ok, "the busy agent saw no INVITE:\n{out}");
    let (ok, out) = common::finish(agent);
    assert!(
        ok,
        "the answering agent saw no complete call (the caller's BYE must reach it):\n{out}\n{}",
        engine.log()
    );
    let log = engine.log();
    assert!(
        log.contains("agent=1001") && log.contains("agent did not take the call"),
        "{log}"
    );
    // The operator sees the agent who let it ring paused for no answer.
    assert_eq!(
        common::agent_state(&engine, "1001"),
        ("paused".to_owned(), Some("no-answer".to_owned()))
    );
    assert!(log.contains("answered; caller bridged"), "{log}");
    assert!(
        !log.contains("stopped answering"),
        "the agent answered every check: {log}"
    );

    // The caller's own audio came back through the agent's echo.
    let spoken = std::fs::read(scenario("load-audio.ulaw")).unwrap();
    let frames: std::collections::HashSet<&[u8]> = spoken.chunks(160).collect();
    let heard = payloads_of_busiest(&report);
    let echoed = heard
        .iter()
        .filter(|p| frames.contains(p.as_slice()))
        .count();
    assert!(
        echoed >= 100,
        "only {echoed} of {} packets came back from the agent",
        heard.len()
    );
    // The caller hung up; the agent enters wrap-up.
    common::wait_agent_state(&engine, "1002", "wrap-up", Duration::from_secs(3));
}

#[test]
fn an_agent_phone_that_dies_mid_call_is_noticed_and_the_caller_is_released() {
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        "queues:\n  support: { announce-position: false, wrap-up: 30s }\nagents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\nregistrar: { algorithms: [MD5], keepalive: 0s }\ncalls: { leg-check: 2s, leg-check-timeout: 2s }\n",
    );
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let mut agent = phone("agent-answer.xml", agent_port, true);
    std::thread::sleep(Duration::from_millis(300));

    // The caller waits for the engine's BYE instead of hanging up itself.
    let port = engine.ports.spare(0);
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 1, false);
    common::wait_for_bye(&sc);
    let caller = std::thread::spawn({
        let engine_sip = engine.sip;
        let ports = engine.ports;
        let dir = engine.dir.clone();
        move || {
            // Like common::sipp, without borrowing the engine across threads.
            let out = Command::new("sipp")
                .arg("-sf")
                .arg(&sc)
                .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
                .args([
                    "-p",
                    &ports.sipp(0).to_string(),
                    "-mp",
                    &ports.sipp_media(0).to_string(),
                ])
                .args(["-cp", &ports.sipp_control(0).to_string()])
                .args([
                    "-s",
                    "100",
                    "-m",
                    "1",
                    "-nostdin",
                    "-timeout",
                    "60s",
                    "-timeout_error",
                ])
                .arg(engine_sip.to_string())
                .current_dir(dir)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).to_string(),
            )
        }
    });
    assert!(
        engine.wait_log("answered; caller bridged", Duration::from_secs(10)),
        "{}",
        engine.log()
    );
    // The agent's phone dies: no BYE, no more answers.
    let _ = agent.kill();
    let _ = agent.wait();
    let (ok, out) = caller.join().unwrap();
    assert!(ok, "the caller was not released:\n{out}\n{}", engine.log());
    let log = engine.log();
    assert!(log.contains("the other leg stopped answering"), "{log}");
    // Freed into wrap-up, not left on a call that no longer exists.
    common::wait_agent_state(&engine, "1001", "wrap-up", Duration::from_secs(3));
}

#[test]
fn a_caller_who_waits_too_long_leaves_by_the_queue_nodes_timeout() {
    // Nobody answers; after 6 s of waiting the caller hears the closed message.
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support, on-timeout: closed }\n  closed: { hangup: menu/closed }\n",
        "queues:\n  support: { max-wait: 6s, announce-position: false }\n",
    );
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(13));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 12_000, false);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]);
    common::assert_heard(
        &sink.join().unwrap(),
        &["please-hold", "music/default", "menu/closed"],
        20,
    );
    assert!(engine.wait_log("call ended", Duration::from_secs(5)));
    let mut store = hotline::store::SqliteStore::open(&engine.dir.join("data")).unwrap();
    let cdrs = hotline::store::Store::cdrs(&mut store).unwrap();
    assert_eq!(cdrs[0].outcome, "queue-timeout", "{:?}", cdrs[0]);
    let wait = cdrs[0].wait_ms.unwrap();
    assert!(wait >= 6000, "{wait}");
}

#[test]
fn an_agent_leg_without_an_rtp_port_neither_pauses_the_agent_nor_counts_as_an_offer() {
    let mut engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        "queues:\n  support: { ring-timeout: 5s, announce-position: false }\nagents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\nregistrar: { algorithms: [MD5], keepalive: 0s }\n",
    );
    // One RTP port: the caller takes it, so the agent's leg cannot have one.
    engine.restart_with_rtp_ports(1);
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let port = engine.ports.spare(0);
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 5000, false);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    // Our own want is no miss of the agent's: still available, not paused
    // `no-answer` (the queue pauses after one miss).
    assert_eq!(common::agent_state(&engine, "1001").0, "available");
    // The record follows in the store's next group commit.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let cdr = loop {
        let mut store = hotline::store::SqliteStore::open(&engine.dir.join("data")).unwrap();
        let cdrs = hotline::store::Store::cdrs(&mut store).unwrap();
        if let Some(c) = cdrs
            .into_iter()
            .find(|c| c.ended_at.is_some() && c.outcome != "interrupted")
        {
            break c;
        }
        assert!(std::time::Instant::now() < until, "no record");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(cdr.outcome, "abandoned", "{cdr:?}");
    assert_eq!(cdr.offered_at, None, "no agent was rung: {cdr:?}");
}

#[test]
fn an_agent_who_holds_the_call_gives_the_caller_music_then_the_conversation_again() {
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        "queues:\n  support: { announce-position: false }\nagents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\nregistrar: { algorithms: [MD5], keepalive: 0s }\ncalls: { leg-check: 0s }\n",
    );
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = phone("agent-hold.xml", agent_port, true);
    std::thread::sleep(Duration::from_millis(300));
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(10));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 8000, true);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let report = sink.join().unwrap();
    let (ok, out) = common::finish(agent);
    assert!(
        ok,
        "the agent's hold and resume were not answered as they should be:\n{out}\n{}",
        engine.log()
    );

    // What the caller heard: their own voice back, then the hold music for
    // most of the 3 s hold, then their own voice again.
    let spoken = std::fs::read(scenario("load-audio.ulaw")).unwrap();
    let frames: std::collections::HashSet<&[u8]> = spoken.chunks(160).collect();
    let heard = payloads_of_busiest(&report);
    let heard: Vec<&[u8]> = heard.iter().map(Vec::as_slice).collect();
    let cache = hotline::media::PromptCache::load_dir(&common::root().join("sounds")).unwrap();
    let music = cache.get("music/default").unwrap();
    let codec = hotline::sdp::Codec::Pcmu;
    let first_echo = heard
        .iter()
        .position(|p| frames.contains(p))
        .expect("the agent's audio never reached the caller");
    let hold = (first_echo..heard.len())
        .find(|&i| common::music_run(&heard, i, &music, codec) >= 100)
        .unwrap_or_else(|| {
            panic!(
                "no hold music after the conversation began ({} packets)",
                heard.len()
            )
        });
    let run = common::music_run(&heard, hold, &music, codec);
    assert!(
        run <= 175,
        "the music went on after the resume: {run} frames"
    );
    let echoed_after = heard[hold + run..]
        .iter()
        .filter(|p| frames.contains(*p))
        .count();
    assert!(
        echoed_after >= 50,
        "the conversation did not come back after the hold: {echoed_after} frames"
    );

    assert!(engine.wait_log("call ended", Duration::from_secs(5)));
    let mut store = hotline::store::SqliteStore::open(&engine.dir.join("data")).unwrap();
    let cdrs = hotline::store::Store::cdrs(&mut store).unwrap();
    let cdr = &cdrs[0];
    assert_eq!(cdr.outcome, "agent", "{cdr:?}");
    let hold_ms = cdr.hold_ms.unwrap();
    assert!((2500..=4000).contains(&hold_ms), "hold {hold_ms} ms");
    assert_eq!(cdr.wrap_up_ms, Some(10_000), "{cdr:?}");
}

#[test]
fn callers_waiting_on_one_music_class_hear_the_same_music_at_the_same_moment() {
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        "queues:\n  support: { announce-position: false }\n",
    );
    // Two callers, 2.5 s apart, both waiting 9 s; one sink hears both.
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(14));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 9000, false);
    common::sipp(
        &engine,
        0,
        &sc,
        &["-s", "100", "-m", "2", "-r", "1", "-rp", "2500"],
    )
    .assert_ok();
    let report = sink.join().unwrap();
    let cache = hotline::media::PromptCache::load_dir(&common::root().join("sounds")).unwrap();
    let music = cache.get("music/default").unwrap();
    let music_frames: std::collections::HashSet<&[u8]> = (0..music.frames())
        .map(|i| music.frame(hotline::sdp::Codec::Pcmu, i))
        .collect();
    let mut streams: Vec<Vec<(std::time::Instant, Vec<u8>)>> = report
        .by_source
        .values()
        .map(|packets| {
            packets
                .iter()
                .filter_map(|(t, bytes)| {
                    hotline::media::rtp::parse(bytes).map(|(_, p)| (*t, p.to_vec()))
                })
                .collect()
        })
        .collect();
    assert_eq!(streams.len(), 2, "two calls, two streams");
    streams.sort_by_key(|s| s.first().map(|(t, _)| *t));
    let (early, late) = (&streams[0], &streams[1]);
    // Every music frame the late caller hears, the early caller hears at
    // the same moment (within a frame or two of network and pacing jitter).
    let early_end = early.last().map(|(t, _)| *t).unwrap();
    let late_music: Vec<&(std::time::Instant, Vec<u8>)> = late
        .iter()
        .filter(|(t, p)| {
            music_frames.contains(p.as_slice()) && *t + Duration::from_millis(200) < early_end
        })
        .collect();
    assert!(late_music.len() > 100, "{} music frames", late_music.len());
    let in_step = late_music
        .iter()
        .filter(|(t, p)| {
            early.iter().any(|(te, pe)| {
                pe == p && (if te > t { *te - *t } else { *t - *te }) <= Duration::from_millis(60)
            })
        })
        .count();
    assert!(
        in_step * 100 >= late_music.len() * 90,
        "only {in_step} of {} music frames were heard in step by both callers",
        late_music.len()
    );
}

#[test]
fn every_phone_of_the_agent_rings_and_the_one_that_answers_is_bridged() {
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        "queues:\n  support: { announce-position: false }\nagents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\nregistrar: { algorithms: [MD5], keepalive: 0s }\ncalls: { leg-check: 0s }\n",
    );
    // The agent's desk phone and softphone: the desk phone keeps ringing,
    // the softphone answers.
    let desk = common::Ports::next().spare(0);
    let soft = common::Ports::next().spare(0);
    register_phone(&engine, "1001", desk);
    register_phone(&engine, "1001", soft);
    assert!(engine.wait_log("agent contacts agent=1001", Duration::from_secs(3)));
    let desk_phone = phone("agent-ring-cancel.xml", desk, false);
    let soft_phone = phone("agent-answer.xml", soft, true);
    std::thread::sleep(Duration::from_millis(300));
    let port = engine.ports.spare(0);
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 3000, true);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let (ok, out) = common::finish(soft_phone);
    assert!(
        ok,
        "the softphone did not take the call:\n{out}\n{}",
        engine.log()
    );
    let (ok, out) = common::finish(desk_phone);
    assert!(
        ok,
        "the desk phone was not rung and then cancelled:\n{out}\n{}",
        engine.log()
    );
}

#[test]
fn a_ring_all_queue_rings_every_free_agent_and_cancels_the_others_on_the_first_answer() {
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        "queues:\n  support: { announce-position: false, strategy: ring-all, answer-after: 0s }\nagents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\n  - { id: '1002', password: 1002pass, queues: [support], auto-login: true }\nregistrar: { algorithms: [MD5], keepalive: 0s }\ncalls: { leg-check: 0s }\n",
    );
    let p1 = common::Ports::next().spare(0);
    let p2 = common::Ports::next().spare(0);
    register(&engine, "1001", p1);
    register(&engine, "1002", p2);
    let ringing = phone("agent-ring-cancel.xml", p1, false);
    // 1002's phone also checks the auto-answer hint the queue asks for.
    let answer = std::fs::read_to_string(scenario("agent-answer.xml"))
        .unwrap()
        .replace(
            "assign_to=\"queue\"/>",
            "assign_to=\"queue\"/>\n      <ereg regexp=\"Call-Info: &lt;sip:127.0.0.1&gt;;answer-after=0\" search_in=\"msg\" check_it=\"true\" assign_to=\"info\"/>",
        )
        .replace("variables=\"callid,queue\"", "variables=\"callid,queue,info\"");
    let answer_sf = engine.dir.join("agent-answer-info.xml");
    std::fs::write(&answer_sf, answer).unwrap();
    let answering = common::sipp_side(
        &["-sf", &answer_sf.display().to_string(), "-rtp_echo"],
        p2,
        None,
    );
    std::thread::sleep(Duration::from_millis(300));
    let port = engine.ports.spare(0);
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 3000, true);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let (ok, out) = common::finish(answering);
    assert!(ok, "1002 did not take the call:\n{out}\n{}", engine.log());
    let (ok, out) = common::finish(ringing);
    assert!(
        ok,
        "1001 was not rung and cancelled:\n{out}\n{}",
        engine.log()
    );
    assert!(engine.wait_log("call ended", Duration::from_secs(5)));
    let mut store = hotline::store::SqliteStore::open(&engine.dir.join("data")).unwrap();
    let cdrs = hotline::store::Store::cdrs(&mut store).unwrap();
    assert_eq!(cdrs[0].agent.as_deref(), Some("1002"), "{:?}", cdrs[0]);
    // 1001 rang but was not missed: it is free, not paused.
    assert_eq!(common::agent_state(&engine, "1001").0, "available");
}

#[test]
fn the_agents_screen_pop_carries_the_callers_earlier_calls() {
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        "queues:\n  support: { announce-position: false, wrap-up: 0s }\nagents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\nregistrar: { algorithms: [MD5], keepalive: 0s }\ncalls: { leg-check: 0s }\n",
    );
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let port = engine.ports.spare(0);
    // The first call: a new caller, nothing to show.
    let first = std::fs::read_to_string(scenario("agent-answer.xml"))
        .unwrap()
        .replace(
            "assign_to=\"queue\"/>",
            "assign_to=\"queue\"/>\n      <ereg regexp=\"X-Hotline-Previous-Calls: 0\" search_in=\"msg\" check_it=\"true\" assign_to=\"none\"/>",
        )
        .replace("variables=\"callid,queue\"", "variables=\"callid,queue,none\"");
    let first_sf = engine.dir.join("agent-first.xml");
    std::fs::write(&first_sf, first).unwrap();
    let agent = common::sipp_side(&["-sf", &first_sf.display().to_string()], agent_port, None);
    std::thread::sleep(Duration::from_millis(300));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 1000, false);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let (ok, out) = common::finish(agent);
    assert!(ok, "first call:\n{out}");
    assert!(engine.wait_log("call ended", Duration::from_secs(5)));

    // The same caller again: the agent's phone is told of the first call.
    let second = std::fs::read_to_string(scenario("agent-answer.xml"))
        .unwrap()
        .replace(
            "assign_to=\"queue\"/>",
            "assign_to=\"queue\"/>\n      <ereg regexp=\"X-Hotline-Previous-Calls: 1\" search_in=\"msg\" check_it=\"true\" assign_to=\"count\"/>\n      <ereg regexp=\"X-Hotline-Last-Call: [0-9T:.-]+Z; queue=support; agent=1001; outcome=agent\" search_in=\"msg\" check_it=\"true\" assign_to=\"last\"/>",
        )
        .replace("variables=\"callid,queue\"", "variables=\"callid,queue,count,last\"");
    let second_sf = engine.dir.join("agent-second.xml");
    std::fs::write(&second_sf, second).unwrap();
    let agent = common::sipp_side(&["-sf", &second_sf.display().to_string()], agent_port, None);
    std::thread::sleep(Duration::from_millis(300));
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let (ok, out) = common::finish(agent);
    assert!(
        ok,
        "the second screen pop did not show the first call:\n{out}\n{}",
        engine.log()
    );
}

/// Agent 1001's phone, transferring the caller to `target` by REFER and
/// expecting the engine's NOTIFY to say `status`.
fn referring_phone(engine: &Engine, port: u16, target: &str, status: u16) -> std::process::Child {
    let sf = engine.dir.join(format!("agent-refer-{target}.xml"));
    let text = std::fs::read_to_string(scenario("agent-refer.xml"))
        .unwrap()
        .replace("SIP/2.0 [0-9]{3}", &format!("SIP/2.0 {status}"));
    std::fs::write(&sf, text).unwrap();
    let inf = engine.dir.join(format!("target-{target}.csv"));
    std::fs::write(&inf, format!("SEQUENTIAL\n{target};\n")).unwrap();
    common::sipp_side(
        &[
            "-sf",
            &sf.display().to_string(),
            "-inf",
            &inf.display().to_string(),
            "-rtp_echo",
        ],
        port,
        None,
    )
}

const TWO_QUEUES: &str = "queues:\n  support: { announce-position: false }\n  sales: { announce-position: false }\ntransfers: { operator: 'sip:operator@127.0.0.1:9' }\nagents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\n  - { id: '1002', password: 1002pass, queues: [sales], auto-login: true }\nregistrar: { algorithms: [MD5], keepalive: 0s }\ncalls: { leg-check: 0s }\n";

#[test]
fn an_agent_transfers_the_caller_blind_to_another_queue_and_its_agent_takes_the_call() {
    let engine = Engine::with_flow("entry: q\nnodes:\n  q: { queue: support }\n", TWO_QUEUES);
    let p1 = common::Ports::next().spare(0);
    let p2 = common::Ports::next().spare(0);
    register(&engine, "1001", p1);
    register(&engine, "1002", p2);
    let first = referring_phone(&engine, p1, "sales", 200);
    let second = phone("agent-answer.xml", p2, true);
    std::thread::sleep(Duration::from_millis(300));
    let port = engine.ports.spare(0);
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 5000, true);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let (ok, out) = common::finish(first);
    assert!(
        ok,
        "1001's transfer was not accepted and ended:\n{out}\n{}",
        engine.log()
    );
    let (ok, out) = common::finish(second);
    assert!(
        ok,
        "1002 did not get the transferred caller:\n{out}\n{}",
        engine.log()
    );
    assert!(engine.wait_log("call ended", Duration::from_secs(5)));
    let mut store = hotline::store::SqliteStore::open(&engine.dir.join("data")).unwrap();
    let cdr = &hotline::store::Store::cdrs(&mut store).unwrap()[0];
    assert_eq!(
        (
            cdr.outcome.as_str(),
            cdr.agent.as_deref(),
            cdr.queue.as_deref()
        ),
        ("agent", Some("1002"), Some("sales")),
        "{cdr:?}"
    );
    common::wait_agent_state(&engine, "1001", "wrap-up", Duration::from_secs(3));
}

#[test]
fn a_transfer_to_a_number_the_config_does_not_name_is_refused_and_the_call_goes_on() {
    let engine = Engine::with_flow("entry: q\nnodes:\n  q: { queue: support }\n", TWO_QUEUES);
    let p1 = common::Ports::next().spare(0);
    register(&engine, "1001", p1);
    // A premium number: Hotline must never dial it for a phone.
    let first = referring_phone(&engine, p1, "09005551234", 403);
    std::thread::sleep(Duration::from_millis(300));
    let port = engine.ports.spare(0);
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 4000, true);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let (ok, out) = common::finish(first);
    assert!(
        ok,
        "the refusal was not reported, or the call did not go on:\n{out}\n{}",
        engine.log()
    );
    let log = engine.log();
    assert!(
        !log.lines()
            .any(|l| l.contains("placing a call") && l.contains("0900")),
        "{log}"
    );
    assert!(engine.wait_log("call ended", Duration::from_secs(5)));
    let mut store = hotline::store::SqliteStore::open(&engine.dir.join("data")).unwrap();
    let cdr = &hotline::store::Store::cdrs(&mut store).unwrap()[0];
    assert_eq!(
        (cdr.outcome.as_str(), cdr.agent.as_deref()),
        ("agent", Some("1001"))
    );
}

#[test]
fn after_a_crash_agents_come_back_from_their_registrations_free_not_stuck_on_a_call() {
    let mut engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        "queues:\n  support: { announce-position: false, wrap-up: 0s }\nagents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\nregistrar: { algorithms: [MD5], keepalive: 0s }\ncalls: { leg-check: 0s }\n",
    );
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    // A call is bridged to the agent when the engine dies (kill -9).
    let mut agent = phone("agent-answer.xml", agent_port, true);
    std::thread::sleep(Duration::from_millis(300));
    let caller_port = common::Ports::next().spare(0);
    let sc = keys_scenario_with(
        &engine,
        "long-caller.xml",
        engine.ports.spare(2),
        &[],
        30_000,
        false,
    );
    let mut caller = common::sipp_side(
        &["-sf", &sc.display().to_string(), "-s", "100"],
        caller_port,
        Some(&engine.sip.to_string()),
    );
    assert!(
        engine.wait_log("answered; caller bridged", Duration::from_secs(10)),
        "{}",
        engine.log()
    );
    engine.crash_and_restart();
    for p in [&mut agent, &mut caller] {
        let _ = p.kill();
        let _ = p.wait();
    }
    // Without registering again, the agent is reachable and free: the next
    // caller is bridged to them.
    let log = engine.log();
    assert!(log.contains("registration restored agent=1001"), "{log}");
    let agent = phone("agent-answer.xml", agent_port, true);
    std::thread::sleep(Duration::from_millis(300));
    let sc = keys_scenario_with(
        &engine,
        "caller.xml",
        engine.ports.spare(0),
        &[],
        2000,
        false,
    );
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let (ok, out) = common::finish(agent);
    assert!(
        ok,
        "the agent was not offered the call after the restart:\n{out}\n{}",
        engine.log()
    );
}

#[test]
fn when_the_agent_hangs_up_first_the_caller_is_asked_the_survey_and_it_counts_for_the_queue() {
    let engine = Engine::with_flows(
        &[
            ("main", "entry: q\nnodes:\n  q: { queue: support }\n"),
            (
                "after-call",
                "entry: ask\nnodes:\n  ask:\n    survey: { prompt: ask/survey, timeout: 8s }\n    next: bye\n  bye: { hangup: goodbye }\n",
            ),
        ],
        "queues:\n  support: { announce-position: false, survey: after-call }\nagents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\nregistrar: { algorithms: [MD5], keepalive: 0s }\ncalls: { leg-check: 0s }\n",
    );
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = phone("agent-hangs-up.xml", agent_port, true);
    std::thread::sleep(Duration::from_millis(300));
    // The caller answers 9 once the agent has gone, then waits for the
    // engine to hang up after "goodbye".
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(12));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[(4500, '9')], 1, false);
    common::wait_for_bye(&sc);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let (ok, out) = common::finish(agent);
    assert!(ok, "{out}");
    common::assert_heard(&sink.join().unwrap(), &["ask/survey", "goodbye"], 20);

    assert!(engine.wait_log("call ended", Duration::from_secs(5)));
    let mut store = hotline::store::SqliteStore::open(&engine.dir.join("data")).unwrap();
    let cdr = hotline::store::Store::cdrs(&mut store).unwrap().remove(0);
    assert_eq!(
        (
            cdr.outcome.as_str(),
            cdr.agent.as_deref(),
            cdr.flow.as_deref()
        ),
        ("agent", Some("1001"), Some("main")),
        "{cdr:?}"
    );
    let answers = hotline::store::Store::survey_answers(&mut store).unwrap();
    assert_eq!(answers.len(), 1);
    assert_eq!(
        (answers[0].score, answers[0].call_id.as_str()),
        (9, cdr.call_id.as_str())
    );
    let k = hotline::kpi::compute(&[&cdr], &answers, hotline::kpi::Thresholds::default());
    assert_eq!((k.answered, k.surveys, k.nps), (1, 1, Some(100.0)));
}

/// Agent 1001 registers from a SIPp phone that answers and keeps what it
/// got; one SIPp caller (its scenario passed through `edit`) calls and is
/// answered. What the agent's phone received.
fn one_call_to_agent_1001(engine: &Engine, edit: impl FnOnce(String) -> String) -> String {
    let port = common::Ports::next().spare(0);
    register(engine, "1001", port);
    let seen = engine.dir.join("agent-messages.log");
    let agent = common::traced_phone("agent-answer.xml", port, &seen);
    std::thread::sleep(Duration::from_millis(300));
    let sink = engine.ports.spare(0);
    let sc = keys_scenario_with(engine, "caller.xml", sink, &[], 1500, false);
    std::fs::write(&sc, edit(std::fs::read_to_string(&sc).unwrap())).unwrap();
    common::sipp(engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let (ok, out) = common::finish(agent);
    assert!(ok, "{out}\n{}", engine.log());
    std::fs::read_to_string(&seen).unwrap()
}

#[test]
fn a_caller_who_withholds_their_number_reaches_the_agent_as_anonymous() {
    // The carrier (127.0.0.1) is trusted to assert identities; another
    // trunk (127.0.0.2) is not.
    let engine = Engine::with_flows_and_trunks(
        &[("main", "entry: q\nnodes:\n  q: { queue: support }\n")],
        "trunks:\n  - name: carrier\n    allow: [127.0.0.1/32]\n    trust-identity: true\n    symmetric-rtp: false\n  - name: other\n    allow: [127.0.0.2/32]\n",
        "agents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\nregistrar: { algorithms: [MD5], keepalive: 0s }\ncalls: { leg-check: 0s }\n",
    );
    // The carrier asserts +12025550123 and the caller asks for privacy.
    let messages = one_call_to_agent_1001(&engine, |caller| {
        caller.replacen(
            "CSeq: 1 INVITE\n",
            "CSeq: 1 INVITE\n      P-Asserted-Identity: <sip:+12025550123@127.0.0.1>\n      Privacy: id\n",
            1,
        )
    });
    let sink = engine.ports.spare(0);
    let invite = messages
        .split("INVITE sip:")
        .nth(1)
        .expect("the agent got the INVITE");
    let invite = &invite[..invite.find("\n\n").unwrap_or(invite.len())];
    assert!(!messages.contains("2025550123"), "{messages}");
    assert!(!invite.contains("sipp@"), "the From user leaked: {invite}");
    assert!(
        invite.contains("From: \"anonymous\" <sip:anonymous@"),
        "{invite}"
    );
    assert!(
        invite.contains("X-Hotline-Var-caller: anonymous"),
        "{invite}"
    );
    // The operator's record has the asserted number.
    let (_, body) = common::api_get(&engine, "/api/cdrs?since=1h");
    let records: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(records[0]["caller"], "+12025550123", "{records:?}");

    // From a trunk not trusted, the asserted identity is not believed.
    let s = common::raw::peer_at("127.0.0.2", sink);
    let msg = common::raw::invite(
        sink,
        "untrusted-pai",
        "P-Asserted-Identity: <sip:+12025559999@x>\r\n",
    )
    .replace("127.0.0.1:", "127.0.0.2:");
    s.send_to(msg.as_bytes(), engine.sip).unwrap();
    let got = common::raw::collect(&s, Duration::from_millis(500));
    assert!(!common::raw::responses(&got, 200).is_empty(), "{got:?}");
    let until = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let (_, body) = common::api_get(&engine, "/api/calls");
        if body.contains("untrusted-pai") {
            assert!(body.contains("\"caller\":\"t\""), "{body}");
            assert!(!body.contains("2025559999"), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < until, "{body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_invite_to_a_udp_agent_stays_under_the_udp_size_by_dropping_ivr_variables() {
    // The IVR learned a lot: twelve variables of 120 characters each, far
    // more than one UDP datagram should carry (RFC 3261 §18.1.1).
    let long = "x".repeat(120);
    let vars: Vec<String> = (1..=12).map(|i| format!("note{i:02}: '{long}'")).collect();
    let flow = format!(
        "entry: learn\nnodes:\n  learn: {{ set: {{ {} }}, next: q }}\n  q: {{ queue: support }}\n",
        vars.join(", ")
    );
    let engine = Engine::with_flow(
        &flow,
        "agents:\n  - { id: '1001', password: 1001pass, queues: [support], auto-login: true }\nregistrar: { algorithms: [MD5], keepalive: 0s }\ncalls: { leg-check: 0s }\n",
    );
    // The agent takes the call all the same.
    let messages = one_call_to_agent_1001(&engine, |caller| caller);
    let start = messages
        .find("INVITE sip:")
        .expect("the agent got the INVITE");
    let invite = &messages[start..];
    // Its head: the lines up to the first empty one.
    let head: Vec<&str> = invite
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .take_while(|l| !l.is_empty())
        .collect();
    let length: usize = head
        .iter()
        .find_map(|l| l.strip_prefix("Content-Length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a Content-Length");
    // On the wire: each header line and CRLF, the empty line, the body.
    let size = head.iter().map(|l| l.len() + 2).sum::<usize>() + 2 + length;
    assert!(size <= 1300, "a {size}-byte INVITE over UDP:\n{invite}");
    let omitted: usize = head
        .iter()
        .find_map(|l| l.strip_prefix("X-Hotline-Vars-Omitted:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no X-Hotline-Vars-Omitted:\n{invite}"));
    let kept = head
        .iter()
        .filter(|l| l.starts_with("X-Hotline-Var-note"))
        .count();
    // At least the notes not kept were left out (other variables too).
    assert!(
        kept >= 1 && omitted >= 12 - kept,
        "kept {kept}, omitted {omitted}"
    );
    // The last ones go first: what is kept is the IVR's first notes.
    assert!(
        head.iter().any(|l| l.starts_with("X-Hotline-Var-note01:")),
        "{invite}"
    );
    assert!(common::metrics(&engine).contains("hotline_sip_screen_pop_trimmed_total"));
}
