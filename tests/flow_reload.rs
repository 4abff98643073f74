//! Editing a flow while calls run: the call in progress finishes on the
//! version it started with, the next call takes the new one, and an invalid
//! edit is refused while the last good version keeps running.

mod common;

use std::time::Duration;

use common::{assert_heard, keys_scenario, rtp_sink, sipp, Engine};

fn flow(option_1: &str) -> String {
    format!(
        "entry: hello\nnodes:\n  hello:\n    play: greeting\n    barge-in: true\n    next: menu\n  menu:\n    menu:\n      prompt: menu/main\n      options: {{ \"1\": choice }}\n      timeout: 20s\n    exhausted: bye\n  choice:\n    play: {option_1}\n    next: bye\n  bye:\n    hangup: goodbye\n"
    )
}

#[test]
fn a_call_finishes_on_its_version_the_next_takes_the_new_one_and_a_bad_edit_is_refused() {
    let flows = std::env::temp_dir().join(format!("hotline-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&flows);
    std::fs::create_dir_all(&flows).unwrap();
    let main = flows.join("main.yaml");
    std::fs::write(&main, flow("menu/hours")).unwrap();
    let engine = Engine::start_with(
        "trunks:\n  - name: loopback\n    allow: [127.0.0.0/8]\n    symmetric-rtp: false\n",
        &format!(
            "flows-dir: {}\nroutes: {{ default: main }}\n",
            flows.display()
        ),
    );

    // Call 1 starts on version 1 and presses 1 after the edit has loaded.
    let port1 = engine.ports.spare(0);
    let sink1 = rtp_sink(port1, Duration::from_secs(14));
    let sc1 = keys_scenario(&engine, "one.xml", port1, &[(6000, '1')], 5000);
    let first = std::thread::scope(|s| {
        let call = s.spawn(|| sipp(&engine, 0, &sc1, &["-s", "100", "-m", "1"]));
        std::thread::sleep(Duration::from_secs(2));
        std::fs::write(&main, flow("menu/closed")).unwrap();
        assert!(
            engine.wait_log("flows reloaded", Duration::from_secs(5)),
            "{}",
            engine.log()
        );
        call.join().unwrap()
    });
    first.assert_ok();
    assert_heard(
        &sink1.join().unwrap(),
        &["greeting", "menu/main", "menu/hours"],
        20,
    );
    assert!(engine.log().contains("version=2"), "{}", engine.log());

    // An invalid edit: refused with its position; version 2 keeps running.
    std::fs::write(
        &main,
        flow("menu/closed").replace("next: bye\n  bye", "next: bey\n  bye"),
    )
    .unwrap();
    assert!(
        engine.wait_log("flow edit refused", Duration::from_secs(5)),
        "{}",
        engine.log()
    );
    let log = engine.log();
    assert!(
        log.contains("main.yaml:15:11: there is no node `bey` in this flow"),
        "{log}"
    );
    assert!(log.contains("version 2 keeps running"), "{log}");

    // Call 2 takes version 2.
    let port2 = engine.ports.spare(1);
    let sink2 = rtp_sink(port2, Duration::from_secs(9));
    let sc2 = keys_scenario(&engine, "two.xml", port2, &[(3500, '1')], 4000);
    sipp(&engine, 1, &sc2, &["-s", "100", "-m", "1"]).assert_ok();
    assert_heard(
        &sink2.join().unwrap(),
        &["greeting", "menu/main", "menu/closed"],
        20,
    );

    // SIGHUP reloads too (the set on disk is still invalid: refused again).
    let pid = engine.pid().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while !engine.log().contains("trigger=\"SIGHUP\"") && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        engine.log().contains("trigger=\"SIGHUP\""),
        "{}",
        engine.log()
    );
    let _ = std::fs::remove_dir_all(&flows);
}
