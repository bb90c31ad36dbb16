//! When each job is expected, and which of its occurrences a scan at a given time may judge.
//!
//! An occurrence is *due* at its expected time; a report counts for it when generated within
//! `collection_window_minutes` before that time and `grace_minutes` after it; it is judged for
//! good once the grace has passed (its *deadline*), and may become OK earlier, as soon as a
//! valid backup for it is there. A job's history starts at the beginning of the UTC day it
//! was first seen (the UTC hour, for hourly jobs): nothing before that is ever judged.
//!
//! Times are computed in the job's zone when it has one, DST-correct: a time the clock skips
//! (02:30 on the night clocks go forward) is expected as far after the change as it was into
//! the gap (03:30 local, the same instant as 02:30 at the old offset), and a time the clock
//! goes through twice is expected the first time. Hourly jobs run every UTC hour at their
//! minute (shifted by a zone's non-whole-hour offset, e.g. India's :30).
//!
//! Every function takes the time it judges at: the clock is injected (`monitor scan --now`).

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset,
    TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;

use super::config::{Job, When};

/// Never more than this many occurrences of one job in one listing: a job not scanned for a
/// very long time is judged on its latest occurrences only.
pub const MAX_OCCURRENCES: usize = 1000;

/// One expected occurrence of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occurrence {
    /// The expected time.
    pub due: DateTime<Utc>,
    /// The earliest a report may have been generated and count for this occurrence.
    pub window_start: DateTime<Utc>,
    /// Due plus grace: the occurrence is judged for good from then on.
    pub deadline: DateTime<Utc>,
}

impl Occurrence {
    pub fn new(due: DateTime<Utc>, window_minutes: u32, grace_minutes: u32) -> Self {
        Occurrence {
            due,
            window_start: due - Duration::minutes(window_minutes.into()),
            deadline: due + Duration::minutes(grace_minutes.into()),
        }
    }

    /// Whether a report generated at `t` counts for this occurrence.
    pub fn collects(&self, t: DateTime<Utc>) -> bool {
        self.window_start <= t && t <= self.deadline
    }

    /// Whether a judgement at `now` is final (the deadline has passed).
    pub fn is_final_at(&self, now: DateTime<Utc>) -> bool {
        now >= self.deadline
    }
}

/// The instant a local time of `tz` stands for, by the rules in the module header.
fn to_utc(tz: Option<Tz>, t: NaiveDateTime) -> DateTime<Utc> {
    let Some(tz) = tz else {
        return t.and_utc();
    };
    match tz.from_local_datetime(&t) {
        LocalResult::Single(x) => x.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: read it at the offset in force before the change (found a few hours
            // earlier; no zone changes twice within hours).
            let before = t - Duration::hours(6);
            let offset = match tz.offset_from_local_datetime(&before) {
                LocalResult::Single(o) | LocalResult::Ambiguous(o, _) => o.fix(),
                LocalResult::None => chrono::FixedOffset::east_opt(0).expect("zero offset"),
            };
            (t - Duration::seconds(offset.local_minus_utc().into())).and_utc()
        }
    }
}

fn local_date(tz: Option<Tz>, t: DateTime<Utc>) -> NaiveDate {
    match tz {
        None => t.date_naive(),
        Some(tz) => t.with_timezone(&tz).date_naive(),
    }
}

fn last_day_of_month(year: i32, month: u32) -> u32 {
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map(|d| d.day())
        .unwrap_or(28)
}

