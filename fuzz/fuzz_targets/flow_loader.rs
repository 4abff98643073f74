//! The flow loader: any bytes as a flow file give a checked set or
//! diagnostics, never a panic; a set that loads is then walked with keys,
//! timeouts and prompt ends taken from the input, and must not panic either.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hotline::config::Config;
use hotline::flow::{self, Event, Run, Vars};
use libfuzzer_sys::fuzz_target;

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| {
        let mut c = Config::parse(
            "schedules:\n  open:\n    time-zone: Europe/Paris\n    weekly: { mon-fri: 09:00-17:00 }\nqueues: { support: {} }\ntransfers: { op: 'sip:op@127.0.0.1' }\n",
        )
        .expect("fuzz config");
        c.routes.clear();
        c
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let prompts = [
        "welcome",
        "goodbye",
        "menu/main",
        "beep",
        "digits/0",
        "numbers/0",
        "numbers/hundred",
        "time/minutes",
        "time/seconds",
        "ask/you-entered",
        "ask/confirm-entry",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let catalog = flow::set::catalog(config(), prompts);
    let loaded = flow::set::load_sources(
        config(),
        Path::new("hotline.yaml"),
        &catalog,
        vec![(PathBuf::from("f.yaml"), text.to_owned())],
        1,
    );
    for d in &loaded.diagnostics {
        let _ = d.to_string();
    }
    let Some(set) = loaded.set else { return };
    let set = Arc::new(set);
    let mut run = Run::new(set, 0, Vars::new());
    let now: jiff::Timestamp = "2026-11-23T10:00:00Z".parse().expect("time");
    let mut events = vec![Event::Start];
    for (i, b) in data.iter().enumerate().take(64) {
        events.push(match b % 4 {
            0 => Event::Digit(b"0123456789*#"[usize::from(*b) % 12] as char),
            1 => Event::PlayDone(i as u64 % 8),
            2 => Event::Timer(i as u64 % 8),
            _ => Event::Hangup,
        });
    }
    for e in events {
        let _ = run.step(e, now);
    }
});
