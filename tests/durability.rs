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

#[test]
fn a_backup_taken_under_load_is_whole_and_holds_the_records_written_before_it() {
    let engine = Engine::start("");
    // 100 calls of 3 s, 10 a second, on the key-test line; the backup is
    // taken while about 30 are up and records are being written.
    std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let sc = common::scenario("caller-basic.xml");
            let args = [
                "-s", "echo", "-d", "3000", "-m", "100", "-l", "60", "-r", "10",
            ];
            common::sipp(&engine, 0, &sc, &args)
        });
        backup_under_load(&engine);
        load.join().unwrap().assert_ok();
    });
}

/// Takes a backup once 20 records are written, and checks it.
fn backup_under_load(engine: &Engine) {
    let until = Instant::now() + Duration::from_secs(20);
    let before = loop {
        let n = common::cdrs(engine).len();
        if n >= 20 {
            break n;
        }
        assert!(
            Instant::now() < until,
            "the load wrote no records:\n{}",
            engine.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let to = engine.dir.join("backup.db");
    let out = backup(engine, &to);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The copy opens on its own, is whole, and has every record that was
    // there before it began.
    let copy = rusqlite::Connection::open(&to).unwrap();
    let check: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let kept: i64 = copy
        .query_row("SELECT count(*) FROM cdr WHERE open = 0", [], |r| r.get(0))
        .unwrap();
    assert!(
        kept as usize >= before,
        "{kept} records in the copy, {before} before it"
    );
    assert!(kept < 100, "taken during the load, not after it: {kept}");
    assert_eq!(mode(&to) & 0o077, 0, "the copy is the engine user's only");
    // A second backup to the same file is refused, and the first one stays.
    let again = backup(engine, &to);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
}

#[test]
fn the_retention_sweep_deletes_what_is_older_than_kept_and_leaves_the_rest() {
    let mut engine = Engine::start(
        "retention: { records: 400d, recordings: 90d, voicemail: 30d }\n\
queues: { sales: { retention: { recordings: 7d } }, support: {}, operator: {} }\n",
    );
    let data = engine.dir.join("data");
    let now = jiff::Timestamp::now();
    let ago = |days: i64| now - jiff::SignedDuration::from_hours(24 * days);
    // A file of `days` ago (its modification time too).
    let file = |rel: &str, days: i64| {
        let p = data.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let f = std::fs::File::create(&p).unwrap();
        let t = std::time::SystemTime::now() - Duration::from_secs(86_400 * days as u64);
        f.set_modified(t).unwrap();
        p
    };
    let db = rusqlite::Connection::open(data.join("hotline.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let cdr = |id: &str, days: i64, queue: Option<&str>, recording: Option<&std::path::Path>| {
        db.execute(
            "INSERT INTO cdr (call_id, caller, dialed, trunk, arrived_at, queue, outcome, ended_by, vars, recording)
             VALUES (?1, '+1', '100', 'loopback', ?2, ?3, 'agent', 'caller', '{}', ?4)",
            rusqlite::params![id, ago(days).to_string(), queue, recording.map(|p| p.display().to_string())],
        )
        .unwrap();
    };
    let very_old = file("recordings/a/very-old.wav", 500);
    let old = file("recordings/b/old.wav", 100);
    let sales = file("recordings/c/sales.wav", 10);
    let support = file("recordings/c/support.wav", 10);
    let fresh = file("recordings/d/fresh.wav", 1);
    cdr("very-old", 500, Some("support"), Some(&very_old));
    cdr("old", 100, Some("support"), Some(&old));
    cdr("sales", 10, Some("sales"), Some(&sales));
    cdr("support", 10, Some("support"), Some(&support));
    cdr("fresh", 1, None, Some(&fresh));
    // A recording no record names (an interrupted one), 120 days old.
    let orphan = file("recordings/e/orphan.wav", 120);
    let vm = |id: &str, days: i64| {
        let p = file(&format!("voicemail/box/{id}.wav"), days);
        db.execute(
            "INSERT INTO voicemail (created_at, call_id, caller, mailbox, flow, path, duration_ms)
             VALUES (?1, ?2, '+1', 'box', 'main', ?3, 1000)",
            rusqlite::params![ago(days).to_string(), id, p.display().to_string()],
        )
        .unwrap();
        p
    };
    let vm_old = vm("vm-old", 40);
    let vm_new = vm("vm-new", 2);
    drop(db);

    // The sweep runs shortly after start.
    engine.crash_and_restart();
    assert!(
        engine.wait_log("retention sweep", Duration::from_secs(15)),
        "{}",
        engine.log()
    );
    let db = rusqlite::Connection::open(data.join("hotline.db")).unwrap();
    let ids: Vec<(String, Option<String>)> = db
        .prepare("SELECT call_id, recording FROM cdr ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let kept: Vec<(&str, bool)> = ids
        .iter()
        .map(|(id, r)| (id.as_str(), r.is_some()))
        .collect();
    // Records: only the one past 400 days goes. Recordings: past 90 days,
    // and past 7 for the sales queue.
    assert_eq!(
        kept,
        [
            ("old", false),
            ("sales", false),
            ("support", true),
            ("fresh", true)
        ]
    );
    for (p, there) in [
        (&very_old, false),
        (&old, false),
        (&sales, false),
        (&orphan, false),
        (&support, true),
        (&fresh, true),
        (&vm_old, false),
        (&vm_new, true),
    ] {
        assert_eq!(p.exists(), there, "{}", p.display());
    }
    let vms: i64 = db
        .query_row("SELECT count(*) FROM voicemail", [], |r| r.get(0))
        .unwrap();
    assert_eq!(vms, 1);
    let metrics = common::metrics(&engine);
    assert!(
        metrics.contains("hotline_retention_deleted_total{kind=\"records\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hotline_retention_deleted_total{kind=\"recordings\"} 4"),
        "{metrics}"
    );
}

/// `hotline backup` of the engine's store to `to`.
fn backup(engine: &Engine, to: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["backup", "--config"])
        .arg(engine.dir.join("hotline.yaml"))
        .arg("--to")
        .arg(to)
        .output()
        .unwrap()
}
