//! A real softphone as the agent: baresip registers as agent 1001 with
//! digest (over UDP, over TLS trusting the test's CA, and over TLS with
//! SRTP mandatory), auto-answers the queued caller, and hears the caller's
//! own audio (its sndfile module records what it heard); the caller hears
//! the agent's audio back. And baresip as a caller over TLS and SRTP.

mod common;

use std::time::Duration;

use common::baresip::{self, assert_callers_audio, best_correlation, decoded, greeting};
use common::{keys_scenario_with, rtp_sink, sipp, Engine};

/// How the phone reaches the engine.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Link {
    Udp,
    Tls,
    /// TLS, and SRTP mandatory on both sides (`mediaenc=srtp-mand`,
    /// `media-encryption: required`).
    TlsSrtp,
}

#[test]
fn baresip_takes_a_queued_call_and_hears_the_caller() {
    baresip_takes_a_queued_call(Link::Udp);
}

#[test]
fn baresip_registered_over_tls_takes_a_queued_call_on_its_connection() {
    baresip_takes_a_queued_call(Link::Tls);
}

#[test]
fn baresip_over_tls_with_mandatory_srtp_takes_a_queued_call_and_both_hear() {
    baresip_takes_a_queued_call(Link::TlsSrtp);
}

/// The engine's certificate for 127.0.0.1 in `dir`, from a CA the phone
/// trusts: (the `sip.tls` config, the phone's `sip_cafile` line).
fn tls_setup(dir: &std::path::Path, tls_port: u16) -> (String, String) {
    let ca = common::certs::ca(&dir.join("certs"), "agents-ca");
    let cert = common::certs::leaf(&dir.join("certs"), &ca, "engine", &["127.0.0.1"]);
    (
        format!(
            "sip: {{ tls: {{ listen: '127.0.0.1:{tls_port}', cert: '{}', key: '{}' }} }}\n",
            cert.0.display(),
            cert.1.display()
        ),
        format!("sip_cafile {}\n", ca.0.display()),
    )
}

