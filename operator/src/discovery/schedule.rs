//! When a scan runs: one-shot scans once per spec generation, scheduled scans at the cron
//! times of `spec.schedule` in `spec.timeZone`. Missed times (an operator that was down)
//! start one run, not one per missed time. Pure: the engine passes the clock in.
use std::str::FromStr;

use chrono::{Datelike, TimeZone as _, Timelike};
use croner::Cron;
use jiff::{Timestamp, civil, tz::TimeZone};

/// A parsed `spec.schedule` in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
}

impl Schedule {
    /// `expression` (five fields or a macro, as validation accepts) in `zone` (IANA name;
    /// UTC when absent). Errors name what does not parse.
    pub fn parse(expression: &str, zone: Option<&str>) -> Result<Self, String> {
        let cron = Cron::from_str(expression)
            .map_err(|e| format!("schedule {expression:?} does not parse: {e}"))?;
        let zone = match zone {
            Some(name) => {
                TimeZone::get(name).map_err(|e| format!("time zone {name:?} is unknown: {e}"))?
            }
            None => TimeZone::UTC,
        };
        Ok(Self { cron, zone })
    }

    /// The first firing strictly after `after`. croner matches wall-clock fields; it is given
    /// the zone's wall clock as if it were UTC and jiff turns the answer back into an instant,
    /// so DST is resolved once, by jiff: a time skipped by a spring-forward fires at the
    /// shifted instant, a time that occurs twice fires once (the first).
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let mut wall = after.to_zoned(self.zone.clone()).datetime();
        // A fold can put the next wall time before `after`; the one after it is the answer.
        for _ in 0..4 {
            let next = self
                .cron
                .find_next_occurrence(&as_chrono(wall)?, false)
                .ok()?;
            let next_wall = civil::DateTime::new(
                i16::try_from(next.year()).ok()?,
                i8::try_from(next.month()).ok()?,
                i8::try_from(next.day()).ok()?,
                i8::try_from(next.hour()).ok()?,
                i8::try_from(next.minute()).ok()?,
                0,
                0,
            )
            .ok()?;
            let at = self
                .zone
                .to_ambiguous_zoned(next_wall)
                .compatible()
                .ok()?
                .timestamp();
            if at > after {
                return Some(at);
            }
            wall = next_wall;
        }
        None
    }
}

fn as_chrono(wall: civil::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::Utc
        .with_ymd_and_hms(
            i32::from(wall.year()),
            u32::try_from(wall.month()).ok()?,
            u32::try_from(wall.day()).ok()?,
            u32::try_from(wall.hour()).ok()?,
            u32::try_from(wall.minute()).ok()?,
            u32::try_from(wall.second()).ok()?,
        )
        .single()
}

/// What the scheduler knows of a scan's runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// A run is Pending or Running.
    pub active: bool,
    /// Creation time of the newest run, if any.
    pub last_created: Option<Timestamp>,
    /// Whether a run exists for the scan's current generation.
    pub ran_this_generation: bool,
}

/// Whether to start a run now, and when the next scheduled one is due (for the status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub start_now: bool,
    pub next_run: Option<Timestamp>,
}

