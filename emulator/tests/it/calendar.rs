//! Calendar v3 through google-calendar3: CRUD, client-chosen ids, soft-cancel deletes,
//! etags and If-Match, sync tokens and paging rules, attendee mirroring, sendUpdates,
//! extendedProperties, preservation of unmodelled fields, watch/channels.stop.

use crate::common::*;
use chrono::{TimeZone, Utc};
use google_calendar3::api::{
    Channel, Event, EventAttendee, EventDateTime, EventExtendedProperties,
};
use reqwest::Method;
use serde_json::json;
use std::collections::HashMap;

pub fn timed(summary: &str, h: u32) -> Event {
    Event {
        summary: Some(summary.into()),
        start: Some(EventDateTime {
            date_time: Some(Utc.with_ymd_and_hms(2026, 3, 2, h, 0, 0).unwrap()),
            time_zone: Some("Europe/Paris".into()),
            ..Default::default()
        }),
        end: Some(EventDateTime {
            date_time: Some(Utc.with_ymd_and_hms(2026, 3, 2, h + 1, 0, 0).unwrap()),
            time_zone: Some("Europe/Paris".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn insert_get_patch_update_and_etags() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let cal = env.calendar(&t);
    let (_, e) = cal
        .events()
        .insert(timed("Call with ACME", 9), "primary")
        .send_updates("none")
        .doit()
        .await
        .unwrap();
    let id = e.id.clone().unwrap();
    assert_eq!(e.status.as_deref(), Some("confirmed"));
    assert_eq!(e.kind.as_deref(), Some("calendar#event"));
    assert_eq!(e.organizer.as_ref().unwrap().self_, Some(true));
    assert_eq!(
        e.i_cal_uid.as_deref(),
        Some(format!("{id}@google.com").as_str())
    );
    let etag1 = e.etag.clone().unwrap();
    assert!(etag1.starts_with('"') && etag1.ends_with('"'));
    // updated has millisecond precision.
    let raw = env.emu().calendar_event("alice@example.com", &id).unwrap();
    assert_eq!(
        raw["updated"].as_str().unwrap().len(),
        "2026-01-01T10:00:00.356Z".len()
    );
    let (_, got) = cal
        .events()
        .get("alice@example.com", &id)
        .doit()
        .await
        .unwrap();
    assert_eq!(got.summary.as_deref(), Some("Call with ACME"));
    // PATCH changes only what it sends; etag changes.
    let patch = Event {
        location: Some("Room 1".into()),
        ..Default::default()
    };
    let (_, p) = cal
        .events()
        .patch(patch, "primary", &id)
        .send_updates("none")
        .doit()
        .await
        .unwrap();
    assert_eq!(p.summary.as_deref(), Some("Call with ACME"));
    assert_eq!(p.location.as_deref(), Some("Room 1"));
    assert_ne!(p.etag, e.etag);
    // PUT replaces: location is gone.
    let (_, u) = cal
        .events()
        .update(timed("Renamed", 10), "primary", &id)
        .doit()
        .await
        .unwrap();
    assert_eq!(u.summary.as_deref(), Some("Renamed"));
    assert!(u.location.is_none());
    assert_eq!(u.created, e.created);
    // Unknown calendar and unknown event.
    let err = cal
        .events()
        .get("someone@else.com", &id)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (404, "notFound".into()));
    let err = cal
        .events()
        .get("primary", "nosuchevent")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (404, "notFound".into()));
    // Missing end -> 400 required; end before start -> timeRangeEmpty.
    let mut bad = timed("x", 9);
    bad.end = None;
    let err = cal
        .events()
        .insert(bad, "primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (400, "required".into()));
    let mut bad = timed("x", 9);
    bad.end = timed("x", 7).end;
    let err = cal
        .events()
        .insert(bad, "primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err).0, 400);
    env.finish().await;
}

#[tokio::test]
async fn if_match_gives_412_when_stale() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let (_, e) = env
        .calendar(&t)
        .events()
        .insert(timed("A", 9), "primary")
        .doit()
        .await
        .unwrap();
    let id = e.id.unwrap();
    let etag = e.etag.unwrap();
    let path = format!("/calendar/v3/calendars/primary/events/{id}");
    let (s, v) = env
        .raw(
            Method::PATCH,
            &path,
            &t,
            Some(json!({"summary": "B"})),
            &[("If-Match", "\"123\"")],
        )
        .await;
    assert_eq!(s, 412);
    assert_eq!(
        v,
        json!({"error": {"errors": [{"domain": "global", "reason": "conditionNotMet", "message": "Precondition Failed", "locationType": "header", "location": "If-Match"}], "code": 412, "message": "Precondition Failed"}})
    );
    let (s, v) = env
        .raw(
            Method::PATCH,
            &path,
            &t,
            Some(json!({"summary": "B"})),
            &[("If-Match", &etag)],
        )
        .await;
    assert_eq!(s, 200);
    let new_etag = v["etag"].as_str().unwrap().to_string();
    let (s, _) = env
        .raw(Method::DELETE, &path, &t, None, &[("If-Match", &etag)])
        .await;
    assert_eq!(s, 412);
    let (s, _) = env.raw(Method::PUT, &path, &t, Some(json!({"summary": "C", "start": {"date": "2026-01-01"}, "end": {"date": "2026-01-02"}})), &[("If-Match", &etag)]).await;
    assert_eq!(s, 412);
    let (s, _) = env
        .raw(Method::DELETE, &path, &t, None, &[("If-Match", &new_etag)])
        .await;
    assert_eq!(s, 204);
    env.finish().await;
}

#[tokio::test]
async fn client_chosen_ids_and_soft_cancel_deletes() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let cal = env.calendar(&t);
    let id = "c0ffee00000000000000000000000042";
    let mut ev = timed("Mine", 9);
    ev.id = Some(id.into());
    let (_, e) = cal
        .events()
        .insert(ev.clone(), "primary")
        .doit()
        .await
        .unwrap();
    assert_eq!(e.id.as_deref(), Some(id));
    let err = cal
        .events()
        .insert(ev.clone(), "primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (409, "duplicate".into()));
    if let google_calendar3::Error::BadRequest(v) = &err {
        assert_eq!(
            v["error"]["message"],
            "The requested identifier already exists."
        );
    }
    for bad in ["ABCDEF", "abc", "xyzw1", "has-dash0"] {
        let mut b = timed("Bad", 9);
        b.id = Some(bad.into());
        let err = cal.events().insert(b, "primary").doit().await.unwrap_err();
        assert_eq!(reason(&err), (400, "invalid".into()), "{bad}");
        if let google_calendar3::Error::BadRequest(v) = &err {
            assert_eq!(v["error"]["message"], "Invalid resource id value.");
        }
    }
    // Delete: 204, then get shows cancelled, second delete 410 deleted, unknown 404.
    cal.events()
        .delete("primary", id)
        .send_updates("none")
        .doit()
        .await
        .unwrap();
    let (_, g) = cal.events().get("primary", id).doit().await.unwrap();
    assert_eq!(g.status.as_deref(), Some("cancelled"));
    let err = cal.events().delete("primary", id).doit().await.unwrap_err();
    assert_eq!(reason(&err), (410, "deleted".into()));
    let err = cal
        .events()
        .delete("primary", "unknown00")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (404, "notFound".into()));
    // The id stays taken; a cancelled event can be restored by update.
    let err = cal
        .events()
        .insert(ev.clone(), "primary")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err).0, 409);
    let (_, r) = cal.events().update(ev, "primary", id).doit().await.unwrap();
    assert_eq!(r.status.as_deref(), Some("confirmed"));
    // Listing without showDeleted hides cancelled events; showDeleted shows them.
    cal.events().delete("primary", id).doit().await.unwrap();
    let (_, l) = cal.events().list("primary").doit().await.unwrap();
    assert!(l.items.unwrap_or_default().is_empty());
    let (_, l) = cal
        .events()
        .list("primary")
        .show_deleted(true)
        .doit()
        .await
        .unwrap();
    assert_eq!(l.items.unwrap()[0].status.as_deref(), Some("cancelled"));
    env.finish().await;
}

