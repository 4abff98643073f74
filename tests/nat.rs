//! An agent working from home, behind a router that masquerades: a "home"
//! network namespace (192.168.77.2) whose only way out is a "router"
//! namespace doing NAT (nftables `masquerade`) onto a veth pair to the
//! engine. The router forgets a UDP mapping after 10 s of silence
//! (`nf_conntrack_udp_timeout` and `_stream` set to 10 s), so only the
//! engine's keep-alives (every 5 s here) keep the agent reachable. baresip
//! registers from home, waits three of those timeouts, takes a queued
//! call, and both sides hear each other: what baresip heard (its sndfile
//! recording) is the caller's audio, and the caller hears baresip's.
//! And the engine itself behind one-to-one NAT (`sip.advertise`,
//! `rtp.advertise`): a carrier that knows only the public address calls,
//! hears the line and is heard. Needs root.

mod common;

use std::process::Command;
use std::time::Duration;

use common::baresip;
use common::netns::sh;
use common::{keys_scenario_with, rtp_sink, Engine};

/// The two namespaces and their links, removed on drop.
struct Home {
    router: String,
    home: String,
    /// The engine's address on the link to the router.
    host_ip: String,
    /// The router's address there: what the engine sees of the agent.
    public_ip: String,
    home_ip: String,
    home_dev: String,
}

impl Home {
    fn new() -> Home {
        let pid = std::process::id();
        let (router, home) = (format!("hlr{pid}"), format!("hlm{pid}"));
        let n = pid % 16000;
        let (a, b) = (n / 64, (n % 64) * 4);
        let host_ip = format!("10.201.{a}.{}", b + 1);
        let public_ip = format!("10.201.{a}.{}", b + 2);
        let home_ip = "192.168.77.2".to_owned();
        let (wan_host, wan_router) = (format!("{router}h"), format!("{router}w"));
        let (lan_router, lan_home) = (format!("{router}l"), format!("{home}i"));
        for ns in [&router, &home] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &wan_host]).output();
        let h = Home {
            router: router.clone(),
            home: home.clone(),
            host_ip: host_ip.clone(),
            public_ip: public_ip.clone(),
            home_ip: home_ip.clone(),
            home_dev: lan_home.clone(),
        };
        sh(&format!("ip netns add {router} && ip netns add {home}"));
        sh(&format!(
            "ip link add {wan_host} type veth peer name {wan_router}"
        ));
        sh(&format!("ip link set {wan_router} netns {router}"));
        sh(&format!(
            "ip addr add {host_ip}/30 dev {wan_host} && ip link set {wan_host} up"
        ));
        sh(&format!(
            "ip link add {lan_router} type veth peer name {lan_home}"
        ));
        sh(&format!(
            "ip link set {lan_router} netns {router} && ip link set {lan_home} netns {home}"
        ));
        let r = format!("ip netns exec {router}");
        sh(&format!("{r} ip addr add {public_ip}/30 dev {wan_router}"));
        sh(&format!("{r} ip addr add 192.168.77.1/24 dev {lan_router}"));
        sh(&format!("{r} ip link set {wan_router} up && {r} ip link set {lan_router} up && {r} ip link set lo up"));
        sh(&format!("{r} sysctl -qw net.ipv4.ip_forward=1"));
        let nat = format!(
            "table ip nat {{\n  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"{wan_router}\" masquerade\n  }}\n}}\n"
        );
        let file = std::env::temp_dir().join(format!("hotline-nat-{pid}.nft"));
        std::fs::write(&file, nat).unwrap();
        sh(&format!("{r} nft -f {}", file.display()));
        let _ = std::fs::remove_file(&file);
        // The router forgets a mapping after 10 s without a packet.
        sh(&format!(
            "{r} sysctl -qw net.netfilter.nf_conntrack_udp_timeout=10 net.netfilter.nf_conntrack_udp_timeout_stream=10"
        ));
        let m = format!("ip netns exec {home}");
        sh(&format!("{m} ip addr add {home_ip}/24 dev {lan_home}"));
        sh(&format!(
            "{m} ip link set {lan_home} up && {m} ip link set lo up"
        ));
        sh(&format!("{m} ip route add default via 192.168.77.1"));
        h
    }

    /// A router setting, read back.
    fn router_sysctl(&self, key: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.router, "sysctl", "-n", key])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        for ns in [&self.home, &self.router] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}h", self.router)])
            .output();
    }
}

