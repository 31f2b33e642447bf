//! Recurring series (SPEC section 4): which linked instances of a series no longer exist after
//! the series changed as a whole in Google.
//!
//! The sync lists events with `singleEvents=true`, so each occurrence of a recurring event is
//! its own record, linked to its own CRM activity. Google names an instance
//! `<series id>_<original start>` (`_YYYYMMDDTHHMMSSZ` timed, `_YYYYMMDD` all-day); the original
//! start "uniquely identifies the instance within the recurring event series even if the
//! instance was moved". An instance moved on its own (an exception) keeps its id; a change of the
//! whole series (moved, re-timed, another rule, shortened, split "this and following", turned
//! into a single event) changes which original starts exist: instances at times that are no
//! longer occurrences vanish and new ones appear with new ids. Google reliably lists the new ones
//! but not the vanished ones, so after a listing that showed a series change the executor reads
//! the series' instances again (`events.instances` over a time range) and asks [`vanished`]
//! which of the series' linked instances are gone. Pure: no I/O.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// When an instance originally started (the stamp of its id).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OriginalStart {
    Timed(DateTime<Utc>),
    AllDay(NaiveDate),
}

/// An instance id split into the id of its series and its original start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstanceId<'a> {
    /// The recurring event (the series' master); a "this and following" split gives the new
    /// series an id of its own, itself not an instance id (`<old id>_R<local start>`).
    pub series: &'a str,
    pub original_start: OriginalStart,
}

/// Splits an instance id `<series>_<YYYYMMDDTHHMMSSZ>` / `<series>_<YYYYMMDD>` (the stamp in
/// either case: some Google listings lower-case it). `None` for any other id (single events
/// and series masters: Google's own ids are base32hex, without `_`).
pub fn parse_instance_id(id: &str) -> Option<InstanceId<'_>> {
    let (series, stamp) = id.rsplit_once('_')?;
    if series.is_empty() || !stamp.is_ascii() {
        return None;
    }
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let original_start = match stamp.len() {
        8 if digits(stamp) => {
            OriginalStart::AllDay(NaiveDate::parse_from_str(stamp, "%Y%m%d").ok()?)
        }
        16 if digits(&stamp[..8])
            && stamp[8..9].eq_ignore_ascii_case("t")
            && digits(&stamp[9..15])
            && stamp[15..].eq_ignore_ascii_case("z") =>
        {
            let t = NaiveDateTime::parse_from_str(
                &format!("{}T{}", &stamp[..8], &stamp[9..15]),
                "%Y%m%dT%H%M%S",
            )
            .ok()?;
            OriginalStart::Timed(Utc.from_utc_datetime(&t))
        }
        _ => return None,
    };
    Some(InstanceId {
        series,
        original_start,
    })
}

/// The series a listed event belongs to: its `recurringEventId`, else the series its id names
/// (a cancelled instance may be listed with its id only). `None` for anything else.
pub fn series_of<'a>(id: &'a str, recurring_event_id: Option<&'a str>) -> Option<&'a str> {
    recurring_event_id
        .filter(|s| !s.is_empty())
        .or_else(|| parse_instance_id(id).map(|i| i.series))
}

/// Whether `id` is an instance of `series`. Ids are compared without regard to case, as Google
/// spells the same instance id with `T`/`Z` or `t`/`z` in different answers.
pub fn is_instance_of(id: &str, series: &str) -> bool {
    parse_instance_id(id).is_some_and(|i| i.series.eq_ignore_ascii_case(series))
}

