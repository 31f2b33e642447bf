//! End-to-end activities sync (SPEC section 4), one test per rule, on SQLite and PostgreSQL,
//! against the emulator through the real Calendar client crate.

use crate::sync_support::*;
use chrono::{NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use crmsync::sync::{MassUntag, RunOptions, RunState, Trigger};
use crmsync_engine::activity_map::event_id;
use crmsync_engine::ids::SyncKind;
use crmsync_engine::model::{ActivityTime, ResponseStatus};
use crmsync_schema::db_test;
use crmsync_schema::sync_state;
use serde_json::{json, Value};

fn at(y: i32, m: u32, d: u32, h: u32, min: u32, tz: &str) -> chrono::DateTime<Utc> {
    let tz: Tz = tz.parse().unwrap();
    tz.with_ymd_and_hms(y, m, d, h, min, 0)
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

fn next_year() -> i32 {
    use chrono::Datelike;
    Utc::now().year() + 1
}

fn attendee_emails(e: &Value) -> Vec<String> {
    let mut v: Vec<String> = e["attendees"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a["email"].as_str().map(String::from))
        .collect();
    v.sort();
    v
}

db_test!(async fn crm_activity_goes_to_the_organizers_calendar_with_participants_and_no_invitations(db) {
    let w = SyncWorld::new(db).await;
    let bob = w.user("bob@example.com").await;
    let carol = w.plain_contact("Carol", "carol@client.test");
    w.set_activity_settings(&w.alice, None, &[]);
    let start = at(next_year(), 5, 12, 10, 0, "Europe/Paris");
    let mut data = meeting("Quarterly review", &w.alice, start, 60, "Europe/Paris", vec![participant_user(&bob), participant_contact(&carol)]);
    data.location = Some("Room 4".into());
    data.participants.push(crmsync_engine::model::Participant { user_id: None, contact_id: None, email: "guest@elsewhere.test".into(), response_status: ResponseStatus::Accepted });
    let a = w.crm_activity(&data);
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.google.get("created"), Some(&1), "{:?}", r.counts);
    let e = w.emu.emulator().calendar_event("alice@example.com", &event_id(a.id)).expect("event with the deterministic id");
    assert_eq!(e["summary"], "Quarterly review");
    assert_eq!(e["location"], "Room 4");
    assert_eq!(e["start"]["timeZone"], "Europe/Paris");
    assert_eq!(e["extendedProperties"]["private"]["crmsyncActivityId"], a.id.to_string());
    assert_eq!(attendee_emails(&e), vec!["bob@example.com", "carol@client.test", "guest@elsewhere.test"]);
    // Bob sees the same event in his calendar (emulated domain), as an attendee.
    let bobs = w.emu.emulator().calendar_event("bob@example.com", &event_id(a.id)).expect("mirrored copy");
    assert_eq!(bobs["organizer"]["email"], "alice@example.com");
    // No invitation storm: every sync write asked for sendUpdates=none.
    let writes = w.emu.emulator().calendar_writes();
    assert!(!writes.is_empty());
    assert!(writes.iter().all(|wr| wr.send_updates.as_deref() == Some("none")), "{writes:?}");
    // N6.
    let before = w.calendar_writes();
    let r = w.sync_activities(&w.alice).await;
    assert_eq!((r.counts.writes(), w.calendar_writes()), (0, before), "{:?}", r.counts);
    // Nothing changed: one list call.
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.api_calls, 1, "{r:?}");
});

