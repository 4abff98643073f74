//! Why new calls are refused for now. Any part of the engine that would
//! otherwise lose what it already promised (the store's backlog of call
//! records, the process's open-file budget) raises its pressure here; the
//! SIP core answers new INVITEs `503` with a short `Retry-After`
//! (`calls.retry-after`) while any is raised. Calls in progress are not
//! touched.

use std::sync::atomic::{AtomicU32, Ordering};

/// One reason to refuse new calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pressure {
    /// Call records wait in memory past the store's limit.
    StoreBacklog,
    /// Too few file descriptors are left for another call.
    Descriptors,
}

impl Pressure {
    pub const ALL: [Pressure; 2] = [Pressure::StoreBacklog, Pressure::Descriptors];

    fn bit(self) -> u32 {
        match self {
            Pressure::StoreBacklog => 1,
            Pressure::Descriptors => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Pressure::StoreBacklog => "store-backlog",
            Pressure::Descriptors => "descriptors",
        }
    }
}

/// The pressures raised now; shared by whoever raises and the SIP core.
#[derive(Debug)]
pub struct Admission {
    raised: AtomicU32,
}

impl Default for Admission {
    /// Nothing raised (and `hotline_overload` and the calls it refused 0
    /// for every reason, so an alert sees them go up).
    fn default() -> Self {
        for p in Pressure::ALL {
            metrics::gauge!("hotline_overload", "reason" => p.as_str()).set(0.0);
            metrics::counter!("hotline_calls_refused_total", "reason" => p.as_str()).increment(0);
        }
        Admission {
            raised: AtomicU32::new(0),
        }
    }
}

impl Admission {
    pub fn raise(&self, p: Pressure) {
        let before = self.raised.fetch_or(p.bit(), Ordering::SeqCst);
        if before & p.bit() == 0 {
            tracing::warn!(reason = p.as_str(), "refusing new calls");
            metrics::gauge!("hotline_overload", "reason" => p.as_str()).set(1.0);
        }
    }

    pub fn clear(&self, p: Pressure) {
        let before = self.raised.fetch_and(!p.bit(), Ordering::SeqCst);
        if before & p.bit() != 0 {
            tracing::info!(reason = p.as_str(), "accepting new calls again");
            metrics::gauge!("hotline_overload", "reason" => p.as_str()).set(0.0);
        }
    }

    /// The first reason new calls are refused, if any.
    pub fn refusing(&self) -> Option<Pressure> {
        let raised = self.raised.load(Ordering::Relaxed);
        [Pressure::StoreBacklog, Pressure::Descriptors]
            .into_iter()
            .find(|p| raised & p.bit() != 0)
    }
}

/// The process's limit of open files (the soft `RLIMIT_NOFILE`).
pub fn open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}

/// Descriptors open now (`None`: none could even be opened to count).
fn open_files() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64)
}

/// How many descriptors must stay free for calls already admitted (their
/// agent legs, transfers, recordings) and the store: new calls are refused
/// below this.
pub fn descriptor_reserve(limit: u64) -> u64 {
    (limit / 20).max(64)
}

/// Once a second, counts the open descriptors: while fewer than
/// [`descriptor_reserve`] are left, new calls are refused, so the process
/// never runs out in the middle of a call it took.
pub async fn watch_descriptors(admission: std::sync::Arc<Admission>) {
    let Some(limit) = open_file_limit() else {
        return;
    };
    let reserve = descriptor_reserve(limit);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        // Reading the descriptor table of a busy process takes a while:
        // off the runtime's workers.
        let open = tokio::task::spawn_blocking(open_files).await.ok().flatten();
        if let Some(n) = open {
            metrics::gauge!("hotline_open_files").set(n as f64);
        }
        let free = open.map_or(0, |n| limit.saturating_sub(n));
        if free < reserve {
            admission.raise(Pressure::Descriptors);
        } else if free >= reserve + reserve / 2 {
            admission.clear(Pressure::Descriptors);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pressures_raise_and_clear_independently() {
        let a = Admission::default();
        assert_eq!(a.refusing(), None);
        a.raise(Pressure::Descriptors);
        a.raise(Pressure::StoreBacklog);
        a.clear(Pressure::StoreBacklog);
        assert_eq!(a.refusing(), Some(Pressure::Descriptors));
        a.clear(Pressure::Descriptors);
        assert_eq!(a.refusing(), None);
    }
}
