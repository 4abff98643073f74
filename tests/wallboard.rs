//! The wallboard in headless Chromium: SIPp callers wait, an agent is
//! registered, and the page, as the browser renders it, shows the numbers.

mod common;

use std::process::Command;
use std::time::Duration;

use common::chromium::Browser;
use common::{keys_scenario_with, register, Engine};

/// The text of the first element after `marker` (a tag's attribute).
fn text_after<'a>(dom: &'a str, marker: &str) -> &'a str {
    let at = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the page:\n{dom}"));
    let rest = &dom[at..];
    let start = rest.find('>').map_or(0, |i| i + 1);
    let end = rest[start..].find('<').map_or(rest.len(), |i| start + i);
    &rest[start..end]
}

#[test]
fn the_wallboard_shows_waiting_callers_and_agents_as_chromium_renders_it() {
    let engine = Engine::with_flow(
        "entry: q\nnodes:\n  q: { queue: support }\n",
        "http: { public: [wallboard] }\nqueues:\n  support: { announce-position: false }\n  sales: {}\nagents:\n  - { id: '1001', name: Alice, password: 1001pass, queues: [sales], auto-login: true }\n  - { id: '1002', name: Bob, password: 1002pass, queues: [support] }\nregistrar: { algorithms: [MD5], keepalive: 0s }\n",
    );
    // Alice is free in sales; two callers wait in support, where nobody is.
    register(&engine, "1001", common::Ports::next().spare(0));
    let sc = keys_scenario_with(
        &engine,
        "caller.xml",
        engine.ports.spare(0),
        &[],
        12_000,
        false,
    );
    // One SIPp places both calls (sipp_side places one).
    let p = common::Ports::next().spare(0);
    let mut callers = Command::new("sipp")
        .arg("-sf")
        .arg(&sc)
        .args([
            "-s",
            "100",
            "-m",
            "2",
            "-r",
            "10",
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
        ])
        .args([
            "-p",
            &p.to_string(),
            "-mp",
            &(p + 2).to_string(),
            "-cp",
            &(p + 1).to_string(),
        ])
        .args(["-nostdin", "-timeout", "60s", "-timeout_error"])
        .arg(engine.sip.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while engine.log().matches("caller joined the queue").count() < 2 {
        if std::time::Instant::now() > until {
            let _ = callers.kill();
            panic!("{}\n{}", common::finish(callers).1, engine.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));

    let url = format!("http://127.0.0.1:{}/wallboard", engine.ports.http());
    let mut browser = Browser::open(&url, engine.ports.spare(40), "/wallboard", &[]);
    let dom = browser.dom_when(
        "document.getElementById('status').textContent.startsWith('live') && !!document.querySelector('[data-queue=\"support\"]')",
    );
    let support = &dom[dom.find("data-queue=\"support\"").expect("no support tile")..];
    assert_eq!(text_after(support, "data-figure=\"waiting\""), "2");
    let longest = text_after(support, "data-figure=\"longest\"");
    assert!(
        ["0:02", "0:03", "0:04", "0:05", "0:06", "0:07"].contains(&longest),
        "longest wait {longest}"
    );
    assert_eq!(text_after(support, "data-figure=\"available\""), "0 / 0");
    // First-contact resolution today: none answered yet.
    assert_eq!(text_after(support, "data-figure=\"fcr\""), "–");
    let sales = &dom[dom.find("data-queue=\"sales\"").expect("no sales tile")..];
    assert_eq!(text_after(sales, "data-figure=\"waiting\""), "0");
    assert_eq!(text_after(sales, "data-figure=\"available\""), "1 / 1");
    let alice = &dom[dom.find("data-agent=\"1001\"").expect("no row for 1001")..];
    assert_eq!(text_after(alice, "<td"), "Alice");
    assert_eq!(text_after(alice, "data-field=\"state\""), "available");
    let bob = &dom[dom.find("data-agent=\"1002\"").expect("no row for 1002")..];
    assert_eq!(text_after(bob, "data-field=\"state\""), "logged-out");

    // A screenshot for people, kept with the build's test output.
    let shots = common::root().join("target/test-output");
    std::fs::create_dir_all(&shots).unwrap();
    let png = browser.screenshot();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    std::fs::write(shots.join("wallboard.png"), &png).unwrap();

    // Live: the callers hang up, and the board follows the events.
    let _ = callers.wait();
    browser.dom_when(
        "document.querySelector('[data-queue=\"support\"] [data-figure=\"waiting\"]').textContent === '0'",
    );
}
