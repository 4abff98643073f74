//! Business hours: a named schedule is an IANA time zone, weekly opening
//! times, holidays and one-off overrides. `is_open(now)` is evaluated in the
//! schedule's own zone, so a follow-the-sun line is one file and DST changes
//! need no care from the author.
//!
//! ```yaml
//! schedules:
//!   support-hours:
//!     time-zone: America/New_York
//!     weekly:
//!       mon-fri: 09:00-17:00
//!       sat: [10:00-12:00, 13:00-15:00]
//!     holidays: [2026-12-25, 2027-01-01]
//!     overrides:
//!       2026-12-24: 09:00-12:00
//!       2026-12-31: closed
//! ```

use std::collections::BTreeMap;
use std::fmt;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Deserializer};

/// Minutes since local midnight: `[start, end)`; `end` may be 1440 (24:00).
/// A range whose end is before its start runs past midnight into the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: u16,
    pub end: u16,
}

impl TimeRange {
    fn overnight(&self) -> bool {
        self.end <= self.start
    }
}

/// One day's opening times; empty means closed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayHours(pub Vec<TimeRange>);

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub time_zone: TimeZone,
    /// Monday first.
    pub weekly: [DayHours; 7],
    pub holidays: Vec<Date>,
    pub overrides: BTreeMap<Date, DayHours>,
}

impl Schedule {
    /// Whether the line is open at `now`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        let local = now.to_zoned_datetime(self.time_zone.clone());
        let date = local.date();
        let minute =
            u16::from(local.hour().unsigned_abs()) * 60 + u16::from(local.minute().unsigned_abs());
        let today = self.hours_on(date);
        let open_today = today.0.iter().any(|r| {
            if r.overnight() {
                minute >= r.start
            } else {
                minute >= r.start && minute < r.end
            }
        });
        if open_today {
            return true;
        }
        // Yesterday's overnight range reaching into this morning.
        let Ok(yesterday) = date.yesterday() else {
            return false;
        };
        self.hours_on(yesterday)
            .0
            .iter()
            .any(|r| r.overnight() && minute < r.end)
    }

    fn hours_on(&self, date: Date) -> DayHours {
        if let Some(h) = self.overrides.get(&date) {
            return h.clone();
        }
        if self.holidays.contains(&date) {
            return DayHours::default();
        }
        self.weekly[weekday_index(date.weekday())].clone()
    }
}

