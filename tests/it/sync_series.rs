//! End-to-end: a recurring series changed as a whole in Google (SPEC section 4), on SQLite and
//! PostgreSQL, against the emulator through the real Calendar client crate. Moved, re-timed,
//! another rule, shortened, split "this and following", master deleted, turned into a single
//! event, an exception that survives a series change, and a change seen by a full re-listing.
//! After each: the CRM shows exactly the series' current instances, each once (activities shown
//! in the calendar counted per occurrence); instances that no longer exist left the calendar
//! (the activity stays, `display_in_calendar` cleared, journaled); nothing was deleted from the
//! CRM; a second run writes nothing. Also the silent defaults the activities sync no longer
//! has: the listing window of a user whose `synchronize_from` midnight falls in a DST gap.

use crate::sync_support::*;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use crmsync::sync::RunReport;
use crmsync_emulator::Api;
use crmsync_engine::ids::{ActivityId, SyncKind};
use crmsync_engine::model::{Activity, ActivityTime};
use crmsync_engine::planner::LinkState;
use crmsync_schema::db_test;
use crmsync_schema::sync_state;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const ALICE: &str = "alice@example.com";
const TZ: &str = "Europe/Paris";

/// An occurrence as both sides should show it: start, end, title.
type Occ = (DateTime<Utc>, DateTime<Utc>, String);

fn paris() -> Tz {
    TZ.parse().unwrap()
}

/// Today's date in Paris plus `days`.
fn day(days: i64) -> NaiveDate {
    Utc::now().with_timezone(&paris()).date_naive() + Duration::days(days)
}

/// A local Paris date-time as Calendar takes it (no offset, with `timeZone`).
fn local(d: NaiveDate, hour: u32, minute: u32) -> Value {
    json!({"dateTime": format!("{d}T{hour:02}:{minute:02}:00"), "timeZone": TZ})
}

/// A weekly series of one-hour meetings at `hour` Paris time, first on `first`.
fn weekly(summary: &str, first: NaiveDate, hour: u32, rule: &str) -> Value {
    json!({
        "summary": summary,
        "start": local(first, hour, 0),
        "end": local(first, hour + 1, 0),
        "recurrence": [rule],
    })
}