db_test!(async fn a_collective_meeting_edited_by_the_participant_reaches_the_organizers_event(db) {
    let w = SyncWorld::new(db).await;
    let bob = w.user("bob@example.com").await;
    w.set_activity_settings(&w.alice, None, &[]);
    w.set_activity_settings(&bob, None, &[]);
    let start = at(next_year(), 3, 2, 15, 0, "Europe/London");
    let a = w.crm_activity(&meeting("Kick-off", &w.alice, start, 30, "Europe/London", vec![participant_user(&bob)]));
    w.sync_activities(&w.alice).await;
    // Bob's run: he is only an attendee of Alice's event, so nothing is imported.
    let r = w.sync_activities(&bob).await;
    assert_eq!(r.counts.writes(), 0, "{:?}", r.counts);
    assert_eq!(w.crm_activities().len(), 1);
    // Bob edits the shared activity in the CRM; Alice's run writes it to her event.
    w.crm_activity_update(a.id, |d| d.title = "Kick-off (moved to room 2)".into());
    w.sync_activities(&bob).await;
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.google.get("updated"), Some(&1), "{:?}", r.counts);
    let e = w.emu.emulator().calendar_event("alice@example.com", &event_id(a.id)).unwrap();
    assert_eq!(e["summary"], "Kick-off (moved to room 2)");
    let bobs = w.emu.emulator().calendar_event("bob@example.com", &event_id(a.id)).unwrap();
    assert_eq!(bobs["summary"], "Kick-off (moved to room 2)");
    assert_eq!(w.crm_activities().len(), 1, "no duplicate activity from Bob's copy");
});

db_test!(async fn organizer_without_activity_sync_hands_over_to_the_participant(db) {
    let w = SyncWorld::new(db).await;
    let bob = w.user("bob@example.com").await;
    // Alice (organizer) has no activity sync; Bob, a participant, has.
    w.set_activity_settings(&bob, None, &[]);
    let start = at(next_year(), 6, 1, 9, 0, "Europe/London");
    let a = w.crm_activity(&meeting("Demo", &w.alice, start, 45, "Europe/London", vec![participant_user(&bob)]));
    let r = w.sync_activities(&bob).await;
    assert_eq!(r.counts.google.get("created"), Some(&1), "{:?}", r.counts);
    assert_eq!(w.crm_activity_get(a.id).data.organizer_user_id, bob.id, "Bob became the organizer");
    let e = w.emu.emulator().calendar_event("bob@example.com", &event_id(a.id)).expect("in Bob's calendar");
    assert_eq!(e["organizer"]["email"], "bob@example.com");
    let journal = w.store.read(|c| sync_state::journal_of_record(c, &a.id.to_string())).unwrap();
    assert!(journal.iter().any(|j| j.entry.action == "organizer_changed" && j.entry.rule == "organizer_fallback"), "{journal:?}");
});

db_test!(async fn events_the_user_organizes_are_imported_and_unmatched_attendees_kept(db) {
    let w = SyncWorld::new(db).await;
    let bob = w.user("bob@example.com").await;
    let carol = w.plain_contact("Carol", "carol@client.test");
    w.set_activity_settings(&w.alice, None, &[]);
    w.set_activity_settings(&bob, None, &[]);
    let y = next_year();
    let e = w.google_insert_event("alice@example.com", json!({
        "summary": "Lunch with Carol",
        "start": {"dateTime": format!("{y}-04-03T12:30:00+02:00"), "timeZone": "Europe/Berlin"},
        "end": {"dateTime": format!("{y}-04-03T13:30:00+02:00"), "timeZone": "Europe/Berlin"},
        "attendees": [{"email": "carol@client.test", "responseStatus": "accepted"}, {"email": "stranger@elsewhere.test"}, {"email": "bob@example.com"}],
        "conferenceData": {"entryPoints": [{"entryPointType": "video", "uri": "https://meet.example/abc"}], "conferenceId": "abc"}
    })).await;
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.crm.get("created"), Some(&1), "{:?}", r.counts);
    let acts = w.crm_activities();
    assert_eq!(acts.len(), 1);
    let a = &acts[0];
    assert_eq!(a.data.title, "Lunch with Carol");
    assert_eq!(a.data.organizer_user_id, w.alice.id);
    assert!(a.data.display_in_calendar);
    assert_eq!(a.data.time_zone, "Europe/Berlin");
    let mut emails: Vec<String> = a.data.participants.iter().map(|p| p.email.clone()).collect();
    emails.sort();
    assert_eq!(emails, vec!["bob@example.com", "carol@client.test"], "only CRM people become participants");
    let carol_p = a.data.participants.iter().find(|p| p.email == "carol@client.test").unwrap();
    assert_eq!(carol_p.contact_id, Some(carol.id));
    assert_eq!(carol_p.response_status, ResponseStatus::Accepted);
    // Bob's run: he is only an attendee; nothing imported for him.
    let r = w.sync_activities(&bob).await;
    assert_eq!(r.counts.writes(), 0, "{:?}", r.counts);
    // A CRM edit (title, participants) keeps the stranger and the conference link.
    w.crm_activity_update(a.id, |d| {
        d.title = "Lunch with Carol and Dan".into();
        d.participants.retain(|p| p.email != "bob@example.com");
    });
    w.sync_activities(&w.alice).await;
    let id = e["id"].as_str().unwrap();
    let after = w.emu.emulator().calendar_event("alice@example.com", id).unwrap();
    assert_eq!(after["summary"], "Lunch with Carol and Dan");
    assert_eq!(attendee_emails(&after), vec!["carol@client.test", "stranger@elsewhere.test"]);
    assert_eq!(after["conferenceData"]["conferenceId"], "abc", "conference data survives");
    assert_eq!(w.sync_activities(&w.alice).await.counts.writes(), 0);
});