#[tokio::test]
async fn sync_tokens_pages_and_incremental_changes() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let cal = env.calendar(&t);
    let mut ids = Vec::new();
    for i in 0..7 {
        let (_, e) = cal
            .events()
            .insert(timed(&format!("E{i}"), 8 + i), "primary")
            .doit()
            .await
            .unwrap();
        ids.push(e.id.unwrap());
    }
    // Full sync in pages of 3: nextPageToken on non-final pages, nextSyncToken only on the last.
    let mut seen = Vec::new();
    let mut page: Option<String> = None;
    let sync = loop {
        let mut call = cal.events().list("primary").max_results(3);
        if let Some(p) = &page {
            call = call.page_token(p);
        }
        let (_, l) = call.doit().await.unwrap();
        seen.extend(
            l.items
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.id.unwrap()),
        );
        assert!(l.next_page_token.is_none() || l.next_sync_token.is_none());
        match l.next_page_token {
            Some(p) => page = Some(p),
            None => break l.next_sync_token.expect("sync token on the last page"),
        }
    };
    assert_eq!(seen.len(), 7);
    // Nothing changed: empty incremental result with a new token.
    let (_, l) = cal
        .events()
        .list("primary")
        .sync_token(&sync)
        .doit()
        .await
        .unwrap();
    assert!(l.items.unwrap_or_default().is_empty());
    // Change one, delete one, add one.
    cal.events()
        .patch(
            Event {
                summary: Some("E0'".into()),
                ..Default::default()
            },
            "primary",
            &ids[0],
        )
        .doit()
        .await
        .unwrap();
    cal.events()
        .delete("primary", &ids[1])
        .doit()
        .await
        .unwrap();
    let (_, n) = cal
        .events()
        .insert(timed("New", 20), "primary")
        .doit()
        .await
        .unwrap();
    let (_, l) = cal
        .events()
        .list("primary")
        .sync_token(&sync)
        .doit()
        .await
        .unwrap();
    let items = l.items.unwrap();
    let by_id: HashMap<_, _> = items.iter().map(|e| (e.id.clone().unwrap(), e)).collect();
    assert_eq!(items.len(), 3);
    assert_eq!(by_id[&ids[0]].summary.as_deref(), Some("E0'"));
    assert_eq!(by_id[&ids[1]].status.as_deref(), Some("cancelled"));
    assert!(
        by_id[&ids[1]].summary.is_none(),
        "cancelled items are minimal on incremental sync"
    );
    assert!(by_id.contains_key(n.id.as_ref().unwrap()));
    let sync2 = l.next_sync_token.unwrap();
    assert_ne!(sync2, sync);
    // syncToken cannot be combined with filters.
    for (k, v) in [
        ("timeMin", "2026-01-01T00:00:00Z"),
        ("timeMax", "2027-01-01T00:00:00Z"),
        ("q", "x"),
        ("orderBy", "updated"),
        ("updatedMin", "2026-01-01T00:00:00Z"),
        ("iCalUID", "x"),
        ("privateExtendedProperty", "a=b"),
        ("sharedExtendedProperty", "a=b"),
    ] {
        let path = format!(
            "/calendar/v3/calendars/primary/events?syncToken={sync2}&{k}={}",
            urlencode(v)
        );
        let (s, body) = env.raw(Method::GET, &path, &t, None, &[]).await;
        assert_eq!(
            (s, body["error"]["errors"][0]["reason"].as_str()),
            (400, Some("invalid")),
            "{k}"
        );
    }
    // A page token must come with the same other parameters.
    let (_, l) = cal
        .events()
        .list("primary")
        .max_results(2)
        .show_deleted(true)
        .doit()
        .await
        .unwrap();
    let p = l.next_page_token.unwrap();
    let err = cal
        .events()
        .list("primary")
        .max_results(2)
        .page_token(&p)
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (400, "invalid".into()));
    cal.events()
        .list("primary")
        .max_results(2)
        .show_deleted(true)
        .page_token(&p)
        .doit()
        .await
        .unwrap();
    // Invalid and expired tokens: 410 fullSyncRequired with Google's body.
    let err = cal
        .events()
        .list("primary")
        .sync_token("garbage")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (410, "fullSyncRequired".into()));
    let (s, _) = env
        .post(
            "/expire-sync-tokens",
            json!({"email": "alice@example.com", "api": "calendar"}),
        )
        .await;
    assert_eq!(s, 200);
    let err = cal
        .events()
        .list("primary")
        .sync_token(&sync2)
        .doit()
        .await
        .unwrap_err();
    if let google_calendar3::Error::BadRequest(v) = &err {
        assert_eq!(
            v,
            &json!({"error": {"errors": [{"domain": "calendar", "reason": "fullSyncRequired", "message": "Sync token is no longer valid, a full sync is required.", "locationType": "parameter", "location": "syncToken"}], "code": 410, "message": "Sync token is no longer valid, a full sync is required."}})
        );
    } else {
        panic!("{err:?}");
    }
    // A token of another user is not valid here.
    let t2 = env.user("zed@example.com").await;
    let (_, l) = env
        .calendar(&t2)
        .events()
        .list("primary")
        .doit()
        .await
        .unwrap();
    let err = cal
        .events()
        .list("primary")
        .sync_token(&l.next_sync_token.unwrap())
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err).0, 410);
    env.finish().await;
}