fn instant(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v["dateTime"].as_str().expect("a timed event"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// The world: Alice syncs activities (window: 30 days back to a year ahead).
async fn world(db: crmsync_schema::test_support::TestDb) -> SyncWorld {
    let w = SyncWorld::new(db).await;
    w.set_activity_settings(&w.alice, None, &[]);
    w
}

/// Inserts a series as Alice; returns its id.
async fn insert_series(w: &SyncWorld, body: Value) -> String {
    let e = w.google_insert_event(ALICE, body).await;
    e["id"].as_str().expect("an id").to_string()
}

/// The live instances of these series in Google, as occurrences, sorted.
async fn google_occurrences(w: &SyncWorld, series: &[&str]) -> Vec<Occ> {
    let mut out = Vec::new();
    for s in series {
        for i in w.google_instances(ALICE, s).await {
            out.push((
                instant(&i["start"]),
                instant(&i["end"]),
                i["summary"].as_str().unwrap_or("").to_string(),
            ));
        }
    }
    out.sort();
    out
}

/// The instance ids of a series in Google, in order.
async fn instance_ids(w: &SyncWorld, series: &str) -> Vec<String> {
    w.google_instances(ALICE, series)
        .await
        .iter()
        .map(|i| i["id"].as_str().expect("an id").to_string())
        .collect()
}

/// Alice's activities shown in the calendar, by occurrence.
fn shown(w: &SyncWorld) -> BTreeMap<(DateTime<Utc>, DateTime<Utc>), Vec<Activity>> {
    let mut out: BTreeMap<_, Vec<Activity>> = BTreeMap::new();
    for a in w.crm_activities() {
        if !a.data.display_in_calendar || a.data.organizer_user_id != w.alice.id {
            continue;
        }
        let ActivityTime::Timed { start, end } = a.data.time else {
            panic!("timed activities only: {a:?}");
        };
        out.entry((start, end)).or_default().push(a);
    }
    out
}

/// Every activity the CRM has now (to check later that none was deleted).
fn all_ids(w: &SyncWorld) -> Vec<ActivityId> {
    w.crm_activities().into_iter().map(|a| a.id).collect()
}

/// The CRM shows exactly `expected`: one activity shown in the calendar per occurrence, with its
/// title, and nothing else; none of `kept` was deleted. Returns the shown activity per
/// occurrence.
fn assert_shows_exactly(w: &SyncWorld, expected: &[Occ], kept: &[ActivityId]) -> Vec<Activity> {
    let shown = shown(w);
    for (occ, acts) in &shown {
        assert_eq!(
            acts.len(),
            1,
            "two calendar activities for one occurrence {occ:?}: {acts:?}"
        );
    }
    let got: Vec<Occ> = shown
        .iter()
        .map(|((s, e), a)| (*s, *e, a[0].data.title.clone()))
        .collect();
    assert_eq!(
        got, expected,
        "the CRM calendar is not the series' instances"
    );
    for id in kept {
        let a = w.crm_activity_get(*id);
        assert!(a.deleted_at.is_none(), "activity {id} was deleted");
    }
    shown.into_values().map(|mut v| v.remove(0)).collect()
}

/// The run hid `n` activities: each is journaled (the link ended as deleted in Google, with its
/// snapshot; the activity hidden from the calendar).
fn assert_hidden_and_journaled(w: &SyncWorld, r: &RunReport, n: u64) {
    assert_eq!(
        r.counts
            .crm
            .get("hidden_from_calendar")
            .copied()
            .unwrap_or(0),
        n,
        "{:?}",
        r.counts
    );
    let journal = w
        .store
        .read(|c| sync_state::journal_of_run(c, r.run_id))
        .unwrap();
    let unlinks: Vec<_> = journal
        .iter()
        .filter(|j| j.entry.action == "unlink" && j.entry.rule == "google_deleted")
        .collect();
    assert_eq!(unlinks.len() as u64, n, "{journal:?}");
    assert!(unlinks.iter().all(|j| j.entry.before.is_some()));
    let hidden = journal
        .iter()
        .filter(|j| j.entry.side == "crm" && j.entry.action == "hidden_from_calendar")
        .count();
    assert_eq!(hidden as u64, n);
    for j in unlinks {
        let id: ActivityId = j.entry.crm_id.as_deref().unwrap().parse().unwrap();
        let a = w.crm_activity_get(id);
        assert!(
            a.deleted_at.is_none() && !a.data.display_in_calendar,
            "{a:?}"
        );
    }
}

/// One more run writes nothing on either side.
async fn assert_converged(w: &SyncWorld) {
    let before = w.calendar_writes();
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.writes(), 0, "{:?}", r.counts);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(w.calendar_writes(), before);
}

/// A series of six weekly meetings at 09:00, synced once: the CRM shows the six instances.
async fn synced_series(w: &SyncWorld, summary: &str) -> (String, Vec<Activity>) {
    let id = insert_series(w, weekly(summary, day(14), 9, "RRULE:FREQ=WEEKLY;COUNT=6")).await;
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.crm.get("created"), Some(&6), "{:?}", r.counts);
    let expected = google_occurrences(w, &[&id]).await;
    assert_eq!(expected.len(), 6);
    let acts = assert_shows_exactly(w, &expected, &[]);
    (id, acts)
}

db_test!(async fn a_moved_series_shows_its_new_instances_and_hides_the_old_ones(db) {
    let w = world(db).await;
    let (id, _) = synced_series(&w, "Team sync").await;
    let kept = all_ids(&w);
    let old_ids = instance_ids(&w, &id).await;
    // The whole series moves one day later (same time).
    w.google_patch_event(ALICE, &id, json!({"start": local(day(15), 9, 0), "end": local(day(15), 10, 0)})).await;
    let new_ids = instance_ids(&w, &id).await;
    // Google's ids follow the original start: every instance has a new id.
    assert!(new_ids.iter().all(|n| !old_ids.contains(n)), "{old_ids:?} {new_ids:?}");
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.crm.get("created"), Some(&6), "{:?}", r.counts);
    assert_hidden_and_journaled(&w, &r, 6);
    let expected = google_occurrences(&w, &[&id]).await;
    assert!(expected.iter().all(|(s, _, _)| s.with_timezone(&paris()).date_naive() >= day(15)));
    assert_shows_exactly(&w, &expected, &kept);
    assert_converged(&w).await;
});

