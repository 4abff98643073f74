//! baresip as a real softphone in tests: its config, a process that ends
//! with the test, and what its `sndfile` module recorded of a call.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running baresip, killed when dropped.
pub struct Baresip(Child);

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes `dir/conf/config`: listening on `listen`, speaking the greeting
/// prompt as its voice, recording what it hears into `dir/rec`, with G.711
/// and whatever `extra` lines (`sip_cafile`, `module srtp.so`, ...).
pub fn configure(dir: &Path, listen: &str, extra: &str) {
    configure_with_voice(
        dir,
        listen,
        extra,
        &super::root().join("sounds/greeting.wav"),
    );
}

/// As [`configure`], speaking `voice` (an 8 kHz 16-bit WAV; baresip hangs
/// up when it ends).
pub fn configure_with_voice(dir: &Path, listen: &str, extra: &str, voice: &Path) {
    super::require("baresip", "baresip-core");
    std::fs::create_dir_all(dir.join("conf")).unwrap();
    std::fs::create_dir_all(dir.join("rec")).unwrap();
    std::fs::write(
        dir.join("conf/config"),
        format!(
            "sip_listen {listen}\n{extra}audio_source aufile,{}\naudio_player aufile,/dev/null\naudio_alert aufile,/dev/null\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule sndfile.so\nmodule account.so\nmodule menu.so\nsnd_path {}\n",
            voice.display(),
            dir.join("rec").display()
        ),
    )
    .unwrap();
}

/// Starts baresip on `dir/conf` for at most `seconds`, with `args` more
/// (`-e /dial ...`), its output in `dir/baresip.log`; `netns`: inside it.
pub fn start(dir: &Path, seconds: u32, args: &[&str], netns: Option<&str>) -> Baresip {
    let log = std::fs::File::create(dir.join("baresip.log")).unwrap();
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "baresip"]);
            c
        }
        None => Command::new("baresip"),
    };
    let child = cmd
        .args(["-4", "-f"])
        .arg(dir.join("conf"))
        .args(["-t", &seconds.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("cannot start baresip");
    Baresip(child)
}

/// What baresip logged.
pub fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("baresip.log")).unwrap_or_default()
}

/// What baresip heard (decrypted, decoded): its `-dec.wav` recording.
pub fn heard(dir: &Path) -> Vec<i16> {
    std::thread::sleep(Duration::from_millis(500));
    let file = std::fs::read_dir(dir.join("rec"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .expect("baresip recorded nothing");
    hotline::media::prompt::decode_file(&file).unwrap()
}

/// The greeting prompt baresip speaks, decoded.
pub fn greeting() -> Vec<i16> {
    hotline::media::prompt::decode_file(&super::root().join("sounds/greeting.wav")).unwrap()
}

/// Asserts `heard` is the SIPp caller's audio (`load-audio.ulaw`), sample
/// for sample (G.711 relayed unchanged): most loud stretches of it appear
/// in the caller's file.
pub fn assert_callers_audio(heard: &[i16]) {
    let spoken: Vec<i16> = std::fs::read(super::scenario("load-audio.ulaw"))
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
        "the phone heard silence ({} samples)",
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
        "what the phone heard is not the caller's audio"
    );
}

/// The µ-law audio an RTP sink received on its busiest stream, decoded.
pub fn decoded(report: &super::SinkReport) -> Vec<i16> {
    super::payloads_of_busiest(report)
        .iter()
        .flat_map(|p| {
            p.iter()
                .map(|&b| hotline::media::g711::ulaw_decode(b))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The best normalised correlation of a loud 400-sample stretch of `heard`
/// with any stretch of `source`: what a phone re-encoded compares so.
pub fn best_correlation(heard: &[i16], source: &[i16]) -> f64 {
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