/// The counter's value in the engine's `/metrics` (0 when absent).
fn metric(engine: &Engine, name: &str) -> f64 {
    common::metrics(engine)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

fn baresip_takes_a_queued_call(link: Link) {
    let tls = link != Link::Udp;
    let srtp = link == Link::TlsSrtp;
    let dir = std::env::temp_dir().join(format!("hotline-baresip-{}-{link:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("q.yaml"),
        "entry: q\nnodes:\n  q: { queue: support }\n",
    )
    .unwrap();
    let own = common::Ports::next();
    let (phone_port, tls_port) = (own.spare(0), own.spare(1));
    let (tls_config, phone_tls) = if tls {
        tls_setup(&dir, tls_port)
    } else {
        (String::new(), String::new())
    };
    let engine = Engine::start_with(
        "trunks:\n  - name: loopback\n    allow: [127.0.0.0/8]\n    symmetric-rtp: false\n",
        &format!(
            "flows-dir: {}\nroutes: {{ default: q }}\nqueues:\n  support: {{ announce-position: false }}\nagents:\n  - {{ id: '1001', password: 1001pass, queues: [support], auto-login: true, media-encryption: {} }}\nregistrar: {{ algorithms: [MD5] }}\n{tls_config}",
            dir.display(),
            if srtp { "required" } else { "none" }
        ),
    );
    let srtp_module = if srtp { "module srtp.so\n" } else { "" };
    baresip::configure(
        &dir,
        &format!("127.0.0.1:{phone_port}"),
        &format!("{phone_tls}{srtp_module}"),
    );
    std::fs::write(
        dir.join("conf/accounts"),
        format!(
            "<sip:1001@127.0.0.1:{}{}>;auth_user=1001;auth_pass=1001pass;answermode=auto;audio_codecs=PCMU,PCMA;regint=300{}\n",
            if tls { tls_port } else { engine.ports.sip() },
            if tls { ";transport=tls" } else { "" },
            if srtp { ";mediaenc=srtp-mand" } else { "" }
        ),
    )
    .unwrap();
    let _phone = baresip::start(&dir, 60, &[], None);
    assert!(
        engine.wait_log(
            "agent state agent=1001 state=\"available\"",
            Duration::from_secs(10)
        ),
        "baresip did not register:\n{}\n{}",
        engine.log(),
        baresip::log(&dir)
    );

    // The caller speaks for 2 s after the answer, then hangs up; baresip
    // plays the greeting prompt as the agent's voice.
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(5));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 2000, true);
    sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let report = sink.join().unwrap();
    let log = engine.log();
    assert!(log.contains("answered; caller bridged"), "{log}");
    if srtp {
        // The agent's leg is SRTP (the phone insists on it), and nothing
        // failed authentication.
        assert!(
            log.contains("srtp=Some(\"AES_CM_128_HMAC_SHA1_80\")"),
            "{log}"
        );
        assert_eq!(metric(&engine, "hotline_srtp_packets_refused_total"), 0.0);
    }
    if tls {
        // Registered over its TLS connection, and rung over it.
        assert!(log.contains(" via TLS 127.0.0.1:"), "{log}");
    }
    // The caller heard the agent: baresip's own encoding of the greeting,
    // so compared by correlation rather than byte for byte.
    let received = decoded(&report);
    assert!(
        best_correlation(&received, &greeting()) > 0.9,
        "the caller did not hear the agent's audio ({} samples)",
        received.len()
    );
    // What baresip heard is the caller's audio, sample for sample.
    assert_callers_audio(&baresip::heard(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn baresip_calling_in_over_tls_with_mandatory_srtp_hears_the_line() {
    let dir = std::env::temp_dir().join(format!("hotline-baresip-caller-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("hi.yaml"),
        // The greeting, then 8 s of silence: long enough for RTCP
        // (SRTCP) reports both ways.
        "entry: hi\nnodes:\n  hi: { play: greeting, next: wait }\n  wait: { collect: { into: k, max: 1, timeout: 8s, retries: 0 }, next: bye, exhausted: bye }\n  bye: { hangup: goodbye }\n",
    )
    .unwrap();
    let own = common::Ports::next();
    let (phone_port, tls_port) = (own.spare(0), own.spare(1));
    let (tls_config, phone_tls) = tls_setup(&dir, tls_port);
    // The carrier's trunk insists on SRTP; its calls come over TLS.
    let engine = Engine::start_with(
        "trunks:\n  - name: carrier\n    allow: [127.0.0.0/8]\n    media-encryption: required\n",
        &format!(
            "flows-dir: {}\nroutes: {{ default: hi }}\n{tls_config}",
            dir.display()
        ),
    );
    // Its voice: the greeting, then silence (it hangs up when it ends).
    let mut voice = baresip::greeting();
    voice.resize(voice.len() + 8000 * 12, 0);
    let voice_path = dir.join("voice.wav");
    hotline::media::wav::write(&voice_path, &voice, 8000).unwrap();
    baresip::configure_with_voice(
        &dir,
        &format!("127.0.0.1:{phone_port}"),
        &format!("{phone_tls}module srtp.so\n"),
        &voice_path,
    );
    std::fs::write(
        dir.join("conf/accounts"),
        "<sip:+12025550100@127.0.0.1;transport=tls>;regint=0;audio_codecs=PCMU;mediaenc=srtp-mand\n",
    )
    .unwrap();
    let dial = format!("/dial sip:100@127.0.0.1:{tls_port};transport=tls");
    let _phone = baresip::start(&dir, 15, &["-e", &dial], None);
    assert!(
        engine.wait_log("call ended", Duration::from_secs(14)),
        "the call did not run to its end:\n{}\n{}",
        engine.log(),
        baresip::log(&dir)
    );
    let log = engine.log();
    assert!(
        log.contains("srtp=Some(\"AES_CM_128_HMAC_SHA1_80\")"),
        "{log}"
    );
    // The engine took the phone's packets: authenticated, none refused.
    assert!(metric(&engine, "hotline_rtp_packets_received_total") > 50.0);
    assert_eq!(metric(&engine, "hotline_srtp_packets_refused_total"), 0.0);
    // What the phone decrypted is the line's greeting.
    // (The greeting comes first; the goodbye prompt after the wait.)
    let heard = baresip::heard(&dir);
    let first = &heard[..heard.len().min(greeting().len() + 4000)];
    assert!(
        best_correlation(first, &greeting()) > 0.9,
        "the phone did not hear the greeting ({} samples)",
        heard.len()
    );
    // RTCP both ways as SRTCP: the phone's reports authenticated, and
    // they carry a round trip, which needs the phone to have decrypted
    // one of our sender reports (its LSR is our SR's time).
    let cdrs = common::cdrs(&engine);
    let leg = &cdrs[0]["quality"][0];
    assert!(leg["reports"].as_u64() >= Some(1), "{leg}");
    assert!(leg["rtt_ms"].as_f64().is_some_and(|r| r < 100.0), "{leg}");
    assert!(leg["mos"].as_f64() >= Some(4.2), "{leg}");
    let _ = std::fs::remove_dir_all(&dir);
}
