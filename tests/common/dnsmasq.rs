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

    /// dnsmasq on `port` (in a directory of its own, returned to be
    /// removed) serving [`Dnsmasq::two_targets`] of `domain`, and the first
    /// target: a socket on `first` that only listens.
    pub fn with_two_targets(
        port: u16,
        domain: &str,
        first: u16,
        second: u16,
    ) -> (Dnsmasq, std::net::UdpSocket, PathBuf) {
        let silent = super::raw::peer(first);
        let dir = std::env::temp_dir().join(format!("hotline-dns-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dns = Dnsmasq::start(port, &dir, &Dnsmasq::two_targets(domain, first, second));
        (dns, silent, dir)
    }

    /// NAPTR and SRV records of `domain` (UDP) for two targets on
    /// 127.0.0.1: `down.DOMAIN` on `first` (priority 10) and `up.DOMAIN`
    /// on `second` (priority 20).
    pub fn two_targets(domain: &str, first: u16, second: u16) -> Vec<String> {
        vec![
            format!("--naptr-record={domain},10,10,S,SIP+D2U,,_sip._udp.{domain}"),
            format!("--srv-host=_sip._udp.{domain},down.{domain},{first},10,10"),
            format!("--srv-host=_sip._udp.{domain},up.{domain},{second},20,10"),
            format!("--host-record=down.{domain},127.0.0.1"),
            format!("--host-record=up.{domain},127.0.0.1"),
        ]
    }

    /// That `domain` was looked up by NAPTR then SRV, and the first
    /// target (`silent`, a socket that only listens) was sent an INVITE
    /// for `uri` first.
    pub fn assert_first_target_tried(&self, domain: &str, silent: &std::net::UdpSocket, uri: &str) {
        let tried = super::raw::requests(
            &super::raw::collect(silent, Duration::from_millis(200)),
            "INVITE",
        );
        let first = tried.first().expect("the first SRV target was never tried");
        assert_eq!(first.uri, uri);
        let log = self.log();
        assert!(log.contains(&format!("query[NAPTR] {domain}")), "{log}");
        assert!(
            log.contains(&format!("query[SRV] _sip._udp.{domain}")),
            "{log}"
        );
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
