//! Session timers (RFC 4028): how long a call lives without a refresh, who
//! refreshes it, and when. Pure: the SIP core feeds it the headers of
//! each refresh (the INVITE, a re-INVITE, an UPDATE, and their 2xx) and
//! asks at its housekeeping tick what is due; nothing here sends.
//!
//! A carrier whose side of a call died without a BYE, or an agent's phone
//! that lost power, would otherwise hold a call (and a place in every cap)
//! until `calls.max-duration`. With a timer the call ends within one
//! interval.

use std::time::{Duration, Instant};

use super::message::Headers;

/// `calls.session-timer`: the interval we ask for, and the least we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// The interval we ask for on the calls we place, and insert when a
    /// caller asks for none (0: no timer of our own; a caller's is still
    /// honoured).
    pub expires: u32,
    /// The least interval we accept (RFC 4028 asks for 90 s at least).
    pub min_se: u32,
}

/// The smallest `Min-SE` RFC 4028 §4 allows.
pub const MIN_SE_FLOOR: u32 = 90;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            expires: 1800,
            min_se: MIN_SE_FLOOR,
        }
    }
}

/// Who sends the refreshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Us,
    Them,
}

/// An interval both sides agreed on for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    pub interval: u32,
    pub refresher: Refresher,
    /// The peer said `Supported: timer`: our 2xx says `Require: timer`.
    pub peer_supports: bool,
}

/// What a request we received says about the timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Asked {
    /// `Session-Expires` and its `refresher` (`true`: the request's sender).
    expires: Option<(u32, Option<bool>)>,
    min_se: Option<u32>,
    supports: bool,
}

fn header<'a>(h: &'a Headers, full: &str, compact: &str) -> Option<&'a str> {
    h.get(full).or_else(|| h.get(compact))
}

/// `delta-seconds *(;param)`: the number and, for Session-Expires, the
/// `refresher` parameter (`Some(true)` for `uac`).
fn parse_expires(value: &str) -> Option<(u32, Option<bool>)> {
    let mut parts = value.split(';');
    let secs = parts.next()?.trim().parse::<u32>().ok()?;
    let mut refresher = None;
    for p in parts {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        if k.trim().eq_ignore_ascii_case("refresher") {
            refresher = match v.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(true),
                "uas" => Some(false),
                _ => None,
            };
        }
    }
    Some((secs, refresher))
}

fn supports_timer(h: &Headers) -> bool {
    h.get_all_split("Supported")
        .chain(h.get_all_split("k"))
        .chain(h.get_all_split("Require"))
        .any(|t| t.trim().eq_ignore_ascii_case("timer"))
}

fn asked(h: &Headers) -> Asked {
    Asked {
        expires: header(h, "Session-Expires", "x").and_then(parse_expires),
        min_se: h
            .get("Min-SE")
            .and_then(parse_expires)
            .map(|(secs, _)| secs),
        supports: supports_timer(h),
    }
}

/// How we answer a session refresh request (an INVITE, a re-INVITE, an
/// UPDATE) we received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// No timer on this call: the 2xx says nothing about one.
    None,
    /// Accept, with these headers in the 2xx.
    Agree(Agreement),
    /// `422 Session Interval Too Small`, with `Min-SE` this.
    TooSmall(u32),
}

/// RFC 4028 §9: what we answer a refresh request with. When it names no
/// interval we insert ours (`settings.expires`) and refresh ourselves if
/// the peer cannot; we shorten a long one to ours, never below the least
/// either side accepts.
pub fn on_request(h: &Headers, settings: Settings) -> Answer {
    let a = asked(h);
    let floor = settings.min_se.max(a.min_se.unwrap_or(0));
    let (interval, refresher) = match a.expires {
        Some((secs, _)) if secs < settings.min_se => {
            if a.supports {
                return Answer::TooSmall(settings.min_se);
            }
            // It cannot retry with more (a proxy put the value in):
            // we raise it and do the refreshing, which it never sees.
            (settings.min_se, Some(false))
        }
        Some((secs, refresher)) => {
            let interval = if settings.expires > 0 {
                secs.min(settings.expires.max(floor))
            } else {
                secs
            };
            (interval, refresher)
        }
        None if settings.expires == 0 => return Answer::None,
        None => (settings.expires.max(floor), None),
    };
    // The refresher the request chose, or ours: the peer when it can.
    let refresher = match refresher {
        Some(true) => Refresher::Them,
        Some(false) => Refresher::Us,
        None if a.supports => Refresher::Them,
        None => Refresher::Us,
    };
    // A peer that does not support timers cannot refresh.
    let refresher = if a.supports { refresher } else { Refresher::Us };
    Answer::Agree(Agreement {
        interval,
        refresher,
        peer_supports: a.supports,
    })
}