#[tokio::test]
async fn list_filters_time_window_query_and_extended_properties() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let cal = env.calendar(&t);
    let mut a = timed("Budget review", 9);
    a.extended_properties = Some(EventExtendedProperties {
        private: Some(HashMap::from([(
            "crmActivityId".to_string(),
            "42".to_string(),
        )])),
        shared: Some(HashMap::from([("team".to_string(), "sales".to_string())])),
    });
    let (_, a) = cal.events().insert(a, "primary").doit().await.unwrap();
    cal.events()
        .insert(timed("Lunch", 12), "primary")
        .doit()
        .await
        .unwrap();
    let (_, l) = cal
        .events()
        .list("primary")
        .add_private_extended_property("crmActivityId=42")
        .doit()
        .await
        .unwrap();
    assert_eq!(l.items.unwrap().len(), 1);
    let (_, l) = cal
        .events()
        .list("primary")
        .add_shared_extended_property("team=sales")
        .doit()
        .await
        .unwrap();
    assert_eq!(l.items.unwrap()[0].id, a.id);
    let (_, l) = cal
        .events()
        .list("primary")
        .q("budget")
        .doit()
        .await
        .unwrap();
    assert_eq!(l.items.unwrap().len(), 1);
    let (_, l) = cal
        .events()
        .list("primary")
        .time_min(Utc.with_ymd_and_hms(2026, 3, 2, 11, 30, 0).unwrap())
        .doit()
        .await
        .unwrap();
    assert_eq!(l.items.unwrap()[0].summary.as_deref(), Some("Lunch"));
    let err = cal
        .events()
        .list("primary")
        .time_min(Utc.with_ymd_and_hms(2026, 3, 3, 0, 0, 0).unwrap())
        .time_max(Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap())
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (400, "timeRangeEmpty".into()));
    let err = cal
        .events()
        .list("primary")
        .order_by("startTime")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err).0, 400);
    let (_, l) = cal
        .events()
        .list("primary")
        .single_events(true)
        .order_by("startTime")
        .doit()
        .await
        .unwrap();
    let names: Vec<_> = l
        .items
        .unwrap()
        .into_iter()
        .map(|e| e.summary.unwrap())
        .collect();
    assert_eq!(names, ["Budget review", "Lunch"]);
    // Private properties can be removed by PUT without them.
    let mut put = timed("Budget review", 9);
    put.extended_properties = Some(EventExtendedProperties {
        shared: Some(HashMap::from([("team".to_string(), "sales".to_string())])),
        private: None,
    });
    let (_, u) = cal
        .events()
        .update(put, "primary", a.id.as_ref().unwrap())
        .doit()
        .await
        .unwrap();
    assert!(u.extended_properties.unwrap().private.is_none());
    env.finish().await;
}