fn weekday_index(w: Weekday) -> usize {
    (w.to_monday_zero_offset()) as usize
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn parse_time(s: &str) -> Result<u16, String> {
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}` is not a time: write HH:MM"))?;
    let h: u16 = h
        .parse()
        .map_err(|_| format!("`{s}` is not a time: write HH:MM"))?;
    let m: u16 = m
        .parse()
        .map_err(|_| format!("`{s}` is not a time: write HH:MM"))?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(format!("`{s}` is not a time of day (00:00 to 24:00)"));
    }
    Ok(h * 60 + m)
}

impl std::str::FromStr for TimeRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("`{s}` is not a time range: write 09:00-17:00"))?;
        let start = parse_time(a.trim())?;
        let end = parse_time(b.trim())?;
        if start == 1440 {
            return Err(format!("`{s}` starts at 24:00; start at 00:00 instead"));
        }
        if start == end {
            return Err(format!("`{s}` is empty; for a whole day write 00:00-24:00"));
        }
        Ok(TimeRange { start, end })
    }
}

/// `closed`, `09:00-17:00`, or a list of ranges.
fn parse_day(v: StrOrList) -> Result<DayHours, String> {
    let items = match v {
        StrOrList::One(s) if s.trim() == "closed" => return Ok(DayHours::default()),
        StrOrList::One(s) => vec![s],
        StrOrList::Many(v) => v,
    };
    items
        .iter()
        .map(|s| s.parse())
        .collect::<Result<Vec<_>, _>>()
        .map(DayHours)
}

#[derive(Deserialize, PartialEq)]
#[serde(untagged)]
enum StrOrList {
    One(String),
    Many(Vec<String>),
}

/// `mon`, `mon-fri`, `sat-sun`, `daily`.
fn parse_days(key: &str) -> Result<Vec<usize>, String> {
    let idx = |d: &str| {
        DAYS.iter().position(|x| *x == d.trim()).ok_or_else(|| {
            format!("`{d}` is not a day: use mon, tue, wed, thu, fri, sat, sun, a range like mon-fri, or daily")
        })
    };
    if key == "daily" {
        return Ok((0..7).collect());
    }
    match key.split_once('-') {
        None => Ok(vec![idx(key)?]),
        Some((a, b)) => {
            let (a, b) = (idx(a)?, idx(b)?);
            if b < a {
                return Err(format!(
                    "`{key}` runs backwards: write the earlier day first"
                ));
            }
            Ok((a..=b).collect())
        }
    }
}

fn parse_date(s: &str) -> Result<Date, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a date: write YYYY-MM-DD"))
}

#[derive(Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSchedule {
    time_zone: String,
    #[serde(default)]
    weekly: BTreeMap<String, StrOrList>,
    #[serde(default)]
    holidays: Vec<String>,
    #[serde(default)]
    overrides: BTreeMap<String, StrOrList>,
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = RawSchedule::deserialize(d)?;
        let time_zone = TimeZone::get(&raw.time_zone).map_err(|_| {
            D::Error::custom(format!(
                "`{}` is not an IANA time zone (e.g. Europe/London, America/New_York, UTC)",
                raw.time_zone
            ))
        })?;
        let mut weekly: [DayHours; 7] = Default::default();
        let mut seen = [false; 7];
        for (key, hours) in raw.weekly {
            let hours = parse_day(hours).map_err(D::Error::custom)?;
            for day in parse_days(&key).map_err(D::Error::custom)? {
                if seen[day] {
                    return Err(D::Error::custom(format!(
                        "{} is given twice in `weekly`",
                        DAYS[day]
                    )));
                }
                seen[day] = true;
                weekly[day] = hours.clone();
            }
        }
        let holidays = raw
            .holidays
            .iter()
            .map(|s| parse_date(s))
            .collect::<Result<_, _>>()
            .map_err(D::Error::custom)?;
        let mut overrides = BTreeMap::new();
        for (date, hours) in raw.overrides {
            let date = parse_date(&date).map_err(D::Error::custom)?;
            overrides.insert(date, parse_day(hours).map_err(D::Error::custom)?);
        }
        Ok(Schedule {
            time_zone,
            weekly,
            holidays,
            overrides,
        })
    }
}

impl fmt::Display for TimeRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(yaml: &str) -> Schedule {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const NEW_YORK: &str = "
time-zone: America/New_York
weekly:
  mon-fri: 09:00-17:00
  sat: [10:00-12:00, 13:00-15:00]
holidays: [2026-12-25]
overrides:
  2026-12-24: 09:00-12:00
  2026-11-27: closed
";

    #[test]
    fn weekly_hours_holidays_and_overrides() {
        let s = schedule(NEW_YORK);
        // Monday 2026-11-23, 10:00 in New York (EST, -05:00).
        assert!(s.is_open(at("2026-11-23T15:00:00Z")));
        assert!(!s.is_open(at("2026-11-23T13:59:59Z"))); // 08:59
        assert!(s.is_open(at("2026-11-23T14:00:00Z"))); // 09:00
        assert!(!s.is_open(at("2026-11-23T22:00:00Z"))); // 17:00 closes
                                                         // Saturday's lunch break.
        assert!(s.is_open(at("2026-11-28T15:30:00Z"))); // 10:30
        assert!(!s.is_open(at("2026-11-28T17:30:00Z"))); // 12:30
        assert!(s.is_open(at("2026-11-28T18:30:00Z"))); // 13:30
        assert!(!s.is_open(at("2026-11-29T15:30:00Z"))); // Sunday
                                                         // Christmas (a Friday) closed, Christmas Eve half a day, a closed override.
        assert!(!s.is_open(at("2026-12-25T15:00:00Z")));
        assert!(s.is_open(at("2026-12-24T16:00:00Z"))); // 11:00
        assert!(!s.is_open(at("2026-12-24T18:00:00Z"))); // 13:00
        assert!(!s.is_open(at("2026-11-27T15:00:00Z")));
    }

    #[test]
    fn opening_hours_follow_local_time_across_dst() {
        let s = schedule(NEW_YORK);
        // Before the spring change (EST, -5) and after it (EDT, -4): 09:00 local
        // is 14:00Z on Friday 6 March 2026 and 13:00Z on Monday 9 March.
        assert!(!s.is_open(at("2026-03-06T13:30:00Z")));
        assert!(s.is_open(at("2026-03-06T14:00:00Z")));
        assert!(s.is_open(at("2026-03-09T13:00:00Z")));
        assert!(!s.is_open(at("2026-03-09T12:59:00Z")));

        // Berlin changes on another date (29 March 2026): on Monday 23 March
        // 09:00 is 08:00Z, on Monday 30 March it is 07:00Z.
        let b = schedule(
            "time-zone: Europe/Berlin\nweekly: { mon-fri: 09:00-17:00 }\nholidays: [2026-04-03]\n",
        );
        assert!(b.is_open(at("2026-03-23T08:00:00Z")));
        assert!(!b.is_open(at("2026-03-23T07:30:00Z")));
        assert!(b.is_open(at("2026-03-30T07:00:00Z")));
        assert!(!b.is_open(at("2026-03-30T06:59:00Z")));
        // Good Friday is a holiday in Berlin while New York is open.
        assert!(!b.is_open(at("2026-04-03T10:00:00Z")));
        assert!(s.is_open(at("2026-04-03T14:00:00Z")));
    }

    #[test]
    fn overnight_and_round_the_clock() {
        let s = schedule("time-zone: UTC\nweekly: { fri: 22:00-06:00 }\n");
        assert!(s.is_open(at("2026-11-27T23:00:00Z"))); // Friday night
        assert!(s.is_open(at("2026-11-28T05:59:00Z"))); // Saturday morning
        assert!(!s.is_open(at("2026-11-28T06:00:00Z")));
        assert!(!s.is_open(at("2026-11-27T21:00:00Z")));
        let always = schedule("time-zone: UTC\nweekly: { daily: 00:00-24:00 }\n");
        assert!(always.is_open(at("2026-11-28T23:59:59Z")));
        assert!(always.is_open(at("2026-11-29T00:00:00Z")));
    }

    #[test]
    fn mistakes_are_explained() {
        let err = |y: &str| {
            serde_saphyr::from_str::<Schedule>(y)
                .unwrap_err()
                .to_string()
        };
        assert!(err("time-zone: Mars/Olympus\n").contains("IANA time zone"));
        assert!(err("time-zone: UTC\nweekly: { mon: 9-17 }\n").contains("HH:MM"));
        assert!(err("time-zone: UTC\nweekly: { fri-mon: 09:00-17:00 }\n").contains("backwards"));
        assert!(
            err("time-zone: UTC\nweekly: { mon-fri: 09:00-17:00, fri: closed }\n")
                .contains("fri is given twice")
        );
        assert!(err("time-zone: UTC\nholidays: [25/12/2026]\n").contains("YYYY-MM-DD"));
        assert!(err("time-zone: UTC\nweekly: { mon: 25:00-26:00 }\n").contains("time of day"));
    }
}