db_test!(async fn a_retimed_series_shows_its_new_instances_and_hides_the_old_ones(db) {
    let w = world(db).await;
    let (id, _) = synced_series(&w, "Team sync").await;
    let kept = all_ids(&w);
    // 09:00 -> 11:00, and longer.
    w.google_patch_event(ALICE, &id, json!({"start": local(day(14), 11, 0), "end": local(day(14), 12, 30)})).await;
    let instances_before = w.emu.emulator().stats().count("calendar.events.instances");
    let r = w.sync_activities(&w.alice).await;
    // The listing reported the new instances only; the series was read again once.
    assert_eq!(w.emu.emulator().stats().count("calendar.events.instances"), instances_before + 1);
    assert_eq!(r.counts.crm.get("created"), Some(&6), "{:?}", r.counts);
    assert_hidden_and_journaled(&w, &r, 6);
    let expected = google_occurrences(&w, &[&id]).await;
    assert!(expected.iter().all(|(s, e, _)| *e - *s == Duration::minutes(90)));
    assert_shows_exactly(&w, &expected, &kept);
    assert_converged(&w).await;
});

db_test!(async fn an_rrule_change_keeps_the_remaining_instances_in_place(db) {
    let w = world(db).await;
    let (id, before) = synced_series(&w, "Team sync").await;
    let kept = all_ids(&w);
    // Weekly -> every other week: weeks 0, 2 and 4 stay (same ids), 1, 3 and 5 vanish.
    w.google_patch_event(ALICE, &id, json!({"recurrence": ["RRULE:FREQ=WEEKLY;INTERVAL=2;COUNT=3"]})).await;
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.crm.get("created"), None, "{:?}", r.counts);
    assert_hidden_and_journaled(&w, &r, 3);
    let expected = google_occurrences(&w, &[&id]).await;
    assert_eq!(expected.len(), 3);
    let after = assert_shows_exactly(&w, &expected, &kept);
    // The instances that stayed are the same activities.
    let same: Vec<ActivityId> = [0, 2, 4].iter().map(|i| before[*i].id).collect();
    assert_eq!(after.iter().map(|a| a.id).collect::<Vec<_>>(), same);
    assert_converged(&w).await;
    // And a rule that adds occurrences imports them once: daily, six times. The first
    // occurrence stays, the two later fortnightly ones vanish, five new ones are imported.
    w.google_patch_event(ALICE, &id, json!({"recurrence": ["RRULE:FREQ=DAILY;COUNT=6"]})).await;
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.crm.get("created"), Some(&5), "{:?}", r.counts);
    assert_hidden_and_journaled(&w, &r, 2);
    let expected = google_occurrences(&w, &[&id]).await;
    assert_eq!(expected.len(), 6);
    let daily = assert_shows_exactly(&w, &expected, &kept);
    assert_eq!(daily[0].id, before[0].id);
    assert_converged(&w).await;
});

