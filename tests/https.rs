//! HTTPS on the HTTP listener (`http.tls`): the API and the agent desktop
//! over TLS with a certificate of the test's own CA, the session cookie
//! `Secure`, a plain HTTP request told to use HTTPS, a silent client closed
//! within the message timeout, SIP over secure WebSocket (wss) at `/sip`,
//! and the certificate read again on SIGHUP.
//! Off this machine (the engine in a network namespace of the test's
//! own), the desktop is refused over plain HTTP while the API still
//! answers, and over HTTPS headless Chromium gets a secure context: the
//! agent signs in, answers, and the caller hears the page's microphone.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::chromium::Browser;
use common::netns::Netns;
use common::tones::{assert_hears_the_browser, listen};
use common::ua::TestUa;
use common::{certs, Engine, TEST_TOKEN};

fn scratch(ports: &common::Ports) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "hotline-https-{}-{}",
        std::process::id(),
        ports.base
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `http:` with TLS from `leaf`, the test's read token, and a short
/// message timeout.
fn https_config(leaf: &(PathBuf, PathBuf)) -> String {
    format!(
        "http: {{ tls: {{ cert: {}, key: {} }}, tokens: [{{ name: test, token: {TEST_TOKEN}, role: read }}], connections: {{ message-timeout: 2s }} }}\n",
        leaf.0.display(),
        leaf.1.display()
    )
}

const AGENT: &str =
    "agents:\n  - { id: '1001', name: Ada, password: 1001pass, queues: [support] }\n";

/// A client that trusts only `ca`.
fn client(ca: &Path) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

struct Answer {
    status: u16,
    cookie: Option<String>,
    body: String,
}

fn fetch(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<&str>,
) -> Result<Answer, reqwest::Error> {
    rt.block_on(async {
        let mut req = client
            .request(method.parse().unwrap(), url)
            .bearer_auth(TEST_TOKEN);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.text().await?;
        Ok(Answer {
            status,
            cookie,
            body,
        })
    })
}

/// A REGISTER over `wss://127.0.0.1:PORT/sip` (subprotocol `sip`),
/// trusting only `ca`: the engine's first answer.
async fn sip_over_wss(port: u16, ca: &Path) -> String {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let config = hotline::tls::client_config(Some(ca)).unwrap();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = hotline::tls::server_name("127.0.0.1").unwrap();
    let tls = hotline::tls::connector(config)
        .connect(name, tcp)
        .await
        .expect("a TLS handshake");
    let mut req = format!("wss://127.0.0.1:{port}/sip")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "sip".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls)
        .await
        .expect("a WebSocket over TLS");
    let register = "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKwss1\r\n\
Max-Forwards: 70\r\nTo: <sip:1001@127.0.0.1>\r\nFrom: <sip:1001@127.0.0.1>;tag=wss1\r\n\
Call-ID: wss-register-1\r\nCSeq: 1 REGISTER\r\n\
Contact: <sip:1001@df7jal23ls0d.invalid;transport=ws>;expires=600\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n";
    ws.send(Message::Text(register.into())).await.unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no answer over wss")
            .expect("closed")
            .unwrap();
        if let Message::Text(t) = msg {
            return t.to_string();
        }
    }
}

const LOGIN: &str = r#"{"agent":"1001","password":"1001pass"}"#;