db_test!(async fn all_day_events_keep_their_dates_in_every_zone(db) {
    let w = SyncWorld::new(db).await;
    w.set_activity_settings(&w.alice, None, &[]);
    let y = next_year();
    let d = |m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
    // CRM -> Google, an all-day activity in Auckland.
    let mut data = meeting("Waitangi Day", &w.alice, Utc::now(), 0, "Pacific/Auckland", vec![]);
    data.time = ActivityTime::AllDay { start: d(2, 6), end: d(2, 7) };
    let a = w.crm_activity(&data);
    // Google -> CRM, an all-day event created in Los Angeles.
    w.google_insert_event("alice@example.com", json!({"summary": "Offsite", "start": {"date": format!("{y}-07-03")}, "end": {"date": format!("{y}-07-05")}})).await;
    w.sync_activities(&w.alice).await;
    let e = w.emu.emulator().calendar_event("alice@example.com", &event_id(a.id)).unwrap();
    assert_eq!(e["start"]["date"], format!("{y}-02-06"));
    assert_eq!(e["end"]["date"], format!("{y}-02-07"));
    let offsite = w.crm_activities().into_iter().find(|x| x.data.title == "Offsite").unwrap();
    assert_eq!(offsite.data.time, ActivityTime::AllDay { start: d(7, 3), end: d(7, 5) });
    // The user's zone does not shift the dates (Alice in Los Angeles).
    w.store.write(|c| crmsync_schema::users::update_user(c, w.alice.id, &crmsync_schema::users::UserPatch { time_zone: Some("America/Los_Angeles".into()), ..Default::default() }, now())).unwrap();
    w.crm_activity_update(a.id, |d| d.title = "Waitangi Day (NZ)".into());
    w.sync_activities(&w.alice).await;
    let e = w.emu.emulator().calendar_event("alice@example.com", &event_id(a.id)).unwrap();
    assert_eq!((e["start"]["date"].clone(), e["end"]["date"].clone()), (json!(format!("{y}-02-06")), json!(format!("{y}-02-07"))));
    assert_eq!(w.crm_activity_get(a.id).data.time, ActivityTime::AllDay { start: d(2, 6), end: d(2, 7) });
});