/// The due times of `job` in `[from, until]`, oldest first, at most [`MAX_OCCURRENCES`]
/// (the latest ones).
pub fn due_times(job: &Job, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    if until < from {
        return Vec::new();
    }
    let tz = job.timezone;
    let mut out = Vec::new();
    let mut push = |t: DateTime<Utc>| {
        if from <= t && t <= until {
            out.push(t);
        }
    };
    match job.when {
        When::Once { at } => push(to_utc(tz, at)),
        When::Hourly { minute } => {
            // Start far enough back that the first hour is never missed, bounded in count.
            let span_hours = (until - from).num_hours() + 2;
            let skip = (span_hours - MAX_OCCURRENCES as i64 - 2).max(0);
            let start = from - Duration::hours(1) + Duration::hours(skip);
            let mut hour = start
                .with_minute(0)
                .and_then(|t| t.with_second(0))
                .and_then(|t| t.with_nanosecond(0))
                .unwrap_or(start);
            while hour <= until + Duration::hours(1) {
                let shift = match tz {
                    None => 0,
                    Some(tz) => {
                        let off = tz.offset_from_utc_datetime(&hour.naive_utc()).fix();
                        i64::from(off.local_minus_utc() / 60).rem_euclid(60)
                    }
                };
                let m = (i64::from(minute) - shift).rem_euclid(60);
                push(hour + Duration::minutes(m));
                hour += Duration::hours(1);
            }
        }
        When::Daily { time } | When::Weekly { time, .. } | When::Monthly { time, .. } => {
            let first = local_date(tz, from) - Duration::days(1);
            let last = local_date(tz, until) + Duration::days(1);
            let mut d = first;
            // Daily over a long span: begin late enough to stay within the bound.
            let span = (last - first).num_days();
            if matches!(job.when, When::Daily { .. }) && span > MAX_OCCURRENCES as i64 + 2 {
                d = last - Duration::days(MAX_OCCURRENCES as i64 + 2);
            }
            while d <= last {
                let hit = match job.when {
                    When::Daily { .. } => true,
                    When::Weekly { day, .. } => d.weekday() == day,
                    When::Monthly { day, .. } => {
                        d.day() == day.min(last_day_of_month(d.year(), d.month()))
                    }
                    _ => false,
                };
                if hit {
                    push(to_utc(tz, d.and_time(time)));
                }
                d = match d.succ_opt() {
                    Some(n) => n,
                    None => break,
                };
            }
        }
    }
    if out.len() > MAX_OCCURRENCES {
        out.drain(..out.len() - MAX_OCCURRENCES);
    }
    out
}

/// The first due time at or after `t`, if the job has one.
pub fn next_due(job: &Job, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let horizon = match job.when {
        When::Hourly { .. } => Duration::hours(2),
        When::Daily { .. } => Duration::days(3),
        When::Weekly { .. } => Duration::days(9),
        When::Monthly { .. } => Duration::days(64),
        When::Once { at } => {
            let due = to_utc(job.timezone, at);
            return (due >= t).then_some(due);
        }
    };
    due_times(job, t, t + horizon).into_iter().next()
}

/// Where a job's history begins: the start of the UTC day it was first seen (of the UTC
/// hour, for hourly jobs).
pub fn history_start(job: &Job, first_seen: DateTime<Utc>) -> DateTime<Utc> {
    match job.when {
        When::Hourly { .. } => first_seen
            .date_naive()
            .and_time(NaiveTime::from_hms_opt(first_seen.hour(), 0, 0).unwrap_or_default())
            .and_utc(),
        _ => first_seen.date_naive().and_time(NaiveTime::MIN).and_utc(),
    }
}

/// The occurrences a scan at `now` looks at: those due from the job's history start (and
/// after `after`, the last occurrence already judged for good) whose collection window has
/// opened by `now`. Those whose deadline has passed are judged for good; the others only
/// become OK early.
pub fn open_occurrences(
    job: &Job,
    first_seen: DateTime<Utc>,
    after: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    window_minutes: u32,
) -> Vec<Occurrence> {
    let mut from = history_start(job, first_seen);
    if let Some(a) = after {
        from = from.max(a + Duration::seconds(1));
    }
    let until = now + Duration::minutes(window_minutes.into());
    due_times(job, from, until)
        .into_iter()
        .map(|due| Occurrence::new(due, window_minutes, job.grace_minutes))
        .filter(|o| o.window_start <= now)
        .collect()
}

