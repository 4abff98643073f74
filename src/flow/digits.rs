//! Digit patterns for `collect`, in the dial-plan notation telephony people
//! already know: `X` any digit, `Z` 1–9, `N` 2–9, `[1-5]` or `[147]` a set,
//! a literal key (`0`–`9`, `*`, `#`), and at the end `.` (one or more of
//! anything) or `!` (zero or more). `NXXNXXXXXX` is a North American number.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Elem {
    /// One key out of this set.
    Set(Vec<char>),
    /// Any keys: at least this many.
    Rest(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigitPattern {
    src: String,
    elems: Vec<Elem>,
}

const KEYS: &str = "0123456789*#";

impl DigitPattern {
    /// Parses a pattern; the error says which character is wrong and why.
    pub fn parse(src: &str) -> Result<DigitPattern, String> {
        let chars: Vec<char> = src.chars().collect();
        let mut elems = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let set: Vec<char> = match c {
                'X' | 'x' => "0123456789".chars().collect(),
                'Z' | 'z' => "123456789".chars().collect(),
                'N' | 'n' => "23456789".chars().collect(),
                '.' | '!' => {
                    if i + 1 != chars.len() {
                        return Err(format!("`{c}` may only end a pattern"));
                    }
                    elems.push(Elem::Rest(usize::from(c == '.')));
                    i += 1;
                    continue;
                }
                '[' => {
                    let close = chars[i..]
                        .iter()
                        .position(|&c| c == ']')
                        .ok_or("`[` is never closed: add `]`")?;
                    let inner = &chars[i + 1..i + close];
                    let mut set = Vec::new();
                    let mut j = 0;
                    while j < inner.len() {
                        if j + 2 < inner.len() && inner[j + 1] == '-' {
                            let (a, b) = (inner[j], inner[j + 2]);
                            if !a.is_ascii_digit() || !b.is_ascii_digit() || b < a {
                                return Err(format!("`{a}-{b}` is not a range of digits"));
                            }
                            set.extend(a..=b);
                            j += 3;
                        } else {
                            if !KEYS.contains(inner[j]) {
                                return Err(format!("`{}` is not a key on a phone", inner[j]));
                            }
                            set.push(inner[j]);
                            j += 1;
                        }
                    }
                    if set.is_empty() {
                        return Err("`[]` matches nothing".into());
                    }
                    i += close + 1;
                    elems.push(Elem::Set(set));
                    continue;
                }
                c if KEYS.contains(c) => vec![c],
                c => {
                    return Err(format!(
                        "`{c}` is not part of a digit pattern (X, Z, N, [1-5], 0-9, *, #, . or !)"
                    ))
                }
            };
            elems.push(Elem::Set(set));
            i += 1;
        }
        if elems.is_empty() {
            return Err("the pattern is empty".into());
        }
        Ok(DigitPattern {
            src: src.to_owned(),
            elems,
        })
    }

    pub fn matches(&self, digits: &str) -> bool {
        let d: Vec<char> = digits.chars().collect();
        let mut i = 0;
        for e in &self.elems {
            match e {
                Elem::Set(set) => {
                    if !d.get(i).is_some_and(|c| set.contains(c)) {
                        return false;
                    }
                    i += 1;
                }
                Elem::Rest(min) => return d.len() - i >= *min,
            }
        }
        i == d.len()
    }

    /// The length range the pattern allows: (min, max), max `None` if open.
    pub fn lengths(&self) -> (usize, Option<usize>) {
        let fixed = self
            .elems
            .iter()
            .filter(|e| matches!(e, Elem::Set(_)))
            .count();
        match self.elems.last() {
            Some(Elem::Rest(min)) => (fixed + min, None),
            _ => (fixed, Some(fixed)),
        }
    }
}

impl fmt::Display for DigitPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_plan_patterns() {
        let p = DigitPattern::parse("NXXNXXXXXX").unwrap();
        assert!(p.matches("2125551234"));
        assert!(!p.matches("1125551234"));
        assert!(!p.matches("212555123"));
        assert_eq!(p.lengths(), (10, Some(10)));
        let p = DigitPattern::parse("9[1-3]X.").unwrap();
        assert!(p.matches("9250"));
        assert!(!p.matches("925"));
        assert!(!p.matches("9450"));
        assert_eq!(p.lengths(), (4, None));
        let p = DigitPattern::parse("12!").unwrap();
        assert!(p.matches("12") && p.matches("12999"));
        let p = DigitPattern::parse("[147*]").unwrap();
        assert!(p.matches("*") && !p.matches("2"));
    }

    #[test]
    fn bad_patterns_are_explained() {
        assert!(DigitPattern::parse("X.X").unwrap_err().contains("end"));
        assert!(DigitPattern::parse("[1-")
            .unwrap_err()
            .contains("never closed"));
        assert!(DigitPattern::parse("A").unwrap_err().contains("not part"));
        assert!(DigitPattern::parse("[5-1]").unwrap_err().contains("range"));
        assert!(DigitPattern::parse("").is_err());
    }
}
