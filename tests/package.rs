//! The Debian package, as an operator installs it: `cargo deb` packs the
//! suite's own binary (no second build), `dpkg -i` installs it into a
//! throwaway copy of this machine (an overlay over `/` in a mount namespace
//! of the test's own: nothing on the machine changes), and the test checks
//! the `hotline` user, the paths and their permissions, the conffile, the
//! systemd unit (`systemd-analyze verify`), and starts the installed binary
//! as the `hotline` user with the installed config: it tells its service
//! manager it is ready (sd_notify), answers OPTIONS, pings the watchdog,
//! keeps its store where the package says, and says it is stopping on
//! SIGTERM.

mod common;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{raw, root, Ports};

/// A tmpfs of the test's own: the overlay's upper layer (what the install
/// writes), readable from here; unmounted when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("hotline-package-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "the package test needs root (mount, unshare, chroot)");
        for d in ["upper", "work", "merged", "out"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The installed engine; killed if the test ends before it has stopped it.
struct Installed(Child);

impl Drop for Installed {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `cargo deb` on the binary the suite built.
fn build_package(out: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["deb", "--no-build", "--profile", "dev", "--fast", "-o"])
        .arg(out)
        .current_dir(root())
        .output()
        .expect("cargo deb");
    assert!(
        built.status.success(),
        "cargo deb failed (scripts/test.sh installs cargo-deb):\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
}

/// Installs the package in the overlay, writes what the checks print to
/// `out/checks.txt`, then becomes the installed engine, run as `hotline`
/// with the installed config on the test's ports.
fn install_and_run(scratch: &Path, ports: &Ports, notify: &str) -> Installed {
    let fs = scratch.display();
    let script = format!(
        r#"set -e
M={fs}/merged
mount -t overlay overlay -o lowerdir=/,upperdir={fs}/upper,workdir={fs}/work $M
mount -t proc proc $M/proc
mount --rbind /dev $M/dev
mkdir -p $M/pkg
mount --bind {fs}/out $M/pkg
chroot $M dpkg -i /pkg/hotline.deb > {fs}/out/dpkg.txt 2>&1
chroot $M sh -c '
  echo "user: $(getent passwd hotline)"
  stat -c "mode: %U:%G %a %n" /usr/bin/hotline /etc/hotline /etc/hotline/hotline.yaml /var/lib/hotline /usr/lib/systemd/system/hotline.service /usr/share/hotline/ivr-flows/support.yaml /usr/share/hotline/sounds/greeting.wav
  echo "conffiles: $(cat /var/lib/dpkg/info/hotline.conffiles)"
  echo "enabled: $(readlink /etc/systemd/system/multi-user.target.wants/hotline.service)"
  systemd-analyze verify /usr/lib/systemd/system/hotline.service && echo "verify: ok"
  runuser -u hotline -- /usr/bin/hotline validate --config /etc/hotline/hotline.yaml && echo "validate: ok"
' > {fs}/out/checks.txt 2>&1
exec chroot --userspec=hotline:hotline $M /usr/bin/hotline run --config /etc/hotline/hotline.yaml --sip-listen 127.0.0.1:{sip} --http-listen 127.0.0.1:{http} --rtp-ports {rtp}
"#,
        sip = ports.sip(),
        http = ports.http(),
        rtp = ports.rtp_range(),
    );
    let log = std::fs::File::create(scratch.join("out/engine.log")).unwrap();
    Installed(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env("NOTIFY_SOCKET", format!("@{notify}"))
            .env("WATCHDOG_USEC", "2000000")
            .env("HOTLINE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("unshare"),
    )
}

/// The next notification, within `timeout`.
fn next_notice(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    socket.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn the_package_installs_a_user_paths_and_a_unit_and_its_engine_starts_as_that_user() {
    let scratch = Scratch::new();
    let out = scratch.0.join("out");
    build_package(&out.join("hotline.deb"));
    let ports = Ports::next();
    let notify = format!("hotline-package-test-{}", std::process::id());
    let notices =
        UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(notify.as_bytes()).unwrap()).unwrap();
    let mut engine = install_and_run(&scratch.0, &ports, &notify);
    let text = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();

    // Ready: the installed engine says so once it answers calls.
    let until = Instant::now() + Duration::from_secs(120);
    let ready = loop {
        if let Some(n) = next_notice(&notices, Duration::from_millis(500)) {
            break n;
        }
        if let Ok(Some(status)) = engine.0.try_wait() {
            panic!(
                "the installed engine stopped ({status}):\n{}\n{}\n{}",
                text("dpkg.txt"),
                text("checks.txt"),
                text("engine.log")
            );
        }
        assert!(
            Instant::now() < until,
            "no READY=1:\n{}\n{}",
            text("checks.txt"),
            text("engine.log")
        );
    };
    assert!(ready.starts_with("READY=1"), "{ready}");
    let log = text("engine.log");
    assert!(
        log.contains("hotline ready"),
        "ready only once it answers: {log}"
    );

    // What the package put where, as whom.
    let checks = text("checks.txt");
    let user = checks
        .lines()
        .find_map(|l| l.strip_prefix("user: "))
        .unwrap_or_default();
    let fields: Vec<&str> = user.split(':').collect();
    assert_eq!(
        fields.len(),
        7,
        "no hotline user:\n{checks}\n{}",
        text("dpkg.txt")
    );
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "a system user: {user}");
    assert_eq!(fields[5], "/var/lib/hotline", "{user}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{user}");
    for expected in [
        "mode: root:root 755 /usr/bin/hotline",
        "mode: root:hotline 750 /etc/hotline",
        "mode: root:hotline 640 /etc/hotline/hotline.yaml",
        "mode: hotline:hotline 700 /var/lib/hotline",
        "mode: root:root 644 /usr/lib/systemd/system/hotline.service",
        "mode: root:root 644 /usr/share/hotline/ivr-flows/support.yaml",
        "mode: root:root 644 /usr/share/hotline/sounds/greeting.wav",
        "conffiles: /etc/hotline/hotline.yaml",
        "enabled: /lib/systemd/system/hotline.service",
        "verify: ok",
        "validate: ok",
    ] {
        assert!(checks.contains(expected), "{expected}:\n{checks}");
    }
    assert!(
        !checks.contains("hotline.service:"),
        "systemd-analyze found something to say about the unit:\n{checks}"
    );

    // It answers OPTIONS (403: the shipped config trusts no source yet).
    let peer_port = ports.spare(0);
    let peer = raw::peer(peer_port);
    let options = format!(
        "OPTIONS sip:127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{peer_port};branch=z9hG4bKpkg1\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: package-probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        ports.sip()
    );
    peer.send_to(options.as_bytes(), ("127.0.0.1", ports.sip()))
        .unwrap();
    let answers = raw::collect(&peer, Duration::from_secs(2));
    assert_eq!(
        raw::responses(&answers, 403).len(),
        1,
        "no answer to OPTIONS:\n{}",
        text("engine.log")
    );

    // The watchdog hears from it (WATCHDOG_USEC=2 s: every second).
    let mut pings = 0;
    let until = Instant::now() + Duration::from_secs(5);
    while pings < 2 && Instant::now() < until {
        if next_notice(&notices, Duration::from_secs(2)).as_deref() == Some("WATCHDOG=1") {
            pings += 1;
        }
    }
    assert_eq!(
        pings,
        2,
        "the watchdog was not pinged:\n{}",
        text("engine.log")
    );

    // Its store is in the package's data directory, the engine user's own.
    let db = scratch.0.join("upper/var/lib/hotline/hotline.db");
    let meta = std::fs::metadata(&db).expect("the store is in /var/lib/hotline");
    assert_eq!(meta.uid(), uid, "the store belongs to the hotline user");
    assert_eq!(meta.mode() & 0o777, 0o600);

    // SIGTERM: it says it is stopping, and ends well.
    let pid = engine.0.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let until = Instant::now() + Duration::from_secs(5);
    let mut stopping = false;
    while !stopping && Instant::now() < until {
        // A watchdog ping may come first.
        stopping = next_notice(&notices, Duration::from_secs(1))
            .is_some_and(|n| n.starts_with("STOPPING=1"));
    }
    assert!(stopping, "no STOPPING=1:\n{}", text("engine.log"));
    let until = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(s) = engine.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "the engine did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}:\n{}", text("engine.log"));
}