db_test!(async fn a_shortened_series_hides_the_instances_it_lost(db) {
    let w = world(db).await;
    let (id, before) = synced_series(&w, "Team sync").await;
    let kept = all_ids(&w);
    // UNTIL just after the third instance.
    let third = google_occurrences(&w, &[&id]).await[2].0;
    let until = (third + Duration::hours(1)).format("%Y%m%dT%H%M%SZ");
    w.google_patch_event(ALICE, &id, json!({"recurrence": [format!("RRULE:FREQ=WEEKLY;UNTIL={until}")]})).await;
    let r = w.sync_activities(&w.alice).await;
    assert_hidden_and_journaled(&w, &r, 3);
    let expected = google_occurrences(&w, &[&id]).await;
    assert_eq!(expected.len(), 3);
    let after = assert_shows_exactly(&w, &expected, &kept);
    assert_eq!(after.iter().map(|a| a.id).collect::<Vec<_>>(), before[..3].iter().map(|a| a.id).collect::<Vec<_>>());
    assert_converged(&w).await;
    // Then COUNT=2.
    w.google_patch_event(ALICE, &id, json!({"recurrence": ["RRULE:FREQ=WEEKLY;COUNT=2"]})).await;
    let r = w.sync_activities(&w.alice).await;
    assert_hidden_and_journaled(&w, &r, 1);
    let expected = google_occurrences(&w, &[&id]).await;
    assert_eq!(expected.len(), 2);
    assert_shows_exactly(&w, &expected, &kept);
    assert_converged(&w).await;
});

db_test!(async fn this_and_following_split_moves_the_tail_to_the_new_series(db) {
    let w = world(db).await;
    let (id, before) = synced_series(&w, "Team sync").await;
    let kept = all_ids(&w);
    // From the fourth instance on: 10:00 and a new title (Google Calendar's "this and following").
    let fourth = instance_ids(&w, &id).await[3].clone();
    let fourth_day = day(14 + 21);
    let (_, new) = w
        .emu
        .emulator()
        .split_series(ALICE, &fourth, json!({
            "summary": "Team sync (new format)",
            "start": local(fourth_day, 10, 0),
            "end": local(fourth_day, 11, 0),
        }))
        .unwrap();
    let new_id = new["id"].as_str().unwrap().to_string();
    // The new series' id starts like the old one's instance ids: it is another series all the same.
    assert!(new_id.starts_with(&format!("{id}_")), "{new_id}");
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.crm.get("created"), Some(&3), "{:?}", r.counts);
    assert_hidden_and_journaled(&w, &r, 3);
    let expected = google_occurrences(&w, &[&id, &new_id]).await;
    assert_eq!(expected.len(), 6);
    assert_eq!(expected.iter().filter(|o| o.2 == "Team sync (new format)").count(), 3);
    let after = assert_shows_exactly(&w, &expected, &kept);
    assert_eq!(after[..3].iter().map(|a| a.id).collect::<Vec<_>>(), before[..3].iter().map(|a| a.id).collect::<Vec<_>>());
    assert_converged(&w).await;
});

db_test!(async fn a_deleted_master_hides_every_instance_and_deletes_nothing(db) {
    let w = world(db).await;
    let (id, before) = synced_series(&w, "Team sync").await;
    let kept = all_ids(&w);
    w.google_delete_event(ALICE, &id).await;
    let r = w.sync_activities(&w.alice).await;
    assert_hidden_and_journaled(&w, &r, 6);
    assert_shows_exactly(&w, &[], &kept);
    for a in &before {
        assert_eq!(w.crm_activity_get(a.id).data.title, "Team sync");
    }
    assert_converged(&w).await;
});

db_test!(async fn a_series_turned_into_a_single_event_keeps_one_activity(db) {
    let w = world(db).await;
    let (id, _) = synced_series(&w, "Team sync").await;
    let kept = all_ids(&w);
    // No recurrence any more: the master is a single event (at the first occurrence).
    w.google_patch_event(ALICE, &id, json!({"recurrence": [], "summary": "One-off"})).await;
    let single = w.emu.emulator().calendar_event(ALICE, &id).unwrap();
    assert!(single.get("recurrence").is_none_or(|r| r.as_array().is_some_and(|a| a.is_empty())), "{single}");
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.crm.get("created"), Some(&1), "{:?}", r.counts);
    assert_hidden_and_journaled(&w, &r, 6);
    let expected = vec![(instant(&single["start"]), instant(&single["end"]), "One-off".to_string())];
    assert_shows_exactly(&w, &expected, &kept);
    assert_converged(&w).await;
});