#[test]
fn over_https_the_api_and_the_desktop_answer_and_plain_http_is_told_to_use_https() {
    let ports = common::Ports::next();
    let dir = scratch(&ports);
    let ca = certs::ca(&dir, "ca");
    let leaf = certs::leaf(&dir, &ca, "server", &["127.0.0.1", "localhost"]);
    let engine = Engine::start(&format!("{}{AGENT}", https_config(&leaf)));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let https = client(&ca.0);
    let base = format!("https://127.0.0.1:{}", engine.ports.http());

    // The API over HTTPS.
    let a = fetch(&rt, &https, "GET", &format!("{base}/api/agents/1001"), None).unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    // The desktop: the page, and a sign-in whose cookie is Secure.
    let page = fetch(&rt, &https, "GET", &format!("{base}/agent"), None).unwrap();
    assert_eq!(page.status, 200);
    assert!(page.body.contains("signin-button"));
    let login = fetch(
        &rt,
        &https,
        "POST",
        &format!("{base}/agent/login"),
        Some(LOGIN),
    )
    .unwrap();
    assert_eq!(login.status, 200, "{}", login.body);
    let cookie = login.cookie.expect("no session cookie");
    assert!(
        cookie.contains("; Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    // Plain HTTP to the HTTPS port: a 400 that says what to do.
    let plain = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{}/agent", engine.ports.http());
    let a = fetch(&rt, &plain, "GET", &url, None).unwrap();
    assert_eq!(a.status, 400);
    assert!(a.body.contains("https://"), "{}", a.body);

    // A client that connects and says nothing is closed within the
    // message timeout (2 s): it holds no place in the budget longer.
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", engine.ports.http())).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(6)))
        .unwrap();
    let start = Instant::now();
    let n = silent.read(&mut [0u8; 16]).unwrap_or(0);
    let waited = start.elapsed();
    assert_eq!(n, 0, "the server sent something to a silent client");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    let metrics = fetch(&rt, &https, "GET", &format!("{base}/metrics"), None).unwrap();
    for reason in ["timeout", "plain-http"] {
        let line = format!("hotline_http_tls_handshakes_failed_total{{reason=\"{reason}\"}} 1");
        assert!(
            metrics.body.contains(&line),
            "no `{line}`:\n{}",
            metrics.body
        );
    }

    // SIP over secure WebSocket (wss) on the same listener: a browser
    // phone's REGISTER is challenged as over ws.
    let challenge = rt.block_on(sip_over_wss(engine.ports.http(), &ca.0));
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");

    // A renewed certificate (of another CA) on disk, then SIGHUP: new
    // connections get it, without a restart.
    let ca2 = certs::ca(&dir, "ca2");
    certs::leaf(&dir, &ca2, "server", &["127.0.0.1"]);
    engine.hang_up_signal("TLS certificate reloaded");
    let renewed = fetch(
        &rt,
        &client(&ca2.0),
        "GET",
        &format!("{base}/api/agents/1001"),
        None,
    )
    .unwrap();
    assert_eq!(renewed.status, 200);
    assert!(
        fetch(
            &rt,
            &client(&ca.0),
            "GET",
            &format!("{base}/api/agents/1001"),
            None
        )
        .is_err(),
        "the old certificate is still served"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn off_this_machine_plain_http_gets_the_api_but_not_the_desktop() {
    let ns = Netns::new("a");
    let engine = Engine::start_in_netns_serving(ns.name(), &ns.inside_ip, "trunks: []\n", AGENT);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let plain = reqwest::Client::new();
    let base = format!("http://{}:{}", ns.inside_ip, engine.ports.http());
    let api = fetch(&rt, &plain, "GET", &format!("{base}/api/agents/1001"), None).unwrap();
    assert_eq!(api.status, 200, "{}", api.body);
    for (method, path, body) in [
        ("GET", "/agent", None),
        ("POST", "/agent/login", Some(LOGIN)),
        ("GET", "/agent/me", None),
    ] {
        let a = fetch(&rt, &plain, method, &format!("{base}{path}"), body).unwrap();
        assert_eq!(a.status, 403, "{method} {path}: {}", a.body);
        assert!(a.body.contains("needs HTTPS"), "{}", a.body);
        assert!(a.cookie.is_none());
    }
}

/// The engine's agent 1001 as the API shows it over HTTPS.
fn agent_state(rt: &tokio::runtime::Runtime, https: &reqwest::Client, base: &str) -> String {
    let a = fetch(rt, https, "GET", &format!("{base}/api/agents/1001"), None).unwrap();
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
    v["state"].as_str().unwrap_or_default().to_owned()
}

fn wait_state(rt: &tokio::runtime::Runtime, https: &reqwest::Client, base: &str, state: &str) {
    let until = Instant::now() + Duration::from_secs(8);
    while agent_state(rt, https, base) != state {
        assert!(Instant::now() < until, "agent 1001 never became {state}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn off_this_machine_over_https_chromium_gets_a_microphone_and_the_caller_hears_it() {
    let ns = Netns::new("b");
    let ports = common::Ports::next();
    let dir = scratch(&ports);
    let ca = certs::ca(&dir, "ca");
    let leaf = certs::leaf(&dir, &ca, "server", &[&ns.inside_ip]);
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(
        flows.join("main.yaml"),
        "entry: q\nnodes:\n  q: { queue: support }\n",
    )
    .unwrap();
    let engine = Engine::start_in_netns_serving(
        ns.name(),
        &ns.inside_ip,
        &format!(
            "trunks:\n  - name: carrier\n    allow: [{}/32]\n    symmetric-rtp: false\n",
            ns.host_ip
        ),
        &format!(
            "{}{AGENT}flows-dir: {}\nroutes: {{ default: main }}\nqueues: {{ support: {{ announce-position: false }} }}\n\
rtp: {{ bind: {ip} }}\nwebrtc: {{ port: {} }}\n",
            https_config(&leaf),
            flows.display(),
            ports.spare(0),
            ip = ns.inside_ip,
        ),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let https = client(&ca.0);
    let base = format!("https://{}:{}", ns.inside_ip, engine.ports.http());

    // Chromium trusts the test's certificate by its key, as a browser
    // trusts a real one; the page is a secure context off loopback.
    let spki = format!(
        "--ignore-certificate-errors-spki-list={}",
        certs::spki_sha256(&leaf.0)
    );
    let mut browser =
        Browser::open_desktop_at(&format!("{base}/agent"), ports.spare(40), &dir, &[&spki]);
    assert_eq!(
        browser.eval("window.isSecureContext && !!navigator.mediaDevices"),
        serde_json::json!(true),
        "the page over HTTPS is not a secure context"
    );
    browser.sign_in_available("1001", "1001pass");
    wait_state(&rt, &https, &base, "available");

    // A caller on the far side queues; the page rings and answers.
    let caller = TestUa::call_from(
        &ns.host_ip,
        engine.sip,
        ports.spare(2),
        ports.spare(3),
        "200",
        "0 101",
    );
    browser.dom_when("!document.getElementById('ringing').hidden");
    browser.eval("document.getElementById('answer').click(); true");
    wait_state(&rt, &https, &base, "on-call");
    // The browser's microphone (a 1 kHz tone) reaches the caller.
    std::thread::sleep(Duration::from_millis(500));
    assert_hears_the_browser(&listen(&caller, Duration::from_secs(3)).join().unwrap());
    browser.eval("document.getElementById('hangup').click(); true");
    assert!(
        caller.expect_bye(Duration::from_secs(5)),
        "no BYE to the caller"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
