//! A DNS server of the test's own: Debian's `dnsmasq` on a loopback port,
//! serving only the records the test gives it (and `*.test` names it does
//! not know as NXDOMAIN). Ended when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
    hosts: PathBuf,
    log: PathBuf,
}

impl Dnsmasq {
    /// Starts it on `127.0.0.1:port` with `records` (dnsmasq options such as
    /// `--srv-host=...`), logging into `dir`.
    pub fn start(port: u16, dir: &Path, records: &[String]) -> Dnsmasq {
        super::require("dnsmasq", "dnsmasq-base");
        let hosts = dir.join("dns-hosts");
        let log = dir.join("dnsmasq.log");
        std::fs::write(&hosts, "").unwrap();
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "-C",
                "/dev/null",
                "--bind-interfaces",
            ])
            .args(["--listen-address=127.0.0.1", "--no-resolv", "--no-hosts"])
            .args([
                "--pid-file=",
                "--local=/test/",
                "--log-queries",
                "--log-facility=-",
            ])
            .args(["--user=root", "--local-ttl=1"])
            .arg(format!("--port={port}"))
            .arg(format!("--addn-hosts={}", hosts.display()))
            .args(records)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("cannot start dnsmasq");
        let d = Dnsmasq {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            hosts,
            log,
        };
        let until = Instant::now() + Duration::from_secs(5);
        while !d.log().contains("started") {
            assert!(
                Instant::now() < until,
                "dnsmasq did not start:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// What it logged (each query, with `--log-queries`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Makes `name` resolve to `ip` from now on (its hosts file, reread).
    pub fn add_host(&self, name: &str, ip: &str) {
        let mut text = std::fs::read_to_string(&self.hosts).unwrap();
        text.push_str(&format!("{ip} {name}\n"));
        std::fs::write(&self.hosts, text).unwrap();
        let ok = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot signal dnsmasq");
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
