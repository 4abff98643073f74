//! The engine's config file: any text is a config or a diagnostic with a
//! position, never a panic.
#![no_main]

use hotline::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text) {
        Ok(c) => {
            for t in &c.trunks {
                let _ = t.dial_plan.problems();
            }
        }
        Err(e) => assert!(!e.is_empty()),
    }
});