impl Agreement {
    /// The headers of our 2xx to the peer's refresh request.
    pub fn response_headers(&self) -> Vec<(&'static str, String)> {
        // In a response, `uac` names the request's sender: the peer.
        let who = match self.refresher {
            Refresher::Them => "uac",
            Refresher::Us => "uas",
        };
        let mut out = vec![(
            "Session-Expires",
            format!("{};refresher={who}", self.interval),
        )];
        if self.peer_supports {
            out.push(("Require", "timer".to_owned()));
        }
        out
    }

    /// The headers of a refresh request we send (re-INVITE or UPDATE):
    /// we keep the refreshing.
    pub fn request_headers(&self, settings: Settings) -> Vec<(&'static str, String)> {
        vec![
            ("Supported", "timer".to_owned()),
            (
                "Session-Expires",
                format!("{};refresher=uac", self.interval),
            ),
            ("Min-SE", settings.min_se.to_string()),
        ]
    }
}

/// The headers of an INVITE we place (an agent's phone, a transfer, a
/// callback): we support timers and ask for ours; the far end picks who
/// refreshes. `min_se` is raised by a 422 we were sent.
pub fn invite_headers(settings: Settings, min_se: u32) -> Vec<(&'static str, String)> {
    let mut out = vec![("Supported", "timer".to_owned())];
    if settings.expires > 0 {
        let expires = settings.expires.max(min_se);
        out.push(("Session-Expires", expires.to_string()));
        out.push(("Min-SE", settings.min_se.max(min_se).to_string()));
    }
    out
}

/// RFC 4028 §7.2: the 2xx to a refresh request we sent. No
/// `Session-Expires` means no timer (the far end does not support one and
/// nobody on the way asked); `refresher=uac` means us, the request's sender.
pub fn on_response(h: &Headers) -> Option<Agreement> {
    let (interval, refresher) = header(h, "Session-Expires", "x").and_then(parse_expires)?;
    if interval == 0 {
        return None;
    }
    Some(Agreement {
        interval,
        refresher: match refresher {
            Some(false) => Refresher::Them,
            // Unset in a 2xx is an error of the far end's; refreshing
            // ourselves keeps the call alive either way.
            _ => Refresher::Us,
        },
        peer_supports: supports_timer(h),
    })
}

/// The `Min-SE` of a 422 to our request: the interval to ask for next.
pub fn min_se_of_422(h: &Headers) -> Option<u32> {
    h.get("Min-SE")
        .and_then(parse_expires)
        .map(|(secs, _)| secs)
        .filter(|s| *s > 0 && *s <= 86_400)
}

/// What is due on a call's timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Send a refresh now (we are the refresher, half the interval passed).
    Refresh,
    /// No refresh came (or ours failed) in time: the session is over;
    /// send BYE.
    Expire,
}

/// One call's running timer.
#[derive(Debug, Clone, Copy)]
pub struct Timer {
    pub agreement: Agreement,
    refreshed_at: Instant,
    /// Our refresh is in flight (or was sent): not sent again before its
    /// answer, or before `retry_at` after a failure.
    refreshing: bool,
    retry_at: Option<Instant>,
}