db_test!(async fn switching_between_timed_and_all_day_replaces_the_event_and_keeps_the_rest(db) {
    // A patch cannot clear `dateTime` (the client crate drops JSON nulls), so the switch is a full
    // update built on the current event: conference data and strangers must survive it.
    let w = SyncWorld::new(db).await;
    w.set_activity_settings(&w.alice, None, &[]);
    let y = next_year();
    let e = w.google_insert_event("alice@example.com", json!({
        "summary": "Workshop",
        "start": {"dateTime": format!("{y}-09-14T10:00:00+02:00"), "timeZone": "Europe/Berlin"},
        "end": {"dateTime": format!("{y}-09-14T12:00:00+02:00"), "timeZone": "Europe/Berlin"},
        "attendees": [{"email": "stranger@elsewhere.test"}],
        "conferenceData": {"entryPoints": [{"entryPointType": "video", "uri": "https://meet.example/ws"}], "conferenceId": "ws"}
    })).await;
    let id = e["id"].as_str().unwrap().to_string();
    w.sync_activities(&w.alice).await;
    let a = w.crm_activities().into_iter().find(|x| x.data.title == "Workshop").unwrap();
    let d = |m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
    // CRM: timed -> all-day (two days).
    w.crm_activity_update(a.id, |x| x.time = ActivityTime::AllDay { start: d(9, 14), end: d(9, 16) });
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.google.get("updated"), Some(&1), "{:?}", r.counts);
    let after = w.emu.emulator().calendar_event("alice@example.com", &id).unwrap();
    assert_eq!((after["start"]["date"].clone(), after["end"]["date"].clone()), (json!(format!("{y}-09-14")), json!(format!("{y}-09-16"))));
    assert!(after["start"].get("dateTime").is_none(), "{after}");
    assert_eq!(after["conferenceData"]["conferenceId"], "ws", "conference data survives");
    assert_eq!(attendee_emails(&after), vec!["stranger@elsewhere.test"], "strangers survive");
    let s = w.emu.emulator().stats();
    assert_eq!(s.count("calendar.events.update"), 1, "the switch is one events.update");
    assert_eq!(w.sync_activities(&w.alice).await.counts.writes(), 0);
    // CRM: all-day -> timed again, in New York.
    let start = at(y, 9, 15, 9, 30, "America/New_York");
    w.crm_activity_update(a.id, |x| {
        x.time = ActivityTime::Timed { start, end: start + chrono::Duration::minutes(90) };
        x.time_zone = "America/New_York".into();
    });
    w.sync_activities(&w.alice).await;
    let after = w.emu.emulator().calendar_event("alice@example.com", &id).unwrap();
    assert!(after["start"].get("date").is_none(), "{after}");
    assert_eq!(after["start"]["timeZone"], "America/New_York");
    let got = chrono::DateTime::parse_from_rfc3339(after["start"]["dateTime"].as_str().unwrap()).unwrap();
    assert_eq!(got.with_timezone(&Utc), start);
    assert_eq!(after["conferenceData"]["conferenceId"], "ws");
    assert_eq!(w.sync_activities(&w.alice).await.counts.writes(), 0);
    // Google: the user makes it all-day again (a raw patch that clears dateTime); the CRM follows.
    w.google_patch_event("alice@example.com", &id, json!({
        "start": {"date": format!("{y}-09-20"), "dateTime": null},
        "end": {"date": format!("{y}-09-21"), "dateTime": null}
    })).await;
    w.sync_activities(&w.alice).await;
    assert_eq!(w.crm_activity_get(a.id).data.time, ActivityTime::AllDay { start: d(9, 20), end: d(9, 21) });
    assert_eq!(w.sync_activities(&w.alice).await.counts.writes(), 0);
});

