//! The layering rule, executable: every `crate::<module>` path in each
//! top-level module of `src/` (in `use` lines and inline paths alike) is an
//! edge, and the edges the architecture forbids fail this test. While the
//! call-state redesign is under way, `ALLOWED_FOR_NOW` names today's broken
//! edges; it may only shrink (an entry no longer needed fails too).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// (from, to): `from` must never use `to`.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "flow",
        &["sip", "media", "call", "acd", "api", "callback", "store"],
    ),
    ("acd", &["sip", "media", "call", "api", "callback"]),
    ("sip", &["call", "acd", "api", "flow", "callback", "media"]),
    ("media", &["sip", "call", "acd", "api", "flow", "callback"]),
    ("callback", &["call", "api"]),
    // The API reaches calls only through the engine's handles
    // (`engine::Calls`: list, hang up).
    ("api", &["call"]),
    (
        "store",
        &["sip", "media", "call", "acd", "api", "flow", "callback"],
    ),
    (
        "sdp",
        &["sip", "media", "call", "acd", "api", "flow", "callback"],
    ),
];

/// The ground floor: these use nothing above them (only each other and
/// the config, which sits with them).
const GROUND: &[&str] = &[
    "config",
    "diagnostic",
    "events",
    "telemetry",
    "dialplan",
    "overload",
    "connections",
    "uri",
    "tls",
];

/// Broken edges being removed; only ever shrinks (empty since the engine,
/// loader, leg and the ACD's contacts moved; keep it empty).
const ALLOWED_FOR_NOW: &[(&str, &str)] = &[];

/// The modules a source text names as `crate::X` or `crate::{X, Y::…}`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level items of the group, up to its closing brace.
            let mut depth = 1;
            let mut item_start = true;
            for (k, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[k..]);
                        if !name.is_empty() {
                            out.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Edges by (from, to), with the files that make them.
fn edges(src: &Path) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let first = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let from = first.trim_end_matches(".rs").to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            for to in crate_paths(&text) {
                if to != from {
                    out.entry((from.clone(), to))
                        .or_default()
                        .insert(rel.display().to_string());
                }
            }
        }
    }
    out
}

fn forbidden(from: &str, to: &str) -> bool {
    if GROUND.contains(&from) {
        return !GROUND.contains(&to);
    }
    FORBIDDEN
        .iter()
        .any(|(f, tos)| *f == from && tos.contains(&to))
}

#[test]
fn imports_only_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges(&src);
    let mut broken = Vec::new();
    let mut used_allowance = BTreeSet::new();
    for ((from, to), files) in &edges {
        if !forbidden(from, to) {
            continue;
        }
        if ALLOWED_FOR_NOW.contains(&(from.as_str(), to.as_str())) {
            used_allowance.insert((from.clone(), to.clone()));
            continue;
        }
        broken.push(format!("{from} -> {to} (in {files:?})"));
    }
    assert!(
        broken.is_empty(),
        "forbidden imports:\n{}",
        broken.join("\n")
    );
    let stale: Vec<_> = ALLOWED_FOR_NOW
        .iter()
        .filter(|(f, t)| !used_allowance.contains(&(f.to_string(), t.to_string())))
        .collect();
    assert!(
        stale.is_empty(),
        "these allowed edges are gone: take them off ALLOWED_FOR_NOW: {stale:?}"
    );
}

#[test]
fn paths_are_read_from_use_lines_groups_and_inline_uses() {
    let text = "use crate::config::Config;\nuse crate::{media::{a, b}, sip};\nfn f() { crate::store::x(); }\n";
    let got: Vec<String> = crate_paths(text).into_iter().collect();
    assert_eq!(got, ["config", "media", "sip", "store"]);
    assert!(forbidden("flow", "sip"));
    assert!(forbidden("config", "sip"));
    assert!(!forbidden("config", "dialplan"));
    assert!(!forbidden("call", "sip"));
}

/// The state machines: they take `now` as an argument and never touch a
/// runtime, a socket or the clock (their drivers do).
const PURE: &[&str] = &[
    "call/state.rs",
    "call/bridge.rs",
    "call/queue.rs",
    "call/booking.rs",
    "call/io.rs",
    "call/waiting.rs",
    "call/timers.rs",
    "call/record.rs",
    "callback/delivery.rs",
    "callback/offer.rs",
    "leg/playlist.rs",
    "flow/run.rs",
    "sip/transaction.rs",
];

/// What a pure machine must not name (outside its tests).
const IMPURE: &[&str] = &[
    "tokio",
    "Instant::now",
    "Timestamp::now",
    "SystemTime",
    "UdpSocket",
    "TcpStream",
    "std::thread",
];

#[test]
fn state_machines_take_the_time_and_do_no_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut broken = Vec::new();
    for file in PURE {
        let text = std::fs::read_to_string(src.join(file)).unwrap();
        // Their unit tests may (a test's clock starts somewhere).
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or_default();
            for word in IMPURE.iter().filter(|w| line.contains(**w)) {
                broken.push(format!("{file}:{}: {word}", n + 1));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "I/O or a clock in a state machine:\n{}",
        broken.join("\n")
    );
}
