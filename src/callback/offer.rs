//! The callback offer a waiting caller hears, as a pure state machine: the
//! key that accepts it, the caller ID read back for confirmation or
//! another number typed (checked against the trunk's dial plan), and the
//! booking. The call task plays what it asks and feeds it keys.

use crate::dialplan::DialPlan;

/// How many numbers a caller may type that the dial plan refuses before
/// the offer is withdrawn.
const MAX_TRIES: u32 = 3;
/// The longest number a caller may type (E.164 has 15 digits, plus prefixes).
const MAX_TYPED: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Offered; the key accepts it.
    Open,
    /// The number is read back: 1 confirms, 2 enters another.
    Confirming(String),
    /// The caller types a number, then `#`.
    Entering(String),
    /// The request is being written.
    Booking(String),
    /// Booked: "booked" plays, then the call ends.
    Booked,
    /// Withdrawn; the caller waits on the line.
    Closed,
}

/// What the call should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Do {
    /// Play these prompts, then the queue's music again; when `listen`,
    /// the caller's answer is awaited (see [`Offer::timeout`]).
    Say { prompts: Vec<String>, listen: bool },
    /// Write the request for this number (E.164); report with [`Offer::stored`].
    Book(String),
    /// Play these, then hang up: the callback is booked.
    SayAndHangUp(Vec<String>),
}

pub struct Offer {
    step: Step,
    key: char,
    plan: DialPlan,
    caller: String,
    refused: u32,
}

impl Offer {
    /// The offer is made to a caller whose caller ID is `caller`.
    pub fn start(key: char, plan: DialPlan, caller: &str) -> (Offer, Do) {
        let offer = Offer {
            step: Step::Open,
            key,
            plan,
            caller: caller.to_owned(),
            refused: 0,
        };
        (
            offer,
            Do::Say {
                prompts: vec!["callback/offer".into()],
                listen: false,
            },
        )
    }

    pub fn step(&self) -> &Step {
        &self.step
    }

    /// Whether the caller is in the middle of answering it (their keys
    /// belong to the offer, and an agent should not interrupt lightly).
    pub fn engaged(&self) -> bool {
        matches!(
            self.step,
            Step::Confirming(_) | Step::Entering(_) | Step::Booking(_) | Step::Booked
        )
    }

    /// "We will call you back at 1 5 5 5 …. If this is correct, press 1."
    fn read_back(&mut self, number: String) -> Vec<Do> {
        let mut prompts = vec!["callback/confirm-number".to_owned()];
        prompts.extend(
            number
                .chars()
                .filter(char::is_ascii_digit)
                .map(|d| format!("digits/{d}")),
        );
        prompts.push("callback/press-1-correct".into());
        self.step = Step::Confirming(number);
        vec![Do::Say {
            prompts,
            listen: true,
        }]
    }

    fn ask_for_number(&mut self, first: Option<&str>) -> Vec<Do> {
        self.step = Step::Entering(String::new());
        let mut prompts: Vec<String> = first.map(str::to_owned).into_iter().collect();
        prompts.push("callback/enter-number".into());
        vec![Do::Say {
            prompts,
            listen: true,
        }]
    }

    /// The typed number is done: read back if the dial plan allows it.
    fn typed(&mut self, typed: String) -> Vec<Do> {
        match self.plan.check(&typed) {
            Ok(number) => self.read_back(number),
            Err(why) => {
                tracing::info!(%typed, %why, "callback number refused");
                self.refused += 1;
                if self.refused >= MAX_TRIES {
                    self.step = Step::Closed;
                    vec![Do::Say {
                        prompts: vec!["callback/refused".into()],
                        listen: false,
                    }]
                } else {
                    self.ask_for_number(Some("callback/refused"))
                }
            }
        }
    }

    /// A key the caller pressed while the offer stands.
    pub fn key(&mut self, key: char) -> Vec<Do> {
        match std::mem::replace(&mut self.step, Step::Closed) {
            Step::Open if key == self.key => match self.plan.check(&self.caller) {
                Ok(number) => self.read_back(number),
                // A withheld or foreign caller ID: they type the number.
                Err(_) => self.ask_for_number(None),
            },
            Step::Confirming(number) if key == '1' => {
                self.step = Step::Booking(number.clone());
                vec![Do::Book(number)]
            }
            Step::Confirming(_) if key == '2' => self.ask_for_number(None),
            Step::Entering(typed) if key == '#' => self.typed(typed),
            Step::Entering(_) if key == '*' => self.ask_for_number(None),
            Step::Entering(mut typed) if key.is_ascii_digit() => {
                if typed.len() < MAX_TYPED {
                    typed.push(key);
                }
                self.step = Step::Entering(typed);
                Vec::new()
            }
            other => {
                self.step = other;
                Vec::new()
            }
        }
    }