#[tokio::test]
async fn unmodelled_fields_are_stored_and_returned_unchanged() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let body = json!({
        "summary": "Rich", "colorId": "5", "transparency": "transparent", "visibility": "private",
        "start": {"dateTime": "2026-03-02T09:00:00+01:00", "timeZone": "Europe/Paris"},
        "end": {"dateTime": "2026-03-02T10:00:00+01:00", "timeZone": "Europe/Paris"},
        "reminders": {"useDefault": false, "overrides": [{"method": "email", "minutes": 30}]},
        "conferenceData": {"conferenceId": "abc-defg-hij", "entryPoints": [{"entryPointType": "video", "uri": "https://meet.google.com/abc-defg-hij"}], "conferenceSolution": {"key": {"type": "hangoutsMeet"}, "name": "Google Meet"}},
        "attachments": [{"fileUrl": "https://drive.google.com/x", "title": "Agenda"}],
        "guestsCanModify": true,
        "notAField": "dropped"
    });
    let (s, v) = env
        .raw(
            Method::POST,
            "/calendar/v3/calendars/primary/events?conferenceDataVersion=1",
            &t,
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!(s, 200, "{v}");
    for k in [
        "colorId",
        "transparency",
        "visibility",
        "reminders",
        "conferenceData",
        "attachments",
        "guestsCanModify",
    ] {
        assert_eq!(v[k], body[k], "{k}");
    }
    assert!(v.get("notAField").is_none());
    // A mapped-fields patch through the crate keeps them all.
    let cal = env.calendar(&t);
    let id = v["id"].as_str().unwrap();
    cal.events()
        .patch(
            Event {
                summary: Some("Rich 2".into()),
                ..Default::default()
            },
            "primary",
            id,
        )
        .doit()
        .await
        .unwrap();
    let (_, g) = cal.events().get("primary", id).doit().await.unwrap();
    assert_eq!(g.color_id.as_deref(), Some("5"));
    assert_eq!(
        g.conference_data.unwrap().conference_id.as_deref(),
        Some("abc-defg-hij")
    );
    assert_eq!(g.attachments.unwrap()[0].title.as_deref(), Some("Agenda"));
    assert_eq!(g.reminders.unwrap().overrides.unwrap()[0].minutes, Some(30));
    env.finish().await;
}

