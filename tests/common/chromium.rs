//! Headless Chromium driven over the DevTools protocol, for the pages'
//! tests (the wallboard, the agent desktop).

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

/// Chromium as these machines run it (headless, no sandbox as root, no
/// background connections: the network is closed), showing `url`, driven
/// over the DevTools protocol so the page stays live while the test reads it.
pub struct Browser {
    child: std::process::Child,
    profile: std::path::PathBuf,
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    rt: tokio::runtime::Runtime,
    next_id: u64,
}

impl Browser {
    /// Opens `url` (the page DevTools drives is the one whose URL holds
    /// `page`), with `args` added to the command line.
    pub fn open(url: &str, port: u16, page: &str, args: &[&str]) -> Browser {
        super::require("chromium", "chromium");
        let profile =
            std::env::temp_dir().join(format!("hotline-chromium-{}-{port}", std::process::id()));
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
            .args(args)
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
                                && t["url"].as_str().is_some_and(|u| u.contains(page))
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

    /// The engine's agent desktop (`/agent` on `http_port`) in a browser
    /// whose microphone plays a 1 kHz tone (a file written in `dir`), that
    /// may play audio unasked and do WebRTC on loopback; once the page
    /// itself is loaded.
    pub fn open_desktop(http_port: u16, port: u16, dir: &std::path::Path) -> Browser {
        let url = format!("http://127.0.0.1:{http_port}/agent");
        Browser::open_desktop_at(&url, port, dir, &[])
    }

    /// As [`Browser::open_desktop`], at `url`, with `args` added.
    pub fn open_desktop_at(url: &str, port: u16, dir: &std::path::Path, args: &[&str]) -> Browser {
        let mic = super::tones::mic_file(dir);
        let capture = format!("--use-file-for-fake-audio-capture={}", mic.display());
        let mut all = vec![
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            &capture,
            "--autoplay-policy=no-user-gesture-required",
            "--allow-loopback-in-peer-connection",
        ];
        all.extend_from_slice(args);
        let mut browser = Browser::open(url, port, "/agent", &all);
        // The page itself, not the blank one DevTools may see first.
        browser.dom_when(
            "document.readyState === 'complete' && !!document.getElementById('signin-button')",
        );
        browser
    }

    /// Signs `agent` in on the desktop page with `password` and clicks
    /// "available" once the desk shows.
    pub fn sign_in_available(&mut self, agent: &str, password: &str) {
        self.eval(&format!(
            "document.getElementById('agent').value = '{agent}';
             document.getElementById('password').value = '{password}';
             document.getElementById('signin-button').click(); true"
        ));
        self.dom_when("!document.getElementById('desk').hidden");
        self.eval("document.getElementById('available').click(); true");
    }

    /// Sends a DevTools command and waits for its result.
    pub fn command(&mut self, method: &str, params: Value) -> Value {
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

    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.command(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    /// The page's HTML once `expression` is true (within 15 s).
    pub fn dom_when(&mut self, expression: &str) -> String {
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

    pub fn screenshot(&mut self) -> Vec<u8> {
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
pub fn base64(text: &str) -> Vec<u8> {
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