    /// No answer came in time: a typed number counts as finished; else the
    /// offer is withdrawn and the caller waits on.
    pub fn timeout(&mut self) -> Vec<Do> {
        match std::mem::replace(&mut self.step, Step::Closed) {
            Step::Entering(typed) if !typed.is_empty() => self.typed(typed),
            Step::Booking(n) => {
                self.step = Step::Booking(n);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// The request was written (or not: the caller waits on the line).
    pub fn stored(&mut self, ok: bool) -> Vec<Do> {
        if !matches!(self.step, Step::Booking(_)) {
            return Vec::new();
        }
        if ok {
            self.step = Step::Booked;
            vec![Do::SayAndHangUp(vec!["callback/booked".into()])]
        } else {
            self.step = Step::Closed;
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> DialPlan {
        DialPlan {
            country_code: "1".into(),
            national_prefix: "1".into(),
            international_prefix: "011".into(),
            allow: vec!["+1NXXNXXXXXX".into()],
            deny: vec!["+1900.".into()],
        }
    }

    fn said(d: &[Do]) -> Vec<String> {
        d.iter()
            .flat_map(|d| match d {
                Do::Say { prompts, .. } | Do::SayAndHangUp(prompts) => prompts.clone(),
                Do::Book(n) => vec![format!("book {n}")],
            })
            .collect()
    }

    #[test]
    fn the_caller_id_is_read_back_and_confirmed_then_booked() {
        let (mut o, first) = Offer::start('1', plan(), "+12125550123");
        assert_eq!(said(&[first]), vec!["callback/offer"]);
        assert!(o.key('5').is_empty(), "other keys do nothing");
        let d = o.key('1');
        let s = said(&d);
        assert_eq!(
            s.first().map(String::as_str),
            Some("callback/confirm-number")
        );
        assert_eq!(s[1..12].join(" "), "digits/1 digits/2 digits/1 digits/2 digits/5 digits/5 digits/5 digits/0 digits/1 digits/2 digits/3");
        assert_eq!(
            s.last().map(String::as_str),
            Some("callback/press-1-correct")
        );
        assert_eq!(o.key('1'), vec![Do::Book("+12125550123".into())]);
        assert_eq!(
            o.stored(true),
            vec![Do::SayAndHangUp(vec!["callback/booked".into()])]
        );
        assert_eq!(o.step(), &Step::Booked);
    }

    #[test]
    fn another_number_is_typed_checked_against_the_dial_plan_and_confirmed() {
        // A withheld caller ID: straight to typing a number.
        let (mut o, _) = Offer::start('1', plan(), "anonymous");
        assert_eq!(said(&o.key('1')), vec!["callback/enter-number"]);
        for k in "19005551234".chars() {
            assert!(o.key(k).is_empty());
        }
        assert_eq!(
            said(&o.key('#')),
            vec!["callback/refused", "callback/enter-number"],
            "a premium number is refused and never booked"
        );
        for k in "2125550199".chars() {
            o.key(k);
        }
        let d = o.key('#');
        assert_eq!(said(&d)[0], "callback/confirm-number");
        assert_eq!(o.step(), &Step::Confirming("+12125550199".into()));
        // 2: another number after all; the timeout finishes a typed one.
        o.key('2');
        for k in "2125550100".chars() {
            o.key(k);
        }
        o.timeout();
        assert_eq!(o.step(), &Step::Confirming("+12125550100".into()));
        assert_eq!(o.key('1'), vec![Do::Book("+12125550100".into())]);
        // The store failed: the caller waits on the line.
        assert!(o.stored(false).is_empty());
        assert_eq!(o.step(), &Step::Closed);
    }

    #[test]
    fn three_refused_numbers_withdraw_the_offer() {
        let (mut o, _) = Offer::start('1', plan(), "+441234567890");
        assert_eq!(
            said(&o.key('1')),
            vec!["callback/enter-number"],
            "a caller ID the trunk may not call is not offered"
        );
        for _ in 0..2 {
            for k in "0114420711111".chars() {
                o.key(k);
            }
            o.key('#');
        }
        assert!(o.engaged());
        for k in "123".chars() {
            o.key(k);
        }
        assert_eq!(said(&o.key('#')), vec!["callback/refused"]);
        assert_eq!(o.step(), &Step::Closed);
        assert!(o.key('1').is_empty(), "withdrawn: the key does nothing now");
        assert!(!o.engaged());
    }
}
