//! Digest `Authorization` and `WWW-Authenticate` values: any text parses
//! or is refused; a challenge that parses gives an answer that parses back
//! as credentials with the same realm, nonce and algorithm.
#![no_main]

use hotline::sip::digest::{Challenge, Credentials};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(c) = Credentials::parse(text) {
        let _ = c.nc_value();
    }
    if let Some(ch) = Challenge::parse(text) {
        let answer = ch.answer("1001", "s3cret", "REGISTER", "sip:127.0.0.1", "cn", 1);
        let back = Credentials::parse(&answer).expect("our answer parses");
        assert_eq!(back.realm, ch.realm);
        assert_eq!(back.nonce, ch.nonce);
        assert_eq!(back.algorithm, ch.algorithm);
    }
});
