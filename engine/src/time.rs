//! Local dates as instants: the one rule for "midnight of a date in a zone" that the whole
//! workspace uses (the activities' listing window from `synchronize_from`, the stored instants of
//! all-day activities, the API's ordering of all-day activities).
//!
//! Midnight does not exist in every zone on every date: where a DST change skips it (America/
//! Santiago, Asia/Beirut, America/Havana and others move their clocks from 00:00 to 01:00), the
//! day starts at the end of the gap, e.g. 01:00. Where a change repeats it, the first 00:00
//! counts. A date a zone skipped entirely (Pacific/Apia skipped 2011-12-30) starts where the next
//! date starts.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The first instant of `date` in `tz`: local midnight, or, when a DST gap skips midnight, the
/// first local time after the gap (the instant the clocks jump).
pub fn start_of_day(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    if let Some(t) = tz.from_local_datetime(&midnight).earliest() {
        return t.with_timezone(&Utc);
    }
    first_instant_at_or_after(midnight, tz)
}

/// [`start_of_day`] in the zone named `tz` (an IANA name); `None` when chrono-tz does not know
/// the name.
pub fn start_of_day_in(date: NaiveDate, tz: &str) -> Option<DateTime<Utc>> {
    tz.parse::<Tz>().ok().map(|z| start_of_day(date, z))
}

/// The first instant whose local time in `tz` is `local` or later, for a `local` that does not
/// exist (it lies in a gap). Binary search over 80 hours around it: no zone's offset exceeds
/// ±15 hours, so the local time is below `local` at the lower end and above it at the upper end,
/// and "local time ≥ `local`" flips exactly once in between (going back across `local` would
/// make it exist).
fn first_instant_at_or_after(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    // Whole seconds: zone offsets and transitions are whole seconds.
    let at = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let naive_utc = local.and_utc().timestamp();
    let mut lo = naive_utc - 40 * 3600; // local time < `local`
    let mut hi = naive_utc + 40 * 3600; // local time >= `local`
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if at(mid).with_timezone(&tz).naive_local() >= local {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    at(hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, Timelike};
    use proptest::prelude::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn ordinary_midnight() {
        assert_eq!(
            start_of_day(date(2026, 7, 1), chrono_tz::Europe::Berlin),
            utc("2026-06-30T22:00:00Z")
        );
        assert_eq!(
            start_of_day(date(2026, 7, 1), chrono_tz::UTC),
            utc("2026-07-01T00:00:00Z")
        );
    }

    /// Zones whose clocks jump from 00:00 to 01:00: the day starts at 01:00 local. The rule this
    /// replaced in the activities sync fell back to UTC midnight there (03:00 in Beirut, so the
    /// listing window missed the first two hours of the day; 20:00 the day before in Santiago).
    #[test]
    fn midnight_in_a_dst_gap_starts_the_day_at_the_end_of_the_gap() {
        for (zone, d, expected) in [
            // Chile: first Sunday of September, Saturday 24:00 -> Sunday 01:00 (UTC-4 -> UTC-3).
            (
                chrono_tz::America::Santiago,
                date(2026, 9, 6),
                "2026-09-06T04:00:00Z",
            ),
            // Lebanon: last Sunday of March, 00:00 -> 01:00 (UTC+2 -> UTC+3).
            (
                chrono_tz::Asia::Beirut,
                date(2026, 3, 29),
                "2026-03-28T22:00:00Z",
            ),
            // Cuba: second Sunday of March, 00:00 -> 01:00 (UTC-5 -> UTC-4).
            (
                chrono_tz::America::Havana,
                date(2026, 3, 8),
                "2026-03-08T05:00:00Z",
            ),
        ] {
            let midnight = d.and_time(NaiveTime::MIN);
            assert!(
                zone.from_local_datetime(&midnight).earliest().is_none(),
                "{zone}: midnight of {d} should fall in a DST gap"
            );
            let t = start_of_day(d, zone);
            assert_eq!(t, utc(expected), "{zone} {d}");
            let local = t.with_timezone(&zone);
            assert_eq!(
                (local.date_naive(), local.hour(), local.minute()),
                (d, 1, 0)
            );
            // One second earlier is still the day before.
            assert!((t - Duration::seconds(1)).with_timezone(&zone).date_naive() < d);
        }
    }

    #[test]
    fn a_repeated_midnight_starts_at_the_first_one() {
        // Cuba, first Sunday of November: 01:00 (UTC-4) -> 00:00 (UTC-5), so 00:00 happens
        // twice; the day starts at the first.
        let havana = chrono_tz::America::Havana;
        let d = date(2026, 11, 1);
        let midnight = d.and_time(NaiveTime::MIN);
        assert!(matches!(
            havana.from_local_datetime(&midnight),
            chrono::LocalResult::Ambiguous(..)
        ));
        assert_eq!(start_of_day(d, havana), utc("2026-11-01T04:00:00Z"));
    }

    #[test]
    fn a_skipped_date_starts_where_the_next_one_does() {
        // Samoa moved across the date line: 2011-12-29 23:59:59 was followed by 2011-12-31.
        let apia = chrono_tz::Pacific::Apia;
        assert_eq!(
            start_of_day(date(2011, 12, 30), apia),
            start_of_day(date(2011, 12, 31), apia)
        );
    }

    #[test]
    fn named_zones() {
        assert_eq!(
            start_of_day_in(date(2026, 3, 29), "Asia/Beirut"),
            Some(utc("2026-03-28T22:00:00Z"))
        );
        assert_eq!(start_of_day_in(date(2026, 3, 29), "Not/AZone"), None);
    }

    const ZONES: [Tz; 8] = [
        chrono_tz::America::Santiago,
        chrono_tz::Asia::Beirut,
        chrono_tz::America::Havana,
        chrono_tz::America::New_York,
        chrono_tz::Europe::London,
        chrono_tz::Australia::Lord_Howe,
        chrono_tz::Pacific::Apia,
        chrono_tz::Asia::Kolkata,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The start of a day is the first instant whose local date is that date or later: at
        /// it the local date has been reached, one second before it has not.
        #[test]
        fn start_of_day_is_the_first_instant_of_the_date(
            days in 0i64..(365 * 40),
            zone in 0usize..ZONES.len(),
        ) {
            let tz = ZONES[zone];
            let d = date(2000, 1, 1) + Duration::days(days);
            let t = start_of_day(d, tz);
            prop_assert!(t.with_timezone(&tz).date_naive() >= d);
            prop_assert!((t - Duration::seconds(1)).with_timezone(&tz).date_naive() < d);
        }
    }
}
