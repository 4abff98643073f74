//! Dispositions: a queue that requires one keeps its agent in wrap-up until
//! it is given, from the operations API or dialled from the agent's SIP
//! phone (`*48` and the code); it goes into the call's record, and the
//! report counts first-contact resolution per queue and per agent.

mod common;

use std::time::Duration;

use common::{api_get, api_post, keys_scenario_with, phone, register, sipp, Engine};

const AGENT_TOKEN: &str = "disposition-agent-token";

fn cdr_of(engine: &Engine, n: usize) -> serde_json::Value {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let records = common::cdrs(engine);
        if records.len() > n {
            return records[n].clone();
        }
        assert!(std::time::Instant::now() < until, "{records:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_required_disposition_holds_the_wrap_up_until_given_from_the_api_or_the_phone_and_counts_for_fcr(
) {
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        &format!(
            "http: {{ tokens: [{{ name: test, token: {}, role: read }}, {{ name: desk, token: {AGENT_TOKEN}, role: agent }}] }}\nqueues:\n  support:\n    announce-position: false\n    wrap-up: 1s\n    disposition: required\n    dispositions:\n      - {{ code: '1', label: Resolved, first-contact-resolution: true }}\n      - {{ code: '2', label: Call back needed }}\nagents:\n  - {{ id: '1001', password: 1001pass, queues: [support], auto-login: true }}\nregistrar: {{ algorithms: [MD5], keepalive: 0s }}\ncalls: {{ leg-check: 0s }}\n",
            common::TEST_TOKEN
        ),
    );
    let agent_port = common::Ports::next().spare(0);
    register(&engine, "1001", agent_port);
    let call = |i: u16| {
        let agent = phone("agent-answer.xml", agent_port, true);
        std::thread::sleep(Duration::from_millis(300));
        let port = engine.ports.spare(i);
        let sc = keys_scenario_with(&engine, &format!("caller{i}.xml"), port, &[], 2000, true);
        sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
        let (ok, out) = common::finish(agent);
        assert!(ok, "{out}");
    };

    // Call 1: the wrap-up (1 s) is over, but the agent stays in it until
    // the disposition comes.
    call(0);
    let first = cdr_of(&engine, 0);
    let id = first["call_id"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_secs(2));
    let (status, body) = api_get(&engine, "/api/agents/1001");
    assert!(
        body.contains("\"state\":\"wrap-up\"") && body.contains("\"awaiting_disposition\":true"),
        "{status} {body}"
    );
    // A code the queue does not have is refused with its codes; a read
    // token may not give one.
    let path = format!("/api/calls/{id}/disposition");
    let (status, body) = api_post(&engine, &path, AGENT_TOKEN, r#"{"code": "9"}"#);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("its codes: 1, 2"), "{body}");
    assert_eq!(
        api_post(&engine, &path, common::TEST_TOKEN, r#"{"code": "1"}"#).0,
        403
    );
    let (status, body) = api_post(&engine, &path, AGENT_TOKEN, r#"{"code": "1"}"#);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"label\":\"Resolved\"")
            && body.contains("\"first_contact_resolution\":true"),
        "{body}"
    );
    common::wait_agent_state(&engine, "1001", "available", Duration::from_secs(3));
    let first = cdr_of(&engine, 0);
    assert_eq!(first["disposition"], "1", "{first}");
    assert_eq!(first["first_contact_resolution"], true, "{first}");

    // Call 2: the agent dials *482 from the phone during wrap-up.
    call(1);
    std::thread::sleep(Duration::from_secs(2));
    common::wait_agent_state(&engine, "1001", "wrap-up", Duration::from_secs(1));
    let port = engine.ports.spare(3);
    let fc = common::scenario_to_sink(&engine, "agent-feature-code.xml", port);
    let sink = common::rtp_sink(port, Duration::from_secs(3));
    sipp(
        &engine,
        1,
        &fc,
        &[
            "-s", "*482", "-key", "agent", "1001", "-au", "1001", "-ap", "1001pass", "-m", "1",
        ],
    )
    .assert_ok();
    common::assert_heard(&sink.join().unwrap(), &["beep"], 10);
    common::wait_agent_state(&engine, "1001", "available", Duration::from_secs(3));
    let second = cdr_of(&engine, 1);
    assert_eq!(second["disposition"], "2", "{second}");
    assert_eq!(second["first_contact_resolution"], false, "{second}");

    // The report: half the answered calls resolved on first contact, for
    // the queue and for the agent.
    for (by, group) in [("queue", "support"), ("agent", "1001")] {
        let report = common::report_json(&engine, &["--since", "10m", "--by", by]);
        let row = report["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == group)
            .unwrap_or_else(|| panic!("no row {group}: {report}"));
        assert_eq!(row["answered"], 2, "{report}");
        assert_eq!(row["first_contact_resolution"], 0.5, "{report}");
        assert_eq!(row["dispositioned"], 2, "{report}");
    }
}
