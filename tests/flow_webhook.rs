//! A flow that looks the caller up in a CRM (a real HTTP server on
//! loopback), branches on the answer, and stores a survey answer.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use common::{assert_heard, keys_scenario, rtp_sink, sipp, Engine};

/// A CRM stand-in: answers each request with the next (status, body) and
/// reports the request lines it saw.
fn crm(answers: Vec<(u16, &'static str)>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for (status, body) in answers {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut buf = vec![0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            seen.push(request.lines().next().unwrap_or_default().to_owned());
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
        seen
    });
    (port, handle)
}

#[test]
fn the_crm_answer_picks_the_path_and_the_survey_answer_is_stored() {
    let (port, server) = crm(vec![(200, r#"{"name": "Ada", "vip": true}"#), (500, "{}")]);
    let flows = std::env::temp_dir().join(format!("hotline-webhook-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&flows);
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(
        flows.join("crm.yaml"),
        format!(
            "entry: lookup\nnodes:\n  lookup:\n    webhook: {{ url: \"http://127.0.0.1:{port}/customers?phone={{{{caller}}}}\", into: customer, timeout: 2s }}\n    next: check\n    on-error: down\n  check:\n    branch:\n      - if: customer.vip\n        then: vip\n    else: down\n  vip:\n    play: menu/hours\n    next: survey\n  down:\n    play: menu/closed\n    next: survey\n  survey:\n    survey: {{ prompt: ask/survey, question: nps }}\n    next: bye\n  bye:\n    hangup: goodbye\n"
        ),
    )
    .unwrap();
    let engine = Engine::start_with(
        "trunks:\n  - name: loopback\n    allow: [127.0.0.0/8]\n    symmetric-rtp: false\n",
        &format!(
            "flows-dir: {}\nroutes: {{ default: crm }}\n",
            flows.display()
        ),
    );

    // A VIP hears the hours (the VIP path), then answers the survey with 9.
    let sink = rtp_sink(engine.ports.spare(0), Duration::from_secs(9));
    let sc = keys_scenario(
        &engine,
        "vip.xml",
        engine.ports.spare(0),
        &[(7000, '9')],
        700,
    );
    sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    assert_heard(&sink.join().unwrap(), &["menu/hours", "ask/survey"], 20);

    // The CRM fails for the next caller: the error branch plays the other prompt.
    let sink = rtp_sink(engine.ports.spare(1), Duration::from_secs(4));
    let sc = keys_scenario(&engine, "down.xml", engine.ports.spare(1), &[], 3000);
    sipp(&engine, 1, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    assert_heard(&sink.join().unwrap(), &["menu/closed"], 20);

    let seen = server.join().unwrap();
    assert_eq!(seen[0], "GET /customers?phone=sipp HTTP/1.1", "{seen:?}");
    assert!(engine.wait_log("survey answer stored", Duration::from_secs(3)));
    let log = engine.log();
    assert!(log.contains("webhook: answered 500"), "{log}");
    let mut store = hotline::store::SqliteStore::open(&engine.dir.join("data")).unwrap();
    let answers = hotline::store::Store::survey_answers(&mut store).unwrap();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!((answers[0].question.as_str(), answers[0].score), ("nps", 9));
    assert_eq!(answers[0].flow, "crm");
    let _ = std::fs::remove_dir_all(&flows);
}
