//! Which numbers Hotline may dial out to (callbacks), and how a number a
//! caller typed becomes E.164. This is the toll-fraud guard: a number that
//! does not normalise, matches a denied pattern, or matches no allowed one
//! is refused with the reason, and nothing else ever dials out.
//!
//! Patterns are written like a PBX dial plan: digits and `+` match
//! themselves, `X` any digit, `Z` 1–9, `N` 2–9, `[1-5,8]` one digit of a
//! set, and a final `.` one or more further digits.

use serde::Deserialize;

/// A trunk's outbound dial plan (config `trunks[].dial-plan`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DialPlan {
    /// The country code numbers without one are in, e.g. `1` or `44`.
    pub country_code: String,
    /// Dialled before a national number (`0` in most of Europe); replaced
    /// by `+` and the country code.
    pub national_prefix: String,
    /// Dialled before an international number (`00`, `011`); becomes `+`.
    pub international_prefix: String,
    /// Numbers (E.164, after normalisation) that may be dialled.
    pub allow: Vec<String>,
    /// Numbers that never may, whatever `allow` says (premium, …).
    pub deny: Vec<String>,
}

/// Why a number is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no number given")]
    Empty,
    #[error("`{0}` is not a phone number character")]
    Character(char),
    #[error("too short or too long for a phone number")]
    Length,
    #[error("the number matches the denied pattern `{0}`")]
    Denied(String),
    #[error("the number is not among the numbers this trunk may call")]
    NotAllowed,
}

impl DialPlan {
    /// The number in E.164 (`+15550100…`), or why it cannot be.
    pub fn normalise(&self, typed: &str) -> Result<String, Refusal> {
        let mut digits = String::new();
        for (i, c) in typed.trim().chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                '+' if i == 0 => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                other => return Err(Refusal::Character(other)),
            }
        }
        if digits.is_empty() || digits == "+" {
            return Err(Refusal::Empty);
        }
        let e164 = if digits.starts_with('+') {
            digits
        } else if !self.international_prefix.is_empty()
            && digits.starts_with(&self.international_prefix)
        {
            format!("+{}", &digits[self.international_prefix.len()..])
        } else if !self.national_prefix.is_empty() && digits.starts_with(&self.national_prefix) {
            format!(
                "+{}{}",
                self.country_code,
                &digits[self.national_prefix.len()..]
            )
        } else {
            format!("+{}{digits}", self.country_code)
        };
        // E.164: at most 15 digits; fewer than 7 is no subscriber number.
        let n = e164.len() - 1;
        if !(7..=15).contains(&n) {
            return Err(Refusal::Length);
        }
        Ok(e164)
    }

    /// The number to dial for `typed`: normalised, not denied, allowed.
    pub fn check(&self, typed: &str) -> Result<String, Refusal> {
        let number = self.normalise(typed)?;
        if let Some(p) = self.deny.iter().find(|p| matches(p, &number)) {
            return Err(Refusal::Denied(p.clone()));
        }
        if !self.allow.iter().any(|p| matches(p, &number)) {
            return Err(Refusal::NotAllowed);
        }
        Ok(number)
    }

    /// Patterns that are not valid, with why (checked at config load).
    pub fn problems(&self) -> Vec<String> {
        self.allow
            .iter()
            .chain(&self.deny)
            .filter_map(|p| parse(p).err().map(|e| format!("`{p}`: {e}")))
            .collect()
    }
}

/// One position of a pattern.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(char),
    Set(Vec<char>),
    /// A final `.`: one or more further digits.
    Rest,
}

fn parse(pattern: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let token = match c {
            '0'..='9' | '+' => Token::Literal(c),
            'X' | 'x' => Token::Set(('0'..='9').collect()),
            'Z' | 'z' => Token::Set(('1'..='9').collect()),
            'N' | 'n' => Token::Set(('2'..='9').collect()),
            '.' if chars.peek().is_none() => Token::Rest,
            '.' => return Err("`.` may only end a pattern".into()),
            '[' => {
                let mut set = Vec::new();
                let mut closed = false;
                let mut prev: Option<char> = None;
                while let Some(d) = chars.next() {
                    match d {
                        ']' => {
                            closed = true;
                            break;
                        }
                        ',' => prev = None,
                        '-' => {
                            let (Some(from), Some(to)) = (prev, chars.next()) else {
                                return Err("a range needs a digit on each side".into());
                            };
                            if !to.is_ascii_digit() || to < from {
                                return Err(format!("`{from}-{to}` is not a range of digits"));
                            }
                            set.extend((from..=to).skip(1));
                            prev = None;
                        }
                        '0'..='9' => {
                            set.push(d);
                            prev = Some(d);
                        }
                        other => return Err(format!("`{other}` in a [set]")),
                    }
                }
                if !closed || set.is_empty() {
                    return Err("a [set] must close and hold digits".into());
                }
                Token::Set(set)
            }
            other => return Err(format!("`{other}` is not a pattern character")),
        };
        out.push(token);
    }
    Ok(out)
}

