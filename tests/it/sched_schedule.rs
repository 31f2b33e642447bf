//! The due-time function alone (pure: settings, last run, now, seed): intervals and cron
//! expressions fire when due and not before, jitter stays inside its bound, cron reads the
//! user's time zone, missed occurrences run once, auto-sync off never fires.

use chrono::{DateTime, Duration, TimeZone, Utc};
use crmsync::scheduler::schedule::{next_due, seed_for, JitterPolicy, ScheduleError};
use crmsync_engine::ids::{SyncKind, UserId};
use crmsync_engine::model::{SyncSchedule, SyncSettings};

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("valid time")
}

fn settings(auto_sync: bool, schedule: SyncSchedule) -> SyncSettings {
    SyncSettings {
        user_id: UserId(uuid::Uuid::nil()),
        kind: SyncKind::Contacts,
        auto_sync,
        schedule,
        tag_id: None,
        synchronize_from: None,
        trigger_words: vec![],
        updated_at: at(2026, 1, 1, 0, 0),
    }
}

fn every(m: u32) -> SyncSettings {
    settings(true, SyncSchedule::IntervalMinutes(m))
}

fn cron(expr: &str) -> SyncSettings {
    settings(true, SyncSchedule::Cron(expr.into()))
}

const SEEDS: u64 = 5_000;

fn spread(values: &[DateTime<Utc>]) -> Duration {
    let (Some(min), Some(max)) = (values.iter().min(), values.iter().max()) else {
        return Duration::zero();
    };
    *max - *min
}

#[test]
fn interval_jitter_stays_inside_its_bound_and_spreads() {
    let j = JitterPolicy::default();
    let last = at(2026, 3, 1, 10, 0);
    let now = last + Duration::minutes(3);
    let mut seen = Vec::new();
    for seed in 0..SEEDS {
        let s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let due = next_due(&every(15), Some(last), now, s, &j, &Utc)
            .expect("valid")
            .expect("auto-sync on");
        let base = last + Duration::minutes(15);
        assert!(
            due >= base - Duration::seconds(90) && due <= base + Duration::seconds(90),
            "{due} outside 15 min ± 90 s of {last}"
        );
        seen.push(due);
    }
    // The jitter really spreads a domain's runs (most of the ±90 s window is used).
    assert!(spread(&seen) > Duration::seconds(170), "{}", spread(&seen));
}

#[test]
fn jitter_is_capped_for_long_intervals() {
    let j = JitterPolicy::default();
    let last = at(2026, 3, 1, 10, 0);
    for seed in 0..SEEDS {
        let due = next_due(&every(24 * 60), Some(last), last, seed * 7919, &j, &Utc)
            .expect("valid")
            .expect("on");
        let base = last + Duration::days(1);
        assert!(due >= base - Duration::minutes(5) && due <= base + Duration::minutes(5));
    }
}

#[test]
fn a_never_synced_job_is_due_now_plus_a_forward_jitter() {
    let j = JitterPolicy::default();
    let now = at(2026, 3, 1, 10, 7);
    let mut seen = Vec::new();
    for seed in 0..SEEDS {
        let due = next_due(&every(10), None, now, seed * 104_729, &j, &Utc)
            .expect("valid")
            .expect("on");
        assert!(due >= now && due <= now + Duration::minutes(1), "{due}");
        seen.push(due);
    }
    assert!(spread(&seen) > Duration::seconds(50));
    let exact = next_due(&every(10), None, now, 42, &JitterPolicy::none(), &Utc).unwrap();
    assert_eq!(exact, Some(now));
}

#[test]
fn without_jitter_an_interval_fires_exactly_after_the_last_run() {
    let last = at(2026, 3, 1, 10, 0);
    let due = next_due(&every(15), Some(last), last, 1, &JitterPolicy::none(), &Utc).unwrap();
    assert_eq!(due, Some(at(2026, 3, 1, 10, 15)));
}