db_test!(async fn a_weekly_meeting_keeps_its_local_time_across_dst_and_exceptions_are_kept(db) {
    let w = SyncWorld::new(db).await;
    let y = next_year();
    w.set_activity_settings(&w.alice, NaiveDate::from_ymd_opt(y, 2, 1), &[]);
    // Weekly on Mondays 09:00 New York, from February (EST) to April (EDT).
    let series = w.google_insert_event("alice@example.com", json!({
        "summary": "Team sync",
        "start": {"dateTime": format!("{y}-02-02T09:00:00"), "timeZone": "America/New_York"},
        "end": {"dateTime": format!("{y}-02-02T09:30:00"), "timeZone": "America/New_York"},
        "recurrence": ["RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=10"]
    })).await;
    let id = series["id"].as_str().unwrap().to_string();
    let instances = w.google_instances("alice@example.com", &id).await;
    assert_eq!(instances.len(), 10);
    // Move the fourth occurrence to 11:00 (an exception).
    let moved = instances[3]["id"].as_str().unwrap().to_string();
    let day = instances[3]["start"]["dateTime"].as_str().unwrap()[..10].to_string();
    w.google_patch_event("alice@example.com", &moved, json!({
        "start": {"dateTime": format!("{day}T11:00:00"), "timeZone": "America/New_York"},
        "end": {"dateTime": format!("{day}T11:30:00"), "timeZone": "America/New_York"}
    })).await;
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.crm.get("created"), Some(&10), "{:?}", r.counts);
    let ny: Tz = "America/New_York".parse().unwrap();
    let mut locals: Vec<(String, u32)> = w
        .crm_activities()
        .iter()
        .map(|a| match a.data.time {
            ActivityTime::Timed { start, .. } => {
                let l = start.with_timezone(&ny);
                (l.format("%Y-%m-%d").to_string(), l.hour())
            }
            _ => panic!("timed"),
        })
        .collect();
    locals.sort();
    let hours: Vec<u32> = locals.iter().map(|(_, h)| *h).collect();
    let expected: Vec<u32> = (0..10).map(|i| if i == 3 { 11 } else { 9 }).collect();
    assert_eq!(hours, expected, "{locals:?}");
    // Both sides of the March DST change are present.
    assert!(locals.iter().any(|(d, _)| d < &format!("{y}-03-08")) && locals.iter().any(|(d, _)| d > &format!("{y}-03-15")));
    // Editing one instance in the CRM becomes an exception in Google; the others stay.
    let one = w.crm_activities().into_iter().find(|a| matches!(a.data.time, ActivityTime::Timed { start, .. } if start.with_timezone(&ny).format("%Y-%m-%d").to_string() == locals[5].0)).unwrap();
    w.crm_activity_update(one.id, |d| d.title = "Team sync (with guests)".into());
    w.sync_activities(&w.alice).await;
    let inst = w.google_instances("alice@example.com", &id).await;
    assert_eq!(inst.iter().filter(|e| e["summary"] == "Team sync (with guests)").count(), 1);
    assert_eq!(inst.iter().filter(|e| e["summary"] == "Team sync").count(), 9);
    assert_eq!(w.sync_activities(&w.alice).await.counts.writes(), 0);
});

db_test!(async fn deletes_hide_or_cancel_and_never_destroy(db) {
    let w = SyncWorld::new(db).await;
    w.set_activity_settings(&w.alice, None, &[]);
    let start = at(next_year(), 9, 1, 10, 0, "UTC");
    let a = w.crm_activity(&meeting("Keep me", &w.alice, start, 30, "UTC", vec![]));
    let b = w.crm_activity(&meeting("Cancel me", &w.alice, start, 30, "UTC", vec![]));
    w.sync_activities(&w.alice).await;
    // Google delete: the activity stays, hidden from the calendar.
    w.google_delete_event("alice@example.com", &event_id(a.id)).await;
    // CRM delete: the event is cancelled.
    w.store.write(|c| crmsync_schema::activities::delete_activity(c, b.id, crmsync_schema::changes::Origin::Api, now())).unwrap();
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.crm.get("hidden_from_calendar"), Some(&1), "{:?}", r.counts);
    assert_eq!(r.counts.google.get("cancelled"), Some(&1), "{:?}", r.counts);
    let kept = w.crm_activity_get(a.id);
    assert!(kept.deleted_at.is_none() && !kept.data.display_in_calendar);
    assert_eq!(kept.data.title, "Keep me");
    let ev = w.emu.emulator().calendar_event("alice@example.com", &event_id(b.id)).unwrap();
    assert_eq!(ev["status"], "cancelled");
    // Showing it again restores the same event (same id), no duplicate.
    w.crm_activity_update(a.id, |d| d.display_in_calendar = true);
    w.sync_activities(&w.alice).await;
    let ev = w.emu.emulator().calendar_event("alice@example.com", &event_id(a.id)).unwrap();
    assert_eq!(ev["status"], "confirmed");
    assert_eq!(w.live_events("alice@example.com").len(), 1);
    assert_eq!(w.sync_activities(&w.alice).await.counts.writes(), 0);
});

db_test!(async fn trigger_words_filter_imports(db) {
    let w = SyncWorld::new(db).await;
    w.set_activity_settings(&w.alice, None, &["CRM", "sales call"]);
    let y = next_year();
    for title in ["Sales call with ACME", "Dentist", "crm review", "CRMs are great"] {
        w.google_insert_event("alice@example.com", json!({"summary": title, "start": {"date": format!("{y}-05-05")}, "end": {"date": format!("{y}-05-06")}})).await;
    }
    w.sync_activities(&w.alice).await;
    let mut titles: Vec<String> = w.crm_activities().into_iter().map(|a| a.data.title).collect();
    titles.sort();
    assert_eq!(titles, vec!["Sales call with ACME", "crm review"]);
});