db_test!(async fn an_exception_survives_a_series_change_and_the_rest_is_updated_in_place(db) {
    let w = world(db).await;
    let (id, before) = synced_series(&w, "Team sync").await;
    // The third instance is moved to 11:00 and renamed: an exception, with its own id kept.
    let third = instance_ids(&w, &id).await[2].clone();
    let third_day = day(14 + 14);
    w.google_patch_event(ALICE, &third, json!({
        "summary": "Team sync (customer visit)",
        "start": local(third_day, 11, 0),
        "end": local(third_day, 12, 0),
    })).await;
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.crm.get("updated"), Some(&1), "{:?}", r.counts);
    let expected = google_occurrences(&w, &[&id]).await;
    let moved = assert_shows_exactly(&w, &expected, &[]);
    assert_eq!(moved.iter().map(|a| a.id).collect::<Vec<_>>(), before.iter().map(|a| a.id).collect::<Vec<_>>(), "the exception moved in place");
    let kept = all_ids(&w);
    // The whole series is renamed and shortened to four: the exception's occurrence is still
    // one of the series, so it survives unchanged; the fifth and sixth vanish.
    w.google_patch_event(ALICE, &id, json!({"summary": "Weekly team sync", "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=4"]})).await;
    assert!(instance_ids(&w, &id).await.contains(&third));
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.crm.get("created"), None, "{:?}", r.counts);
    assert_eq!(r.counts.crm.get("updated"), Some(&3), "{:?}", r.counts);
    assert_hidden_and_journaled(&w, &r, 2);
    let expected = google_occurrences(&w, &[&id]).await;
    assert_eq!(expected.len(), 4);
    assert_eq!(expected.iter().filter(|o| o.2 == "Weekly team sync").count(), 3);
    assert_eq!(expected.iter().filter(|o| o.2 == "Team sync (customer visit)").count(), 1);
    let after = assert_shows_exactly(&w, &expected, &kept);
    // Same activities for the four that remain: the renamed ones were updated in place.
    assert_eq!(after.iter().map(|a| a.id).collect::<Vec<_>>(), before[..4].iter().map(|a| a.id).collect::<Vec<_>>());
    assert_converged(&w).await;
});

db_test!(async fn a_series_change_seen_by_a_full_relisting_is_reconciled_too(db) {
    let w = world(db).await;
    let (id, _) = synced_series(&w, "Team sync").await;
    let kept = all_ids(&w);
    w.google_patch_event(ALICE, &id, json!({"start": local(day(14), 8, 0), "end": local(day(14), 9, 0)})).await;
    // The sync token expired meanwhile: a full listing, then the same reconciliation.
    w.emu.emulator().expire_sync_tokens(ALICE, Api::Calendar);
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.crm.get("created"), Some(&6), "{:?}", r.counts);
    assert_hidden_and_journaled(&w, &r, 6);
    let expected = google_occurrences(&w, &[&id]).await;
    assert_shows_exactly(&w, &expected, &kept);
    assert_converged(&w).await;
});

db_test!(async fn an_edit_of_an_instance_reads_its_series_once(db) {
    let w = world(db).await;
    let (id, before) = synced_series(&w, "Team sync").await;
    // An edit in Google of one instance: the series is read again once.
    let second = instance_ids(&w, &id).await[1].clone();
    w.google_patch_event(ALICE, &second, json!({"location": "Room 2"})).await;
    let reads = || w.emu.emulator().stats().count("calendar.events.instances");
    let n = reads();
    w.sync_activities(&w.alice).await;
    assert_eq!(reads(), n + 1);
    // A CRM edit written to an instance comes back as an echo, which reads the series once more
    // (a run that crashed after its writes left the series' reconciliation undone, and then the
    // echoes are all the next listing shows), and then nothing.
    w.crm_activity_update(before[3].id, |d| d.title = "Team sync (agenda)".into());
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.google.get("updated"), Some(&1), "{:?}", r.counts);
    let n = reads();
    assert_converged(&w).await;
    assert_eq!(reads(), n + 1);
    let n = reads();
    assert_converged(&w).await;
    assert_eq!(reads(), n, "a run with nothing listed reads nothing");
    let expected = google_occurrences(&w, &[&id]).await;
    assert_shows_exactly(&w, &expected, &[]);
});

