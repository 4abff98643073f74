//! SIP over TLS against the running binary. The trunk side: the engine
//! connects to a carrier's proxy (a rustls server of the test's own) and
//! checks its certificate against the trunk's SIP domain with the trunk's
//! CA file: a good one connects, a wrong name or an unknown CA is refused
//! and reported; a transfer to a TLS URI is placed, answered and ended over
//! one connection. The listener: a handshake that never completes is
//! closed within the connection budget, and a renewed certificate is
//! served after SIGHUP. (baresip registering over TLS:
//! `tests/baresip_agent.rs`.)

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::certs;
use common::dnsmasq::Dnsmasq;
use common::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(cert: &Path, key: &Path) -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    )
}

/// What the carrier's proxy saw: the first SIP request over TLS, or the
/// handshake's error.
type Seen = Result<String, String>;

/// A carrier's SIP proxy over TLS on `listener`: takes one connection,
/// reads one request, answers it 200 and reports it.
fn tls_proxy(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> mpsc::Receiver<Seen> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((tcp, _)) = listener.accept() else {
            return;
        };
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut buf) {
                Ok(0) => return drop(tx.send(Err("closed".into()))),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return drop(tx.send(Err(e.to_string()))),
            }
        }
        let text = String::from_utf8_lossy(&got).into_owned();
        let header = |name: &str| {
            text.lines()
                .find(|l| {
                    l.to_ascii_lowercase()
                        .starts_with(&format!("{}:", name.to_ascii_lowercase()))
                })
                .unwrap_or_default()
                .to_owned()
        };
        let ok = format!(
            "SIP/2.0 200 OK\r\n{}\r\n{}\r\n{};tag=proxy\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
            header("Via"),
            header("From"),
            header("To"),
            header("Call-ID"),
            header("CSeq")
        );
        let _ = tls.write_all(ok.as_bytes());
        let _ = tls.flush();
        let _ = tx.send(Ok(text));
        std::thread::sleep(Duration::from_millis(500));
    });
    rx
}

/// An engine whose trunk `carrier` pings `sip:carrier.test:PORT;transport=tls`
/// every second, trusting `ca`, with `carrier.test` served by dnsmasq.
fn engine_with_tls_trunk(dns: &Dnsmasq, port: u16, ca: &Path) -> Engine {
    Engine::start_with(
        &format!(
            "trunks:\n  - name: carrier\n    allow: [127.0.0.0/8]\n    outbound: {{ proxy: 'sip:carrier.test:{port};transport=tls', ca-file: '{}', keepalive: 1s }}\n",
            ca.display()
        ),
        &format!("dns: {{ servers: ['{}'] }}\n", dns.addr),
    )
}

struct Setup {
    dir: std::path::PathBuf,
    ca: (std::path::PathBuf, std::path::PathBuf),
    dns: Dnsmasq,
    port: u16,
}