db_test!(async fn expired_token_and_lost_insert_answers_cause_no_duplicates(db) {
    let w = SyncWorld::new(db).await;
    w.set_activity_settings(&w.alice, None, &[]);
    let start = at(next_year(), 10, 1, 8, 0, "UTC");
    for i in 0..3 {
        w.crm_activity(&meeting(&format!("M{i}"), &w.alice, start, 30, "UTC", vec![]));
    }
    w.google_insert_event("alice@example.com", json!({"summary": "From Google", "start": {"date": format!("{}-10-02", next_year())}, "end": {"date": format!("{}-10-03", next_year())}})).await;
    // The second insert is applied but its answer is lost.
    use crmsync_emulator::FaultRule;
    w.emu.emulator().set_faults(vec![FaultRule::error("calendar.events.insert", 0, 1).applied()]);
    let r = w.sync_activities(&w.alice).await;
    assert!(r.state == RunState::Succeeded, "{r:?}");
    w.emu.emulator().clear_faults();
    w.sync_activities(&w.alice).await;
    assert_eq!(w.live_events("alice@example.com").len(), 4);
    assert_eq!(w.crm_activities().len(), 4);
    // Expired token: a full re-listing reconciled against the links.
    w.emu.emulator().expire_sync_tokens("alice@example.com", crmsync_emulator::Api::Calendar);
    let before = w.calendar_writes();
    let r = w.sync_activities(&w.alice).await;
    assert_eq!((r.counts.writes(), w.calendar_writes()), (0, before), "{:?}", r.counts);
    assert!(w.emu.emulator().stats().count_status("calendar.events.list", 410) >= 1);
    assert_eq!(w.live_events("alice@example.com").len(), 4);
    assert_eq!(w.crm_activities().len(), 4);
});

db_test!(async fn an_event_change_that_keeps_failing_is_parked_and_the_token_moves_on(db) {
    use crmsync_engine::ids::SyncKind;
    use crmsync_schema::parked::{self, ItemSide};
    let w = SyncWorld::new(db).await;
    w.set_activity_settings(&w.alice, None, &[]);
    let start = at(next_year(), 5, 4, 10, 0, "Europe/Paris");
    let a = w.crm_activity(&meeting("Review", &w.alice, start, 60, "Europe/Paris", vec![]));
    w.sync_activities(&w.alice).await;
    let id = event_id(a.id);
    // Both sides edit different fields; the write back to Google is refused every time.
    w.crm_activity_update(a.id, |d| d.location = Some("Room Refused".into()));
    w.google_patch_event("alice@example.com", &id, json!({"summary": "Review (moved)"})).await;
    w.emu.emulator().set_faults(vec![
        crmsync_emulator::FaultRule::error("calendar.events.patch", 400, 100_000).body_contains("Room Refused"),
    ]);
    let uid = w.alice.id;
    let token = || w.store.read(|c| sync_state::get_cursor(c, uid, SyncKind::Activities)).unwrap().google_sync_token;
    let failing = || w.store.read(|c| parked::failing_items(c, uid, SyncKind::Activities, 10)).unwrap();
    let before = token();
    for attempt in 1..=2 {
        let r = w.sync_activities(&w.alice).await;
        assert_eq!(r.counts.errors, 1, "{r:?}");
        assert_eq!(token(), before, "attempt {attempt}: the token passed a failing change");
        let f = failing();
        assert_eq!((f[0].side, f[0].item_id.as_str(), f[0].attempts), (ItemSide::Google, id.as_str(), attempt));
    }
    let r = w.sync_activities(&w.alice).await;
    assert!(r.errors[0].message.contains("parked"), "{:?}", r.errors);
    assert_ne!(token(), before, "parked: the sync token moves on");
    // Retried by id in the next run (still refused), then through once Google takes it.
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.errors, 1, "{r:?}");
    assert_eq!(failing()[0].attempts, 4);
    w.emu.emulator().clear_faults();
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.errors, 0, "{r:?}");
    assert!(failing().is_empty());
    let e = w.emu.emulator().calendar_event("alice@example.com", &id).unwrap();
    assert_eq!((e["summary"].as_str(), e["location"].as_str()), (Some("Review (moved)"), Some("Room Refused")));
    let a2 = w.crm_activity_get(a.id);
    assert_eq!((a2.data.title.as_str(), a2.data.location.as_deref()), ("Review (moved)", Some("Room Refused")));
    assert_eq!(w.sync_activities(&w.alice).await.counts.writes(), 0);
});

