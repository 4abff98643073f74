//! A network namespace of a test's own, with a veth pair to this one:
//! named with the test's PID, and removed (with its veth pair and its
//! nftables tables) when dropped, passed or not. Needs root.

use std::process::Command;

/// A network namespace with a veth pair to this one, removed on drop
/// (with its nftables rules, which live in it).
pub struct Netns {
    name: String,
    pub host_ip: String,
    pub inside_ip: String,
}

/// Runs `cmd` in a shell; panics with what it printed if it fails.
pub fn sh(cmd: &str) {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// `tag` (one letter) tells a test's namespaces apart.
    pub fn new(tag: &str) -> Netns {
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

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn host_dev(&self) -> String {
        format!("{}h", self.name)
    }

    pub fn inside_dev(&self) -> String {
        format!("{}i", self.name)
    }

    /// The name of this test's nftables table in the host's namespace.
    pub fn table(&self) -> String {
        format!("hotline_{}", self.name)
    }

    pub fn exec(&self) -> Command {
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