#[tokio::test]
async fn attendees_in_the_domain_get_mirrored_copies() {
    let env = Env::new().await;
    let ta = env.user("alice@example.com").await;
    let tb = env.user("bob@example.com").await;
    let alice = env.calendar(&ta);
    let bob = env.calendar(&tb);
    let (_, bob_start) = bob.events().list("primary").doit().await.unwrap();
    let bob_sync = bob_start.next_sync_token.unwrap();
    let mut ev = timed("Team sync", 9);
    ev.attendees = Some(vec![
        EventAttendee {
            email: Some("Bob@Example.com".into()),
            ..Default::default()
        },
        EventAttendee {
            email: Some("external@acme.com".into()),
            ..Default::default()
        },
    ]);
    ev.extended_properties = Some(EventExtendedProperties {
        private: Some(HashMap::from([("crm".to_string(), "1".to_string())])),
        shared: None,
    });
    let (_, e) = alice
        .events()
        .insert(ev, "primary")
        .send_updates("none")
        .doit()
        .await
        .unwrap();
    let id = e.id.unwrap();
    let (_, copy) = bob.events().get("primary", &id).doit().await.unwrap();
    assert_eq!(
        copy.organizer.as_ref().unwrap().email.as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(copy.organizer.as_ref().unwrap().self_, None);
    let me = copy
        .attendees
        .as_ref()
        .unwrap()
        .iter()
        .find(|a| a.email.as_deref() == Some("bob@example.com"))
        .unwrap();
    assert_eq!(me.self_, Some(true));
    assert_eq!(me.response_status.as_deref(), Some("needsAction"));
    assert!(
        copy.extended_properties.and_then(|p| p.private).is_none(),
        "private properties belong to one copy"
    );
    // Organizer changes reach the copy and its incremental sync.
    alice
        .events()
        .patch(
            Event {
                summary: Some("Team sync (moved)".into()),
                ..Default::default()
            },
            "primary",
            &id,
        )
        .doit()
        .await
        .unwrap();
    let (_, l) = bob
        .events()
        .list("primary")
        .sync_token(&bob_sync)
        .doit()
        .await
        .unwrap();
    let items = l.items.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].summary.as_deref(), Some("Team sync (moved)"));
    let bob_sync = l.next_sync_token.unwrap();
    // Bob deletes his copy: gone for Bob only.
    bob.events().delete("primary", &id).doit().await.unwrap();
    let (_, a) = alice.events().get("primary", &id).doit().await.unwrap();
    assert_eq!(a.status.as_deref(), Some("confirmed"));
    let (_, l) = bob
        .events()
        .list("primary")
        .sync_token(&bob_sync)
        .doit()
        .await
        .unwrap();
    assert_eq!(l.items.unwrap()[0].status.as_deref(), Some("cancelled"));
    let bob_sync = l.next_sync_token.unwrap();
    // Later organizer edits do not resurrect Bob's deleted copy.
    alice
        .events()
        .patch(
            Event {
                location: Some("Room 2".into()),
                ..Default::default()
            },
            "primary",
            &id,
        )
        .doit()
        .await
        .unwrap();
    let (_, b) = bob.events().get("primary", &id).doit().await.unwrap();
    assert_eq!(b.status.as_deref(), Some("cancelled"));
    // Removing an attendee cancels their copy; the organizer's delete cancels every copy.
    let tc = env.user("carol@example.com").await;
    let carol = env.calendar(&tc);
    let mut ev = timed("Pair", 14);
    ev.attendees = Some(vec![EventAttendee {
        email: Some("carol@example.com".into()),
        ..Default::default()
    }]);
    let (_, e2) = alice.events().insert(ev, "primary").doit().await.unwrap();
    let id2 = e2.id.unwrap();
    assert_eq!(
        carol
            .events()
            .get("primary", &id2)
            .doit()
            .await
            .unwrap()
            .1
            .status
            .as_deref(),
        Some("confirmed")
    );
    alice.events().delete("primary", &id2).doit().await.unwrap();
    assert_eq!(
        carol
            .events()
            .get("primary", &id2)
            .doit()
            .await
            .unwrap()
            .1
            .status
            .as_deref(),
        Some("cancelled")
    );
    let _ = bob_sync;
    env.finish().await;
}

