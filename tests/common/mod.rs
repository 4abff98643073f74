//! Shared test harness: the real `hotline` binary on loopback, SIPp runs, and
//! an RTP sink. Every test gets its own block of ports.

#![allow(dead_code)]

pub mod baresip;
pub mod certs;
pub mod chromium;
pub mod desktop;
pub mod dnsmasq;
pub mod jssip;
pub mod netns;
pub mod raw;
pub mod relay;
pub mod tones;
pub mod ua;
pub mod webrtc;

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The read token the harness gives the operations API (unless a test
/// configures `http:` itself).
pub const TEST_TOKEN: &str = "test-read-token";

/// Ports of one test: SIP, SIPp's own, RTP range.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub base: u16,
}

static NEXT_BLOCK: AtomicU16 = AtomicU16::new(0);
static REGION: AtomicU16 = AtomicU16::new(10000);

impl Ports {
    /// A fresh block of 400 ports below the ephemeral range (32768+), so no
    /// outgoing connection takes one. Test binaries run one after another
    /// (cargo test), tests inside one binary in parallel.
    pub fn next() -> Ports {
        let n = NEXT_BLOCK.fetch_add(1, Ordering::SeqCst);
        Ports {
            base: REGION.load(Ordering::SeqCst) + n * 400,
        }
    }

    /// Blocks from `base` on, for a binary that runs beside the others
    /// (`scripts/test.sh` runs `session_timers` so): every test of it
    /// calls this first. The other binaries use 10000 up (at most about
    /// 30 blocks each, to 22000).
    pub fn use_region(base: u16) {
        REGION.store(base, Ordering::SeqCst);
    }
    pub fn sip(&self) -> u16 {
        self.base
    }
    /// SIPp's SIP port.
    pub fn sipp(&self, i: u16) -> u16 {
        self.base + 10 + i * 4
    }
    /// SIPp's control port.
    pub fn sipp_control(&self, i: u16) -> u16 {
        self.base + 50 + i
    }
    /// SIPp's media port (it also binds +2).
    pub fn sipp_media(&self, i: u16) -> u16 {
        self.base + 60 + i * 4
    }
    /// A port for a sink or test UA of our own.
    pub fn spare(&self, i: u16) -> u16 {
        self.base + 100 + i * 2
    }
    /// The engine's HTTP (operations API) port.
    pub fn http(&self) -> u16 {
        self.base + 190
    }
    pub fn rtp_range(&self) -> String {
        format!("{}-{}", self.base + 200, self.base + 399)
    }
}

/// The project root (where `sounds/` and `sipp-scenarios/` are).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running engine; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Engine {
    child: Option<Child>,
    pub ports: Ports,
    pub sip: SocketAddr,
    pub dir: PathBuf,
    pub log_path: PathBuf,
    /// A flows directory of the test's own (see [`Engine::with_flow`]).
    flows_dir: Option<PathBuf>,
    /// The engine's open-file limit, soft and hard (unset: inherited).
    nofile: Option<u64>,
    /// The RTP port range, when not the test's own whole range.
    rtp_ports: Option<String>,
    /// The network namespace it runs in (unset: this one).
    netns: Option<String>,
    /// A second SIP address, of the other family (dual stack).
    pub sip_also: Option<SocketAddr>,
    /// Where the API listens, when not on 127.0.0.1.
    pub http_ip: Option<String>,
}

static NEXT_FLOWS: AtomicU16 = AtomicU16::new(0);

impl Engine {
    /// Starts the engine with one flow of the test's own (`flow`, YAML),
    /// which every dialled number reaches, the loopback trunk sending RTP
    /// where the SDP says (a sink of the test), and `extra` YAML appended.
    pub fn with_flow(flow: &str, extra: &str) -> Engine {
        Engine::with_flows(&[("main", flow)], extra)
    }

    /// As [`Engine::with_flow`], with several flows (name, YAML); calls
    /// reach the first.
    pub fn with_flows(flows: &[(&str, &str)], extra: &str) -> Engine {
        Engine::with_flows_and_trunks(
            flows,
            "trunks:\n  - name: loopback\n    allow: [127.0.0.0/8]\n    symmetric-rtp: false\n",
            extra,
        )
    }

