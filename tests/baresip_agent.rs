//! A real softphone as the agent: baresip registers as agent 1001 with
//! digest (over UDP, and over TLS trusting the test's CA), auto-answers the
//! queued caller, and hears the caller's own audio (its sndfile module
//! records what it heard); the caller hears the agent's audio back.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{keys_scenario_with, rtp_sink, sipp, Engine};

struct Baresip(Child);

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

fn baresip_takes_a_queued_call(link: Link) {
    common::require("baresip", "baresip-core");
    let tls = link != Link::Udp;
    let srtp = link == Link::TlsSrtp;
    let flows =
        std::env::temp_dir().join(format!("hotline-baresip-{}-{link:?}", std::process::id()));
    let _ = std::fs::remove_dir_all(&flows);
    std::fs::create_dir_all(flows.join("conf")).unwrap();
    std::fs::create_dir_all(flows.join("rec")).unwrap();
    std::fs::write(
        flows.join("q.yaml"),
        "entry: q\nnodes:\n  q: { queue: support }\n",
    )
    .unwrap();
    let own = common::Ports::next();
    let (phone_port, tls_port) = (own.spare(0), own.spare(1));
    // Over TLS: the engine's certificate for 127.0.0.1, from a CA the
    // phone trusts.
    let (tls_config, phone_tls) = if tls {
        let ca = common::certs::ca(&flows.join("certs"), "agents-ca");
        let cert = common::certs::leaf(&flows.join("certs"), &ca, "engine", &["127.0.0.1"]);
        (
            format!(
                "sip: {{ tls: {{ listen: '127.0.0.1:{tls_port}', cert: '{}', key: '{}' }} }}\n",
                cert.0.display(),
                cert.1.display()
            ),
            format!("sip_cafile {}\n", ca.0.display()),
        )
    } else {
        (String::new(), String::new())
    };
    let engine = Engine::start_with(
        "trunks:\n  - name: loopback\n    allow: [127.0.0.0/8]\n    symmetric-rtp: false\n",
        &format!(
            "flows-dir: {}\nroutes: {{ default: q }}\nqueues:\n  support: {{ announce-position: false }}\nagents:\n  - {{ id: '1001', password: 1001pass, queues: [support], auto-login: true, media-encryption: {} }}\nregistrar: {{ algorithms: [MD5] }}\n{tls_config}",
            flows.display(),
            if srtp { "required" } else { "none" }
        ),
    );
    let root = common::root();
    let srtp_module = if srtp { "module srtp.so\n" } else { "" };
    std::fs::write(
        flows.join("conf/config"),
        format!(
            "sip_listen 127.0.0.1:{phone_port}\n{phone_tls}audio_source aufile,{}\naudio_player aufile,/dev/null\naudio_alert aufile,/dev/null\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\n{srtp_module}module aufile.so\nmodule sndfile.so\nmodule account.so\nmodule menu.so\nsnd_path {}\n",
            root.join("sounds/greeting.wav").display(),
            flows.join("rec").display()
        ),
    )
    .unwrap();
    std::fs::write(
        flows.join("conf/accounts"),
        format!(
            "<sip:1001@127.0.0.1:{}{}>;auth_user=1001;auth_pass=1001pass;answermode=auto;audio_codecs=PCMU,PCMA;regint=300{}\n",
            if tls { tls_port } else { engine.ports.sip() },
            if tls { ";transport=tls" } else { "" },
            if srtp { ";mediaenc=srtp-mand" } else { "" }
        ),
    )
    .unwrap();
    let log = std::fs::File::create(flows.join("baresip.log")).unwrap();
    let _phone = Baresip(
        Command::new("baresip")
            .args(["-4", "-f"])
            .arg(flows.join("conf"))
            .args(["-t", "60"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start baresip"),
    );
    assert!(
        engine.wait_log(
            "agent state agent=1001 state=\"available\"",
            Duration::from_secs(10)
        ),
        "baresip did not register:\n{}\n{}",
        engine.log(),
        std::fs::read_to_string(flows.join("baresip.log")).unwrap_or_default()
    );

    // The caller speaks for 2 s after the answer, then hangs up; baresip
    // plays the greeting prompt as the agent's voice.
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(5));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 2000, true);
    sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let report = sink.join().unwrap();
    assert!(
        engine.log().contains("answered; caller bridged"),
        "{}",
        engine.log()
    );
    if srtp {
        // The agent's leg is SRTP (the phone insists on it), and nothing
        // failed authentication.
        let log = engine.log();
        assert!(
            log.contains("srtp=Some(\"AES_CM_128_HMAC_SHA1_80\")"),
            "{log}"
        );
        let metrics = common::metrics(&engine);
        assert!(
            !metrics
                .lines()
                .any(|l| l.starts_with("hotline_srtp_packets_refused_total ") && !l.ends_with(" 0")),
            "{metrics}"
        );
    }
    if tls {
        // Registered over its TLS connection, and rung over it.
        let log = engine.log();
        assert!(log.contains(" via TLS 127.0.0.1:"), "{log}");
    }
    // The caller heard the agent: baresip's own encoding of the greeting,
    // so compared by correlation rather than byte for byte.
    let received: Vec<i16> = common::payloads_of_busiest(&report)
        .iter()
        .flat_map(|p| {
            p.iter()
                .map(|&b| hotline::media::g711::ulaw_decode(b))
                .collect::<Vec<_>>()
        })
        .collect();
    let greeting = hotline::media::prompt::decode_file(&root.join("sounds/greeting.wav")).unwrap();
    assert!(
        best_correlation(&received, &greeting) > 0.9,
        "the caller did not hear the agent's audio ({} samples)",
        received.len()
    );

    // What baresip heard is the caller's audio, sample for sample (G.711
    // relayed unchanged): a stretch of it appears in the caller's file.
    std::thread::sleep(Duration::from_millis(500));
    let heard_file = std::fs::read_dir(flows.join("rec"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .expect("baresip recorded nothing");
    let heard = hotline::media::prompt::decode_file(&heard_file).unwrap();
    let spoken: Vec<i16> = std::fs::read(common::scenario("load-audio.ulaw"))
        .unwrap()
        .iter()
        .map(|&b| hotline::media::g711::ulaw_decode(b))
        .collect();
    let loud: Vec<usize> = (0..heard.len().saturating_sub(64))
        .step_by(800)
        .filter(|&i| heard[i..i + 64].iter().any(|s| s.abs() > 500))
        .collect();
    assert!(
        !loud.is_empty(),
        "the agent heard silence ({} samples)",
        heard.len()
    );
    let found = loud.iter().filter(|&&i| {
        let w = &heard[i..i + 64];
        spoken.windows(64).any(|s| {
            s.iter()
                .zip(w)
                .all(|(a, b)| (i32::from(*a) - i32::from(*b)).abs() <= 1)
        })
    });
    assert!(
        found.count() * 2 >= loud.len(),
        "what the agent heard is not the caller's audio"
    );
    let _ = std::fs::remove_dir_all(&flows);
}

/// The best normalised correlation of a loud 400-sample stretch of `heard`
/// with any stretch of `source`.
fn best_correlation(heard: &[i16], source: &[i16]) -> f64 {
    const N: usize = 400;
    let Some(start) = (0..heard.len().saturating_sub(N))
        .step_by(80)
        .max_by_key(|&i| {
            heard[i..i + N]
                .iter()
                .map(|s| i64::from(*s).abs())
                .sum::<i64>()
        })
    else {
        return 0.0;
    };
    let w: Vec<f64> = heard[start..start + N]
        .iter()
        .map(|&s| f64::from(s))
        .collect();
    let wn = w.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut best = 0.0f64;
    for off in 0..source.len().saturating_sub(N) {
        let s = &source[off..off + N];
        let dot: f64 = s.iter().zip(&w).map(|(a, b)| f64::from(*a) * b).sum();
        let sn = s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        if sn > 0.0 && wn > 0.0 {
            best = best.max(dot / (sn * wn));
        }
    }
    best
}

#[test]
fn baresip_calling_in_over_tls_with_mandatory_srtp_hears_the_line() {
    common::require("baresip", "baresip-core");
    let dir = std::env::temp_dir().join(format!("hotline-baresip-caller-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::create_dir_all(dir.join("rec")).unwrap();
    std::fs::write(
        dir.join("hi.yaml"),
        "entry: hi\nnodes:\n  hi: { play: greeting, next: bye }\n  bye: { hangup: goodbye }\n",
    )
    .unwrap();
    let own = common::Ports::next();
    let (phone_port, tls_port) = (own.spare(0), own.spare(1));
    let ca = common::certs::ca(&dir.join("certs"), "line-ca");
    let cert = common::certs::leaf(&dir.join("certs"), &ca, "engine", &["127.0.0.1"]);
    // The carrier's trunk insists on SRTP; its calls come over TLS.
    let engine = Engine::start_with(
        "trunks:\n  - name: carrier\n    allow: [127.0.0.0/8]\n    media-encryption: required\n",
        &format!(
            "flows-dir: {}\nroutes: {{ default: hi }}\nsip: {{ tls: {{ listen: '127.0.0.1:{tls_port}', cert: '{}', key: '{}' }} }}\n",
            dir.display(),
            cert.0.display(),
            cert.1.display()
        ),
    );
    let root = common::root();
    std::fs::write(
        dir.join("conf/config"),
        format!(
            "sip_listen 127.0.0.1:{phone_port}\nsip_cafile {}\naudio_source aufile,{}\naudio_player aufile,/dev/null\naudio_alert aufile,/dev/null\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\nmodule srtp.so\nmodule aufile.so\nmodule sndfile.so\nmodule account.so\nmodule menu.so\nsnd_path {}\n",
            ca.0.display(),
            root.join("sounds/greeting.wav").display(),
            dir.join("rec").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("conf/accounts"),
        "<sip:+12025550100@127.0.0.1;transport=tls>;regint=0;audio_codecs=PCMU;mediaenc=srtp-mand\n",
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
    let _phone = Baresip(
        Command::new("baresip")
            .args(["-4", "-f"])
            .arg(dir.join("conf"))
            .args([
                "-e",
                &format!("/dial sip:100@127.0.0.1:{tls_port};transport=tls"),
            ])
            .args(["-t", "15"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start baresip"),
    );
    assert!(
        engine.wait_log("call ended", Duration::from_secs(14)),
        "the call did not run to its end:\n{}\n{}",
        engine.log(),
        std::fs::read_to_string(dir.join("baresip.log")).unwrap_or_default()
    );
    let log = engine.log();
    assert!(
        log.contains("srtp=Some(\"AES_CM_128_HMAC_SHA1_80\")"),
        "{log}"
    );
    // The engine took the phone's packets: authenticated, none refused.
    let metrics = common::metrics(&engine);
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        value("hotline_rtp_packets_received_total") > 50.0,
        "{metrics}"
    );
    assert_eq!(
        value("hotline_srtp_packets_refused_total"),
        0.0,
        "{metrics}"
    );
    // What the phone decrypted is the line's greeting.
    std::thread::sleep(Duration::from_millis(500));
    let heard_file = std::fs::read_dir(dir.join("rec"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .expect("baresip recorded nothing");
    let heard = hotline::media::prompt::decode_file(&heard_file).unwrap();
    let greeting = hotline::media::prompt::decode_file(&root.join("sounds/greeting.wav")).unwrap();
    assert!(
        best_correlation(&heard, &greeting) > 0.9,
        "the phone did not hear the greeting ({} samples)",
        heard.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
