//! The store writer alone: call records queued at RATE per second for
//! SECONDS (each one opened, then closed, as a call does), into a fresh
//! SQLite store in DIR with full durability. Prints the records written,
//! the largest backlog seen, and how long after the last record the store
//! had every one committed.
//!
//!   cargo run --release --example bench_store -- DIR [RATE] [SECONDS]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hotline::overload::Admission;
use hotline::store::{Cdr, RecordKey, StoreHandle};

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("DIR"));
    let rate: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(2000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let admission = Arc::new(Admission::default());
    let store = StoreHandle::open_sqlite(&dir, admission.clone()).expect("store");
    let total = rate * seconds;
    let started = Instant::now();
    let mut max_backlog = 0;
    let mut refused_at = None;
    for i in 0..total {
        // Paced: record i is due at i / rate seconds.
        let due = started + Duration::from_micros(i * 1_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let key = RecordKey::new();
        let now = jiff::Timestamp::now();
        let cdr = Cdr {
            call_id: format!("bench-{i}"),
            caller: "+15550100".into(),
            dialed: "100".into(),
            trunk: "bench".into(),
            arrived_at: Some(now),
            answered_at: Some(now),
            flow: Some("bench".into()),
            vars: "{}".into(),
            ..Cdr::default()
        };
        store.record(&key, cdr.clone(), true);
        store.record(
            &key,
            Cdr {
                ended_at: Some(now),
                outcome: hotline::store::Outcome::Ivr,
                ended_by: "caller".into(),
                ..cdr
            },
            false,
        );
        max_backlog = max_backlog.max(store.backlog());
        if refused_at.is_none() && admission.refusing().is_some() {
            refused_at = Some(i);
        }
    }
    let queued = started.elapsed();
    let last = Instant::now();
    let left = rt.block_on(store.flush(Duration::from_secs(60)));
    let caught_up = last.elapsed();
    let written = rt
        .block_on(store.cdrs_between(jiff::Timestamp::MIN, jiff::Timestamp::MAX))
        .map(|r| r.len())
        .unwrap_or(0);
    println!(
        "rate={rate}/s seconds={seconds} queued_in={:.1}s records={written}/{total} unwritten={left} max_backlog={max_backlog} caught_up_after_last={:.0}ms refused_new_calls={}",
        queued.as_secs_f64(),
        caught_up.as_secs_f64() * 1000.0,
        refused_at.map_or("never".to_owned(), |i| format!("at record {i}"))
    );
    if written as u64 != total || left > 0 {
        std::process::exit(1);
    }
}
