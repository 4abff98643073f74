//! Callbacks against the running binary: a SIPp caller presses 1 while
//! waiting, types the number and confirms, and hangs up with their place
//! kept; when it comes up, the agent (a SIPp phone registered with digest)
//! is rung first, and the customer is called over the trunk (a SIPp UAS on
//! the trunk's proxy address), presses 1, and is bridged to the agent.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{assert_heard, keys_scenario, payloads_of_busiest, phone, register, rtp_sink, Engine};

const FLOW: &str = "entry: q\nnodes:\n  q: { queue: support }\n";
/// A supervisor's token (role `agent`): may cancel and reschedule callbacks.
const SUPERVISOR: &str = "supervisor-token";

/// The loopback trunk callers come in on, and the carrier callbacks go out
/// over (its proxy: a SIPp of the test's on `carrier_port`).
fn trunks(carrier_port: u16) -> String {
    trunks_with(carrier_port, "")
}

/// As [`trunks`], with more `outbound:` settings (`, key: value`).
fn trunks_with(carrier_port: u16, outbound: &str) -> String {
    format!(
        "trunks:
  - name: loopback
    allow: [127.0.0.0/8]
    symmetric-rtp: false
  - name: carrier
    allow: []
    symmetric-rtp: false
    outbound: {{ proxy: 'sip:127.0.0.1:{carrier_port}', caller-id: '+15550100'{outbound} }}
    dial-plan:
      country-code: '1'
      national-prefix: '1'
      international-prefix: '011'
      allow: ['+1NXXNXXXXXX']
      deny: ['+1900.']
"
    )
}

fn engine(carrier_port: u16, callback: &str) -> Engine {
    engine_with(&trunks(carrier_port), callback)
}

fn engine_with(trunks: &str, callback: &str) -> Engine {
    engine_flow(FLOW, trunks, callback)
}

fn engine_flow(flow: &str, trunks: &str, callback: &str) -> Engine {
    engine_full(flow, trunks, callback, "")
}

/// As [`engine_flow`], with `extra` YAML.
fn engine_full(flow: &str, trunks: &str, callback: &str, extra: &str) -> Engine {
    Engine::with_flows_and_trunks(
        &[("main", flow)],
        trunks,
        &format!(
            "{extra}queues:
  support:
    announce-position: false
    wrap-up: 1s
    callback: {{ trunk: carrier, offer-after: 1s, {callback} }}
agents:
  - {{ id: '1001', password: 1001pass, queues: [support], auto-login: true }}
  - {{ id: '1002', password: 1002pass, queues: [support], auto-login: true }}
registrar: {{ algorithms: [MD5], keepalive: 0s }}
calls: {{ leg-check: 0s }}
http: {{ tokens: [{{ name: test, token: {read}, role: read }}, {{ name: supervisor, token: {SUPERVISOR}, role: agent }}] }}
",
            read = common::TEST_TOKEN
        ),
    )
}

/// The caller's keys: 1 (accept the offer), the number, #, then 1 (confirm).
fn booking_keys(number: &str) -> Vec<(u64, char)> {
    let mut keys = vec![(2500, '1'), (400, number.chars().next().unwrap())];
    keys.extend(number.chars().skip(1).map(|c| (120, c)));
    keys.push((120, '#'));
    keys.push((600, '1'));
    keys
}

/// A SIPp caller books a callback to `number` and waits for the engine to
/// hang up (after "your callback is booked").
fn book(engine: &Engine, name: &str, number: &str) {
    call_with_keys(engine, name, "sipp", &booking_keys(number));
}

