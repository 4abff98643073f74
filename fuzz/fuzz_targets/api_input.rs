//! The operations API's parsing of what clients send: query strings
//! (`/api/cdrs`, `/api/kpis`, `/api/events`) and JSON bodies (pause reason,
//! callback reschedule). Every input is accepted or refused with a 400,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|b| *b == 0).unwrap_or(data.len());
    let query = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or(&[]);
    hotline::api::routes::parse_untrusted(&query, body);
    hotline::api::routes::parse_untrusted("", &data[..split]);
});
