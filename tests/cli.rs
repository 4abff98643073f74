//! What an operator sees from the command line: `validate` and `run` refuse
//! a bad configuration with path:line:col and a hint, exit 1, and print no
//! backtrace; a good one validates.

use std::process::Command;

fn hotline(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(args)
        .current_dir(dir)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("hotline-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_shipped_configuration_validates() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, out, err) = hotline(&["validate"], root);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("hotline.yaml: ok"), "{out}");
}

#[test]
fn a_misspelt_key_is_refused_with_its_position_and_a_hint() {
    let dir = temp_dir("typo");
    std::fs::write(
        dir.join("bad.yaml"),
        "sip:\n  listen: 127.0.0.1:5060\n  listne: 1\n",
    )
    .unwrap();
    for cmd in ["validate", "run"] {
        let (code, _, err) = hotline(&[cmd, "--config", "bad.yaml"], &dir);
        assert_eq!(code, 1, "{cmd}: {err}");
        let first = err
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default();
        assert!(
            first.starts_with("error: bad.yaml:3:3: unknown field `listne`"),
            "{cmd}: {err}"
        );
        assert!(first.ends_with("(did you mean `listen`?)"), "{cmd}: {err}");
        assert!(err.contains("3 |   listne: 1"), "the snippet: {err}");
        assert!(!err.to_lowercase().contains("backtrace"), "{cmd}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn validate_names_each_flow_problem_by_line_and_column_and_run_refuses_to_start() {
    let dir = temp_dir("flows");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(
        dir.join("hotline.yaml"),
        format!(
            "sounds-dir: {}\nflows-dir: {}\nroutes: {{ default: main }}\nqueues: {{ support: {{}} }}\n",
            root.join("sounds").display(),
            flows.display()
        ),
    )
    .unwrap();
    std::fs::write(
        flows.join("main.yaml"),
        "entry: hello\nnodes:\n  hello:\n    play: no-such-prompt\n    next: menu\n  menu:\n    menu:\n      prompt: menu/main\n      options: { \"1\": suport }\n    exhausted: menu\n",
    )
    .unwrap();
    let (code, out, _) = hotline(&["validate"], &dir);
    assert_eq!(code, 1, "{out}");
    let main = flows.join("main.yaml");
    assert!(
        out.contains(&format!(
            "{}:4:11: there is no prompt `no-such-prompt` in the sounds directory",
            main.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{}:9:23: there is no node `suport` in this flow",
            main.display()
        )),
        "{out}"
    );

    // `run` refuses the same set with the same messages.
    let (code, _, err) = hotline(&["run"], &dir);
    assert_eq!(code, 1);
    assert!(err.contains("the flows are not valid"), "{err}");
    assert!(
        err.contains("main.yaml:9:23: there is no node `suport`"),
        "{err}"
    );

    // Fixed, it validates.
    std::fs::write(
        flows.join("main.yaml"),
        "entry: hello\nnodes:\n  hello:\n    play: welcome\n    next: q\n  q:\n    queue: support\n",
    )
    .unwrap();
    let (code, out, _) = hotline(&["validate"], &dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok (1 flows, 2 nodes"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn simulate_walks_a_flow_with_typed_keys_a_date_and_a_mocked_webhook() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // The shipped demo line: 2, then an account number, reaches the support queue.
    let (code, out, err) = hotline(&["simulate", "support", "--digits", "2 1234#"], root);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("node support:account"), "{out}");
    assert!(out.contains("end: queued in support"), "{out}");
    assert!(out.contains("account=1234"), "{out}");

    // A closed day in New York goes to the after-hours flow; a CRM answer
    // (mocked) greets the caller by name.
    let dir = temp_dir("simulate");
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(
        dir.join("hotline.yaml"),
        format!(
            "sounds-dir: {}\nflows-dir: {}\nroutes: {{ default: line }}\nqueues: {{ vip: {{}} }}\nschedules:\n  ny:\n    time-zone: America/New_York\n    weekly: {{ mon-fri: 09:00-17:00 }}\n    holidays: [2026-12-25]\n",
            root.join("sounds").display(),
            flows.display()
        ),
    )
    .unwrap();
    std::fs::write(
        flows.join("line.yaml"),
        "entry: open\nnodes:\n  open: { hours: ny, open: crm, closed: shut }\n  crm:\n    webhook: { url: \"http://127.0.0.1:9/crm?n={{caller}}\", into: customer }\n    next: vip\n  vip:\n    branch:\n      - if: customer.vip\n        then: q\n    else: shut\n  q: { queue: vip }\n  shut: { hangup: goodbye }\n",
    )
    .unwrap();
    std::fs::write(dir.join("crm.json"), r#"{"name": "Ada", "vip": true}"#).unwrap();
    let sim = |at: &str| {
        hotline(
            &[
                "simulate",
                "line",
                "--at",
                at,
                "--mock-webhook",
                "crm=crm.json",
                "--digits",
                "",
            ],
            &dir,
        )
    };
    let (code, out, err) = sim("2026-12-24T10:00:00-05:00");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("webhook crm: mocked"), "{out}");
    assert!(out.contains("end: queued in vip"), "{out}");
    let (_, out, _) = sim("2026-12-25T10:00:00-05:00");
    assert!(out.contains("node line:shut"), "{out}");
    assert!(out.contains("end: the flow hung up"), "{out}");
    assert!(!out.contains("webhook"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The default build has no audio library: `--audio` says how to get it.
#[cfg(not(feature = "local-audio"))]
#[test]
fn simulate_audio_without_the_feature_says_how_to_build_it() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, _, err) = hotline(&["simulate", "echo", "--digits", "#", "--audio"], root);
    assert_eq!(code, 1);
    assert!(err.contains("--features local-audio"), "{err}");
}

#[test]
fn simulate_reads_keys_from_the_terminal_when_none_are_given() {
    use std::io::Write;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["simulate", "support"])
        .current_dir(root)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A menu choice, an account number, then nothing more (end of input).
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"2\n1234#\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("keys (Enter alone: wait 5 s)>"), "{stdout}");
    assert!(stdout.contains("keys 1234#"), "{stdout}");
    assert!(stdout.contains("end: queued in support"), "{stdout}");
}

#[test]
fn a_queue_naming_a_prompt_that_does_not_exist_is_refused() {
    let dir = temp_dir("queue-prompt");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    std::fs::write(
        dir.join("bad.yaml"),
        format!(
            "sounds-dir: {}\nflows-dir: flows\nroutes: {{}}\nqueues:\n  sales: {{ music: music/defualt }}\n",
            root.join("sounds").display()
        ),
    )
    .unwrap();
    for cmd in ["validate", "run"] {
        let (code, _, err) = hotline(&[cmd, "--config", "bad.yaml"], &dir);
        assert_eq!(code, 1, "{cmd}: {err}");
        assert!(
            err.contains("bad.yaml: queues.sales.music: there is no prompt `music/defualt`"),
            "{cmd}: {err}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