db_test!(async fn google_ids_are_matched_literally_when_looking_for_instances(db) {
    // The store's lookup of instance links: `_` is matched as itself, not as a LIKE wildcard.
    let w = world(db).await;
    let (id, _) = synced_series(&w, "Team sync").await;
    let plain = w.crm_activity(&meeting("Plain", &w.alice, Utc::now() + Duration::days(3), 30, TZ, vec![]));
    w.sync_activities(&w.alice).await;
    let found = w
        .store
        .read(|c| sync_state::links_with_google_id_containing(c, w.alice.id, SyncKind::Activities, LinkState::Active, "_"))
        .unwrap();
    assert_eq!(found.len(), 6);
    assert!(found.iter().all(|l| l.google_id.as_deref().unwrap().starts_with(&format!("{id}_"))));
    assert!(found.iter().all(|l| l.crm_id != plain.id.to_string()));
    let none = w
        .store
        .read(|c| sync_state::links_with_google_id_containing(c, w.alice.id, SyncKind::Activities, LinkState::Active, "%"))
        .unwrap();
    assert!(none.is_empty());
});

/// The first date after today on which midnight does not exist in `tz` (a DST gap).
fn next_midnight_gap(tz: Tz) -> NaiveDate {
    (2..400)
        .map(day)
        .find(|d| {
            tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap())
                .earliest()
                .is_none()
        })
        .expect("a DST change within a year")
}

// `synchronize_from` on a date whose midnight falls in a DST gap (Beirut: 00:00 -> 01:00 on the
// last Sunday of March). The window used to start at UTC midnight there (03:00 local), so an
// event at 01:15 on that date was never imported; it now starts at 01:00 local, the first
// instant of the date, and still leaves out the evening before.
db_test!(async fn the_window_starts_at_the_first_instant_of_synchronize_from_in_a_dst_gap(db) {
    let w = SyncWorld::new(db).await;
    let beirut: Tz = "Asia/Beirut".parse().unwrap();
    w.store
        .write(|c| {
            crmsync_schema::users::update_user(
                c,
                w.alice.id,
                &crmsync_schema::users::UserPatch { time_zone: Some("Asia/Beirut".into()), ..Default::default() },
                now(),
            )
        })
        .unwrap();
    let gap_day = next_midnight_gap(beirut);
    w.set_activity_settings(&w.alice, Some(gap_day), &[]);
    let at = |d: NaiveDate, h: u32, m: u32| json!({"dateTime": format!("{d}T{h:02}:{m:02}:00"), "timeZone": "Asia/Beirut"});
    let prev = gap_day - Duration::days(1);
    w.google_insert_event(ALICE, json!({"summary": "Early", "start": at(gap_day, 1, 15), "end": at(gap_day, 1, 45)})).await;
    w.google_insert_event(ALICE, json!({"summary": "Evening before", "start": at(prev, 23, 0), "end": at(prev, 23, 30)})).await;
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.crm.get("created"), Some(&1), "{:?}", r.counts);
    let titles: Vec<String> = w.crm_activities().into_iter().map(|a| a.data.title).collect();
    assert_eq!(titles, vec!["Early".to_string()]);
    assert_converged(&w).await;
});

/// A CRM activity, synced, whose event Alice makes weekly in Google (three times) from `hour`
/// (its own time is 09:00). Returns the activity and its event id (now the series').
async fn crm_event_made_recurring(w: &SyncWorld, hour: u32) -> (Activity, String) {
    let start = paris()
        .from_local_datetime(&day(10).and_hms_opt(9, 0, 0).unwrap())
        .single()
        .unwrap()
        .with_timezone(&Utc);
    let a = w.crm_activity(&meeting("From the CRM", &w.alice, start, 60, TZ, vec![]));
    w.sync_activities(&w.alice).await;
    let id = crmsync_engine::activity_map::event_id(a.id);
    w.google_patch_event(
        ALICE,
        &id,
        json!({
            "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"],
            "start": local(day(10), hour, 0),
            "end": local(day(10), hour + 1, 0),
        }),
    )
    .await;
    (a, id)
}

