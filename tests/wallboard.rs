//! The wallboard in headless Chromium: SIPp callers wait, an agent is
//! registered, and the page, as the browser renders it, shows the numbers.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{keys_scenario_with, register, Engine};
use serde_json::{json, Value};

/// Chromium as these machines run it (headless, no sandbox as root, no
/// background connections: the network is closed), showing `url`, driven
/// over the DevTools protocol so the page stays live while the test reads it.
struct Browser {
    child: std::process::Child,
    profile: std::path::PathBuf,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    rt: tokio::runtime::Runtime,
    next_id: u64,
}

impl Browser {
    fn open(url: &str, port: u16) -> Browser {
        common::require("chromium", "chromium");
        let profile = std::env::temp_dir().join(format!("hotline-chromium-{}", std::process::id()));
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-quic",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,800",
                "--remote-allow-origins=*",
            ])
            .arg(format!("--remote-debugging-port={port}"))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("cannot start chromium");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let ws = rt.block_on(async {
            let until = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                assert!(
                    tokio::time::Instant::now() < until,
                    "chromium's DevTools never answered"
                );
                let list = reqwest::get(format!("http://127.0.0.1:{port}/json/list")).await;
                if let Ok(resp) = list {
                    let targets: Value = resp.json().await.unwrap_or(Value::Null);
                    let page = targets.as_array().and_then(|t| {
                        t.iter().find(|t| {
                            t["type"] == "page"
                                && t["url"].as_str().is_some_and(|u| u.contains("/wallboard"))
                        })
                    });
                    if let Some(ws_url) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
                        let (ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
                        break ws;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Browser {
            child,
            profile,
            ws,
            rt,
            next_id: 0,
        }
    }

    /// Sends a DevTools command and waits for its result.
    fn command(&mut self, method: &str, params: Value) -> Value {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        self.next_id += 1;
        let id = self.next_id;
        let ws = &mut self.ws;
        self.rt.block_on(async {
            let msg = json!({ "id": id, "method": method, "params": params }).to_string();
            ws.send(Message::Text(msg.into())).await.unwrap();
            loop {
                let reply = tokio::time::timeout(Duration::from_secs(20), ws.next())
                    .await
                    .expect("no DevTools answer")
                    .expect("DevTools closed")
                    .unwrap();
                if let Message::Text(t) = reply {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["id"] == id {
                        return v["result"].clone();
                    }
                }
            }
        })
    }

    fn eval(&mut self, expression: &str) -> Value {
        let r = self.command(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    /// The page's HTML once `expression` is true (within 15 s).
    fn dom_when(&mut self, expression: &str) -> String {
        let until = std::time::Instant::now() + Duration::from_secs(15);
        while self.eval(expression) != Value::Bool(true) {
            assert!(
                std::time::Instant::now() < until,
                "the page never showed `{expression}`:\n{}",
                self.eval("document.documentElement.outerHTML")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        self.eval("document.documentElement.outerHTML")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn screenshot(&mut self) -> Vec<u8> {
        let r = self.command("Page.captureScreenshot", json!({ "format": "png" }));
        base64(r["data"].as_str().expect("no screenshot data"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Standard base64, as DevTools sends screenshots.
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let bits: Vec<u8> = text.bytes().filter_map(value).collect();
    bits.chunks(4)
        .flat_map(|c| {
            let n = c.iter().fold(0u32, |acc, &v| (acc << 6) | u32::from(v)) << (6 * (4 - c.len()));
            let bytes = n.to_be_bytes();
            bytes[1..c.len()].to_vec()
        })
        .collect()
}

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
    let mut browser = Browser::open(&url, engine.ports.spare(40));
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
