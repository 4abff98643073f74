//! The network's faults, in a harness of their own. Loopback hides loss,
//! jitter and reordering, and these machines have no `netem`: RTP goes
//! through a userspace impairment relay of the test's own (UDP in; dropped,
//! delayed or reordered on a seeded schedule; UDP out), SIP loss comes from
//! nftables `numgen random` rules in a network namespace the test makes
//! (named with its PID, removed even when the test fails), and a flood
//! comes from a sender of our own (SIPp cannot send 5,000 INVITEs a second
//! here; `tests/flood.rs`, alone in its binary for its ports). Needs root
//! for the namespace (CI is root).

mod common;

use std::collections::BinaryHeap;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ua::TestUa;
use common::Engine;
use hotline::media::dtmf;

/// A small seeded generator (xorshift64*): the same seed, the same faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A UDP impairment relay: what arrives on `front` goes to `to` from
/// `back`, each packet dropped with probability `loss` or delayed by a
/// uniform 0..`jitter` (so packets closer than the jitter reorder); what
/// comes back to `back` goes to the last sender on `front` at once.
struct Relay {
    front: SocketAddr,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(PartialEq, Eq)]
struct Due(Instant, u64, Vec<u8>);

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.0, other.1).cmp(&(self.0, self.1))
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Relay {
    fn start(to: SocketAddr, loss: f64, jitter: Duration, seed: u64) -> Relay {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        front.set_nonblocking(true).unwrap();
        back.set_nonblocking(true).unwrap();
        let addr = front.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let (stop2, dropped2) = (stop.clone(), dropped.clone());
        let thread = std::thread::spawn(move || {
            let mut rng = Rng(seed | 1);
            let mut queue = BinaryHeap::new();
            let mut sender: Option<SocketAddr> = None;
            let mut buf = [0u8; 2048];
            let mut n = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let mut idle = true;
                while let Ok((len, from)) = front.recv_from(&mut buf) {
                    idle = false;
                    sender = Some(from);
                    if rng.unit() < loss {
                        dropped2.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let delay = jitter.mul_f64(rng.unit());
                    n += 1;
                    queue.push(Due(Instant::now() + delay, n, buf[..len].to_vec()));
                }
                while let Ok((len, _)) = back.recv_from(&mut buf) {
                    idle = false;
                    if let Some(s) = sender {
                        let _ = front.send_to(&buf[..len], s);
                    }
                }
                let now = Instant::now();
                while queue.peek().is_some_and(|d: &Due| d.0 <= now) {
                    let Due(_, _, bytes) = queue.pop().unwrap();
                    let _ = back.send_to(&bytes, to);
                }
                if idle {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
        });
        Relay {
            front: addr,
            stop,
            dropped,
            thread: Some(thread),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A flow that collects 10 × 20 digits into `d0`..`d9` and hangs up.
fn collect_flow() -> String {
    let mut flow = String::from("entry: c0\nnodes:\n");
    for i in 0..10 {
        let next = if i == 9 {
            "bye".to_owned()
        } else {
            format!("c{}", i + 1)
        };
        flow.push_str(&format!(
            "  c{i}: {{ collect: {{ into: d{i}, max: 20, end: none, timeout: 20s, inter-digit-timeout: 10s }}, next: {next}, exhausted: {next} }}\n"
        ));
    }
    flow.push_str("  bye: { hangup: goodbye }\n");
    flow
}

/// Keys with no key twice in a row, so a key counted twice shows.
fn keys(n: usize, seed: u64) -> Vec<char> {
    let all: Vec<char> = "0123456789*#".chars().collect();
    let mut rng = Rng(seed);
    let mut out: Vec<char> = Vec::with_capacity(n);
    while out.len() < n {
        let k = all[(rng.next() % 12) as usize];
        if out.last() != Some(&k) {
            out.push(k);
        }
    }
    out
}

/// `got` must be what was `sent` with some keys missing, none added:
/// returns how many were missing.
fn missing(sent: &[char], got: &str) -> usize {
    let mut it = sent.iter();
    for g in got.chars() {
        assert!(
            it.any(|s| *s == g),
            "a key that was not sent, or counted twice: sent {} got {got}",
            sent.iter().collect::<String>()
        );
    }
    sent.len() - got.chars().count()
}

/// The digits the flow collected, from the call's record (as an operator
/// reads it from the API).
fn collected(engine: &Engine) -> String {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = common::api_get(engine, "/api/cdrs?since=1h");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if let Some(c) = v.as_array().and_then(|a| a.last()) {
            return (0..10)
                .filter_map(|i| c["vars"][format!("d{i}")].as_str().map(str::to_owned))
                .collect();
        }
        assert!(Instant::now() < until, "no call record: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn digits_survive_a_lossy_jittery_path_and_none_is_counted_twice() {
    let engine = Engine::with_flow(&collect_flow(), "");
    let p = engine.ports;

    // RFC 4733: 200 keys over 5 % loss and 30 ms of jitter.
    let mut ua = TestUa::call(engine.sip, p.spare(0), p.spare(1), "100", "0 101");
    let relay = Relay::start(ua.engine_rtp, 0.05, Duration::from_millis(30), 4733);
    ua.engine_rtp = relay.front;
    // A second of audio first: the engine learns the relay's port.
    ua.send_pcmu(&vec![0i16; 8000]);
    let sent = keys(200, 7);
    for &k in &sent {
        ua.press_rfc4733(k);
        ua.send_pcmu(&vec![0i16; 320]);
    }
    assert!(
        ua.expect_bye(Duration::from_secs(15)),
        "the flow did not end"
    );
    let got = collected(&engine);
    let lost = missing(&sent, &got);
    assert!(
        relay.dropped.load(Ordering::Relaxed) > 50,
        "the relay dropped too little to test anything"
    );
    assert!(
        lost <= 2,
        "{lost} of 200 RFC 4733 keys missed (at most 1 %)"
    );
    drop(relay);

    // In-band: 100 tones over 1 % loss.
    let engine = Engine::with_flow(&collect_flow().replace("max: 20", "max: 10"), "");
    let p = engine.ports;
    let mut ua = TestUa::call(engine.sip, p.spare(0), p.spare(1), "100", "0");
    let relay = Relay::start(ua.engine_rtp, 0.01, Duration::ZERO, 1);
    ua.engine_rtp = relay.front;
    ua.send_pcmu(&vec![0i16; 8000]);
    let sent = keys(100, 11);
    let mut audio = Vec::new();
    for &k in &sent {
        audio.extend(dtmf::synthesize(k, 80, 12000.0));
        audio.extend(vec![0i16; 640]);
    }
    ua.send_pcmu(&audio);
    assert!(
        ua.expect_bye(Duration::from_secs(15)),
        "the flow did not end"
    );
    let got = collected(&engine);
    let lost = missing(&sent, &got);
    assert!(lost <= 2, "{lost} of 100 in-band keys missed (at most 2 %)");
}

/// A network namespace with a veth pair to this one, removed on drop
/// (with its nftables rules, which live in it).
struct Netns {
    name: String,
    pub host_ip: String,
    pub inside_ip: String,
}

fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let pid = std::process::id();
        let name = format!("hl{tag}{pid}");
        // A /30 of 10.200.0.0/16 per test process and tag.
        let n = (pid % 8000) * 2 + u32::from(tag == "b");
        let (a, b) = (n / 64, (n % 64) * 4);
        let host_ip = format!("10.200.{a}.{}", b + 1);
        let inside_ip = format!("10.200.{a}.{}", b + 2);
        let ns = Netns {
            name: name.clone(),
            host_ip: host_ip.clone(),
            inside_ip: inside_ip.clone(),
        };
        let (h, i) = (format!("{name}h"), format!("{name}i"));
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        sh(&format!("ip netns add {name}"));
        sh(&format!("ip link add {h} type veth peer name {i}"));
        sh(&format!("ip link set {i} netns {name}"));
        sh(&format!(
            "ip addr add {host_ip}/30 dev {h} && ip link set {h} up"
        ));
        sh(&format!(
            "ip netns exec {name} sh -c 'ip addr add {inside_ip}/30 dev {i} && ip link set {i} up && ip link set lo up'"
        ));
        ns
    }

    fn host_dev(&self) -> String {
        format!("{}h", self.name)
    }

    fn inside_dev(&self) -> String {
        format!("{}i", self.name)
    }

    /// The name of this test's nftables table in the host's namespace.
    fn table(&self) -> String {
        format!("hotline_{}", self.name)
    }

    fn exec(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Only this test's own table: never a whole ruleset.
        let _ = Command::new("nft")
            .args(["delete", "table", "netdev", &self.table()])
            .output();
        // The veth pair and the namespace's rules go with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}h", self.name)])
            .output();
    }
}

#[test]
fn a_hundred_calls_over_sip_with_ten_percent_loss_all_succeed() {
    common::require("nft", "nftables");
    let ns = Netns::new("a");
    let engine = Engine::start_at(
        &ns.host_ip,
        &format!("trunks:\n  - name: far\n    allow: [{}/32]\n", ns.inside_ip),
        &format!("rtp: {{ bind: {} }}\n", ns.host_ip),
    );
    let port = engine.sip.port();
    // 10 % of SIP packets each way are dropped where they arrive (ingress
    // of each end of the veth pair, so no sender sees an error): towards
    // the engine on the host's end (a table named for this test, removed
    // with the namespace), towards SIPp inside the namespace.
    let toward_engine = format!(
        "table netdev {table} {{\n  chain loss {{ type filter hook ingress device \"{dev}\" priority 0; policy accept; udp dport {port} numgen random mod 100 < 10 counter drop; }}\n}}\n",
        table = ns.table(),
        dev = ns.host_dev()
    );
    let toward_sipp = format!(
        "table netdev hotline_loss {{\n  chain loss {{ type filter hook ingress device \"{dev}\" priority 0; policy accept; udp sport {port} numgen random mod 100 < 10 counter drop; }}\n}}\n",
        dev = ns.inside_dev()
    );
    let file = engine.dir.join("loss-host.nft");
    std::fs::write(&file, toward_engine).unwrap();
    sh(&format!("nft -f {}", file.display()));
    let file = engine.dir.join("loss-inside.nft");
    std::fs::write(&file, toward_sipp).unwrap();
    let out = ns.exec().args(["nft", "-f"]).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sc = common::scenario("caller-basic.xml");
    let p = engine.ports;
    let out = ns
        .exec()
        .arg("sipp")
        .args(["-sf", &sc.display().to_string(), "-s", "100", "-d", "500"])
        .args(["-i", &ns.inside_ip, "-mi", &ns.inside_ip])
        .args([
            "-p",
            &p.sipp(0).to_string(),
            "-mp",
            &p.sipp_media(0).to_string(),
        ])
        .args(["-cp", &p.sipp_control(0).to_string()])
        .args(["-m", "100", "-r", "20", "-l", "40"])
        .args(["-timeout", "120s", "-timeout_error", "-nostdin"])
        .arg(engine.sip.to_string())
        .current_dir(&engine.dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let run = common::SippRun {
        status: out.status,
        output: String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr),
    };
    let inside = ns
        .exec()
        .args(["nft", "list", "table", "netdev", "hotline_loss"])
        .output()
        .unwrap();
    let host = Command::new("nft")
        .args(["list", "table", "netdev", &ns.table()])
        .output()
        .unwrap();
    let counters = String::from_utf8_lossy(&inside.stdout).into_owned()
        + &String::from_utf8_lossy(&host.stdout);
    assert_eq!(
        (run.successful(), run.failed()),
        (100, 0),
        "{} {}\n{counters}",
        run.status,
        run.output
    );
    run.assert_ok();
    // The rules did drop packets (else this tested nothing).
    let drops: u64 = counters
        .split("packets ")
        .skip(1)
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert!(drops >= 40, "only {drops} packets dropped:\n{counters}");
}