#[test]
fn an_agent_behind_a_masquerading_router_stays_reachable_and_both_sides_hear() {
    common::require("nft", "nftables");
    let net = Home::new();
    assert_eq!(
        net.router_sysctl("net.netfilter.nf_conntrack_udp_timeout"),
        "10"
    );
    assert_eq!(
        net.router_sysctl("net.netfilter.nf_conntrack_udp_timeout_stream"),
        "10"
    );
    let dir = std::env::temp_dir().join(format!("hotline-nat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("q.yaml"),
        "entry: q\nnodes:\n  q: { queue: support }\n",
    )
    .unwrap();
    let engine = Engine::start_at(
        &net.host_ip,
        "trunks:\n  - name: loopback\n    allow: [127.0.0.0/8]\n    symmetric-rtp: false\n",
        &format!(
            "rtp: {{ bind: {} }}\nflows-dir: {}\nroutes: {{ default: q }}\nqueues:\n  support: {{ announce-position: false }}\nagents:\n  - {{ id: '1001', password: 1001pass, queues: [support], auto-login: true }}\nregistrar: {{ algorithms: [MD5], keepalive: 5s }}\n",
            net.host_ip,
            dir.display()
        ),
    );
    baresip::configure(
        &dir,
        &format!("{}:5070", net.home_ip),
        &format!("net_interface {}\n", net.home_dev),
    );
    std::fs::write(
        dir.join("conf/accounts"),
        format!(
            "<sip:1001@{}>;auth_user=1001;auth_pass=1001pass;answermode=auto;audio_codecs=PCMU;regint=600\n",
            engine.sip
        ),
    )
    .unwrap();
    let _phone = baresip::start(&dir, 90, &[], Some(&net.home));
    // The engine sees the agent at the router's public address.
    assert!(
        engine.wait_log(
            &format!("source={}:", net.public_ip),
            Duration::from_secs(10)
        ),
        "baresip did not register through the router:\n{}\n{}",
        engine.log(),
        baresip::log(&dir)
    );
    // Three conntrack timeouts: only the keep-alives keep the mapping.
    std::thread::sleep(Duration::from_secs(30));
    let log = engine.log();
    assert!(!log.contains("stopped answering OPTIONS"), "{log}");

    // A caller on the host; the agent at home answers.
    let port = engine.ports.spare(0);
    let sink = rtp_sink(port, Duration::from_secs(6));
    let sc = keys_scenario_with(&engine, "caller.xml", port, &[], 3000, true);
    common::sipp(&engine, 0, &sc, &["-s", "100", "-m", "1"]).assert_ok();
    let report = sink.join().unwrap();
    assert!(
        engine.log().contains("answered; caller bridged"),
        "{}",
        engine.log()
    );
    // The caller heard the agent (baresip's greeting), and the agent the
    // caller (baresip's recording holds the caller's audio).
    let received = baresip::decoded(&report);
    assert!(
        baresip::best_correlation(&received, &baresip::greeting()) > 0.9,
        "the caller did not hear the agent ({} samples)",
        received.len()
    );
    baresip::assert_callers_audio(&baresip::heard(&dir));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A data centre: the engine's namespace (10.10.0.2) behind an edge
/// namespace that maps a public address to it one to one (DNAT in,
/// SNAT out). Removed on drop.
struct Edge {
    edge: String,
    dc: String,
    host_ip: String,
    public_ip: String,
}

impl Edge {
    fn new() -> Edge {
        let pid = std::process::id();
        let (edge, dc) = (format!("hle{pid}"), format!("hld{pid}"));
        let n = pid % 16000;
        let (a, b) = (n / 64, (n % 64) * 4);
        let host_ip = format!("10.202.{a}.{}", b + 1);
        let public_ip = format!("10.202.{a}.{}", b + 2);
        let (wan_host, wan_edge) = (format!("{edge}h"), format!("{edge}w"));
        let (lan_edge, lan_dc) = (format!("{edge}l"), format!("{dc}i"));
        for ns in [&edge, &dc] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip").args(["link", "del", &wan_host]).output();
        let e = Edge {
            edge: edge.clone(),
            dc: dc.clone(),
            host_ip: host_ip.clone(),
            public_ip: public_ip.clone(),
        };
        sh(&format!("ip netns add {edge} && ip netns add {dc}"));
        sh(&format!(
            "ip link add {wan_host} type veth peer name {wan_edge}"
        ));
        sh(&format!("ip link set {wan_edge} netns {edge}"));
        sh(&format!(
            "ip addr add {host_ip}/30 dev {wan_host} && ip link set {wan_host} up"
        ));
        sh(&format!(
            "ip link add {lan_edge} type veth peer name {lan_dc}"
        ));
        sh(&format!(
            "ip link set {lan_edge} netns {edge} && ip link set {lan_dc} netns {dc}"
        ));
        let r = format!("ip netns exec {edge}");
        sh(&format!("{r} ip addr add {public_ip}/30 dev {wan_edge}"));
        sh(&format!("{r} ip addr add 10.10.0.1/24 dev {lan_edge}"));
        sh(&format!("{r} ip link set {wan_edge} up && {r} ip link set {lan_edge} up && {r} ip link set lo up"));
        sh(&format!("{r} sysctl -qw net.ipv4.ip_forward=1"));
        let nat = format!(
            "table ip nat {{\n  chain pre {{\n    type nat hook prerouting priority dstnat; policy accept;\n    iifname \"{wan_edge}\" ip daddr {public_ip} dnat to 10.10.0.2\n  }}\n  chain post {{\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname \"{wan_edge}\" ip saddr 10.10.0.2 snat to {public_ip}\n  }}\n}}\n"
        );
        let file = std::env::temp_dir().join(format!("hotline-edge-{pid}.nft"));
        std::fs::write(&file, nat).unwrap();
        sh(&format!("{r} nft -f {}", file.display()));
        let _ = std::fs::remove_file(&file);
        let d = format!("ip netns exec {dc}");
        sh(&format!("{d} ip addr add 10.10.0.2/24 dev {lan_dc}"));
        sh(&format!(
            "{d} ip link set {lan_dc} up && {d} ip link set lo up"
        ));
        sh(&format!("{d} ip route add default via 10.10.0.1"));
        e
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        for ns in [&self.dc, &self.edge] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}h", self.edge)])
            .output();
    }
}

#[test]
fn the_engine_behind_one_to_one_nat_advertises_its_public_address() {
    common::require("nft", "nftables");
    let net = Edge::new();
    let engine = Engine::start_in_netns(
        &net.dc,
        "10.10.0.2",
        &format!(
            "trunks:\n  - name: carrier\n    allow: [{}/32]\n",
            net.host_ip
        ),
        &format!(
            "sip: {{ advertise: {public} }}\nrtp: {{ bind: 10.10.0.2, advertise: {public} }}\n",
            public = net.public_ip
        ),
    );
    // The carrier on the host knows only the public address.
    let public: std::net::SocketAddr = format!("{}:{}", net.public_ip, engine.sip.port())
        .parse()
        .unwrap();
    let p = engine.ports;
    let mut ua = common::ua::TestUa::call_from(
        &net.host_ip,
        public,
        p.spare(0),
        p.spare(2),
        "echo",
        "0 101",
    );
    // The answer names the public address for media (and the engine's
    // RTP reaches the carrier through the edge).
    assert!(
        ua.answer.contains(&format!("c=IN IP4 {}", net.public_ip)),
        "{}",
        ua.answer
    );
    assert_eq!(ua.engine_rtp.ip().to_string(), net.public_ip);
    let got = ua.receive(Duration::from_secs(2));
    assert!(
        got.len() >= 50,
        "only {} packets from the engine",
        got.len()
    );
    // The carrier's RTP reaches the engine (its '#' ends the key-test
    // line), and the engine's BYE comes back to the carrier.
    std::thread::sleep(Duration::from_millis(500));
    ua.press_rfc4733('#');
    assert!(
        ua.expect_bye(Duration::from_secs(8)),
        "the engine never heard the carrier's key:\n{}",
        engine.log()
    );
}