/// Whether two Google ids name the same event (instance stamps may differ in case).
pub fn same_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Whether a linked Google id belongs to `series`: one of its instances, or the series itself (a
/// linked single event that was made recurring in Google: its id is now the series').
pub fn belongs_to(id: &str, series: &str) -> bool {
    is_instance_of(id, series) || same_id(id, series)
}

/// Whether the listed instance `instance_id` continues the single event a link recorded under
/// `linked_id`, starting at `linked_start` when last synced: the event was made recurring in
/// Google (its id became the series', which its instances name), and this instance is the
/// occurrence at the event's own time. That instance takes the link over, so the activity stays
/// the same one; the series' other occurrences are new events.
pub fn continues_single_event(
    linked_id: &str,
    linked_start: Option<OriginalStart>,
    instance_id: &str,
    recurring_event_id: Option<&str>,
) -> bool {
    let Some(instance) = parse_instance_id(instance_id) else {
        return false;
    };
    let series = recurring_event_id
        .filter(|s| !s.is_empty())
        .unwrap_or(instance.series);
    let same_time = match (linked_start, instance.original_start) {
        (Some(OriginalStart::Timed(a)), OriginalStart::Timed(b)) => a.timestamp() == b.timestamp(),
        (Some(OriginalStart::AllDay(a)), OriginalStart::AllDay(b)) => a == b,
        _ => false,
    };
    same_time && same_id(series, linked_id) && parse_instance_id(linked_id).is_none()
}

/// A linked instance of a series, as the executor knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkedInstance<'a> {
    /// The Google id the link recorded.
    pub google_id: &'a str,
    /// Where the occurrence was when last synced (start, end), all-day dates as UTC midnights;
    /// `None` when unknown.
    pub occurrence: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Already planned in this run (listed, or handled from the CRM side): not decided here.
    pub settled: bool,
}