db_test!(async fn a_crm_activity_made_recurring_in_google_stays_the_activity_of_its_occurrence(db) {
    let w = world(db).await;
    let (a, id) = crm_event_made_recurring(&w, 9).await;
    let kept = all_ids(&w);
    let r = w.sync_activities(&w.alice).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.counts.crm.get("created"), Some(&2), "{:?}", r.counts);
    let expected = google_occurrences(&w, &[&id]).await;
    assert_eq!(expected.len(), 3);
    let after = assert_shows_exactly(&w, &expected, &kept);
    // The first occurrence is the same activity, now linked to its instance.
    assert_eq!(after[0].id, a.id);
    let link = w
        .store
        .read(|c| sync_state::links_by_crm_ids(c, w.alice.id, SyncKind::Activities, &[a.id.to_string()]))
        .unwrap()
        .remove(0);
    assert_eq!(link.google_id, Some(instance_ids(&w, &id).await[0].clone()));
    assert_converged(&w).await;
    // Edited in the CRM, it changes that occurrence only.
    w.crm_activity_update(a.id, |d| d.title = "From the CRM (first)".into());
    w.sync_activities(&w.alice).await;
    let titles: Vec<String> = google_occurrences(&w, &[&id]).await.into_iter().map(|o| o.2).collect();
    assert_eq!(titles, ["From the CRM (first)", "From the CRM", "From the CRM"]);
    assert_converged(&w).await;
});

db_test!(async fn a_crm_activity_made_recurring_at_another_time_leaves_the_calendar(db) {
    let w = world(db).await;
    let (a, id) = crm_event_made_recurring(&w, 10).await;
    let kept = all_ids(&w);
    let r = w.sync_activities(&w.alice).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.counts.crm.get("created"), Some(&3), "{:?}", r.counts);
    assert_hidden_and_journaled(&w, &r, 1);
    assert!(!w.crm_activity_get(a.id).data.display_in_calendar);
    let expected = google_occurrences(&w, &[&id]).await;
    assert_eq!(expected.len(), 3);
    assert_shows_exactly(&w, &expected, &kept);
    assert_converged(&w).await;
});

db_test!(async fn an_instance_moved_from_the_crm_dropped_by_a_shorter_rule_and_restored_by_a_longer_one_stays_shown(db) {
    // Simulation seed 100029: the third instance moved from the CRM (an exception in Google), the
    // series shortened to two occurrences (the exception is cancelled), then lengthened again
    // before the next run (the occurrence exists again, at its original time). The listing shows
    // the cancelled exception and the live instance under the same id.
    let w = world(db).await;
    let (id, before) = synced_series(&w, "Team sync").await;
    let kept = all_ids(&w);
    let moved = before[2].id;
    w.crm_activity_update(moved, |d| {
        d.time = ActivityTime::Timed {
            start: instant(&json!({"dateTime": format!("{}T15:00:00+00:00", day(3))})),
            end: instant(&json!({"dateTime": format!("{}T16:00:00+00:00", day(3))})),
        };
    });
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.google.get("updated"), Some(&1), "{:?}", r.counts);
    w.google_patch_event(ALICE, &id, json!({"recurrence": ["RRULE:FREQ=WEEKLY;COUNT=2"]})).await;
    w.google_patch_event(ALICE, &id, json!({"recurrence": ["RRULE:FREQ=WEEKLY;COUNT=6"]})).await;
    let r = w.sync_activities(&w.alice).await;
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    // The activity follows its occurrence back to its original time, still linked.
    assert_eq!(r.counts.crm.get("updated"), Some(&1), "{:?}", r.counts);
    assert_eq!(r.counts.crm.get("hidden_from_calendar"), None, "{:?}", r.counts);
    let expected = google_occurrences(&w, &[&id]).await;
    assert_eq!(expected.len(), 6);
    assert_shows_exactly(&w, &expected, &kept);
    assert_converged(&w).await;
});
