//! Telling a service manager how the engine is (systemd's `sd_notify`
//! protocol, `Type=notify`): `READY=1` once it answers calls, `WATCHDOG=1`
//! while its SIP core and ACD answer, `RELOADING=1` and `STOPPING=1`. A
//! datagram to the socket in `NOTIFY_SOCKET`; without one (not under
//! systemd) nothing is sent. Written here, not taken from a crate: it is a
//! line of text to a Unix socket.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use tracing::{debug, warn};

/// Where notifications go, if a service manager listens.
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: Option<std::path::PathBuf>,
    /// `@name`: a socket in the abstract namespace.
    abstract_name: Option<Vec<u8>>,
}

impl Notifier {
    /// The manager named by `NOTIFY_SOCKET`, if any.
    pub fn from_env() -> Notifier {
        Notifier::at(std::env::var_os("NOTIFY_SOCKET").as_deref())
    }

    fn at(path: Option<&std::ffi::OsStr>) -> Notifier {
        use std::os::unix::ffi::OsStrExt;
        match path.map(OsStrExt::as_bytes) {
            Some([b'@', name @ ..]) => Notifier {
                socket: None,
                abstract_name: Some(name.to_vec()),
            },
            Some(p) if p.starts_with(b"/") => Notifier {
                socket: Some(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(p))),
                abstract_name: None,
            },
            _ => Notifier {
                socket: None,
                abstract_name: None,
            },
        }
    }

    /// Whether a manager listens.
    pub fn listening(&self) -> bool {
        self.socket.is_some() || self.abstract_name.is_some()
    }

    /// Sends `state` (`READY=1`, `STATUS=…`, lines joined by `\n`).
    pub fn notify(&self, state: &str) {
        if !self.listening() {
            return;
        }
        let sent = UnixDatagram::unbound().and_then(|s| {
            if let Some(path) = &self.socket {
                s.send_to(state.as_bytes(), path)
            } else {
                use std::os::linux::net::SocketAddrExt;
                let name = self.abstract_name.as_deref().unwrap_or_default();
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                s.send_to_addr(state.as_bytes(), &addr)
            }
        });
        match sent {
            Ok(_) => debug!(state, "service manager notified"),
            Err(e) => warn!(error = %e, state, "cannot notify the service manager"),
        }
    }
}

/// How often the watchdog must hear from us: half the manager's
/// `WATCHDOG_USEC`, when it is meant for this process (`WATCHDOG_PID`).
pub fn watchdog_interval() -> Option<Duration> {
    interval_of(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn interval_of(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_pinged_at_half_its_timeout_and_only_for_its_own_process() {
        assert_eq!(
            interval_of(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            interval_of(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(interval_of(Some("30000000"), Some("8"), 7), None);
        assert_eq!(interval_of(Some("0"), None, 7), None);
        assert_eq!(interval_of(Some("soon"), None, 7), None);
        assert_eq!(interval_of(None, None, 7), None);
    }

    #[test]
    fn notifications_reach_a_path_socket_and_an_abstract_one() {
        let dir = std::env::temp_dir().join(format!("hotline-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        Notifier::at(Some(path.as_os_str())).notify("READY=1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("hotline-notify-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        Notifier::at(Some(std::ffi::OsStr::new(&format!("@{name}")))).notify("WATCHDOG=1");
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");

        // Not under a manager: nothing is sent, nothing fails.
        assert!(!Notifier::at(None).listening());
        Notifier::at(None).notify("READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
