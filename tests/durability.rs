//! Nothing promised is lost: a call's record is open in the store from its
//! answer, so a crash (kill -9) leaves the calls that were going on as
//! `interrupted` records after the restart; and what the engine keeps is
//! readable by its own user only.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Engine;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn calls_going_on_at_a_crash_are_recorded_as_interrupted_after_the_restart() {
    let mut engine = Engine::start("");
    let p = engine.ports;
    // Three long calls at once on the key-test line.
    let mut callers = Command::new("sipp")
        .arg("-sf")
        .arg(common::scenario("caller-basic.xml"))
        .args([
            "-s", "echo", "-d", "30000", "-m", "3", "-l", "3", "-r", "10",
        ])
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args([
            "-p",
            &p.sipp(0).to_string(),
            "-mp",
            &p.sipp_media(0).to_string(),
        ])
        .args(["-cp", &p.sipp_control(0).to_string()])
        .args(["-nostdin", "-timeout", "40s"])
        .arg(engine.sip.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start sipp");
    let until = Instant::now() + Duration::from_secs(10);
    while engine.log().matches("answered codec").count() < 3 {
        assert!(
            Instant::now() < until,
            "three calls were not answered:\n{}",
            engine.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The answers' records are committed within moments.
    std::thread::sleep(Duration::from_millis(500));
    engine.crash_and_restart();
    let _ = callers.kill();
    let _ = callers.wait();

    let (status, body) = common::api_get(&engine, "/api/cdrs?since=1h");
    assert_eq!(status, 200, "{body}");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(rows.len(), 3, "{body}");
    for r in &rows {
        assert_eq!(r["outcome"], "interrupted", "{r}");
        assert_eq!(r["dialed"], "echo");
        assert!(r["answered_at"].is_string(), "{r}");
        assert_eq!(r["flow"], "echo");
    }

    let data = engine.dir.join("data");
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&data.join("hotline.db")), 0o600, "the store");
}