/// Whether `number` matches `pattern` (an invalid pattern matches nothing).
fn matches(pattern: &str, number: &str) -> bool {
    let Ok(tokens) = parse(pattern) else {
        return false;
    };
    let chars: Vec<char> = number.chars().collect();
    let mut i = 0;
    for t in &tokens {
        match t {
            Token::Rest => return i < chars.len() && chars[i..].iter().all(char::is_ascii_digit),
            Token::Literal(c) if chars.get(i) == Some(c) => i += 1,
            Token::Set(set) if chars.get(i).is_some_and(|c| set.contains(c)) => i += 1,
            _ => return false,
        }
    }
    i == chars.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan the demo ships with, and the one the README gives for the
    /// US and Canada: neither dials the Caribbean or premium numbers.
    #[test]
    fn the_shipped_and_documented_plans_refuse_international_rate_nanp_numbers() {
        let demo = crate::config::Config::parse(include_str!("../hotline.yaml")).unwrap();
        let carrier = demo.trunks.iter().find(|t| t.name == "carrier").unwrap();
        let readme = include_str!("../README.md");
        let start = readme.find("A plan for callbacks to the US").unwrap();
        let yaml = &readme[start..];
        let yaml = &yaml[yaml.find("```yaml").unwrap() + 7..];
        let yaml = &yaml[..yaml.find("```").unwrap()];
        let documented =
            crate::config::Config::parse(&format!("trunks:\n  - name: t\n    allow: []\n{yaml}"))
                .unwrap();
        let documented = &documented.trunks[0].dial_plan;
        assert!(documented.problems().is_empty());
        for caribbean in [
            "+18095551234",
            "+1 876 555 0123",
            "12685550123",
            "+12425550100",
        ] {
            assert!(carrier.dial_plan.check(caribbean).is_err(), "{caribbean}");
            assert!(documented.check(caribbean).is_err(), "{caribbean}");
        }
        for premium in ["+19005550123", "+19765550123", "+12125551212"] {
            assert!(carrier.dial_plan.check(premium).is_err(), "{premium}");
            assert!(documented.check(premium).is_err(), "{premium}");
        }
        assert_eq!(
            carrier.dial_plan.check("202 555 0123").as_deref(),
            Ok("+12025550123")
        );
        assert!(
            carrier.dial_plan.check("+12025550200").is_err(),
            "only the fictional range"
        );
        assert_eq!(
            documented.check("(212) 555-0123").as_deref(),
            Ok("+12125550123")
        );
        assert_eq!(
            documented.check("+1 416 555 0199").as_deref(),
            Ok("+14165550199")
        );
    }

    fn us() -> DialPlan {
        DialPlan {
            country_code: "1".into(),
            national_prefix: "1".into(),
            international_prefix: "011".into(),
            allow: vec!["+1NXXNXXXXXX".into()],
            deny: vec!["+1900NXXXXXX".into(), "+1976.".into()],
        }
    }

    fn uk() -> DialPlan {
        DialPlan {
            country_code: "44".into(),
            national_prefix: "0".into(),
            international_prefix: "00".into(),
            allow: vec!["+44[1-3,7]XXXXXXXXX".into()],
            deny: vec!["+449.".into()],
        }
    }

    #[test]
    fn numbers_become_e164_as_people_type_them() {
        let us = us();
        assert_eq!(us.normalise("(202) 555-0100").unwrap(), "+12025550100");
        assert_eq!(us.normalise("1 202 555 0100").unwrap(), "+12025550100");
        assert_eq!(us.normalise("+1.202.555.0100").unwrap(), "+12025550100");
        assert_eq!(
            us.normalise("011 44 20 7946 0000").unwrap(),
            "+442079460000"
        );
        let uk = uk();
        assert_eq!(uk.normalise("020 7946 0000").unwrap(), "+442079460000");
        assert_eq!(uk.normalise("0044 20 7946 0000").unwrap(), "+442079460000");
        assert_eq!(us.normalise("202*555"), Err(Refusal::Character('*')));
        assert_eq!(us.normalise("555+0100"), Err(Refusal::Character('+')));
        assert_eq!(us.normalise("  "), Err(Refusal::Empty));
        assert_eq!(us.normalise("911"), Err(Refusal::Length));
        assert_eq!(us.normalise("+1234567890123456"), Err(Refusal::Length));
    }

    #[test]
    fn the_deny_list_wins_and_only_allowed_numbers_are_dialled() {
        let us = us();
        assert_eq!(us.check("202-555-0100"), Ok("+12025550100".into()));
        // Premium-rate 900 and 976 numbers: denied even though allowed.
        assert_eq!(
            us.check("1 900 555 0100"),
            Err(Refusal::Denied("+1900NXXXXXX".into()))
        );
        assert_eq!(
            us.check("976 555 0100"),
            Err(Refusal::Denied("+1976.".into()))
        );
        // International is not allowed on this trunk; nor an impossible area code.
        assert_eq!(us.check("011 44 20 7946 0000"), Err(Refusal::NotAllowed));
        assert_eq!(us.check("102 555 0100"), Err(Refusal::NotAllowed));
        let uk = uk();
        assert_eq!(uk.check("07700 900123"), Ok("+447700900123".into()));
        assert_eq!(
            uk.check("09098 790000"),
            Err(Refusal::Denied("+449.".into()))
        );
        assert_eq!(uk.check("0500 123456"), Err(Refusal::NotAllowed));
        // No allowed patterns: nothing is dialled.
        assert_eq!(
            DialPlan::default().check("+12025550100"),
            Err(Refusal::NotAllowed)
        );
    }

    #[test]
    fn bad_patterns_are_reported_and_match_nothing() {
        let plan = DialPlan {
            allow: vec![
                "+1[5-".into(),
                "+1.X".into(),
                "+1A".into(),
                "+1[9-2]".into(),
            ],
            ..DialPlan::default()
        };
        assert_eq!(plan.problems().len(), 4, "{:?}", plan.problems());
        assert!(!matches("+1.X", "+12"));
        assert!(matches("+1[2-4,7]X", "+135"));
        assert!(matches("+1[2-4,7]X", "+179"));
        assert!(!matches("+1[2-4,7]X", "+155"));
        assert!(!matches("+1.", "+1"), "`.` needs at least one digit");
    }
}