db_test!(async fn a_hidden_activity_shown_again_as_all_day_restores_its_cancelled_event(db) {
    // Google delete hides the activity; shown again (now all-day), the cancelled event with the
    // same deterministic id is restored in the new form (a full update: a patch cannot clear
    // `dateTime`), not duplicated.
    let w = SyncWorld::new(db).await;
    w.set_activity_settings(&w.alice, None, &[]);
    let y = next_year();
    let start = at(y, 8, 3, 14, 0, "America/New_York");
    let a = w.crm_activity(&meeting("Offsite prep", &w.alice, start, 60, "America/New_York", vec![]));
    w.sync_activities(&w.alice).await;
    let id = event_id(a.id);
    w.google_delete_event("alice@example.com", &id).await;
    w.sync_activities(&w.alice).await;
    assert!(!w.crm_activity_get(a.id).data.display_in_calendar);
    let d = |m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
    w.crm_activity_update(a.id, |x| {
        x.display_in_calendar = true;
        x.time = ActivityTime::AllDay { start: d(8, 4), end: d(8, 5) };
    });
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.errors, 0, "{r:?}");
    let e = w.emu.emulator().calendar_event("alice@example.com", &id).unwrap();
    assert_eq!(e["status"], "confirmed", "{e}");
    assert_eq!((e["start"]["date"].as_str(), e["end"]["date"].as_str()), (Some(format!("{y}-08-04").as_str()), Some(format!("{y}-08-05").as_str())));
    assert!(e["start"].get("dateTime").is_none(), "{e}");
    assert_eq!(w.live_events("alice@example.com").len(), 1);
    assert_eq!(w.sync_activities(&w.alice).await.counts.writes(), 0);
});