    /// As [`Engine::with_flows`], with a `trunks:` section of the test's own.
    pub fn with_flows_and_trunks(flows: &[(&str, &str)], trunks: &str, extra: &str) -> Engine {
        let dir = std::env::temp_dir().join(format!(
            "hotline-flows-{}-{}",
            std::process::id(),
            NEXT_FLOWS.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, flow) in flows {
            std::fs::write(dir.join(format!("{name}.yaml")), flow).unwrap();
        }
        let first = flows.first().map_or("main", |(name, _)| *name);
        let mut engine = Engine::start_with(
            trunks,
            &format!(
                "flows-dir: {}\nroutes: {{ default: {first} }}\n{extra}",
                dir.display()
            ),
        );
        engine.flows_dir = Some(dir);
        engine
    }

    /// Starts the engine with the loopback trunk and `extra` YAML appended.
    pub fn start(extra: &str) -> Engine {
        Engine::start_with(
            "trunks:\n  - name: loopback\n    allow: [127.0.0.0/8]\n",
            extra,
        )
    }

    /// Starts the engine with the given trunks section and extra YAML.
    pub fn start_with(trunks: &str, extra: &str) -> Engine {
        Engine::start_at("127.0.0.1", trunks, extra)
    }

    /// As [`Engine::start_with`], with SIP listening on `ip` (an address of
    /// a test's own veth, say; `extra` may bind RTP there too).
    pub fn start_at(ip: &str, trunks: &str, extra: &str) -> Engine {
        let mut engine = Engine::prepare(ip, trunks, extra);
        engine.spawn();
        engine
    }

    /// The engine's directory and config, not started yet.
    fn prepare(ip: &str, trunks: &str, extra: &str) -> Engine {
        let ports = Ports::next();
        let dir = std::env::temp_dir().join(format!(
            "hotline-test-{}-{}",
            std::process::id(),
            ports.base
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // The shipped flows and what they need, unless the test brings its own;
        // calls go to the key-test line, which speaks back each digit.
        let mut config = format!(
            "sounds-dir: {}\ndata-dir: {}\n{trunks}",
            root().join("sounds").display(),
            dir.join("data").display(),
        );
        let defaults = [
            ("flows-dir:", format!("flows-dir: {}\n", root().join("ivr-flows").display())),
            ("routes:", "routes:\n  default: echo\n".to_owned()),
            (
                "schedules:",
                "schedules:\n  support-hours:\n    time-zone: UTC\n    weekly: { daily: 00:00-24:00 }\n".to_owned(),
            ),
            ("queues:", "queues: { sales: {}, support: {}, operator: {} }\n".to_owned()),
            // A read token, so tests can see what an operator sees.
            (
                "http:",
                format!("http: {{ tokens: [{{ name: test, token: {TEST_TOKEN}, role: read }}] }}\n"),
            ),
        ];
        for (key, text) in defaults {
            if !extra.lines().any(|l| l.starts_with(key)) {
                config.push_str(&text);
            }
        }
        config.push_str(extra);
        let config_path = dir.join("hotline.yaml");
        std::fs::write(&config_path, config).unwrap();
        let log_path = dir.join("hotline.log");
        std::fs::File::create(&log_path).unwrap();
        let sip = SocketAddr::new(ip.parse().unwrap(), ports.sip());
        Engine {
            child: None,
            ports,
            sip,
            dir,
            log_path,
            flows_dir: None,
            nofile: None,
            rtp_ports: None,
            netns: None,
            sip_also: None,
            http_ip: None,
        }
    }

    /// A dual-stack engine: SIP on 127.0.0.1 and [::1] (the same port),
    /// with `extra` YAML (its `rtp.bind` for both families).
    pub fn start_dual_stack(trunks: &str, extra: &str) -> Engine {
        let mut engine = Engine::prepare("127.0.0.1", trunks, extra);
        engine.sip_also = Some(SocketAddr::new("::1".parse().unwrap(), engine.sip.port()));
        engine.spawn();
        engine
    }

    /// As [`Engine::start_at`], inside the network namespace `netns` (its
    /// HTTP API is then out of the test's reach; its log is not).
    pub fn start_in_netns(netns: &str, ip: &str, trunks: &str, extra: &str) -> Engine {
        let mut engine = Engine::prepare(ip, trunks, extra);
        engine.netns = Some(netns.to_owned());
        engine.spawn();
        engine
    }

    /// As [`Engine::start_in_netns`], with the API and the pages on `ip`
    /// too (not on the namespace's loopback): reached from this namespace.
    pub fn start_in_netns_serving(netns: &str, ip: &str, trunks: &str, extra: &str) -> Engine {
        let mut engine = Engine::prepare(ip, trunks, extra);
        engine.netns = Some(netns.to_owned());
        engine.http_ip = Some(ip.to_owned());
        engine.spawn();
        engine
    }

    /// Sends the engine SIGHUP and waits for `logged`.
    pub fn hang_up_signal(&self, logged: &str) {
        let pid = self.pid().unwrap().to_string();
        let sent = Command::new("kill").args(["-HUP", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()));
        assert!(
            self.wait_log(logged, Duration::from_secs(5)),
            "{}",
            self.log()
        );
    }

    /// Starts the engine again on only `count` RTP ports of its range.
    pub fn restart_with_rtp_ports(&mut self, count: u16) {
        self.terminate_now();
        let first = self.ports.base + 200;
        self.rtp_ports = Some(format!("{first}-{}", first + 2 * count - 1));
        self.spawn();
    }

    /// As [`Engine::start`], with the engine's open-file limit (soft and
    /// hard) set to `nofile`.
    pub fn start_with_open_files(extra: &str, nofile: u64) -> Engine {
        let mut engine = Engine::start(extra);
        engine.terminate_now();
        engine.nofile = Some(nofile);
        engine.spawn();
        engine
    }

    /// Ends the engine at once (SIGKILL).
    fn terminate_now(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the binary with the engine's config, its log appended to the
    /// same file, and waits until it is ready.
    fn spawn(&mut self) {
        let from = self.log().len();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_hotline")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_hotline")),
        };
        if let Some(n) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs here.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .arg("run")
            .arg("--config")
            .arg(self.dir.join("hotline.yaml"))
            .arg("--sip-listen")
            .arg(self.sip.to_string())
            .args(
                self.sip_also
                    .iter()
                    .flat_map(|a| ["--sip-listen".to_owned(), a.to_string()]),
            )
            .arg("--rtp-ports")
            .arg(
                self.rtp_ports
                    .clone()
                    .unwrap_or_else(|| self.ports.rtp_range()),
            )
            .arg("--http-listen")
            .arg(format!(
                "{}:{}",
                self.http_ip.as_deref().unwrap_or("127.0.0.1"),
                self.ports.http()
            ))
            .env("HOTLINE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start the hotline binary");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(20);
        while !self.log()[from..].contains("hotline ready") {
            assert!(
                Instant::now() < until,
                "engine did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the engine (SIGKILL: no shutdown of any kind) and starts it
    /// again with the same config, ports and data directory.
    pub fn crash_and_restart(&mut self) {
        self.terminate_now();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Sends SIGTERM and waits for the exit (at most `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(flows) = &self.flows_dir {
            let _ = std::fs::remove_dir_all(flows);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("engine log kept at {}", self.log_path.display());
        }
    }
}

/// Panics with the install command when a tool the tests need is missing:
/// real-peer tests are never skipped silently.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is needed by this test: apt-get install -y {package} (scripts/test.sh does it as root)"
    );
}

/// What a SIPp run printed and how it ended.
pub struct SippRun {
    pub status: ExitStatus,
    pub output: String,
}

impl SippRun {
    /// Panics with SIPp's screen unless every call succeeded.
    pub fn assert_ok(&self) {
        assert!(
            self.status.success(),
            "SIPp failed ({}):\n{}",
            self.status,
            self.tail()
        );
    }

    /// The number in SIPp's "Successful call" row (cumulative column).
    pub fn successful(&self) -> u64 {
        self.counter("Successful call")
    }

    pub fn failed(&self) -> u64 {
        self.counter("Failed call")
    }

    fn counter(&self, row: &str) -> u64 {
        self.output
            .lines()
            .rev()
            .find(|l| l.contains(row))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn tail(&self) -> String {
        let lines: Vec<&str> = self.output.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

/// Runs SIPp against the engine with a scenario file; `i` picks its ports.
pub fn sipp(engine: &Engine, i: u16, scenario: &Path, args: &[&str]) -> SippRun {
    require("sipp", "sip-tester");
    let p = engine.ports;
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(scenario)
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &p.sipp(i).to_string()])
        .args(["-mp", &p.sipp_media(i).to_string()])
        .args(["-cp", &p.sipp_control(i).to_string()])
        .args(["-nostdin", "-timeout", "90s", "-timeout_error"])
        .args(args)
        .arg(engine.sip.to_string())
        .current_dir(&engine.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("cannot start sipp");
    let mut output = String::new();
    if let Some(mut out) = child.stdout.take() {
        let mut bytes = Vec::new();
        let _ = out.read_to_end(&mut bytes);
        output.push_str(&String::from_utf8_lossy(&bytes));
    }
    if let Some(mut err) = child.stderr.take() {
        let mut bytes = Vec::new();
        let _ = err.read_to_end(&mut bytes);
        output.push_str(&String::from_utf8_lossy(&bytes));
    }
    let status = child.wait().expect("sipp did not run");
    SippRun { status, output }
}

/// A shipped scenario, as is.
pub fn scenario(name: &str) -> PathBuf {
    root().join("sipp-scenarios").join(name)
}

/// A shipped scenario whose SDP names `port` as the caller's media port, so
/// a sink of ours receives what the engine sends to SIPp's callers.
pub fn scenario_to_sink(engine: &Engine, name: &str, port: u16) -> PathBuf {
    let text = std::fs::read_to_string(scenario(name)).unwrap();
    assert!(text.contains("m=audio [media_port]"));
    let text = text.replace("m=audio [media_port]", &format!("m=audio {port}"));
    let path = engine.dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Packets an RTP sink received, by sender.
pub struct SinkReport {
    pub by_source: HashMap<SocketAddr, Vec<(Instant, Vec<u8>)>>,
}

/// Receives RTP on `port` for `duration` (bounded) in a thread.
pub fn rtp_sink(port: u16, duration: Duration) -> std::thread::JoinHandle<SinkReport> {
    let socket = UdpSocket::bind(("127.0.0.1", port)).expect("sink port busy");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::thread::spawn(move || {
        let until = Instant::now() + duration;
        let mut by_source: HashMap<SocketAddr, Vec<(Instant, Vec<u8>)>> = HashMap::new();
        let mut buf = [0u8; 2048];
        while Instant::now() < until {
            if let Ok((n, from)) = socket.recv_from(&mut buf) {
                by_source
                    .entry(from)
                    .or_default()
                    .push((Instant::now(), buf[..n].to_vec()));
            }
        }
        SinkReport { by_source }
    })
}

/// The digits the engine reported, in order, from its log.
pub fn digits_reported(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("digit received"))
        .filter_map(|l| l.split(" digit=").nth(1))
        .filter_map(|rest| rest.chars().next())
        .collect()
}

/// How many of `prompt`'s frames match `payloads` in a row from `start`.
pub fn prompt_run(
    payloads: &[&[u8]],
    start: usize,
    prompt: &hotline::media::Prompt,
    codec: hotline::sdp::Codec,
) -> usize {
    (0..prompt.frames())
        .take_while(|&i| payloads.get(start + i) == Some(&prompt.frame(codec, i)))
        .count()
}

/// How many frames of `prompt` match `payloads` in a row from `start`,
/// starting anywhere in the prompt and wrapping: hold music is one shared
/// stream, so a caller joins it wherever it is.
pub fn music_run(
    payloads: &[&[u8]],
    start: usize,
    prompt: &hotline::media::Prompt,
    codec: hotline::sdp::Codec,
) -> usize {
    let n = prompt.frames();
    let Some(first) = payloads.get(start) else {
        return 0;
    };
    (0..n)
        .filter(|&o| prompt.frame(codec, o) == *first)
        .map(|o| {
            (0..)
                .take_while(|&i| payloads.get(start + i) == Some(&prompt.frame(codec, (o + i) % n)))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Whether the caller heard `names` spoken one after another. Each prompt
/// counts once `min_run` of its frames (or all, if shorter) arrived in a row,
/// since the next key press may cut it short. Music (`music/…`) may be
/// joined anywhere in its loop.
pub fn spoken_in_order(
    payloads: &[&[u8]],
    cache: &hotline::media::PromptCache,
    names: &[String],
    codec: hotline::sdp::Codec,
    min_run: usize,
) -> Result<(), String> {
    let mut pos = 0;
    for name in names {
        let prompt = cache.get(name).ok_or(format!("no prompt {name}"))?;
        let need = min_run.min(prompt.frames());
        let run = |s| {
            if name.starts_with("music/") {
                music_run(payloads, s, &prompt, codec)
            } else {
                prompt_run(payloads, s, &prompt, codec)
            }
        };
        let start = (pos..payloads.len())
            .find(|&s| run(s) >= need)
            .ok_or_else(|| {
                let best = (pos..payloads.len()).map(run).max().unwrap_or(0);
                format!("{name} not heard after packet {pos} (longest run {best})")
            })?;
        pos = start + need;
    }
    Ok(())
}

/// The RTP payloads a sink received from its busiest sender (one call).
pub fn payloads_of_busiest(report: &SinkReport) -> Vec<Vec<u8>> {
    report
        .by_source
        .values()
        .max_by_key(|p| p.len())
        .map(|p| {
            p.iter()
                .filter_map(|(_, bytes)| {
                    hotline::media::rtp::parse(bytes).map(|(_, pl)| pl.to_vec())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A SIPp caller that dials `service`, presses `keys` as SIP INFO (each after
/// its pause in ms, counted from the previous key or the answer), stays on
/// the line `tail_ms` more, then hangs up. Its SDP names `port` as the
/// caller's media port, so a sink there hears what the engine plays.
pub fn keys_scenario(
    engine: &Engine,
    name: &str,
    port: u16,
    keys: &[(u64, char)],
    tail_ms: u64,
) -> PathBuf {
    keys_scenario_with(engine, name, port, keys, tail_ms, false)
}

/// As [`keys_scenario`]; with `speak`, the caller also streams audio (SIPp's
/// `rtp_stream` of `sipp-scenarios/load-audio.ulaw`, looped) from the answer on.
pub fn keys_scenario_with(
    engine: &Engine,
    name: &str,
    port: u16,
    keys: &[(u64, char)],
    tail_ms: u64,
    speak: bool,
) -> PathBuf {
    let header = |method: &str, cseq: u32| {
        format!(
            "      {method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0\n      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport\n      From: \"SIPp caller\" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]\n      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]\n      Call-ID: [call_id]\n      CSeq: {cseq} {method}\n      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>\n      Max-Forwards: 70\n"
        )
    };
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<!DOCTYPE scenario SYSTEM \"sipp.dtd\">\n<scenario name=\"keys\">\n");
    xml.push_str(&format!(
        "  <send retrans=\"500\"><![CDATA[\n\n{}      Content-Type: application/sdp\n      Content-Length: [len]\n\n      v=0\n      o=sipp 1 1 IN IP4 127.0.0.1\n      s=-\n      c=IN IP4 127.0.0.1\n      t=0 0\n      m=audio {port} RTP/AVP 0 101\n      a=rtpmap:0 PCMU/8000\n      a=rtpmap:101 telephone-event/8000\n\n]]></send>\n",
        header("INVITE", 1).replace("[peer_tag_param]", "")
    ));
    xml.push_str("  <recv response=\"100\" optional=\"true\"/>\n  <recv response=\"180\" optional=\"true\"/>\n  <recv response=\"200\" rtd=\"true\"/>\n");
    xml.push_str(&format!(
        "  <send><![CDATA[\n\n{}      Content-Length: 0\n\n]]></send>\n",
        header("ACK", 1)
    ));
    if speak {
        xml.push_str(&format!(
            "  <nop><action><exec rtp_stream=\"{},-1,0\"/></action></nop>\n",
            scenario("load-audio.ulaw").display()
        ));
    }
    for (i, (pause, key)) in keys.iter().enumerate() {
        let cseq = 2 + i as u32;
        xml.push_str(&format!(
            "  <pause milliseconds=\"{pause}\"/>\n  <send retrans=\"500\"><![CDATA[\n\n{}      Content-Type: application/dtmf-relay\n      Content-Length: [len]\n\n      Signal={key}\n      Duration=160\n\n]]></send>\n  <recv response=\"200\"/>\n",
            header("INFO", cseq)
        ));
    }
    xml.push_str(&format!(
        "  <pause milliseconds=\"{tail_ms}\"/>\n  <send retrans=\"500\"><![CDATA[\n\n{}      Content-Length: 0\n\n]]></send>\n  <recv response=\"200\" crlf=\"true\"/>\n</scenario>\n",
        header("BYE", 2 + keys.len() as u32)
    ));
    let path = engine.dir.join(name);
    std::fs::write(&path, xml).unwrap();
    path
}

/// The prompts the caller heard, in order, checked against `names` (each
/// counted once `min_run` frames of it arrived in a row).
pub fn assert_heard(report: &SinkReport, names: &[&str], min_run: usize) {
    let cache = hotline::media::PromptCache::load_dir(&root().join("sounds")).unwrap();
    let heard = payloads_of_busiest(report);
    let heard: Vec<&[u8]> = heard.iter().map(Vec::as_slice).collect();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    if let Err(e) = spoken_in_order(&heard, &cache, &names, hotline::sdp::Codec::Pcmu, min_run) {
        panic!(
            "the caller did not hear {names:?}: {e} ({} packets)",
            heard.len()
        );
    }
}

/// A SIPp of its own on `port` (control `port + 1`, media `port + 2`) for
/// one call, running in the background: an agent's phone, a transfer
/// target. `remote` is where it sends to, if it starts the call.
pub fn sipp_side(args: &[&str], port: u16, remote: Option<&str>) -> Child {
    sipp_side_calls(args, port, remote, 1)
}

/// As [`sipp_side`], for `calls` calls one after another.
pub fn sipp_side_calls(args: &[&str], port: u16, remote: Option<&str>, calls: u32) -> Child {
    require("sipp", "sip-tester");
    let mut cmd = Command::new("sipp");
    cmd.args(args)
        .args([
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args([
            "-mp",
            &(port + 2).to_string(),
            "-cp",
            &(port + 1).to_string(),
        ])
        .args([
            "-m",
            &calls.to_string(),
            "-nostdin",
            "-timeout",
            "60s",
            "-timeout_error",
        ]);
    if let Some(r) = remote {
        cmd.arg(r);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start sipp")
}

/// Waits for a background SIPp: whether its call succeeded, and what it printed.
pub fn finish(mut child: Child) -> (bool, String) {
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut out);
    }
    (child.wait().map(|s| s.success()).unwrap_or(false), out)
}

/// Registers agent `id` (password `IDpass`) with digest from `port`, as a
/// phone there would; SIPp exits, so the phone's own SIPp can take the port.
pub fn register_phone(engine: &Engine, id: &str, port: u16) {
    let sip = engine.sip.to_string();
    let reg = sipp_side(
        &[
            "-sf",
            &scenario("agent-register.xml").display().to_string(),
            "-s",
            id,
            "-au",
            id,
            "-ap",
            &format!("{id}pass"),
        ],
        port,
        Some(&sip),
    );
    let (ok, out) = finish(reg);
    assert!(ok, "registration of {id} from {port} failed:\n{out}");
}

/// As [`register_phone`], then waits until the engine has the agent's contacts.
pub fn register(engine: &Engine, id: &str, port: u16) {
    register_phone(engine, id, port);
    assert!(
        engine.wait_log(
            &format!("agent contacts agent={id}"),
            Duration::from_secs(3)
        ),
        "{}",
        engine.log()
    );
}

/// `hotline report` on the engine's config with `args` (`--since 10m`,
/// ...), as JSON.
pub fn report_json(engine: &Engine, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_hotline"))
        .args(["report", "--config"])
        .arg(engine.dir.join("hotline.yaml"))
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// An agent's phone as [`phone`] (echoing), whose SIP messages SIPp
/// writes to `messages`.
pub fn traced_phone(name: &str, port: u16, messages: &Path) -> Child {
    let sf = scenario(name).display().to_string();
    let file = messages.display().to_string();
    sipp_side(
        &[
            "-sf",
            &sf,
            "-rtp_echo",
            "-trace_msg",
            "-message_file",
            &file,
        ],
        port,
        None,
    )
}

/// An agent's phone: SIPp running `name` (from `sipp-scenarios/`) on
/// `port`, echoing the audio it gets with `echo`.
pub fn phone(name: &str, port: u16, echo: bool) -> Child {
    let sf = scenario(name).display().to_string();
    let mut args = vec!["-sf", sf.as_str()];
    if echo {
        args.push("-rtp_echo");
    }
    sipp_side(&args, port, None)
}

/// Rewrites a [`keys_scenario`] so that, instead of hanging up, the caller
/// waits (up to 30 s) for the engine's BYE and answers it.
pub fn wait_for_bye(scenario: &Path) {
    let text = std::fs::read_to_string(scenario).unwrap();
    let cut = text
        .rfind("  <pause milliseconds=")
        .expect("a keys scenario ends with a pause and a BYE");
    std::fs::write(
        scenario,
        format!(
            "{}  <recv request=\"BYE\" timeout=\"30000\"/>\n  <send><![CDATA[\n\n      SIP/2.0 200 OK\n      [last_Via:]\n      [last_From:]\n      [last_To:]\n      [last_Call-ID:]\n      [last_CSeq:]\n      Content-Length: 0\n\n]]></send>\n</scenario>\n",
            &text[..cut]
        ),
    )
    .unwrap();
}

/// A GET to the engine's operations API with the harness's read token:
/// (status, body). Plain HTTP/1.1 over a socket, bounded in time.
pub fn api_get(engine: &Engine, path: &str) -> (u16, String) {
    api_request(engine, "GET", path, TEST_TOKEN, "")
}

/// As [`api_get`], with `token`.
pub fn api_get_as(engine: &Engine, path: &str, token: &str) -> (u16, String) {
    api_request(engine, "GET", path, token, "")
}

/// The engine's Prometheus text (`/metrics`), whole: [`api_get`] keeps
/// only a JSON body's outer object, which would cut label braces.
pub fn metrics(engine: &Engine) -> String {
    http_exchange(engine, "GET", "/metrics", TEST_TOKEN, "").1
}

/// A POST to the engine's operations API with `token`: (status, body).
pub fn api_post(engine: &Engine, path: &str, token: &str, body: &str) -> (u16, String) {
    api_request(engine, "POST", path, token, body)
}

/// One request: (status, everything after the head).
fn http_exchange(
    engine: &Engine,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, String) {
    let auth = format!("Authorization: Bearer {token}\r\n");
    let (status, _, body) = raw_http(engine, method, path, &auth, body);
    (status, body)
}

/// One HTTP/1.1 request to the engine's API port with extra `headers`
/// (each ending in CRLF) and a JSON `body`: (status, head, body).
pub fn raw_http(
    engine: &Engine,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (u16, String, String) {
    use std::io::Write as _;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", engine.ports.http())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_owned(), body.to_owned())
}

/// One request with a JSON body: (status, the body's outer JSON object).
fn api_request(
    engine: &Engine,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> (u16, String) {
    let (status, body) = http_exchange(engine, method, path, token, body);
    let body = body.as_str();
    // Chunked bodies: the JSON is the chunk between the size lines.
    let body = match (body.find(['{', '[']), body.rfind(['}', ']'])) {
        (Some(a), Some(b)) if b >= a => &body[a..=b],
        _ => body,
    };
    (status, body.to_owned())
}

/// An agent as the operations API shows it: (state, pause reason).
pub fn agent_state(engine: &Engine, id: &str) -> (String, Option<String>) {
    let (status, body) = api_get(engine, &format!("/api/agents/{id}"));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    (
        v["state"].as_str().unwrap_or_default().to_owned(),
        v["reason"].as_str().map(str::to_owned),
    )
}

/// Waits (up to `timeout`) until the API shows agent `id` in `state`.
pub fn wait_agent_state(engine: &Engine, id: &str, state: &str, timeout: Duration) {
    let until = Instant::now() + timeout;
    loop {
        let (now, _) = agent_state(engine, id);
        if now == state {
            return;
        }
        assert!(
            Instant::now() < until,
            "agent {id} is {now}, not {state}:\n{}",
            engine.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The call records, as an operator reads them from the API (waiting up
/// to 3 s for the first).
pub fn cdrs(engine: &Engine) -> Vec<serde_json::Value> {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let (status, body) = api_get(engine, "/api/cdrs?since=1h");
        assert_eq!(status, 200, "{body}");
        let v: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        if !v.is_empty() || Instant::now() > until {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A web server of the test's own: records each POST (path, JSON body);
/// answers the first request to `fail_first` with 500, the rest with 200.
pub fn webhook_receiver(
    port: u16,
    fail_first: &str,
) -> std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>> {
    use std::io::{BufRead, BufReader, Read, Write};
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (seen, fail_first) = (got.clone(), fail_first.to_owned());
    std::thread::spawn(move || {
        let mut failed = false;
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut length = 0;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let fail = path == fail_first && !failed;
            failed |= fail;
            let status = if fail { "500 Oops" } else { "200 OK" };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            seen.lock().unwrap().push((
                path,
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            ));
        }
    });
    got
}