/// A SIPp caller whose caller ID is `caller` presses `keys` (INFO) while
/// waiting, then waits for the engine to hang up.
fn call_with_keys(engine: &Engine, name: &str, caller: &str, keys: &[(u64, char)]) {
    let port = engine.ports.spare(0);
    let sc = keys_scenario(engine, name, port, keys, 1);
    common::wait_for_bye(&sc);
    let text = std::fs::read_to_string(&sc)
        .unwrap()
        .replace("<sip:sipp@", &format!("<sip:{caller}@"));
    std::fs::write(&sc, text).unwrap();
    common::sipp(engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
}

/// The engine's database, opened read-only beside it.
fn db(engine: &Engine) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        engine.dir.join("data").join("hotline.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap()
}

/// (state, attempts, number) of every callback, oldest first.
fn callbacks(engine: &Engine) -> Vec<(String, u32, String)> {
    let db = db(engine);
    let mut stmt = db
        .prepare("SELECT state, attempts, number FROM callback ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The outcomes of the callback's attempts, in order.
fn attempts(engine: &Engine) -> Vec<String> {
    let db = db(engine);
    let mut stmt = db
        .prepare("SELECT COALESCE(outcome, 'in-flight') FROM callback_attempt ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A SIPp of the test's (the carrier, a phone) running `scenario` on
/// `port` for `calls` calls, logging what it logs to `log`.
fn sipp_peer(
    port: u16,
    scenario: &Path,
    log: Option<&Path>,
    extra: &[&str],
    calls: u32,
) -> std::process::Child {
    let sf = scenario.display().to_string();
    let lf = log.map(|l| l.display().to_string());
    let mut args = vec!["-sf", sf.as_str()];
    if let Some(lf) = &lf {
        args.extend(["-trace_logs", "-log_file", lf.as_str()]);
    }
    args.extend_from_slice(extra);
    common::sipp_side_calls(&args, port, None, calls)
}

/// Waits (bounded) until the attempts' outcomes are `expected`.
fn wait_attempts(engine: &Engine, expected: &[&str]) {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = attempts(engine);
        if now == expected {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "attempts are {now:?}, not {expected:?}:\n{}",
            engine.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `carrier-answer.xml` sending its RTP (SIPp's audio file, looped) once it
/// pressed 1, and its SDP naming `sink` as its media port.
fn carrier_scenario(engine: &Engine, sink: u16) -> PathBuf {
    let text = std::fs::read_to_string(common::scenario("carrier-answer.xml")).unwrap();
    let text = text.replace("m=audio [media_port]", &format!("m=audio {sink}"));
    let stream = format!(
        "  <recv response=\"200\"/>\n  <nop><action><exec rtp_stream=\"{},-1,0\"/></action></nop>\n  <pause/>",
        common::scenario("load-audio.ulaw").display()
    );
    let text = text.replacen("  <recv response=\"200\"/>\n  <pause/>", &stream, 1);
    assert!(text.contains("rtp_stream"));
    let path = engine.dir.join("carrier.xml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The numbers the carrier's SIPp was asked to call, from its log file.
fn dialled(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split("INVITE for ").nth(1))
        .map(|n| n.trim().to_owned())
        .collect()
}

#[test]
fn a_booked_callback_rings_the_agent_then_dials_the_customer_once_and_bridges_them() {
    let carrier_port = common::Ports::next().spare(0);
    let engine = engine(carrier_port, "retry-delay: 2s");
    book(&engine, "booker.xml", "2125550123");
    let log = engine.log();
    assert!(log.contains("callback offered"), "{log}");
    assert!(log.contains("callback request stored"), "{log}");
    assert_eq!(
        callbacks(&engine),
        vec![("pending".to_owned(), 0, "+12125550123".to_owned())],
        "written before the caller was released, not dialled yet (no agent)"
    );

    // The carrier answers on the trunk; the agent's phone echoes.
    let sink_port = engine.ports.spare(2);
    let sink = rtp_sink(sink_port, Duration::from_secs(24));
    let carrier_log = engine.dir.join("carrier.log");
    let carrier = sipp_peer(
        carrier_port,
        &carrier_scenario(&engine, sink_port),
        Some(&carrier_log),
        &["-d", "3000"],
        1,
    );
    // The agent registers (from the port their phone then answers on):
    // the callback's turn has come.
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = phone("agent-answer.xml", agent_port, true);

    let (ok, out) = common::finish(carrier);
    assert!(
        ok,
        "the carrier saw no complete call:\n{out}\n{}",
        engine.log()
    );
    let (ok, out) = common::finish(agent);
    assert!(
        ok,
        "the agent saw no complete call:\n{out}\n{}",
        engine.log()
    );
    let report = sink.join().unwrap();

    assert_eq!(dialled(&carrier_log), vec!["+12125550123".to_owned()]);
    let log = engine.log();
    assert!(log.contains("callback whisper"), "{log}");
    // The customer heard the answering-machine guard, then the agent: their
    // own audio came back through the agent's echo.
    assert_heard(&report, &["callback/this-is"], 25);
    let spoken = std::fs::read(common::scenario("load-audio.ulaw")).unwrap();
    let frames: std::collections::HashSet<&[u8]> = spoken.chunks(160).collect();
    let echoed = payloads_of_busiest(&report)
        .iter()
        .filter(|p| frames.contains(p.as_slice()))
        .count();
    assert!(
        echoed >= 50,
        "only {echoed} packets came back from the agent"
    );
    assert_eq!(
        callbacks(&engine),
        vec![("completed".to_owned(), 1, "+12125550123".to_owned())]
    );
    wait_attempts(&engine, &["connected"]);
    // The booking call is a callback in its record, not an abandon.
    let outcome: String = db(&engine)
        .query_row("SELECT outcome FROM cdr WHERE queue = 'support'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(outcome, "callback");
    // The agent is free again after the queue's wrap-up, with the call counted.
    common::wait_agent_state(&engine, "1001", "available", Duration::from_secs(5));
    let (_, body) = common::api_get(&engine, "/api/agents/1001");
    let a: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(a["calls"], 1, "{a}");
}

#[test]
fn a_busy_customer_is_retried_after_the_delay_and_every_attempt_is_recorded() {
    let carrier_port = common::Ports::next().spare(0);
    let engine = engine(
        carrier_port,
        "retry-delay: 2s, max-attempts: 3, whisper: false",
    );
    book(&engine, "booker.xml", "2125550123");

    // The carrier answers 486 twice; the agent's phone takes all three.
    let busy_log = engine.dir.join("busy.log");
    let busy = sipp_peer(
        carrier_port,
        &common::scenario("carrier-busy.xml"),
        Some(&busy_log),
        &[],
        2,
    );
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = sipp_peer(
        agent_port,
        &common::scenario("agent-answer.xml"),
        None,
        &["-rtp_echo"],
        3,
    );
    let (ok, out) = common::finish(busy);
    assert!(
        ok,
        "the carrier was not called twice:\n{out}\n{}",
        engine.log()
    );
    // Both refusals are recorded (the store write follows the 486).
    wait_attempts(&engine, &["busy", "busy"]);
    // The third attempt, after the retry delay, is answered.
    let answer_log = engine.dir.join("answer.log");
    let answer = sipp_peer(
        carrier_port,
        &common::scenario("carrier-answer.xml"),
        Some(&answer_log),
        &["-d", "1000", "-rtp_echo"],
        1,
    );
    let (ok, out) = common::finish(answer);
    assert!(
        ok,
        "the third attempt was not answered:\n{out}\n{}",
        engine.log()
    );
    let (ok, out) = common::finish(agent);
    assert!(
        ok,
        "the agent did not take three calls:\n{out}\n{}",
        engine.log()
    );
    assert_eq!(dialled(&busy_log).len(), 2);
    assert_eq!(dialled(&answer_log), vec!["+12125550123".to_owned()]);
    wait_attempts(&engine, &["busy", "busy", "connected"]);
    assert_eq!(
        callbacks(&engine),
        vec![("completed".to_owned(), 3, "+12125550123".to_owned())]
    );
    let log = engine.log();
    assert_eq!(
        log.matches("calling the customer back").count(),
        3,
        "exactly one call per attempt:\n{log}"
    );
}

/// Waits (bounded) until the SIPp log at `path` shows an INVITE.
fn wait_for_invite(path: &Path, timeout: Duration) -> std::time::Instant {
    let until = std::time::Instant::now() + timeout;
    while dialled(path).is_empty() {
        assert!(
            std::time::Instant::now() < until,
            "no INVITE reached the carrier"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::time::Instant::now()
}

#[test]
fn after_kill_9_a_pending_callback_is_delivered_once_and_a_ringing_attempt_is_not_doubled() {
    let carrier_port = common::Ports::next().spare(0);
    let mut engine = engine(
        carrier_port,
        "ring-timeout: 3s, retry-delay: 1s, whisper: false",
    );
    book(&engine, "booker.xml", "2125550123");

    // The customer's phone rings and rings (180, no answer)...
    let ring = common::scenario("carrier-ring.xml");
    let ring_log = engine.dir.join("ring.log");
    let mut ringing = sipp_peer(carrier_port, &ring, Some(&ring_log), &[], 1);
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let mut agent = phone("agent-answer.xml", agent_port, true);
    let first = wait_for_invite(&ring_log, Duration::from_secs(10));
    assert_eq!(attempts(&engine), vec!["in-flight".to_owned()]);

    // ... when the engine is killed: no shutdown, no CANCEL.
    engine.crash_and_restart();
    let _ = ringing.kill();
    let _ = ringing.wait();
    let _ = agent.kill();
    let _ = agent.wait();

    // Restarted, it knows the callback and the attempt cut short; the
    // agent's registration was kept. The next attempt is answered.
    let answer_log = engine.dir.join("answer.log");
    let answer = sipp_peer(
        carrier_port,
        &common::scenario("carrier-answer.xml"),
        Some(&answer_log),
        &["-d", "1000", "-rtp_echo"],
        1,
    );
    let agent = phone("agent-answer.xml", agent_port, true);
    let second = wait_for_invite(&answer_log, Duration::from_secs(30));
    let (ok, out) = common::finish(answer);
    assert!(
        ok,
        "the callback was not delivered after the restart:\n{out}\n{}",
        engine.log()
    );
    let (ok, out) = common::finish(agent);
    assert!(ok, "{out}");
    assert!(
        second - first >= Duration::from_secs(3),
        "called again {:?} after the interrupted attempt, while it could still ring",
        second - first
    );
    assert_eq!(dialled(&answer_log), vec!["+12125550123".to_owned()]);
    wait_attempts(&engine, &["interrupted", "connected"]);
    assert_eq!(
        callbacks(&engine),
        vec![("completed".to_owned(), 2, "+12125550123".to_owned())]
    );
    assert!(engine.log().contains("pending callbacks restored count=1"));
}

#[test]
fn a_carrier_that_challenges_gets_the_trunks_digest_credentials() {
    let carrier_port = common::Ports::next().spare(0);
    let engine = engine_with(
        &trunks_with(carrier_port, ", username: hotline, password: s3cret"),
        "whisper: false",
    );
    book(&engine, "booker.xml", "2125550123");
    let carrier_log = engine.dir.join("carrier.log");
    let carrier = sipp_peer(
        carrier_port,
        &common::scenario("carrier-auth.xml"),
        Some(&carrier_log),
        &["-d", "1000", "-rtp_echo"],
        1,
    );
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = phone("agent-answer.xml", agent_port, true);
    let (ok, out) = common::finish(carrier);
    assert!(ok, "{out}\n{}", engine.log());
    let (ok, out) = common::finish(agent);
    assert!(ok, "{out}");
    let carrier_said = std::fs::read_to_string(&carrier_log).unwrap();
    assert!(
        carrier_said.contains("INVITE for +12125550123 authenticated true")
            || carrier_said.contains("INVITE for +12125550123 authenticated 1"),
        "{carrier_said}"
    );
    wait_attempts(&engine, &["connected"]);
    let log = engine.log();
    assert!(log.contains("sending it again with credentials"), "{log}");
    assert!(
        !log.contains("s3cret"),
        "the trunk's password is never logged"
    );
}

#[test]
fn a_trunk_registers_with_digest_and_refreshes_before_expiry_after_backing_off() {
    let carrier_port = common::Ports::next().spare(0);
    // The registrar refuses the first REGISTER (503): the engine retries
    // after a delay, then authenticates, and refreshes in time.
    let text = std::fs::read_to_string(common::scenario("carrier-registrar.xml")).unwrap();
    let first = text.find("  <recv request=\"REGISTER\"").unwrap();
    let refuse = "  <recv request=\"REGISTER\" crlf=\"true\"/>\n  <send>\n    <![CDATA[\n\n      SIP/2.0 503 Service Unavailable\n      [last_Via:]\n      [last_From:]\n      [last_To:];tag=refused\n      [last_Call-ID:]\n      [last_CSeq:]\n      Content-Length: 0\n\n    ]]>\n  </send>\n";
    let text = format!("{}{refuse}{}", &text[..first], &text[first..]);
    let dir = std::env::temp_dir().join(format!("hotline-registrar-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sc = dir.join("registrar.xml");
    std::fs::write(&sc, text).unwrap();
    let log = dir.join("registrar.log");
    let registrar = sipp_peer(carrier_port, &sc, Some(&log), &[], 1);
    std::thread::sleep(Duration::from_millis(200));
    let engine = engine_with(
        &trunks_with(
            carrier_port,
            ", username: hotline, password: s3cret, register: true, register-expires: 60s",
        ),
        "whisper: false",
    );
    let (ok, out) = common::finish(registrar);
    assert!(ok, "{out}\n{}", engine.log());
    let said = std::fs::read_to_string(&log).unwrap();
    for n in 1..=2 {
        assert!(
            said.contains(&format!("REGISTER {n} authenticated true"))
                || said.contains(&format!("REGISTER {n} authenticated 1")),
            "{said}"
        );
    }
    let log = engine.log();
    assert!(
        log.contains("trunk registration failed trunk=carrier why=answered 503 retry_in=2s"),
        "{log}"
    );
    assert!(
        log.contains("trunk registered trunk=carrier expires=6s"),
        "{log}"
    );
    assert!(!log.contains("s3cret"), "the password is never logged");
}

/// The operations API's event stream (SSE), read in the background until
/// `stop` shows in it or `within` is over: what came.
fn events_until(
    engine: &Engine,
    stop: &'static str,
    within: Duration,
) -> std::thread::JoinHandle<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", engine.ports.http())).unwrap();
    write!(
        s,
        "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        common::TEST_TOKEN
    )
    .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    std::thread::spawn(move || {
        let until = std::time::Instant::now() + within;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while std::time::Instant::now() < until && !String::from_utf8_lossy(&seen).contains(stop) {
            if let Ok(n) = s.read(&mut buf) {
                seen.extend_from_slice(&buf[..n]);
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    })
}

#[test]
fn operators_see_pending_callbacks_in_place_and_may_reschedule_or_cancel_them() {
    let carrier_port = common::Ports::next().spare(0);
    let engine = engine(carrier_port, "whisper: false");
    let events = events_until(&engine, "callback.ended", Duration::from_secs(30));
    book(&engine, "booker.xml", "2125550123");
    // Where it stands: in the queue, flagged as a callback.
    let (status, body) = common::api_get(&engine, "/api/queues/support");
    assert_eq!(status, 200, "{body}");
    let q: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(q["waiting"][0]["call_id"], "callback-1", "{q}");
    assert_eq!(q["waiting"][0]["callback"], true);
    assert_eq!(q["waiting"][0]["caller"], "+12125550123");
    let (_, body) = common::api_get(&engine, "/api/callbacks");
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list[0]["number"], "+12125550123", "{body}");
    assert_eq!(list[0]["phase"], "queued");
    assert_eq!(list[0]["state"], "pending");

    // A read token may look, not change.
    let (status, _) = common::api_post(&engine, "/api/callbacks/1/cancel", common::TEST_TOKEN, "");
    assert_eq!(status, 403);
    let (status, body) = common::api_post(
        &engine,
        "/api/callbacks/1/reschedule",
        SUPERVISOR,
        r#"{"when": "tomorrow"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"field\":\"when\""), "{body}");
    // Tomorrow morning: out of the queue until then.
    let (status, body) = common::api_post(
        &engine,
        "/api/callbacks/1/reschedule",
        SUPERVISOR,
        r#"{"at": "2099-01-01T09:00:00Z"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (_, body) = common::api_get(&engine, "/api/queues/support");
    let q: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(q["waiting"].as_array().map(Vec::len), Some(0), "{q}");
    let (_, body) = common::api_get(&engine, "/api/callbacks/1");
    let one: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one["phase"], "waiting", "{one}");
    assert_eq!(one["next_attempt_at"], "2099-01-01T09:00:00Z");

    let (status, body) = common::api_post(&engine, "/api/callbacks/1/cancel", SUPERVISOR, "");
    assert_eq!(status, 200, "{body}");
    let (status, _) = common::api_post(&engine, "/api/callbacks/1/cancel", SUPERVISOR, "");
    assert_eq!(status, 404, "only a pending callback can be cancelled");
    let (_, body) = common::api_get(&engine, "/api/callbacks/1");
    let one: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one["state"], "cancelled", "{one}");
    // The live stream told of it as it happened.
    let seen = events.join().unwrap();
    assert!(
        seen.contains(r#""type":"callback.booked","id":1"#)
            && seen.contains(r#""number":"+12125550123""#),
        "{seen}"
    );
    assert!(
        seen.contains(
            r#""type":"callback.ended","id":1,"state":"cancelled","outcome":"cancelled""#
        ),
        "{seen}"
    );
    assert_eq!(attempts(&engine), Vec::<String>::new(), "never dialled");

    // The figures: one booked (not an abandon), none completed.
    let (_, body) = common::api_get(&engine, "/api/kpis?by=queue");
    let k: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = &k["rows"][0];
    assert_eq!(row["callbacks_booked"], 1, "{k}");
    assert_eq!(row["abandoned"], 0);
    assert_eq!(row["callbacks_completed"], 0);
    let metrics = common::metrics(&engine);
    assert!(metrics.contains("hotline_callbacks_pending 0"), "{metrics}");
}

#[test]
fn outside_its_schedule_a_callback_waits_out_of_the_queue_and_expires_undelivered() {
    let carrier_port = common::Ports::next().spare(0);
    // Open two to three hours from now (UTC): closed during the test.
    let hour = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600
        + 2)
        % 24;
    let schedule = format!(
        "schedules:\n  evenings: {{ time-zone: UTC, weekly: {{ daily: '{hour:02}:00-{:02}:00' }} }}\n",
        hour + 1
    );
    let engine = Engine::with_flows_and_trunks(
        &[("main", FLOW)],
        &trunks(carrier_port),
        &format!(
            "{schedule}queues:
  support:
    announce-position: false
    callback: {{ trunk: carrier, offer-after: 1s, schedule: evenings, expire-after: 14s }}
agents:
  - {{ id: '1001', password: 1001pass, queues: [support], auto-login: true }}
registrar: {{ algorithms: [MD5], keepalive: 0s }}
"
        ),
    );
    book(&engine, "booker.xml", "2125550123");
    // An agent is free, but the callback waits for its hours: nobody is
    // rung, and the caller's own entry left the queue with them.
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    std::thread::sleep(Duration::from_secs(2));
    let (_, body) = common::api_get(&engine, "/api/queues/support");
    let q: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(q["waiting"].as_array().map(Vec::len), Some(0), "{q}");
    let (_, body) = common::api_get(&engine, "/api/callbacks/1");
    let one: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(one["phase"], "waiting", "{one}");
    assert_eq!(common::agent_state(&engine, "1001").0, "available");
    // Still undelivered when it is too old: expired, with its record.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    while callbacks(&engine)[0].0 != "expired" {
        assert!(std::time::Instant::now() < until, "{}", engine.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(attempts(&engine), Vec::<String>::new(), "never dialled");
    // Its record is queued for the store's next group commit: it follows.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    let outcome: String = loop {
        let row = db(&engine).query_row(
            "SELECT outcome FROM cdr WHERE call_id = 'callback-1'",
            [],
            |r| r.get(0),
        );
        match row {
            Ok(outcome) => break outcome,
            Err(e) => assert!(std::time::Instant::now() < until, "no record: {e}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(outcome, "callback-expired");
}

/// A SIPp caller (`i`: its SIPp ports) who waits in the queue, pressing
/// nothing, and hangs up `tail_ms` after the answer; in the background.
fn waiting_caller(
    engine: &Engine,
    name: &str,
    i: u16,
    tail_ms: u64,
) -> std::thread::JoinHandle<std::process::Output> {
    let sc = keys_scenario(engine, name, engine.ports.spare(4 + i), &[], tail_ms);
    let (sip, ports) = (engine.sip, engine.ports);
    std::thread::spawn(move || {
        std::process::Command::new("sipp")
            .arg("-sf")
            .arg(&sc)
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &ports.sipp(i).to_string()])
            .args(["-mp", &ports.sipp_media(i).to_string()])
            .args(["-cp", &ports.sipp_control(i).to_string()])
            .args(["-s", "100", "-m", "1", "-nostdin", "-timeout", "60s"])
            .arg(sip.to_string())
            .output()
            .unwrap()
    })
}

#[test]
fn a_callback_keeps_its_callers_place_between_those_before_and_after_them() {
    let carrier_port = common::Ports::next().spare(0);
    let engine = engine(carrier_port, "whisper: false");
    // C calls first and waits; A calls next and books a callback; then B
    // calls and waits.
    let c = waiting_caller(&engine, "c.xml", 2, 14_000);
    assert!(engine.wait_log("caller joined the queue", Duration::from_secs(5)));
    book(&engine, "a.xml", "2125550123");
    let b = waiting_caller(&engine, "b.xml", 1, 20_000);
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while engine.log().matches("caller joined the queue").count() < 3 {
        assert!(std::time::Instant::now() < until, "{}", engine.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // One agent comes: C first, then A's callback, then B.
    let carrier = sipp_peer(
        carrier_port,
        &common::scenario("carrier-answer.xml"),
        None,
        &["-d", "2000", "-rtp_echo"],
        1,
    );
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = sipp_peer(
        agent_port,
        &common::scenario("agent-answer.xml"),
        None,
        &["-rtp_echo"],
        3,
    );
    for (who, caller) in [("C", c), ("B", b)] {
        let out = caller.join().unwrap();
        assert!(
            out.status.success(),
            "{who}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            engine.log()
        );
    }
    let (ok, out) = common::finish(carrier);
    assert!(ok, "{out}\n{}", engine.log());
    let (ok, out) = common::finish(agent);
    assert!(
        ok,
        "the agent did not take all three:\n{out}\n{}",
        engine.log()
    );
    let log = engine.log();
    // The callers in the order they joined: C, A, B.
    let joined: Vec<&str> = log
        .lines()
        .filter_map(|l| l.split("caller joined the queue call=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert_eq!(joined.len(), 3, "{log}");
    let rung = |call_id: &str| {
        log.lines()
            .position(|l| {
                l.contains(&format!("call_id={call_id} "))
                    && l.contains("ringing the agent agent=1001")
            })
            .unwrap_or_else(|| panic!("{call_id} never rung:\n{log}"))
    };
    let callback = log
        .lines()
        .position(|l| l.contains("ringing the agent for a callback"))
        .expect("the callback was never delivered");
    assert!(
        rung(joined[0]) < callback,
        "the callback went before C:\n{log}"
    );
    assert!(
        callback < rung(joined[2]),
        "B went before the callback:\n{log}"
    );
    wait_attempts(&engine, &["connected"]);
}

#[test]
fn a_flows_callback_node_books_a_callback_without_queueing_the_caller() {
    let carrier_port = common::Ports::next().spare(0);
    let flow = "entry: ask
nodes:
  ask: { menu: { prompt: menu/closed, options: { '1': cb } }, exhausted: bye }
  cb: { callback: support, next: booked, on-error: bye }
  booked: { hangup: callback/booked }
  bye: { hangup: goodbye }
";
    let engine = engine_flow(flow, &trunks(carrier_port), "whisper: false");
    let port = engine.ports.spare(0);
    // 1 in the menu, then the number, #, and 1 to confirm it.
    let mut keys = vec![(800, '1')];
    keys.extend(booking_keys("2125550123").into_iter().skip(1));
    let sc = keys_scenario(&engine, "node.xml", port, &keys, 1);
    common::wait_for_bye(&sc);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let log = engine.log();
    assert!(
        log.contains("callback node: asking for the number"),
        "{log}"
    );
    assert!(log.contains("ivr node flow=main node=booked"), "{log}");
    assert_eq!(
        callbacks(&engine),
        vec![("pending".to_owned(), 0, "+12125550123".to_owned())]
    );
    // It waits in the queue from the moment it was booked.
    let (_, body) = common::api_get(&engine, "/api/queues/support");
    let q: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(q["waiting"][0]["call_id"], "callback-1", "{q}");
    assert!(
        q["waiting"][0]["waited_ms"].as_u64().unwrap() < 10_000,
        "{q}"
    );
}

#[test]
fn customer_first_calls_the_customer_at_the_head_of_the_line_before_an_agent_is_free() {
    let carrier_port = common::Ports::next().spare(0);
    let engine = engine(carrier_port, "delivery: customer-first");
    let carrier_log = engine.dir.join("carrier.log");
    let carrier = sipp_peer(
        carrier_port,
        &common::scenario("carrier-answer.xml"),
        Some(&carrier_log),
        &["-d", "6000", "-rtp_echo"],
        1,
    );
    // Nobody staffs the queue: the callback is at the head, so the
    // customer is called at once and waits there after pressing 1.
    book(&engine, "booker.xml", "2125550123");
    wait_for_invite(&carrier_log, Duration::from_secs(10));
    assert!(
        engine.wait_log(
            "the customer waits at the head of the queue",
            Duration::from_secs(10)
        ),
        "{}",
        engine.log()
    );
    // Then an agent comes, is rung, and takes the customer.
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = phone("agent-answer.xml", agent_port, true);
    let (ok, out) = common::finish(carrier);
    assert!(ok, "{out}\n{}", engine.log());
    let (ok, out) = common::finish(agent);
    assert!(
        ok,
        "the agent was not bridged to the customer:\n{out}\n{}",
        engine.log()
    );
    let log = engine.log();
    let called = log.find("calling the customer back").unwrap();
    let registered = log.find("agent contacts agent=1001").unwrap();
    assert!(called < registered, "the customer was called first:\n{log}");
    assert!(log.contains("callback connected"), "{log}");
    wait_attempts(&engine, &["connected"]);
    assert_eq!(
        callbacks(&engine),
        vec![("completed".to_owned(), 1, "+12125550123".to_owned())]
    );
    // Its record names the agent who took it.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let agent: Option<String> = db(&engine)
            .query_row(
                "SELECT agent FROM cdr WHERE call_id = 'callback-1'",
                [],
                |r| r.get(0),
            )
            .ok()
            .flatten();
        if agent.as_deref() == Some("1001") {
            break;
        }
        assert!(std::time::Instant::now() < until, "no record naming 1001");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_trunk_never_carries_more_callbacks_at_once_than_its_max_calls() {
    let carrier_port = common::Ports::next().spare(0);
    let engine = engine_with(
        &trunks_with(carrier_port, ", max-calls: 1"),
        "whisper: false, ring-timeout: 3s, retry-delay: 1h",
    );
    book(&engine, "first.xml", "2125550123");
    book(&engine, "second.xml", "2125550124");
    // The customers' phones ring and ring (180) until cancelled.
    let ring = common::scenario("carrier-ring.xml");
    let ring_log = engine.dir.join("ring.log");
    let carrier = sipp_peer(carrier_port, &ring, Some(&ring_log), &[], 2);
    // Two agents free at once: both callbacks reach the head together.
    let (p1, p2) = (
        common::Ports::next().spare(0),
        common::Ports::next().spare(0),
    );
    register(&engine, "1001", p1);
    register(&engine, "1002", p2);
    let a1 = phone("agent-answer.xml", p1, true);
    let a2 = phone("agent-answer.xml", p2, true);
    let first = wait_for_invite(&ring_log, Duration::from_secs(10));
    let until = std::time::Instant::now() + Duration::from_secs(15);
    while dialled(&ring_log).len() < 2 {
        assert!(std::time::Instant::now() < until, "{}", engine.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let second = std::time::Instant::now();
    assert!(
        second - first >= Duration::from_millis(2500),
        "the second customer was called {:?} after the first, while the trunk's one call was ringing",
        second - first
    );
    let mut numbers = dialled(&ring_log);
    numbers.sort();
    assert_eq!(
        numbers,
        vec!["+12125550123".to_owned(), "+12125550124".to_owned()]
    );
    let (ok, out) = common::finish(carrier);
    assert!(ok, "{out}");
    for a in [a1, a2] {
        let (ok, out) = common::finish(a);
        assert!(ok, "{out}");
    }
    wait_attempts(&engine, &["no-answer", "no-answer"]);
}

/// Finding 7 of the hardening review: a callback offer must not become a way
/// to ring one number over and over. At most `max-per-number-per-day`
/// callbacks to a number (however it is typed) are booked; the next is refused (the flow goes on
/// by its `on-error`), and another number is still booked.
#[test]
fn a_number_gets_at_most_its_callbacks_per_day() {
    let carrier_port = common::Ports::next().spare(0);
    let flow = "entry: cb
nodes:
  cb: { callback: support, next: booked, on-error: refused }
  booked: { hangup: callback/booked }
  refused: { hangup: goodbye }
";
    let engine = engine_flow(
        flow,
        &trunks(carrier_port),
        "whisper: false, max-per-number-per-day: 1",
    );
    let port = engine.ports.spare(0);
    for (i, number) in ["2125550123", "1 212 555 0123", "2125550188"]
        .iter()
        .enumerate()
    {
        // The node asks for the number at once: the number, #, then 1.
        let mut keys: Vec<(u64, char)> = booking_keys(&number.replace(' ', ""))
            .into_iter()
            .skip(1)
            .collect();
        keys[0].0 = 1200;
        let sc = keys_scenario(&engine, &format!("cap{i}.xml"), port, &keys, 1);
        common::wait_for_bye(&sc);
        common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    }
    let numbers: Vec<String> = callbacks(&engine).into_iter().map(|c| c.2).collect();
    assert_eq!(
        numbers,
        ["+12125550123", "+12125550188"],
        "the second booking to one number is refused"
    );
    let log = engine.log();
    assert_eq!(
        log.matches("ivr node flow=main node=refused").count(),
        1,
        "{log}"
    );
    assert!(log.contains("callbacks to this number were booked in the last 24 h"));
}

/// The carrier's SIPp on `port`, answering one callback (echoing audio),
/// and the log it writes the dialled number to.
fn answering_carrier(engine: &Engine, port: u16) -> (std::process::Child, PathBuf) {
    let log = engine.dir.join("carrier.log");
    let carrier = sipp_peer(
        port,
        &common::scenario("carrier-answer.xml"),
        Some(&log),
        &["-d", "1000", "-rtp_echo"],
        1,
    );
    (carrier, log)
}

/// Both sides of the booked callback took their calls to the end, the
/// carrier was asked for the booked number once, and the attempt is
/// recorded as connected.
fn delivered(engine: &Engine, carrier: (std::process::Child, PathBuf), agent: std::process::Child) {
    let (ok, out) = common::finish(carrier.0);
    assert!(ok, "the carrier saw no call:\n{out}\n{}", engine.log());
    let (ok, out) = common::finish(agent);
    assert!(
        ok,
        "the agent saw no complete call:\n{out}\n{}",
        engine.log()
    );
    assert_eq!(dialled(&carrier.1), vec!["+12125550123".to_owned()]);
    wait_attempts(engine, &["connected"]);
    // The delivery's record has both legs' figures.
    let record = delivery_record(engine);
    let legs: Vec<&str> = record["quality"]
        .as_array()
        .map(|l| l.iter().filter_map(|l| l["leg"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(legs, ["customer", "agent"], "{record}");
    assert_eq!(record["quality"][1]["who"], "1001", "{record}");
    for leg in record["quality"].as_array().unwrap() {
        assert!(leg["received"].as_u64() > Some(0), "{record}");
    }
    assert!(record["mos"].as_f64().is_some(), "{record}");
}

/// The record of the delivered callback (waiting up to 5 s for it).
fn delivery_record(engine: &Engine) -> serde_json::Value {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let records = common::cdrs(engine);
        if let Some(r) = records
            .iter()
            .find(|r| r["outcome"] == "callback-completed")
        {
            return r.clone();
        }
        assert!(
            std::time::Instant::now() < until,
            "no delivery record: {records:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The carrier trunk with its proxy given by name (`sip:NAME[:PORT]`), and
/// `dns:` pointed at the test's own server.
fn trunks_named(proxy: &str, dns: &common::dnsmasq::Dnsmasq, dns_extra: &str) -> String {
    trunks(0).replace("sip:127.0.0.1:0", proxy)
        + &format!("dns: {{ servers: ['{}'], {dns_extra} }}\n", dns.addr)
}

#[test]
fn a_callback_over_a_trunk_named_in_dns_reaches_the_srv_target_that_answers() {
    let p = common::Ports::next();
    let (dns_port, down_port, up_port) = (p.spare(0), p.spare(1), p.spare(2));
    // The first target (priority 10) is silent: a socket of ours that
    // only listens. The second (priority 20) is the carrier's SIPp.
    let (dns, silent, dir) =
        common::dnsmasq::Dnsmasq::with_two_targets(dns_port, "carrier.test", down_port, up_port);
    let engine = engine_with(
        &trunks_named("sip:carrier.test", &dns, "failover-after: 2s"),
        "retry-delay: 2s, whisper: false",
    );
    book(&engine, "booker.xml", "2125550123");
    let carrier = answering_carrier(&engine, up_port);
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = phone("agent-answer.xml", agent_port, true);
    delivered(&engine, carrier, agent);
    // The first target was tried first, by NAPTR and SRV order, with the
    // URI as the carrier would see it.
    dns.assert_first_target_tried("carrier.test", &silent, "sip:+12125550123@carrier.test");
    assert!(common::metrics(&engine).contains("hotline_sip_failovers_total 1"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_callback_over_a_trunk_whose_name_does_not_resolve_waits_and_goes_once_it_does() {
    let p = common::Ports::next();
    let (dns_port, carrier_port) = (p.spare(0), p.spare(2));
    let dir = std::env::temp_dir().join(format!("hotline-dns-{}-{}", std::process::id(), p.base));
    std::fs::create_dir_all(&dir).unwrap();
    let dns = common::dnsmasq::Dnsmasq::start(dns_port, &dir, &[]);
    let engine = engine_with(
        &trunks_named(&format!("sip:late.test:{carrier_port}"), &dns, "retry: 2s"),
        "retry-delay: 2s, whisper: false",
    );
    // Reported at start, and counted.
    assert!(
        engine.wait_log("cannot resolve the trunk's proxy", Duration::from_secs(5)),
        "{}",
        engine.log()
    );
    assert!(common::metrics(&engine).contains("hotline_dns_failures_total{what=\"trunk\"}"));
    book(&engine, "booker.xml", "2125550123");
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = phone("agent-answer.xml", agent_port, true);
    // The agent is free, the callback is due, but nobody is called: it
    // waits without spending an attempt.
    assert!(
        engine.wait_log(
            "the trunk's proxy does not resolve; the callback waits",
            Duration::from_secs(10)
        ),
        "{}",
        engine.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        callbacks(&engine),
        vec![("pending".to_owned(), 0, "+12125550123".to_owned())]
    );
    assert!(attempts(&engine).is_empty());
    // The name resolves: the callback goes, once.
    let carrier = answering_carrier(&engine, carrier_port);
    dns.add_host("late.test", "127.0.0.1");
    delivered(&engine, carrier, agent);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_trunk_that_allows_srtp_has_its_customers_offered_sdes_keys() {
    let carrier_port = common::Ports::next().spare(0);
    // Keys may go over this trunk's plain SIP only because it says so.
    let trunks = trunks(carrier_port).replacen(
        "    allow: []\n",
        "    allow: []\n    media-encryption: optional\n    insecure-media-keys-over-plain-sip: true\n",
        1,
    );
    let engine = engine_with(&trunks, "retry-delay: 2s, whisper: false");
    book(&engine, "booker.xml", "2125550123");
    let log = engine.dir.join("carrier.log");
    let seen = engine.dir.join("carrier-messages.log");
    let seen_arg = seen.display().to_string();
    let carrier = sipp_peer(
        carrier_port,
        &common::scenario("carrier-answer.xml"),
        Some(&log),
        &[
            "-d",
            "1000",
            "-rtp_echo",
            "-trace_msg",
            "-message_file",
            &seen_arg,
        ],
        1,
    );
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let agent = phone("agent-answer.xml", agent_port, true);
    // The carrier answers in clear (it has no SRTP): the call goes on so.
    delivered(&engine, (carrier, log), agent);
    let messages = std::fs::read_to_string(&seen).unwrap();
    let invite = messages.split("INVITE sip:").nth(1).expect("the INVITE");
    assert!(
        invite.contains("m=audio")
            && invite.contains("RTP/AVP 0 8")
            && invite.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{invite}"
    );
}

#[test]
fn a_callback_rings_the_agents_desktop_and_bridges_the_customer_to_the_browser() {
    use common::desktop;
    let ports = common::Ports::next();
    let carrier_port = ports.spare(0);
    let engine = engine_full(
        FLOW,
        &trunks(carrier_port),
        "retry-delay: 2s, whisper: false",
        &format!("webrtc: {{ port: {} }}\n", ports.spare(10)),
    );
    book(&engine, "booker.xml", "2125550123");
    // The carrier answers, presses 1 and echoes what it hears for 6 s.
    let log = engine.dir.join("carrier.log");
    let carrier = sipp_peer(
        carrier_port,
        &common::scenario("carrier-answer.xml"),
        Some(&log),
        &["-d", "6000", "-rtp_echo"],
        1,
    );
    // Agent 1001 opens the desktop (no SIP phone at all): the callback's
    // turn has come, and it rings the browser with the pop.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (status, cookie, _) = desktop::login(&engine, "1001", "1001pass");
    assert_eq!(status, 200);
    let cookie = cookie.unwrap();
    let mut ws = rt.block_on(desktop::connect(&engine, &cookie)).unwrap();
    let (status, _, _) = desktop::request(&engine, "POST", "/agent/1001/login", Some(&cookie), "");
    assert_eq!(status, 200);
    let ring = rt
        .block_on(desktop::next_of(&mut ws, "ring", Duration::from_secs(15)))
        .unwrap_or_else(|| panic!("no ring:\n{}", engine.log()));
    assert_eq!(ring["pop"]["caller"], "+12125550123", "{ring}");
    assert_eq!(ring["pop"]["queue"], "support", "{ring}");
    let call = ring["call"].as_str().unwrap().to_owned();
    let offer = ring["offer"].as_str().unwrap();
    let (mut browser, answer) =
        common::webrtc::BrowserPeer::answer(offer, ([127, 0, 0, 1], ports.spare(12)).into());
    for msg in [
        serde_json::json!({ "type": "answer", "call": call, "sdp": answer }),
        serde_json::json!({ "type": "accept", "call": call }),
    ] {
        rt.block_on(desktop::send(&mut ws, msg));
    }
    assert!(
        browser.connect(Duration::from_secs(5)),
        "the browser did not connect:\n{}",
        engine.log()
    );
    // The customer is dialled and bridged: the browser's frames come back
    // from the carrier's echo.
    let frame = [0x2au8; 160];
    browser.run(Duration::from_secs(4), Some(&frame));
    let echoed = browser
        .received
        .iter()
        .filter(|p| p[..] == frame[..])
        .count();
    assert!(
        echoed >= 50,
        "the browser got {echoed} of its frames back ({} packets):\n{}",
        browser.received.len(),
        engine.log()
    );
    let (ok, out) = common::finish(carrier);
    assert!(
        ok,
        "the carrier saw no complete call:\n{out}\n{}",
        engine.log()
    );
    assert_eq!(dialled(&log), vec!["+12125550123".to_owned()]);
    wait_attempts(&engine, &["connected"]);
    // The delivery's record has the browser leg's figures as the agent's.
    let record = delivery_record(&engine);
    assert_eq!(record["quality"][1]["leg"], "agent", "{record}");
    assert!(
        record["quality"][1]["received"].as_u64() > Some(50),
        "{record}"
    );
    drop(ws);
}