/// The time range to read a series' instances over: the run's window, stretched to the end of
/// every linked occurrence, so that no linked instance lies beyond what was read (instances
/// imported from an incremental listing may lie past the window's end).
pub fn read_range(
    window: (DateTime<Utc>, DateTime<Utc>),
    linked: &[LinkedInstance<'_>],
) -> (DateTime<Utc>, DateTime<Utc>) {
    let end = linked
        .iter()
        .filter_map(|l| l.occurrence.map(|(_, e)| e + chrono::Duration::seconds(1)))
        .fold(window.1, DateTime::max);
    (window.0, end)
}

/// The linked instances of `series` that no longer exist, given the instance ids Google
/// returned for the series over [`time_min`, `time_max`) (`events.instances` with that range:
/// every instance, moved ones included, overlapping it). A linked instance is gone when it
/// belongs to `series` ([`belongs_to`]: a link to the series' own id is a single event made
/// recurring whose time no instance continues; instances of another series, such as the new
/// series a split makes, never belong), is not settled in this run, lay inside the range when last synced (so it would
/// have been returned, had it not moved; a move is a change the listing reports, which settles
/// it) and was not returned. An instance whose occurrence is unknown or reaches outside the
/// range is left alone. Order and case of the ids do not matter.
pub fn vanished<'a>(
    series: &str,
    time_min: DateTime<Utc>,
    time_max: DateTime<Utc>,
    returned: &[&str],
    linked: &[LinkedInstance<'a>],
) -> Vec<&'a str> {
    linked
        .iter()
        .filter(|l| !l.settled && belongs_to(l.google_id, series))
        .filter(|l| {
            l.occurrence
                .is_some_and(|(start, end)| start >= time_min && end <= time_max)
        })
        .filter(|l| !returned.iter().any(|r| same_id(r, l.google_id)))
        .map(|l| l.google_id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use proptest::prelude::*;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0)
            .single()
            .expect("valid")
            + Duration::hours(h)
    }

    #[test]
    fn instance_ids() {
        let i = parse_instance_id("abc123_20270301T090000Z").expect("timed");
        assert_eq!(i.series, "abc123");
        assert_eq!(i.original_start, OriginalStart::Timed(t(9)));
        let lower = parse_instance_id("abc123_20270301t090000z").expect("lower-cased");
        assert_eq!(lower, i);
        let d = parse_instance_id("abc123_20270301").expect("all-day");
        assert_eq!(
            d.original_start,
            OriginalStart::AllDay(NaiveDate::from_ymd_opt(2027, 3, 1).expect("date"))
        );
        // A split's new series is a series, not an instance; its instances are its own.
        assert_eq!(parse_instance_id("abc123_R20270308T090000"), None);
        let child = parse_instance_id("abc123_R20270308T090000_20270308T090000Z").expect("inst");
        assert_eq!(child.series, "abc123_R20270308T090000");
        assert!(!is_instance_of(
            "abc123_R20270308T090000_20270308T090000Z",
            "abc123"
        ));
        for plain in [
            "abc123",
            "_20270301",
            "abc_2027030",
            "abc_20271301",
            "abc_20270301T0900Z",
        ] {
            assert_eq!(parse_instance_id(plain), None, "{plain}");
        }
        assert_eq!(series_of("abc_20270301T090000Z", Some("abc")), Some("abc"));
        assert_eq!(series_of("abc_20270301T090000Z", None), Some("abc"));
        assert_eq!(series_of("abc", None), None);
    }

    #[test]
    fn a_single_event_made_recurring_continues_as_its_first_instance() {
        let start = Some(OriginalStart::Timed(t(9)));
        assert!(continues_single_event(
            "abc",
            start,
            "abc_20270301T090000Z",
            Some("abc")
        ));
        assert!(continues_single_event(
            "abc",
            start,
            "abc_20270301t090000z",
            None
        ));
        // Another occurrence, another series, or a link that already was an instance: no.
        assert!(!continues_single_event(
            "abc",
            start,
            "abc_20270308T090000Z",
            Some("abc")
        ));
        assert!(!continues_single_event(
            "abd",
            start,
            "abc_20270301T090000Z",
            Some("abc")
        ));
        assert!(!continues_single_event(
            "abc_20270301T090000Z",
            start,
            "abc_20270301T090000Z",
            None
        ));
        assert!(!continues_single_event(
            "abc",
            None,
            "abc_20270301T090000Z",
            None
        ));
        let day = NaiveDate::from_ymd_opt(2027, 3, 1).expect("date");
        assert!(continues_single_event(
            "abc",
            Some(OriginalStart::AllDay(day)),
            "abc_20270301",
            None
        ));
        assert!(!continues_single_event("abc", start, "abc_20270301", None));
        // Its link is the series' when the time moved: gone unless returned (it never is).
        let linked = [LinkedInstance {
            google_id: "abc",
            occurrence: Some((t(10), t(11))),
            settled: false,
        }];
        assert_eq!(
            vanished("abc", t(0), t(100), &["abc_20270301T100000Z"], &linked),
            vec!["abc"]
        );
        assert!(vanished("abd", t(0), t(100), &[], &linked).is_empty());
    }

    #[test]
    fn a_retimed_series_leaves_its_old_instances_behind() {
        // Weekly at 09:00, re-timed to 10:00: every old id is gone, the new ones are returned.
        let old: Vec<String> = (0..4)
            .map(|w| format!("m_202703{:02}T090000Z", 1 + 7 * w))
            .collect();
        let new: Vec<String> = (0..4)
            .map(|w| format!("m_202703{:02}T100000Z", 1 + 7 * w))
            .collect();
        let linked: Vec<LinkedInstance> = old
            .iter()
            .enumerate()
            .map(|(w, id)| LinkedInstance {
                google_id: id,
                occurrence: Some((t(9 + 168 * w as i64), t(10 + 168 * w as i64))),
                settled: false,
            })
            .chain(new.iter().map(|id| LinkedInstance {
                google_id: id,
                occurrence: None,
                settled: true,
            }))
            .collect();
        let returned: Vec<&str> = new.iter().map(String::as_str).collect();
        let (min, max) = read_range((t(0), t(24 * 60)), &linked);
        let gone = vanished("m", min, max, &returned, &linked);
        assert_eq!(gone, old.iter().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn the_read_range_covers_every_linked_occurrence() {
        let linked = [LinkedInstance {
            google_id: "m_20270301T090000Z",
            occurrence: Some((t(1000), t(1001))),
            settled: false,
        }];
        assert_eq!(
            read_range((t(0), t(10)), &linked),
            (t(0), t(1001) + Duration::seconds(1))
        );
        assert_eq!(read_range((t(0), t(2000)), &linked), (t(0), t(2000)));
    }

    /// The instance ids of a small world: two series, a split child of the first, and a single
    /// event; stamps in either case.
    fn arb_id() -> impl Strategy<Value = String> {
        (0usize..4, 0u32..6, any::<bool>()).prop_map(|(s, day, lower)| {
            let series = ["m", "m_R20270301T090000", "n", "single"][s];
            if series == "single" {
                return format!("single{day}");
            }
            if day == 5 {
                // The series' own id: a linked single event made recurring.
                return series.to_string();
            }
            let stamp = format!("202703{:02}T090000Z", day + 1);
            let stamp = if lower { stamp.to_lowercase() } else { stamp };
            format!("{series}_{stamp}")
        })
    }

    /// Linked instances: id, occurrence (start hour, length), settled.
    type ArbLinked = Vec<(String, Option<(i64, i64)>, bool)>;

    fn arb_linked() -> impl Strategy<Value = ArbLinked> {
        proptest::collection::vec(
            (
                arb_id(),
                proptest::option::of((0i64..200, 1i64..30)),
                any::<bool>(),
            ),
            0..12,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// `vanished` picks exactly the linked instances of the series that are unsettled, lay
        /// inside the range and were not returned (in any case): never a returned one, never one
        /// of another series (a split's child series included), never a settled one, never one
        /// that may lie outside the range; and the answer does not depend on the order of the
        /// links or of the returned ids.
        #[test]
        fn vanished_is_exactly_the_unreturned_linked_instances_of_the_series(
            series in prop_oneof![Just("m"), Just("m_R20270301T090000"), Just("n")],
            linked in arb_linked(),
            returned in proptest::collection::vec(arb_id(), 0..8),
            min in 0i64..50,
            len in 1i64..200,
            shuffle in any::<u64>(),
        ) {
            let (time_min, time_max) = (t(min), t(min + len));
            // One link per Google id (the store's unique index), whatever the case.
            let mut ids_seen = std::collections::HashSet::new();
            let links: Vec<LinkedInstance> = linked
                .iter()
                .filter(|(id, _, _)| ids_seen.insert(id.to_ascii_lowercase()))
                .map(|(id, occ, settled)| LinkedInstance {
                    google_id: id,
                    occurrence: occ.map(|(s, d)| (t(s), t(s + d))),
                    settled: *settled,
                })
                .collect();
            let ret: Vec<&str> = returned.iter().map(String::as_str).collect();
            let gone = vanished(series, time_min, time_max, &ret, &links);
            for l in &links {
                let expected = !l.settled
                    && (parse_instance_id(l.google_id).is_some_and(|i| i.series.eq_ignore_ascii_case(series))
                        || l.google_id.eq_ignore_ascii_case(series))
                    && l.occurrence.is_some_and(|(s, e)| s >= time_min && e <= time_max)
                    && !returned.iter().any(|r| r.eq_ignore_ascii_case(l.google_id));
                prop_assert_eq!(gone.contains(&l.google_id), expected, "{:?}", l);
                if gone.contains(&l.google_id) {
                    prop_assert!(!l.google_id.starts_with("single"));
                    if series == "m" {
                        prop_assert!(!l.google_id.starts_with("m_R"));
                    }
                    if series == "m_R20270301T090000" {
                        prop_assert!(l.google_id != "m");
                    }
                }
            }
            // Order does not matter.
            let mut links2 = links.clone();
            let mut ret2 = ret.clone();
            let k = (shuffle as usize) % links2.len().max(1);
            let n = links2.len();
            links2.rotate_left(k.min(n));
            ret2.reverse();
            let mut a = gone.clone();
            let mut b = vanished(series, time_min, time_max, &ret2, &links2);
            a.sort_unstable();
            b.sort_unstable();
            prop_assert_eq!(a, b);
        }

        /// Every timed stamp round-trips through an instance id, in either case.
        #[test]
        fn instance_ids_round_trip(h in 0i64..(24 * 3650), lower in any::<bool>()) {
            let start = t(h);
            let id = format!("abc_{}", start.format("%Y%m%dT%H%M%SZ"));
            let id = if lower { id.to_lowercase() } else { id };
            let i = parse_instance_id(&id).expect("an instance id");
            prop_assert_eq!(i.series, "abc");
            prop_assert_eq!(i.original_start, OriginalStart::Timed(start));
        }
    }
}
