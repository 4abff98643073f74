//! Dial plans: any typed number normalises to E.164 or is refused with a
//! reason; what is accepted matches an allow pattern and no deny pattern
//! (checked again on the result); any pattern is valid or a problem.
#![no_main]

use hotline::dialplan::DialPlan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (typed, pattern) = text.split_once('\n').unwrap_or((text, "+1NXXNXXXXXX"));
    let plan = DialPlan {
        country_code: "1".into(),
        national_prefix: "1".into(),
        international_prefix: "011".into(),
        allow: vec![pattern.to_owned(), "+44.".into()],
        deny: vec!["+1900.".into(), "+1809.".into()],
    };
    let _ = plan.problems();
    if let Ok(e164) = plan.check(typed) {
        assert!(e164.starts_with('+'), "{e164}");
        assert!(e164[1..].bytes().all(|b| b.is_ascii_digit()), "{e164}");
        // Normalised once is normalised: the same number again.
        assert_eq!(plan.check(&e164).as_deref(), Ok(e164.as_str()));
        assert!(!e164.starts_with("+1900") && !e164.starts_with("+1809"));
    }
});