/// The one occurrence a report generated at `generated` counts for: among those whose
/// window holds it, the one due closest to it (the earlier on a tie). A report never makes
/// two occurrences OK, however wide the windows.
pub fn attributed_due(
    job: &Job,
    generated: DateTime<Utc>,
    window_minutes: u32,
) -> Option<DateTime<Utc>> {
    let dues = due_times(
        job,
        generated - Duration::minutes(job.grace_minutes.into()),
        generated + Duration::minutes(window_minutes.into()),
    );
    dues.into_iter()
        .min_by_key(|d| ((*d - generated).num_seconds().abs(), *d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::config::Frequency;
    use chrono::Weekday;

    fn t(s: &str) -> DateTime<Utc> {
        crate::monitor::config::parse_utc(s).unwrap()
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    fn job(frequency: Frequency, when: When, tz: Option<Tz>) -> Job {
        Job {
            id: "j".into(),
            company: "c".into(),
            city: "x".into(),
            site: "s".into(),
            database: "d".into(),
            engine: "postgres".into(),
            frequency,
            when,
            grace_minutes: 60,
            timezone: tz,
        }
    }

    fn daily(h: u32, m: u32) -> Job {
        job(Frequency::Daily, When::Daily { time: hm(h, m) }, None)
    }

    #[test]
    fn a_20h_job_scanned_at_10h_judges_yesterday_not_today() {
        let j = daily(20, 0);
        // First seen the day before yesterday: yesterday's occurrence belongs to its history.
        let occ = open_occurrences(&j, t("2026-12-04 09:00"), None, t("2026-12-06 10:00"), 120);
        let dues: Vec<_> = occ.iter().map(|o| o.due).collect();
        assert_eq!(dues, [t("2026-12-04 20:00"), t("2026-12-05 20:00")]);
        assert!(occ.iter().all(|o| o.is_final_at(t("2026-12-06 10:00"))));
        // Today's 20:00 is not even open at 10:00, nor at 17:59; it is at 18:00, not final.
        assert!(
            open_occurrences(&j, t("2026-12-06 09:00"), None, t("2026-12-06 17:59"), 120)
                .is_empty()
        );
        let o = open_occurrences(&j, t("2026-12-06 09:00"), None, t("2026-12-06 18:00"), 120);
        assert_eq!(o.len(), 1);
        assert!(!o[0].is_final_at(t("2026-12-06 18:00")));
        assert!(!o[0].is_final_at(t("2026-12-06 20:59")));
        assert!(o[0].is_final_at(t("2026-12-06 21:00")));
    }

    #[test]
    fn history_starts_the_utc_day_the_job_appears() {
        let j = daily(2, 0);
        // Added at 10:00: today's 02:00 is judged, yesterday's is not.
        let occ = open_occurrences(&j, t("2026-12-06 10:00"), None, t("2026-12-06 10:00"), 120);
        assert_eq!(
            occ.iter().map(|o| o.due).collect::<Vec<_>>(),
            [t("2026-12-06 02:00")]
        );
        let late = daily(20, 0);
        assert!(open_occurrences(
            &late,
            t("2026-12-06 10:00"),
            None,
            t("2026-12-06 10:00"),
            120
        )
        .is_empty());
        // Hourly: the hour it appears.
        let h = job(Frequency::Hourly, When::Hourly { minute: 15 }, None);
        assert_eq!(
            history_start(&h, t("2026-12-06 10:40")),
            t("2026-12-06 10:00")
        );
        let occ = open_occurrences(&h, t("2026-12-06 10:40"), None, t("2026-12-06 12:00"), 0);
        assert_eq!(
            occ.iter().map(|o| o.due).collect::<Vec<_>>(),
            [t("2026-12-06 10:15"), t("2026-12-06 11:15")]
        );
    }

    #[test]
    fn judged_occurrences_are_not_listed_again() {
        let j = daily(2, 0);
        let occ = open_occurrences(
            &j,
            t("2026-12-01"),
            Some(t("2026-12-05 02:00")),
            t("2026-12-06 10:00"),
            120,
        );
        assert_eq!(
            occ.iter().map(|o| o.due).collect::<Vec<_>>(),
            [t("2026-12-06 02:00")]
        );
    }

    #[test]
    fn window_and_grace_bound_the_reports_that_count() {
        let o = Occurrence::new(t("2026-12-06 02:00"), 120, 60);
        assert!(o.collects(t("2026-12-06 00:00")));
        assert!(!o.collects(t("2026-12-05 23:59")));
        assert!(o.collects(t("2026-12-06 03:00")));
        assert!(!o.collects(t("2026-12-06 03:01")));
    }

    #[test]
    fn a_report_counts_for_one_occurrence_only() {
        let h = job(Frequency::Hourly, When::Hourly { minute: 0 }, None);
        // Window 120 min, grace 60: a 10:20 report lies in the windows of 10:00, 11:00, 12:00.
        assert_eq!(
            attributed_due(&h, t("2026-12-06 10:20"), 120),
            Some(t("2026-12-06 10:00"))
        );
        assert_eq!(
            attributed_due(&h, t("2026-12-06 10:40"), 120),
            Some(t("2026-12-06 11:00"))
        );
        assert_eq!(
            attributed_due(&h, t("2026-12-06 10:30"), 120),
            Some(t("2026-12-06 10:00"))
        );
        let d = daily(2, 0);
        assert_eq!(
            attributed_due(&d, t("2026-12-06 01:00"), 120),
            Some(t("2026-12-06 02:00"))
        );
        assert_eq!(attributed_due(&d, t("2026-12-06 03:01"), 120), None);
        assert_eq!(attributed_due(&d, t("2026-12-05 23:59"), 120), None);
    }

    #[test]
    fn weekly_edges() {
        let j = job(
            Frequency::Weekly,
            When::Weekly {
                day: Weekday::Mon,
                time: hm(23, 30),
            },
            None,
        );
        // 2026-12-07 is a Monday.
        assert_eq!(
            next_due(&j, t("2026-12-06 10:00")),
            Some(t("2026-12-07 23:30"))
        );
        assert_eq!(
            next_due(&j, t("2026-12-07 23:30")),
            Some(t("2026-12-07 23:30"))
        );
        assert_eq!(
            next_due(&j, t("2026-12-07 23:31")),
            Some(t("2026-12-14 23:30"))
        );
        // Across a year's end.
        assert_eq!(
            next_due(&j, t("2026-12-29 00:00")),
            Some(t("2027-01-04 23:30"))
        );
        let dues = due_times(&j, t("2026-12-01"), t("2026-12-31 23:59"));
        assert_eq!(dues.len(), 4);
    }

    #[test]
    fn monthly_edges() {
        let j31 = job(
            Frequency::Monthly,
            When::Monthly {
                day: 31,
                time: hm(1, 0),
            },
            None,
        );
        // A month shorter than the day: its last day.
        let dues = due_times(&j31, t("2027-01-01"), t("2027-05-01"));
        assert_eq!(
            dues,
            [
                t("2027-01-31 01:00"),
                t("2027-02-28 01:00"),
                t("2027-03-31 01:00"),
                t("2027-04-30 01:00")
            ]
        );
        let leap = due_times(&j31, t("2028-02-01"), t("2028-03-01"));
        assert_eq!(leap, [t("2028-02-29 01:00")]);
        let j1 = job(
            Frequency::Monthly,
            When::Monthly {
                day: 1,
                time: hm(0, 0),
            },
            None,
        );
        assert_eq!(
            next_due(&j1, t("2026-12-01 00:00:01")),
            Some(t("2027-01-01 00:00"))
        );
    }

    #[test]
    fn once_is_one_occurrence() {
        let j = job(
            Frequency::Once,
            When::Once {
                at: t("2026-12-06 02:00").naive_utc(),
            },
            None,
        );
        assert_eq!(next_due(&j, t("2026-12-05")), Some(t("2026-12-06 02:00")));
        assert_eq!(next_due(&j, t("2026-12-07")), None);
        assert_eq!(due_times(&j, t("2026-01-01"), t("2027-01-01")).len(), 1);
    }

    #[test]
    fn timezones_follow_daylight_saving_time() {
        let paris = Some(chrono_tz::Europe::Paris);
        let j = job(Frequency::Daily, When::Daily { time: hm(2, 30) }, paris);
        // Winter: UTC+1; summer: UTC+2.
        assert_eq!(next_due(&j, t("2026-12-06")), Some(t("2026-12-06 01:30")));
        assert_eq!(next_due(&j, t("2026-07-01")), Some(t("2026-07-01 00:30")));
        // 2026-03-29: 02:30 does not exist in Paris; read at the old offset (01:30 UTC).
        assert_eq!(next_due(&j, t("2026-03-29")), Some(t("2026-03-29 01:30")));
        assert_eq!(
            next_due(&j, t("2026-03-29 01:31")),
            Some(t("2026-03-30 00:30"))
        );
        // 2026-10-25: 02:30 happens twice; the first one (00:30 UTC) counts.
        assert_eq!(next_due(&j, t("2026-10-25")), Some(t("2026-10-25 00:30")));
        assert_eq!(
            next_due(&j, t("2026-10-25 00:31")),
            Some(t("2026-10-26 01:30"))
        );
        // One occurrence per local day across both changes.
        assert_eq!(due_times(&j, t("2026-03-27"), t("2026-04-01")).len(), 5);
        assert_eq!(due_times(&j, t("2026-10-23"), t("2026-10-28")).len(), 5);
        // Hourly in a half-hour zone.
        let h = job(
            Frequency::Hourly,
            When::Hourly { minute: 0 },
            Some(chrono_tz::Asia::Kolkata),
        );
        assert_eq!(
            next_due(&h, t("2026-12-06 10:00")),
            Some(t("2026-12-06 10:30"))
        );
    }

    #[test]
    fn long_gaps_are_bounded() {
        let h = job(Frequency::Hourly, When::Hourly { minute: 5 }, None);
        let dues = due_times(&h, t("2020-01-01"), t("2026-12-06"));
        assert_eq!(dues.len(), MAX_OCCURRENCES);
        assert_eq!(*dues.last().unwrap(), t("2026-12-05 23:05"));
        let d = daily(2, 0);
        let dues = due_times(&d, t("2000-01-01"), t("2026-12-06 03:00"));
        assert_eq!(dues.len(), MAX_OCCURRENCES);
        assert_eq!(*dues.last().unwrap(), t("2026-12-06 02:00"));
    }
}