impl Timer {
    pub fn new(agreement: Agreement, now: Instant) -> Timer {
        Timer {
            agreement,
            refreshed_at: now,
            refreshing: false,
            retry_at: None,
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(u64::from(self.agreement.interval))
    }

    /// When the session ends without a refresh. The side that does not
    /// refresh allows the refresher its last attempt's time, RFC 4028
    /// §10: the interval less min(32 s, a third of it).
    pub fn expires_at(&self) -> Instant {
        let interval = self.interval();
        match self.agreement.refresher {
            Refresher::Us => self.refreshed_at + interval,
            Refresher::Them => {
                let margin = Duration::from_secs(32).min(interval / 3);
                self.refreshed_at + interval - margin
            }
        }
    }

    /// When we refresh, if we are the refresher: at half the interval,
    /// or when a failed attempt may be tried again.
    fn refresh_at(&self) -> Option<Instant> {
        if self.agreement.refresher != Refresher::Us {
            return None;
        }
        if self.refreshing {
            return self.retry_at;
        }
        Some(self.refreshed_at + self.interval() / 2)
    }

    /// The next instant something is due.
    pub fn next_at(&self) -> Instant {
        let expire = self.expires_at();
        self.refresh_at().map_or(expire, |r| r.min(expire))
    }

    /// What is due at `now`, if anything. A refresh is reported once, until
    /// [`Timer::refreshed`] or [`Timer::refresh_failed`].
    pub fn poll(&mut self, now: Instant) -> Option<Due> {
        if now >= self.expires_at() {
            return Some(Due::Expire);
        }
        match self.refresh_at() {
            Some(at) if now >= at => {
                self.refreshing = true;
                self.retry_at = None;
                Some(Due::Refresh)
            }
            _ => None,
        }
    }

    /// A refresh succeeded (ours was answered 2xx, or we answered theirs
    /// 2xx) with this agreement; `None`: the refresh turned the timer off.
    /// Returns whether the timer still runs.
    pub fn refreshed(&mut self, agreement: Option<Agreement>, now: Instant) -> bool {
        match agreement {
            Some(a) => {
                *self = Timer::new(a, now);
                true
            }
            None => false,
        }
    }

    /// Our refresh failed without ending the dialog (a 491, a 500): try
    /// again after a tenth of the interval (at least 2 s), while the
    /// session lasts.
    pub fn refresh_failed(&mut self, now: Instant) {
        let wait = (self.interval() / 10).max(Duration::from_secs(2));
        self.refreshing = true;
        self.retry_at = Some(now + wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&str, &str)]) -> Headers {
        Headers::of(lines)
    }

    const S: Settings = Settings {
        expires: 1800,
        min_se: 90,
    };

    #[test]
    fn a_carrier_that_asks_for_90_s_and_refreshes_itself_gets_that() {
        let h = headers(&[
            ("Supported", "timer, 100rel"),
            ("Session-Expires", "90;refresher=uac"),
        ]);
        let Answer::Agree(a) = on_request(&h, S) else {
            panic!("agreed");
        };
        assert_eq!(a.interval, 90);
        assert_eq!(a.refresher, Refresher::Them);
        assert_eq!(
            a.response_headers(),
            [
                ("Session-Expires", "90;refresher=uac".to_owned()),
                ("Require", "timer".to_owned())
            ]
        );
    }

    #[test]
    fn too_small_is_422_with_our_min_se_unless_the_peer_cannot_retry() {
        let h = headers(&[("Supported", "timer"), ("Session-Expires", "60")]);
        assert_eq!(on_request(&h, S), Answer::TooSmall(90));
        // Compact forms count too.
        let h = headers(&[("k", "timer"), ("x", "30;refresher=uas")]);
        assert_eq!(on_request(&h, S), Answer::TooSmall(90));
        // Without `timer` support, a proxy put it there: raise it and refresh.
        let h = headers(&[("Session-Expires", "60")]);
        assert_eq!(
            on_request(&h, S),
            Answer::Agree(Agreement {
                interval: 90,
                refresher: Refresher::Us,
                peer_supports: false
            })
        );
    }

    #[test]
    fn a_long_interval_is_shortened_to_ours_but_never_below_min_se() {
        let h = headers(&[("Supported", "timer"), ("Session-Expires", "7200")]);
        let Answer::Agree(a) = on_request(&h, S) else {
            panic!()
        };
        assert_eq!(a.interval, 1800);
        // The peer's Min-SE is above ours: not below it.
        let h = headers(&[
            ("Supported", "timer"),
            ("Session-Expires", "7200"),
            ("Min-SE", "3600"),
        ]);
        let Answer::Agree(a) = on_request(&h, S) else {
            panic!()
        };
        assert_eq!(a.interval, 3600);
        // No refresher named, the peer supports timers: the peer refreshes.
        assert_eq!(a.refresher, Refresher::Them);
        // refresher=uas: we do.
        let h = headers(&[
            ("Supported", "timer"),
            ("Session-Expires", "600;refresher=uas"),
        ]);
        let Answer::Agree(a) = on_request(&h, S) else {
            panic!()
        };
        assert_eq!((a.interval, a.refresher), (600, Refresher::Us));
        assert_eq!(a.response_headers()[0].1, "600;refresher=uas");
    }

