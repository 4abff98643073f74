//! Retention (`retention:` and a queue's own): a sweep shortly after start
//! and then every day deletes call records, recordings and voicemails
//! older than the config keeps them; what went is logged and counted in
//! `hotline_retention_deleted_total{kind}`. The plan is pure (config and
//! now in, cutoffs out); the store deletes rows in one transaction and
//! names the files, which go after it commits; files no row names (an
//! interrupted recording) go by their modification time.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use tracing::{info, warn};

use crate::config::{Config, Retention};
use crate::store::{Cutoffs, StoreHandle, SweepPlan};

/// How often the sweep runs (the first a little after start).
pub const EVERY: Duration = Duration::from_secs(24 * 3600);
const FIRST_AFTER: Duration = Duration::from_secs(5);

fn cutoff(now: Timestamp, age: Option<Duration>) -> Option<Timestamp> {
    let age = jiff::SignedDuration::try_from(age?).ok()?;
    now.checked_sub(age).ok()
}

/// What a sweep at `now` deletes.
pub fn plan(config: &Config, now: Timestamp) -> SweepPlan {
    let cutoffs = |of: fn(&Retention) -> Option<Duration>| Cutoffs {
        default: cutoff(now, of(&config.retention)),
        queues: config
            .queues
            .iter()
            .filter(|(_, q)| of(&q.retention).is_some())
            .map(|(name, q)| (name.clone(), cutoff(now, of(&q.retention))))
            .collect(),
    };
    SweepPlan {
        records: cutoffs(|r| r.records),
        recordings: cutoffs(|r| r.recordings),
        voicemail: cutoff(now, config.retention.voicemail),
    }
}

/// Sweeps shortly after start and then every day, while the engine runs,
/// with the config of the day (a reload may set or change `retention`).
pub async fn run(live: crate::loader::running::Live, store: StoreHandle) {
    tokio::time::sleep(FIRST_AFTER).await;
    let mut every = tokio::time::interval(EVERY);
    loop {
        every.tick().await;
        let config = live.borrow().config.clone();
        if keeps_everything(&config) {
            continue;
        }
        sweep(&config, &store, Timestamp::now()).await;
    }
}

/// Nothing is set to go.
fn keeps_everything(config: &Config) -> bool {
    let r = &config.retention;
    let any_queue = config
        .queues
        .values()
        .any(|q| q.retention.records.is_some() || q.retention.recordings.is_some());
    r.records.is_none() && r.recordings.is_none() && r.voicemail.is_none() && !any_queue
}

/// One sweep: rows, then the files they named, then files nobody names.
pub async fn sweep(config: &Config, store: &StoreHandle, now: Timestamp) {
    let swept = match store.sweep(plan(config, now)).await {
        Ok(s) => s,
        Err(e) => {
            // Nothing was deleted; the next sweep tries again.
            warn!(error = %e, "retention sweep failed");
            return;
        }
    };
    let data = config.data_dir.clone();
    let r = config.retention;
    let files = tokio::task::spawn_blocking(move || {
        let mut gone = (0usize, 0usize);
        for p in &swept.recordings {
            gone.0 += usize::from(remove(&data, p));
        }
        for p in &swept.voicemails {
            gone.1 += usize::from(remove(&data, p));
        }
        let age = |a: Option<Duration>| a.and_then(|a| SystemTime::now().checked_sub(a));
        if let Some(before) = age(r.recordings) {
            gone.0 += remove_older(&data.join("recordings"), before);
        }
        if let Some(before) = age(r.voicemail) {
            gone.1 += remove_older(&data.join("voicemail"), before);
        }
        (swept.records, gone)
    })
    .await;
    let Ok((records, (recordings, voicemails))) = files else {
        return;
    };
    for (kind, n) in [
        ("records", records),
        ("recordings", recordings),
        ("voicemail", voicemails),
    ] {
        metrics::counter!("hotline_retention_deleted_total", "kind" => kind).increment(n as u64);
    }
    info!(
        records,
        recordings, voicemails, "retention sweep: deleted what is past its time"
    );
}

/// Deletes a file a row named, if it is inside the data directory.
fn remove(data: &Path, path: &str) -> bool {
    let p = PathBuf::from(path);
    let p = if p.is_absolute() || p.starts_with(data) {
        p
    } else {
        data.join(p)
    };
    if !p.starts_with(data) || path.contains("..") {
        warn!(
            path,
            "a stored path outside the data directory; not deleted"
        );
        return false;
    }
    std::fs::remove_file(&p).is_ok()
}

/// Deletes the files under `dir` last modified before `before`; how many.
fn remove_older(dir: &Path, before: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            n += remove_older(&e.path(), before);
            // An emptied day's directory goes too.
            let _ = std::fs::remove_dir(e.path());
        } else if meta.modified().is_ok_and(|m| m < before)
            && std::fs::remove_file(e.path()).is_ok()
        {
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_keeps_its_own_times_and_the_rest_the_default() {
        let config = Config::parse(
            "retention: { records: 400d, recordings: 90d, voicemail: 30d }\n\
queues:\n  sales: { retention: { recordings: 7d } }\n  support: {}\n",
        )
        .unwrap();
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let p = plan(&config, now);
        let day = |d: i64| {
            now.checked_sub(jiff::SignedDuration::from_hours(24 * d))
                .ok()
        };
        assert_eq!(p.records.default, day(400));
        assert!(p.records.queues.is_empty(), "no queue overrides records");
        assert_eq!(p.recordings.default, day(90));
        assert_eq!(p.recordings.queues, vec![("sales".to_owned(), day(7))]);
        assert_eq!(p.voicemail, day(30));
        // Nothing set: nothing to delete.
        let none = plan(&Config::parse("").unwrap(), now);
        assert_eq!(none, SweepPlan::default());
        assert!(Config::parse("retention: { records: 0d }\n").is_err());
    }
}