/// A one-shot scan runs once per generation (a spec change runs it again); a scheduled scan
/// runs at the first cron time after its last run, or after `created` when it never ran.
/// Nothing starts while suspended or while a run is active (one run per scan at a time).
pub fn decide(
    schedule: Option<&Schedule>,
    suspended: bool,
    created: Timestamp,
    history: History,
    now: Timestamp,
) -> Decision {
    if suspended {
        return Decision {
            start_now: false,
            next_run: None,
        };
    }
    let Some(schedule) = schedule else {
        return Decision {
            start_now: !history.active && !history.ran_this_generation,
            next_run: None,
        };
    };
    let since = history.last_created.unwrap_or(created);
    let due = schedule.next_after(since);
    let start_now = !history.active && due.is_some_and(|at| at <= now);
    let next_run = if start_now {
        schedule.next_after(now)
    } else {
        due.map(|at| at.max(now))
    };
    Decision {
        start_now,
        next_run,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn next_times_follow_the_zone_across_daylight_saving() {
        let daily = Schedule::parse("30 1 * * *", Some("Europe/London")).expect("schedule");
        // Winter: London is UTC.
        assert_eq!(
            daily.next_after(at("2026-01-10T12:00:00Z")),
            Some(at("2026-01-11T01:30:00Z"))
        );
        // Summer: London is UTC+1.
        assert_eq!(
            daily.next_after(at("2026-07-10T12:00:00Z")),
            Some(at("2026-07-11T00:30:00Z"))
        );
        // 29 March 2026: 01:00 → 02:00 local, so 01:30 does not exist; it fires at the
        // shifted instant (02:30 BST = 01:30 UTC).
        assert_eq!(
            daily.next_after(at("2026-03-28T12:00:00Z")),
            Some(at("2026-03-29T01:30:00Z"))
        );
        // 25 October 2026: 01:30 local happens twice; it fires once, at the first.
        let first = daily.next_after(at("2026-10-24T12:00:00Z")).expect("next");
        assert_eq!(first, at("2026-10-25T00:30:00Z"));
        assert_eq!(
            daily.next_after(first),
            Some(at("2026-10-26T01:30:00Z")),
            "not again an hour later"
        );
    }

    #[test]
    fn vixie_semantics_and_macros() {
        // Both day fields restricted: either matches (the 1st, or any Monday).
        let s = Schedule::parse("0 9 1 * MON", None).expect("schedule");
        assert_eq!(
            s.next_after(at("2026-12-02T00:00:00Z")),
            Some(at("2026-12-07T09:00:00Z")),
            "Monday 7 December"
        );
        assert_eq!(
            s.next_after(at("2026-12-29T00:00:00Z")),
            Some(at("2027-01-01T09:00:00Z")),
            "Friday 1 January"
        );
        let hourly = Schedule::parse("@hourly", None).expect("macro");
        assert_eq!(
            hourly.next_after(at("2026-12-07T10:59:59Z")),
            Some(at("2026-12-07T11:00:00Z"))
        );
        assert!(Schedule::parse("0 9 * *", None).is_err());
        assert!(Schedule::parse("0 9 * * *", Some("Not/AZone")).is_err());
    }

    #[test]
    fn one_shot_scans_run_once_per_generation() {
        let now = at("2026-12-07T10:00:00Z");
        let never = History {
            active: false,
            last_created: None,
            ran_this_generation: false,
        };
        assert!(decide(None, false, now, never, now).start_now);
        let ran = History {
            ran_this_generation: true,
            last_created: Some(now),
            ..never
        };
        assert!(!decide(None, false, now, ran, now).start_now);
        assert!(!decide(None, true, now, never, now).start_now, "suspended");
        let active = History {
            active: true,
            ..never
        };
        assert!(!decide(None, false, now, active, now).start_now);
    }

    #[test]
    fn scheduled_scans_catch_up_once() {
        let every_10 = Schedule::parse("*/10 * * * *", None).expect("schedule");
        let created = at("2026-12-07T09:00:30Z");
        let now = at("2026-12-07T10:05:00Z");
        // Never ran and six times were missed: one run now, the next at 10:10.
        let d = decide(
            Some(&every_10),
            false,
            created,
            History {
                active: false,
                last_created: None,
                ran_this_generation: false,
            },
            now,
        );
        assert_eq!(
            d,
            Decision {
                start_now: true,
                next_run: Some(at("2026-12-07T10:10:00Z"))
            }
        );
        // Ran at 10:00: nothing until 10:10.
        let d = decide(
            Some(&every_10),
            false,
            created,
            History {
                active: false,
                last_created: Some(at("2026-12-07T10:00:00Z")),
                ran_this_generation: true,
            },
            now,
        );
        assert_eq!(
            d,
            Decision {
                start_now: false,
                next_run: Some(at("2026-12-07T10:10:00Z"))
            }
        );
        // Still running at its next time: it waits (one run per scan), due as soon as it ends.
        let d = decide(
            Some(&every_10),
            false,
            created,
            History {
                active: true,
                last_created: Some(at("2026-12-07T09:50:00Z")),
                ran_this_generation: true,
            },
            now,
        );
        assert!(!d.start_now);
        assert_eq!(d.next_run, Some(now));
    }
}