#[tokio::test]
async fn send_updates_is_recorded_per_write() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let cal = env.calendar(&t);
    let (_, e) = cal
        .events()
        .insert(timed("A", 9), "primary")
        .send_updates("none")
        .doit()
        .await
        .unwrap();
    let id = e.id.unwrap();
    cal.events()
        .patch(
            Event {
                summary: Some("B".into()),
                ..Default::default()
            },
            "primary",
            &id,
        )
        .send_updates("all")
        .doit()
        .await
        .unwrap();
    cal.events().delete("primary", &id).doit().await.unwrap();
    let writes = env.emu().calendar_writes();
    let sends: Vec<_> = writes
        .iter()
        .map(|w| (w.method.as_str(), w.send_updates.as_deref()))
        .collect();
    assert_eq!(
        sends,
        [
            ("calendar.events.insert", Some("none")),
            ("calendar.events.patch", Some("all")),
            ("calendar.events.delete", None)
        ]
    );
    let (_, v) = env.get("/calendar-writes").await;
    assert_eq!(v["writes"].as_array().unwrap().len(), 3);
    let err = cal
        .events()
        .insert(timed("C", 9), "primary")
        .send_updates("everyone")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err).0, 400);
    env.finish().await;
}

#[tokio::test]
async fn calendar_list_watch_and_channels_stop() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let cal = env.calendar(&t);
    let (_, c) = cal.calendar_list().get("primary").doit().await.unwrap();
    assert_eq!(c.primary, Some(true));
    assert_eq!(c.access_role.as_deref(), Some("owner"));
    let err = cal
        .calendar_list()
        .get("other@example.com")
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (404, "notFound".into()));
    // A loopback receiver for notifications.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: axum::http::HeaderMap| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(
                    h.get("x-goog-resource-state")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string(),
                );
                ""
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    let ch = Channel {
        id: Some("chan-1".into()),
        type_: Some("web_hook".into()),
        address: Some(format!("http://{addr}/hook")),
        token: Some("tok".into()),
        ..Default::default()
    };
    let (_, w) = cal
        .events()
        .watch(ch.clone(), "primary")
        .doit()
        .await
        .unwrap();
    assert_eq!(w.kind.as_deref(), Some("api#channel"));
    assert_eq!(w.token.as_deref(), Some("tok"));
    let rid = w.resource_id.clone().unwrap();
    assert_eq!(rx.recv().await.as_deref(), Some("sync"));
    cal.events()
        .insert(timed("A", 9), "primary")
        .doit()
        .await
        .unwrap();
    assert_eq!(rx.recv().await.as_deref(), Some("exists"));
    let err = cal.events().watch(ch, "primary").doit().await.unwrap_err();
    assert_eq!(reason(&err).0, 400);
    let bad = Channel {
        id: Some("chan-2".into()),
        type_: Some("web_hook".into()),
        address: Some("http://example.com/hook".into()),
        ..Default::default()
    };
    let err = cal.events().watch(bad, "primary").doit().await.unwrap_err();
    assert_eq!(reason(&err), (400, "push.webhookUrlNotHttps".into()));
    let stop = Channel {
        id: Some("chan-1".into()),
        resource_id: Some(rid),
        ..Default::default()
    };
    cal.channels().stop(stop.clone()).doit().await.unwrap();
    let err = cal.channels().stop(stop).doit().await.unwrap_err();
    assert_eq!(reason(&err), (404, "notFound".into()));
    env.finish().await;
}

