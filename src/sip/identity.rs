//! Who is calling (RFC 3325, RFC 3323): the identity a trusted trunk
//! asserts in `P-Asserted-Identity`, and whether the caller asked for it
//! to be withheld (`Privacy`). Pure functions of a request's headers.

use super::header::{NameAddr, SipUri};
use super::message::Headers;

/// The caller's number from `P-Asserted-Identity` (a `tel:` URI's number,
/// or a `sip:` URI's user part), when there is one. Only a trunk the
/// config trusts may assert it; from others it is ignored.
pub fn asserted_user(h: &Headers) -> Option<String> {
    let mut found = None;
    for value in h.get_all_split("P-Asserted-Identity") {
        let uri = NameAddr::parse(value).map_or_else(|| value.trim().to_owned(), |n| n.uri);
        if let Some(tel) = uri.strip_prefix("tel:") {
            let number: String = tel.split(';').next().unwrap_or_default().to_owned();
            if is_number(&number) {
                // A tel: URI is the number itself: the best there is.
                return Some(number);
            }
        } else if let Some(user) = SipUri::parse(&uri).and_then(|u| u.user) {
            if found.is_none() && !user.is_empty() && is_printable(&user) {
                found = Some(user);
            }
        }
    }
    found
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_digit() || "+-.()".contains(c))
}

fn is_printable(s: &str) -> bool {
    s.len() <= 64 && s.chars().all(|c| c.is_ascii_graphic())
}

/// The caller asked that their identity be withheld: `Privacy: id`,
/// `user` or `header` (RFC 3323, RFC 3325); `none` asks for nothing.
pub fn withheld(h: &Headers) -> bool {
    h.get_all("Privacy")
        .flat_map(|v| v.split([';', ',']))
        .map(str::trim)
        .any(|p| {
            p.eq_ignore_ascii_case("id")
                || p.eq_ignore_ascii_case("user")
                || p.eq_ignore_ascii_case("header")
        })
}

/// Headers to leave out of an INVITE sent over UDP so it stays under
/// the size where RFC 3261 §18.1.1 asks for a congestion-controlled
/// transport (1300 bytes): the IVR's variables (`X-Hotline-Var-*`), last
/// first, until it fits. Returns how many were left out.
pub fn fit_for_udp(headers: &mut Vec<(String, String)>, mut size: usize, limit: usize) -> usize {
    let mut dropped = 0;
    while size > limit {
        let Some(i) = headers
            .iter()
            .rposition(|(k, _)| k.starts_with("X-Hotline-Var-"))
        else {
            break;
        };
        let (k, v) = headers.remove(i);
        size = size.saturating_sub(k.len() + v.len() + 4);
        dropped += 1;
    }
    dropped
}

/// RFC 3261 §18.1.1: a request this close to the path MTU (1500) goes
/// over a congestion-controlled transport.
pub const UDP_LIMIT: usize = 1300;

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&str, &str)]) -> Headers {
        Headers::of(lines)
    }

    #[test]
    fn the_asserted_number_prefers_a_tel_uri_then_a_sip_user() {
        let h = headers(&[(
            "P-Asserted-Identity",
            "\"Alice\" <sip:+12025550123@carrier.example;user=phone>, <tel:+12025550199>",
        )]);
        assert_eq!(asserted_user(&h).as_deref(), Some("+12025550199"));
        let h = headers(&[("P-Asserted-Identity", "<sip:+12025550123@carrier.example>")]);
        assert_eq!(asserted_user(&h).as_deref(), Some("+12025550123"));
        assert_eq!(asserted_user(&headers(&[])), None);
        // Nothing that could not be printed or dialled.
        let h = headers(&[("P-Asserted-Identity", "<tel:+1 202;x=1>, <sip:ok@host>")]);
        assert_eq!(asserted_user(&h).as_deref(), Some("ok"));
    }

    #[test]
    fn privacy_id_user_or_header_withholds_none_does_not() {
        for v in ["id", "header;id", "user", "Header", "critical; id"] {
            assert!(withheld(&headers(&[("Privacy", v)])), "{v}");
        }
        for v in ["none", "critical", ""] {
            assert!(!withheld(&headers(&[("Privacy", v)])), "{v}");
        }
        assert!(!withheld(&headers(&[])));
    }

    #[test]
    fn the_ivrs_variables_are_left_out_last_first_until_it_fits() {
        let mut h = vec![
            ("X-Hotline-Call-ID".to_owned(), "c".to_owned()),
            ("X-Hotline-Var-a".to_owned(), "x".repeat(200)),
            ("X-Hotline-Var-b".to_owned(), "y".repeat(200)),
            ("X-Hotline-Queue".to_owned(), "q".to_owned()),
        ];
        // 1,500 bytes: one 217-byte variable out is not enough, two are.
        assert_eq!(fit_for_udp(&mut h, 1500, 1300), 1);
        assert_eq!(h.len(), 3);
        assert!(h.iter().any(|(k, _)| k == "X-Hotline-Var-a"));
        let mut h2 = h.clone();
        assert_eq!(fit_for_udp(&mut h2, 1700, 1300), 1);
        assert!(!h2.iter().any(|(k, _)| k.starts_with("X-Hotline-Var-")));
        assert_eq!(fit_for_udp(&mut h, 1000, 1300), 0);
    }
}