#[test]
fn cron_fires_at_the_next_occurrence_never_before() {
    let j = JitterPolicy::default();
    let last = at(2026, 3, 1, 10, 20);
    for seed in 0..SEEDS {
        let due = next_due(&cron("0 0 * * * *"), Some(last), last, seed * 31, &j, &Utc)
            .expect("valid")
            .expect("on");
        // Hourly: the next hour, delayed by at most min(6 min, 5 min).
        assert!(due >= at(2026, 3, 1, 11, 0), "{due} before its time");
        assert!(due <= at(2026, 3, 1, 11, 5), "{due}");
    }
    let exact = next_due(
        &cron("0 */15 * * * *"),
        Some(last),
        last,
        9,
        &JitterPolicy::none(),
        &Utc,
    );
    assert_eq!(exact, Ok(Some(at(2026, 3, 1, 10, 30))));
}

#[test]
fn cron_reads_the_users_time_zone_across_dst() {
    let london = chrono_tz::Europe::London;
    let none = JitterPolicy::none();
    // 07:30 in London: 06:30 UTC in summer (BST), 07:30 UTC in winter.
    let summer = next_due(
        &cron("0 30 7 * * *"),
        None,
        at(2026, 7, 1, 5, 0),
        1,
        &none,
        &london,
    );
    assert_eq!(summer, Ok(Some(at(2026, 7, 1, 6, 30))));
    let winter = next_due(
        &cron("0 30 7 * * *"),
        None,
        at(2026, 1, 15, 5, 0),
        1,
        &none,
        &london,
    );
    assert_eq!(winter, Ok(Some(at(2026, 1, 15, 7, 30))));
    // Weekdays only: a Saturday run goes to Monday.
    let sat = at(2026, 3, 7, 12, 0);
    let monday = next_due(&cron("0 0 9 * * Mon-Fri"), Some(sat), sat, 1, &none, &Utc);
    assert_eq!(monday, Ok(Some(at(2026, 3, 9, 9, 0))));
}

#[test]
fn missed_cron_occurrences_run_once() {
    let none = JitterPolicy::none();
    let last = at(2026, 3, 1, 10, 0);
    let now = last + Duration::days(3);
    // Three days without a worker: due at the first missed occurrence (in the past: now)...
    let due = next_due(&cron("0 0 * * * *"), Some(last), now, 1, &none, &Utc).unwrap();
    assert_eq!(due, Some(at(2026, 3, 1, 11, 0)));
    // ...and once that run has happened (it started at `now`), the next is in the future.
    let after = next_due(&cron("0 0 * * * *"), Some(now), now, 1, &none, &Utc).unwrap();
    assert_eq!(after, Some(now + Duration::hours(1)));
}

#[test]
fn auto_sync_off_never_fires() {
    let now = at(2026, 3, 1, 10, 0);
    for s in [
        settings(false, SyncSchedule::IntervalMinutes(1)),
        settings(false, SyncSchedule::Cron("* * * * * *".into())),
    ] {
        for last in [None, Some(now - Duration::days(30))] {
            assert_eq!(
                next_due(&s, last, now, 3, &JitterPolicy::default(), &Utc),
                Ok(None)
            );
        }
    }
}

#[test]
fn a_bad_cron_expression_is_reported() {
    let e = next_due(
        &cron("every day"),
        None,
        at(2026, 3, 1, 10, 0),
        1,
        &JitterPolicy::none(),
        &Utc,
    );
    assert!(matches!(e, Err(ScheduleError::BadCron { .. })), "{e:?}");
}

#[test]
fn the_seed_depends_on_the_job_and_the_run_only() {
    let u = UserId(uuid::Uuid::from_u128(7));
    let t = Some(at(2026, 3, 1, 10, 0));
    assert_eq!(
        seed_for(u, SyncKind::Contacts, t),
        seed_for(u, SyncKind::Contacts, t)
    );
    assert_ne!(
        seed_for(u, SyncKind::Contacts, t),
        seed_for(u, SyncKind::Activities, t)
    );
    assert_ne!(
        seed_for(u, SyncKind::Contacts, t),
        seed_for(u, SyncKind::Contacts, Some(at(2026, 3, 1, 10, 15)))
    );
}