fn urlencode(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

#[tokio::test]
async fn updated_min_instances_paging_and_single_events_sync() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let cal = env.calendar(&t);
    let (_, a) = cal
        .events()
        .insert(timed("Old", 9), "primary")
        .doit()
        .await
        .unwrap();
    env.emu().advance_clock(chrono::Duration::minutes(30));
    let cut = env.emu().now();
    let (_, b) = cal
        .events()
        .insert(timed("New", 10), "primary")
        .doit()
        .await
        .unwrap();
    cal.events()
        .delete("primary", a.id.as_ref().unwrap())
        .doit()
        .await
        .unwrap();
    let (_, l) = cal
        .events()
        .list("primary")
        .updated_min(cut)
        .doit()
        .await
        .unwrap();
    let items = l.items.unwrap();
    assert_eq!(items.len(), 2, "updatedMin includes deleted events");
    assert!(items.iter().any(|e| e.id == b.id));
    // Paging through instances.
    let mut ev = timed("Daily", 8);
    ev.start.as_mut().unwrap().time_zone = Some("UTC".into());
    ev.recurrence = Some(vec!["RRULE:FREQ=DAILY;COUNT=5".into()]);
    let (_, m) = cal.events().insert(ev, "primary").doit().await.unwrap();
    let id = m.id.unwrap();
    let (_, p1) = cal
        .events()
        .instances("primary", &id)
        .max_results(3)
        .doit()
        .await
        .unwrap();
    assert_eq!(p1.items.unwrap().len(), 3);
    let (_, p2) = cal
        .events()
        .instances("primary", &id)
        .max_results(3)
        .page_token(&p1.next_page_token.unwrap())
        .doit()
        .await
        .unwrap();
    assert_eq!(p2.items.unwrap().len(), 2);
    assert!(p2.next_page_token.is_none());
    // singleEvents full sync paged across a series, then incremental.
    let mut ids = Vec::new();
    let mut page: Option<String> = None;
    let sync = loop {
        let mut call = cal
            .events()
            .list("primary")
            .single_events(true)
            .max_results(2);
        if let Some(p) = &page {
            call = call.page_token(p);
        }
        let (_, l) = call.doit().await.unwrap();
        ids.extend(
            l.items
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.id.unwrap()),
        );
        match l.next_page_token {
            Some(p) => page = Some(p),
            None => break l.next_sync_token.unwrap(),
        }
    };
    assert_eq!(ids.len(), 6, "{ids:?}");
    cal.events()
        .patch(
            Event {
                summary: Some("Daily!".into()),
                ..Default::default()
            },
            "primary",
            &id,
        )
        .doit()
        .await
        .unwrap();
    let (_, inc) = cal
        .events()
        .list("primary")
        .single_events(true)
        .max_results(2)
        .sync_token(&sync)
        .doit()
        .await
        .unwrap();
    assert_eq!(inc.items.unwrap()[0].summary.as_deref(), Some("Daily!"));
    env.finish().await;
}
