//! Agents' softphones register with digest authentication (SIPp with
//! -au/-ap): the right password registers, a wrong one is refused and,
//! repeated, locks the source out; a contact that stops answering the
//! engine's keep-alive OPTIONS is dropped.

mod common;

use std::time::Duration;

use common::{scenario, sipp, Engine};

const AGENTS: &str = "agents:\n  - { id: '1001', password: 1001pass, queues: [support] }\n  - { id: '1002', password: 1002pass, queues: [support] }\n";

/// The shipped scenario, expecting `status` to the authenticated REGISTER.
fn register_expecting(engine: &Engine, status: u16) -> std::path::PathBuf {
    let text = std::fs::read_to_string(scenario("agent-register.xml")).unwrap();
    let text = text.replace(
        "<recv response=\"200\"/>",
        &format!("<recv response=\"{status}\"/>"),
    );
    let path = engine.dir.join(format!("register-{status}.xml"));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn agents_register_with_digest_and_wrong_passwords_are_locked_out() {
    let engine = Engine::start(&format!(
        "{AGENTS}registrar: {{ algorithms: [MD5], max-failures: 2, keepalive: 0s }}\n"
    ));
    let ok = scenario("agent-register.xml");
    sipp(
        &engine,
        0,
        &ok,
        &["-s", "1001", "-au", "1001", "-ap", "1001pass", "-m", "1"],
    )
    .assert_ok();
    assert!(
        engine.wait_log("agent contacts agent=1001", Duration::from_secs(3)),
        "{}",
        engine.log()
    );
    let log = engine.log();
    assert!(
        log.contains(&format!("127.0.0.1:{}", engine.ports.sipp(0))),
        "the source address is kept: {log}"
    );

    // A wrong password: 403, twice, then the source is locked out and even
    // the right password gets 403 (SIPp's first REGISTER gets 403 at once).
    let refused = register_expecting(&engine, 403);
    for _ in 0..2 {
        sipp(
            &engine,
            1,
            &refused,
            &["-s", "1002", "-au", "1002", "-ap", "guess", "-m", "1"],
        )
        .assert_ok();
    }
    assert!(
        engine.wait_log("source locked out", Duration::from_secs(2)),
        "{}",
        engine.log()
    );
    let locked = engine.dir.join("locked.xml");
    std::fs::write(
        &locked,
        std::fs::read_to_string(&ok)
            .unwrap()
            .replace(
                "<recv response=\"401\" auth=\"true\"/>",
                "<recv response=\"403\"/>\n</scenario>",
            )
            .split("</scenario>")
            .next()
            .unwrap()
            .to_owned()
            + "</scenario>\n",
    )
    .unwrap();
    sipp(
        &engine,
        1,
        &locked,
        &["-s", "1002", "-au", "1002", "-ap", "1002pass", "-m", "1"],
    )
    .assert_ok();
    assert!(!engine.log().contains("agent contacts agent=1002"));

    // Every refusal is one line the shipped fail2ban filter matches: two
    // wrong passwords, the lockout, and the locked-out attempt.
    common::require("fail2ban-regex", "fail2ban");
    let filter = common::root().join("contrib/fail2ban/filter.d/hotline.conf");
    let out = std::process::Command::new("fail2ban-regex")
        .arg(&engine.log_path)
        .arg(&filter)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let matched: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("Lines: "))
        .and_then(|l| l.split(", ").find_map(|p| p.strip_suffix(" matched")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    let refusals = engine
        .log()
        .matches("hotline refused: source=127.0.0.1 ")
        .count();
    assert!(refusals >= 4, "{}", engine.log());
    assert_eq!(matched as usize, refusals, "{text}");
}

#[test]
fn a_phone_that_stops_answering_options_is_dropped() {
    let engine = Engine::start(&format!(
        "{AGENTS}registrar: {{ algorithms: [MD5], keepalive: 1s }}\n"
    ));
    // SIPp registers and exits: nothing answers the OPTIONS that follow.
    let ok = scenario("agent-register.xml");
    sipp(
        &engine,
        0,
        &ok,
        &["-s", "1001", "-au", "1001", "-ap", "1001pass", "-m", "1"],
    )
    .assert_ok();
    assert!(engine.wait_log("agent contacts agent=1001", Duration::from_secs(3)));
    // Timer F: 32 s of unanswered OPTIONS retransmissions.
    assert!(
        engine.wait_log("stopped answering OPTIONS", Duration::from_secs(40)),
        "{}",
        engine.log()
    );
    // The ACD hears of it once the store has kept the change.
    assert!(
        engine.wait_log(
            "agent contacts agent=1001 contacts=[]",
            Duration::from_secs(3)
        ),
        "{}",
        engine.log()
    );
}

#[test]
fn agents_change_state_with_feature_codes_from_their_phones() {
    let engine = Engine::start(&format!(
        "{AGENTS}registrar: {{ algorithms: [MD5], keepalive: 0s }}\n"
    ));
    // What the agent hears after each code is the state they are in now.
    let port = engine.ports.spare(0);
    let fc = common::scenario_to_sink(&engine, "agent-feature-code.xml", port);
    let dial = |code: &str, password: &str, hears: &str| {
        let sink = common::rtp_sink(port, Duration::from_secs(3));
        let run = sipp(
            &engine,
            1,
            &fc,
            &[
                "-s", code, "-key", "agent", "1001", "-au", "1001", "-ap", password, "-m", "1",
            ],
        );
        let report = sink.join().unwrap();
        if !hears.is_empty() {
            run.assert_ok();
            common::assert_heard(&report, &[hears], 20);
        }
        run
    };
    dial("*45", "1001pass", "agent/logged-in");
    dial("*47", "1001pass", "agent/paused");
    dial("*47", "1001pass", "agent/available");
    dial("*46", "1001pass", "agent/logged-out");
    dial("*46", "1001pass", "agent/not-allowed");
    // A wrong password is refused, and changes nothing: logging in after it
    // still finds the agent logged out.
    assert!(!dial("*45", "guess", "").status.success());
    dial("*45", "1001pass", "agent/logged-in");
}