    #[test]
    fn no_session_expires_gets_ours_and_a_peer_without_timers_is_refreshed_by_us() {
        let Answer::Agree(a) = on_request(&headers(&[]), S) else {
            panic!()
        };
        assert_eq!((a.interval, a.refresher), (1800, Refresher::Us));
        // No Require: timer towards a peer that does not know it.
        assert_eq!(a.response_headers().len(), 1);
        let off = Settings {
            expires: 0,
            min_se: 90,
        };
        assert_eq!(on_request(&headers(&[]), off), Answer::None);
        // A refresher=uac from a peer that says it has no timer support
        // cannot be trusted to refresh.
        let h = headers(&[("Session-Expires", "600;refresher=uac")]);
        let Answer::Agree(a) = on_request(&h, S) else {
            panic!()
        };
        assert_eq!(a.refresher, Refresher::Us);
    }

    #[test]
    fn the_answer_to_our_request_names_the_refresher_from_our_side() {
        let h = headers(&[
            ("Session-Expires", "300;refresher=uac"),
            ("Require", "timer"),
        ]);
        let a = on_response(&h).unwrap();
        assert_eq!((a.interval, a.refresher), (300, Refresher::Us));
        let h = headers(&[("Session-Expires", "300;refresher=uas")]);
        assert_eq!(on_response(&h).unwrap().refresher, Refresher::Them);
        assert_eq!(on_response(&headers(&[])), None);
        assert_eq!(min_se_of_422(&headers(&[("Min-SE", "1200")])), Some(1200));
        assert_eq!(
            invite_headers(S, 1200),
            [
                ("Supported", "timer".to_owned()),
                ("Session-Expires", "1800".to_owned()),
                ("Min-SE", "1200".to_owned())
            ]
        );
    }

    fn agreement(interval: u32, refresher: Refresher) -> Agreement {
        Agreement {
            interval,
            refresher,
            peer_supports: true,
        }
    }

    #[test]
    fn as_the_refresher_we_refresh_at_half_the_interval_once_until_answered() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut t = Timer::new(agreement(90, Refresher::Us), t0);
        assert_eq!(t.next_at(), at(45));
        assert_eq!(t.poll(at(44)), None);
        assert_eq!(t.poll(at(45)), Some(Due::Refresh));
        // Not again while it is in flight.
        assert_eq!(t.poll(at(50)), None);
        assert_eq!(t.next_at(), at(90));
        // Answered at 46 s: the next one is due at 91 s.
        assert!(t.refreshed(Some(agreement(90, Refresher::Us)), at(46)));
        assert_eq!(t.next_at(), at(91));
        assert_eq!(t.poll(at(91)), Some(Due::Refresh));
        // It fails (a 491): tried again 9 s later; nothing succeeds: the
        // session ends at the full interval.
        t.refresh_failed(at(92));
        assert_eq!(t.poll(at(100)), None);
        assert_eq!(t.poll(at(101)), Some(Due::Refresh));
        assert_eq!(t.poll(at(135)), None);
        assert_eq!(t.poll(at(136)), Some(Due::Expire));
    }

    #[test]
    fn as_the_other_side_we_end_the_call_at_the_interval_less_its_margin() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // 90 s: 90 − min(32, 30) = 60 s.
        let mut t = Timer::new(agreement(90, Refresher::Them), t0);
        assert_eq!(t.next_at(), at(60));
        assert_eq!(t.poll(at(59)), None);
        assert_eq!(t.poll(at(60)), Some(Due::Expire));
        // 1800 s: 1800 − 32.
        let mut t = Timer::new(agreement(1800, Refresher::Them), t0);
        assert_eq!(t.next_at(), at(1768));
        // Their refresh at 50 s moves it; a refresh may also hand the
        // refreshing over to us.
        assert!(t.refreshed(Some(agreement(1800, Refresher::Them)), at(50)));
        assert_eq!(t.poll(at(1817)), None);
        assert_eq!(t.poll(at(1818)), Some(Due::Expire));
        assert!(t.refreshed(Some(agreement(120, Refresher::Us)), at(1000)));
        assert_eq!(t.poll(at(1060)), Some(Due::Refresh));
        // A refresh without Session-Expires turns the timer off.
        assert!(!t.refreshed(None, at(1061)));
    }
}