db_test!(async fn mass_untag_guard_blocks_mass_hides_and_cancels_then_undo_or_confirm(db) {
    // 12 linked activities: 6 events deleted in Google and 6 activities taken off the calendar in
    // the CRM would end every link. The guard blocks the run with those numbers and carries
    // nothing out; "restore" brings the events back (same ids) and shows the activities again;
    // a confirmed run hides the activities of deleted events and keeps them.
    let w = SyncWorld::new(db).await;
    w.set_activity_settings(&w.alice, None, &[]);
    let base = (Utc::now() + chrono::Duration::days(7)).with_nanosecond(0).unwrap();
    let acts: Vec<_> = (0..12)
        .map(|i| w.crm_activity(&meeting(&format!("Visit {i}"), &w.alice, base + chrono::Duration::hours(i), 30, "Europe/Paris", vec![])))
        .collect();
    w.sync_activities(&w.alice).await;
    assert_eq!(w.live_events("alice@example.com").len(), 12);
    for a in &acts[0..6] {
        w.google_delete_event("alice@example.com", &event_id(a.id)).await;
    }
    for a in &acts[6..12] {
        w.crm_activity_update(a.id, |d| d.display_in_calendar = false);
    }
    let writes = w.calendar_writes();
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.state, RunState::Blocked, "{r:?}");
    assert!(r.message.as_deref().unwrap_or("").contains("12 of 12"), "{:?}", r.message);
    assert_eq!(w.calendar_writes(), writes, "a blocked run wrote to Google");
    for a in &acts[0..6] {
        assert!(w.crm_activity_get(a.id).data.display_in_calendar, "hidden by a blocked run");
    }
    for a in &acts[6..12] {
        let e = w.emu.emulator().calendar_event("alice@example.com", &event_id(a.id)).unwrap();
        assert_eq!(e["status"], "confirmed", "cancelled by a blocked run");
    }
    // Blocked again until an admin decides.
    assert_eq!(w.sync_activities(&w.alice).await.state, RunState::Blocked);

    // Undo: the deleted events come back under their ids, the hidden activities are shown again.
    let r = w
        .engine
        .sync(w.alice.id, SyncKind::Activities, Trigger::Manual, RunOptions { mass_untag: MassUntag::Restore })
        .await
        .unwrap();
    assert_eq!((r.state, r.counts.errors), (RunState::Succeeded, 0), "{r:?}");
    for a in &acts {
        let e = w.emu.emulator().calendar_event("alice@example.com", &event_id(a.id)).unwrap();
        assert_eq!(e["status"], "confirmed", "{} not restored: {e}", a.data.title);
        assert_eq!(e["summary"], a.data.title);
        let now = w.crm_activity_get(a.id);
        assert!(now.deleted_at.is_none() && now.data.display_in_calendar, "{} not shown again", a.data.title);
    }
    assert_eq!(w.live_events("alice@example.com").len(), 12, "no duplicate event");
    assert_eq!(w.crm_activities().len(), 12, "no duplicate activity");
    let writes = w.calendar_writes();
    let r = w.sync_activities(&w.alice).await;
    assert_eq!((r.state, r.counts.writes(), w.calendar_writes()), (RunState::Succeeded, 0, writes), "{r:?}");

    // Deleted in Google again, and confirmed: the activities leave the calendar and stay.
    for a in &acts {
        w.google_delete_event("alice@example.com", &event_id(a.id)).await;
    }
    assert_eq!(w.sync_activities(&w.alice).await.state, RunState::Blocked);
    let r = w
        .engine
        .sync(w.alice.id, SyncKind::Activities, Trigger::Manual, RunOptions { mass_untag: MassUntag::Confirm })
        .await
        .unwrap();
    assert_eq!(r.state, RunState::Succeeded, "{r:?}");
    assert_eq!(r.counts.crm.get("hidden_from_calendar"), Some(&12), "{:?}", r.counts);
    for a in &acts {
        let now = w.crm_activity_get(a.id);
        assert!(now.deleted_at.is_none() && !now.data.display_in_calendar);
        assert_eq!(now.data.title, a.data.title);
    }
    assert!(w.live_events("alice@example.com").is_empty());
    assert_eq!(w.sync_activities(&w.alice).await.counts.writes(), 0);
});

db_test!(
    async fn an_imported_event_patched_in_google_then_hidden_in_the_crm_is_cancelled(db) {
    // Found by the activities simulation (seed 48). An event created in Google is imported; the
    // user patches it in Google (even without changing a mapped value) and a run takes that in;
    // then the activity is taken off the calendar in the CRM. The next runs do nothing for it
    // (no error, no journal entry): the event stays live and the link active for an activity
    // that is no longer shown. Without the Google patch the same hide cancels the event.
    let w = SyncWorld::new(db).await;
    w.set_activity_settings(&w.alice, None, &[]);
    let start = (Utc::now() + chrono::Duration::days(9)).with_nanosecond(0).unwrap();
    let e = w.google_insert_event("alice@example.com", json!({
        "summary": "Renewal",
        "start": {"dateTime": start.to_rfc3339(), "timeZone": "America/New_York"},
        "end": {"dateTime": (start + chrono::Duration::hours(2)).to_rfc3339(), "timeZone": "America/New_York"}
    })).await;
    let id = e["id"].as_str().unwrap().to_string();
    w.sync_activities(&w.alice).await;
    let a = w.crm_activities().into_iter().find(|a| a.data.title == "Renewal").expect("imported");
    w.google_patch_event("alice@example.com", &id, json!({"summary": "Renewal"})).await;
    w.sync_activities(&w.alice).await;
    w.crm_activity_update(a.id, |d| d.display_in_calendar = false);
    let r = w.sync_activities(&w.alice).await;
    assert_eq!(r.counts.google.get("cancelled"), Some(&1), "{:?}", r.counts);
    let ev = w.emu.emulator().calendar_event("alice@example.com", &id).unwrap();
    assert_eq!(ev["status"], "cancelled", "the hidden activity's event is still live: {ev}");
    let kept = w.crm_activity_get(a.id);
    assert!(kept.deleted_at.is_none() && !kept.data.display_in_calendar);
    assert_eq!(w.sync_activities(&w.alice).await.counts.writes(), 0);
});