fn setup(tag: &str) -> Setup {
    let own = common::Ports::next();
    let dir = std::env::temp_dir().join(format!(
        "hotline-tls-{tag}-{}-{}",
        std::process::id(),
        own.base
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = certs::ca(&dir, "carrier-ca");
    let dns = Dnsmasq::start(
        own.spare(0),
        &dir,
        &["--host-record=carrier.test,127.0.0.1".into()],
    );
    Setup {
        dir,
        ca,
        dns,
        port: own.spare(1),
    }
}

#[test]
fn a_trunk_over_tls_reaches_a_proxy_whose_certificate_names_its_domain() {
    let s = setup("good");
    let cert = certs::leaf(&s.dir, &s.ca, "proxy", &["carrier.test"]);
    let seen = tls_proxy(
        TcpListener::bind(("127.0.0.1", s.port)).unwrap(),
        server_config(&cert.0, &cert.1),
    );
    let engine = engine_with_tls_trunk(&s.dns, s.port, &s.ca.0);
    let request = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("the engine never connected")
        .expect("the handshake failed");
    assert!(request.starts_with("OPTIONS sip:carrier.test"), "{request}");
    assert!(request.contains("Via: SIP/2.0/TLS "), "{request}");
    assert!(
        !common::metrics(&engine).contains("hotline_sip_tls_connect_failures_total"),
        "{}",
        engine.log()
    );
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// An engine whose trunk meets a proxy presenting `cert`: the handshake
/// fails (the proxy sees no request), and the engine says why in a line
/// containing `why`.
fn refused(s: &Setup, cert: &(std::path::PathBuf, std::path::PathBuf), why: &str) -> Engine {
    let seen = tls_proxy(
        TcpListener::bind(("127.0.0.1", s.port)).unwrap(),
        server_config(&cert.0, &cert.1),
    );
    let engine = engine_with_tls_trunk(&s.dns, s.port, &s.ca.0);
    let got = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("no connection");
    assert!(
        got.is_err(),
        "a request went to a server it should not trust: {got:?}"
    );
    assert!(
        engine.wait_log(why, Duration::from_secs(5)),
        "{}",
        engine.log()
    );
    assert!(common::metrics(&engine).contains("hotline_sip_tls_connect_failures_total"));
    engine
}

#[test]
fn a_proxy_certificate_for_another_name_or_from_an_unknown_ca_is_refused_and_reported() {
    let s = setup("bad");
    // A certificate from the right CA, for another name: the SRV target's,
    // say. RFC 5922 asks for the SIP domain.
    let wrong_name = certs::leaf(&s.dir, &s.ca, "other", &["proxy1.other.test"]);
    let engine = refused(&s, &wrong_name, "not valid for name \"carrier.test\"");
    assert!(
        engine.log().contains("domain=carrier.test"),
        "{}",
        engine.log()
    );
    drop(engine);
    // The right name, from a CA the trunk does not trust.
    let other_ca = certs::ca(&s.dir, "stranger-ca");
    let untrusted = certs::leaf(&s.dir, &other_ca, "stranger", &["carrier.test"]);
    refused(&s, &untrusted, "UnknownIssuer");
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// The certificate the engine's TLS listener presents now.
fn served_certificate(addr: std::net::SocketAddr, ca: &Path) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"\r\n\r\n").unwrap();
    tls.flush().unwrap();
    tls.conn.peer_certificates().unwrap()[0].to_vec()
}

#[test]
fn the_listener_closes_a_silent_handshake_and_serves_a_renewed_certificate_after_sighup() {
    let own = common::Ports::next();
    let dir = std::env::temp_dir().join(format!(
        "hotline-tls-listen-{}-{}",
        std::process::id(),
        own.base
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = certs::ca(&dir, "our-ca");
    let first = certs::leaf(&dir, &ca, "first", &["127.0.0.1"]);
    let live = (dir.join("live.pem"), dir.join("live.key"));
    std::fs::copy(&first.0, &live.0).unwrap();
    std::fs::copy(&first.1, &live.1).unwrap();
    let tls_port = own.spare(0);
    let engine = Engine::start(&format!(
        "sip: {{ tls: {{ listen: '127.0.0.1:{tls_port}', cert: '{}', key: '{}' }}, connections: {{ message-timeout: 1s }} }}\n",
        live.0.display(),
        live.1.display()
    ));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();

    // A connection that never starts its handshake is closed by the budget.
    let mut silent = TcpStream::connect(addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let opened = Instant::now();
    let mut buf = [0u8; 16];
    let closed = matches!(silent.read(&mut buf), Ok(0) | Err(_));
    assert!(
        closed && opened.elapsed() < Duration::from_secs(3),
        "kept {:?}",
        opened.elapsed()
    );
    assert!(common::metrics(&engine)
        .contains("hotline_sip_tls_handshakes_failed_total{reason=\"timeout\"} 1"));

    let served = served_certificate(addr, &ca.0);
    let first_der: Vec<u8> = CertificateDer::from_pem_file(&first.0).unwrap().to_vec();
    assert_eq!(served, first_der);
    // Renewed on disk, then SIGHUP: new connections get the new one.
    let renewed = certs::leaf(&dir, &ca, "renewed", &["127.0.0.1"]);
    std::fs::copy(&renewed.0, &live.0).unwrap();
    std::fs::copy(&renewed.1, &live.1).unwrap();
    engine.hang_up_signal("TLS certificate reloaded");
    let renewed_der: Vec<u8> = CertificateDer::from_pem_file(&renewed.0).unwrap().to_vec();
    assert_eq!(served_certificate(addr, &ca.0), renewed_der);
    // A broken file on the next SIGHUP keeps the renewed one.
    std::fs::write(&live.0, "not a certificate").unwrap();
    engine.hang_up_signal("TLS certificate not reloaded");
    assert_eq!(served_certificate(addr, &ca.0), renewed_der);
    let _ = std::fs::remove_dir_all(&dir);
}

/// One SIP message from a stream (its head and `Content-Length` body).
fn read_message<S: Read>(s: &mut S, pending: &mut Vec<u8>) -> Option<String> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if pending.len() >= end + 4 + length {
                let msg: Vec<u8> = pending.drain(..end + 4 + length).collect();
                return Some(String::from_utf8_lossy(&msg).into_owned());
            }
        }
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// The lines of `msg`'s header `name` (first one).
fn header(msg: &str, name: &str) -> String {
    msg.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_transfer_to_a_tls_uri_is_placed_over_tls_and_ended_over_it() {
    let s = setup("invite");
    let cert = certs::leaf(&s.dir, &s.ca, "proxy", &["carrier.test"]);
    let listener = TcpListener::bind(("127.0.0.1", s.port)).unwrap();
    let config = server_config(&cert.0, &cert.1);
    // The carrier's side over TLS: answers the INVITE, takes the ACK and
    // the BYE; reports what came, in order.
    let (tx, seen) = mpsc::channel::<String>();
    let port = s.port;
    std::thread::spawn(move || {
        let Ok((tcp, _)) = listener.accept() else {
            return;
        };
        tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let conn = rustls::ServerConnection::new(config).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut pending = Vec::new();
        while let Some(msg) = read_message(&mut tls, &mut pending) {
            let reply = |status: &str, body: &str, extra: &str| {
                format!(
                    "SIP/2.0 {status}\r\n{}\r\n{}\r\n{};tag=carrier\r\n{}\r\n{}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
                    header(&msg, "Via"),
                    header(&msg, "From"),
                    header(&msg, "To"),
                    header(&msg, "Call-ID"),
                    header(&msg, "CSeq"),
                    body.len()
                )
            };
            let answer = if msg.starts_with("INVITE ") {
                // SRTP, as the carrier's trunk requires (its key: RFC 4568's example).
                let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/SAVP 0\r\n\
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";
                Some(reply(
                    "200 OK",
                    sdp,
                    &format!("Contact: <sip:desk@127.0.0.1:{port};transport=tls>\r\nContent-Type: application/sdp\r\n"),
                ))
            } else if msg.starts_with("BYE ") {
                Some(reply("200 OK", "", ""))
            } else {
                None
            };
            if let Some(a) = answer {
                let _ = tls.write_all(a.as_bytes());
                let _ = tls.flush();
            }
            let done = msg.starts_with("BYE ");
            let _ = tx.send(msg);
            if done {
                return;
            }
        }
    });
    let engine = Engine::with_flows_and_trunks(
        &[("main", "entry: x\nnodes:\n  x: { transfer: desk, on-error: sorry }\n  sorry: { hangup: menu/closed }\n")],
        &format!(
            "trunks:\n  - name: loopback\n    allow: [127.0.0.0/8]\n  - name: carrier\n    allow: []\n    media-encryption: required\n    outbound: {{ proxy: 'sip:carrier.test:{port};transport=tls', ca-file: '{}' }}\n",
            s.ca.0.display()
        ),
        &format!(
            "transfers: {{ desk: 'sip:desk@carrier.test:{port};transport=tls' }}\ndns: {{ servers: ['{}'] }}\ncalls: {{ media-timeout: 0s }}\n",
            s.dns.addr
        ),
    );
    let p = engine.ports;
    let mut ua = common::ua::TestUa::call(engine.sip, p.spare(0), p.spare(2), "100", "0");
    let invite = seen
        .recv_timeout(Duration::from_secs(10))
        .expect("no INVITE over TLS");
    assert!(
        invite.starts_with("INVITE sip:desk@carrier.test:"),
        "{invite}"
    );
    assert!(header(&invite, "Via").contains("SIP/2.0/TLS "), "{invite}");
    assert!(
        header(&invite, "Contact").contains("transport=tls"),
        "{invite}"
    );
    // The number is dialled over the carrier's trunk, which requires SRTP:
    // the offer is RTP/SAVP with a key (over TLS), and the SRTP answer is
    // taken (a plain one would not be).
    assert!(
        invite.contains("m=audio ") && invite.contains(" RTP/SAVP "),
        "{invite}"
    );
    assert!(
        invite.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
        "{invite}"
    );
    let ack = seen.recv_timeout(Duration::from_secs(5)).expect("no ACK");
    assert!(ack.starts_with("ACK "), "{ack}");
    assert!(
        engine.wait_log("answered; caller bridged", Duration::from_secs(5)),
        "{}",
        engine.log()
    );
    // The caller hangs up: the far leg's BYE goes over the same connection.
    ua.bye();
    let bye = seen
        .recv_timeout(Duration::from_secs(5))
        .expect("no BYE over TLS");
    assert!(bye.starts_with("BYE sip:desk@127.0.0.1:"), "{bye}");
    let _ = std::fs::remove_dir_all(&s.dir);
}
