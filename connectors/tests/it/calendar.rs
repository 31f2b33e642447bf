//! Calendar: listing with sync tokens, 410, inserts with client ids and 409, patch keeping
//! unmapped fields, idempotent deletes, sendUpdates.

use crate::common::Env;
use chrono::{Duration, TimeZone, Utc};
use crmsync_connectors::calendar3::api::{EventDateTime, EventExtendedProperties};
use crmsync_connectors::{ErrorKind, Event, EventListQuery, InsertOutcome};
use crmsync_emulator::{Api, FaultRule};
use std::collections::HashMap;

fn event(id: &str, day: u32) -> Event {
    let start = Utc.with_ymd_and_hms(2026, 3, day, 9, 0, 0).unwrap();
    Event {
        id: Some(id.into()),
        summary: Some(format!("Call {id}")),
        start: Some(EventDateTime {
            date_time: Some(start),
            time_zone: Some("Europe/Paris".into()),
            ..Default::default()
        }),
        end: Some(EventDateTime {
            date_time: Some(start + Duration::minutes(30)),
            time_zone: Some("Europe/Paris".into()),
            ..Default::default()
        }),
        extended_properties: Some(EventExtendedProperties {
            private: Some(HashMap::from([(
                "crmActivityId".to_string(),
                id.to_string(),
            )])),
            shared: None,
        }),
        ..Default::default()
    }
}

fn query() -> EventListQuery {
    EventListQuery {
        time_min: Some(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()),
        time_max: Some(Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()),
        ..EventListQuery::primary()
    }
}

#[tokio::test]
async fn full_then_incremental_listing_with_sync_token() {
    let env = Env::new().await;
    let account = env.account("alice@example.com").await;
    let cal = account.calendar();
    for (i, id) in ["evt00001", "evt00002", "evt00003"].iter().enumerate() {
        let out = cal
            .insert_event("primary", event(id, 2 + i as u32))
            .await
            .unwrap();
        assert!(matches!(out, InsertOutcome::Created(_)));
    }
    let mut q = query();
    q.max_results = Some(2);
    let first = cal.list_events(&q, None, None).await.unwrap();
    assert_eq!(first.events.len(), 2);
    assert!(first.next_sync_token.is_none());
    let second = cal
        .list_events(&q, None, first.next_page_token.as_deref())
        .await
        .unwrap();
    assert_eq!(second.events.len(), 1);
    let token = second.next_sync_token.expect("sync token on the last page");

    cal.patch_event(
        "primary",
        "evt00001",
        Event {
            summary: Some("Renamed".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    cal.delete_event("primary", "evt00002").await.unwrap();

    let inc = cal.list_events(&q, Some(&token), None).await.unwrap();
    let mut items = inc.events.clone();
    let mut token2 = inc.next_sync_token.clone();
    let mut page = inc.next_page_token.clone();
    while let Some(p) = page {
        let more = cal.list_events(&q, Some(&token), Some(&p)).await.unwrap();
        items.extend(more.events);
        token2 = more.next_sync_token;
        page = more.next_page_token;
    }
    assert!(token2.is_some());
    assert_eq!(items.len(), 2, "{items:?}");
    let cancelled = items
        .iter()
        .find(|e| e.id.as_deref() == Some("evt00002"))
        .unwrap();
    assert_eq!(cancelled.status.as_deref(), Some("cancelled"));
    let renamed = items
        .iter()
        .find(|e| e.id.as_deref() == Some("evt00001"))
        .unwrap();
    assert_eq!(renamed.summary.as_deref(), Some("Renamed"));

    // The incremental request kept singleEvents/maxResults and dropped the time window.
    let lists: Vec<_> = env
        .emu()
        .recent_requests()
        .into_iter()
        .filter(|r| r.method == "calendar.events.list")
        .collect();
    let full = &lists[0].url;
    assert!(
        full.contains("timeMin=") && full.contains("timeMax="),
        "{full}"
    );
    for r in lists.iter().filter(|r| r.url.contains("syncToken=")) {
        assert!(
            !r.url.contains("timeMin") && !r.url.contains("timeMax"),
            "{}",
            r.url
        );
        assert!(
            r.url.contains("singleEvents=true") && r.url.contains("maxResults=2"),
            "{}",
            r.url
        );
    }
}

#[tokio::test]
async fn expired_calendar_sync_token_is_sync_token_expired() {
    let env = Env::new().await;
    let account = env.account("bob@example.com").await;
    let page = account
        .calendar()
        .list_events(&query(), None, None)
        .await
        .unwrap();
    let token = page.next_sync_token.unwrap();
    env.emu()
        .expire_sync_tokens("bob@example.com", Api::Calendar);
    let err = account
        .calendar()
        .list_events(&query(), Some(&token), None)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::SyncTokenExpired, "{err}");
    assert_eq!(err.status, Some(410));
    assert_eq!(err.reason.as_deref(), Some("fullSyncRequired"));
    assert_eq!(
        err.message,
        "Sync token is no longer valid, a full sync is required."
    );
    assert_eq!(account.metrics().retries, 0);
}

#[tokio::test]
async fn insert_with_client_id_is_idempotent() {
    let env = Env::new().await;
    let account = env.account("carol@example.com").await;
    let cal = account.calendar();
    let created = cal
        .insert_event("primary", event("a0b1c2d3e4", 5))
        .await
        .unwrap();
    let InsertOutcome::Created(ev) = created else {
        panic!("expected Created")
    };
    assert_eq!(ev.id.as_deref(), Some("a0b1c2d3e4"));
    assert!(ev.etag.is_some());
    let again = cal
        .insert_event("primary", event("a0b1c2d3e4", 5))
        .await
        .unwrap();
    assert!(matches!(again, InsertOutcome::AlreadyExists { ref id } if id == "a0b1c2d3e4"));

    // Applied, response lost: retried, the retry's 409 means it was applied.
    env.emu().set_faults(vec![
        FaultRule::error("calendar.events.insert", 503, 1).applied()
    ]);
    let out = cal
        .insert_event("primary", event("f0f0f0f0f0", 6))
        .await
        .unwrap();
    assert!(
        matches!(out, InsertOutcome::AlreadyExists { .. }),
        "{out:?}"
    );
    assert_eq!(env.count("calendar.events.insert"), 4);
    assert!(env
        .emu()
        .calendar_event("carol@example.com", "f0f0f0f0f0")
        .is_some());

    // Invalid ids are refused before sending.
    let bad = cal
        .insert_event("primary", event("Not-Base32", 7))
        .await
        .unwrap_err();
    assert_eq!(bad.kind, ErrorKind::BadRequest);
    assert_eq!(env.count("calendar.events.insert"), 4);
}

#[tokio::test]
async fn patch_keeps_unmapped_fields_and_sends_no_updates() {
    let env = Env::new().await;
    let account = env.account("dan@example.com").await;
    let cal = account.calendar();
    let mut ev = event("p0000001", 9);
    ev.location = Some("Room 1".into());
    ev.description = Some("Agenda".into());
    ev.color_id = Some("5".into());
    cal.insert_event("primary", ev).await.unwrap();
    let patched = cal
        .patch_event(
            "primary",
            "p0000001",
            Event {
                summary: Some("New title".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(patched.summary.as_deref(), Some("New title"));
    assert_eq!(patched.location.as_deref(), Some("Room 1"));
    assert_eq!(patched.description.as_deref(), Some("Agenda"));
    assert_eq!(patched.color_id.as_deref(), Some("5"));
    assert_eq!(
        patched
            .extended_properties
            .and_then(|p| p.private)
            .and_then(|p| p.get("crmActivityId").cloned())
            .as_deref(),
        Some("p0000001")
    );
    let got = cal.get_event("primary", "p0000001").await.unwrap().unwrap();
    assert_eq!(got.location.as_deref(), Some("Room 1"));
    let writes = env.emu().calendar_writes();
    assert!(!writes.is_empty());
    assert!(
        writes
            .iter()
            .all(|w| w.send_updates.as_deref() == Some("none")),
        "{writes:?}"
    );
}

#[tokio::test]
async fn delete_twice_is_ok_and_unknown_is_not_found() {
    let env = Env::new().await;
    let account = env.account("erin@example.com").await;
    let cal = account.calendar();
    cal.insert_event("primary", event("d0000001", 10))
        .await
        .unwrap();
    cal.delete_event("primary", "d0000001").await.unwrap();
    cal.delete_event("primary", "d0000001").await.unwrap();
    assert_eq!(
        env.emu()
            .stats()
            .count_status("calendar.events.delete", 410),
        1
    );
    let got = cal.get_event("primary", "d0000001").await.unwrap().unwrap();
    assert_eq!(got.status.as_deref(), Some("cancelled"));
    let err = cal
        .delete_event("primary", "unknown0001")
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(cal
        .get_event("primary", "unknown0001")
        .await
        .unwrap()
        .is_none());
}

/// The etag Google gave the event last.
async fn etag_of(cal: &crmsync_connectors::CalendarClient, id: &str) -> String {
    cal.get_event("primary", id)
        .await
        .unwrap()
        .unwrap()
        .etag
        .unwrap()
}

fn summary(s: &str) -> Event {
    Event {
        summary: Some(s.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn conditional_patch_succeeds_then_fails_after_a_concurrent_change() {
    let env = Env::new().await;
    let account = env
        .account_with(
            "gina@example.com",
            crmsync_connectors::ClientOptions {
                quota_user: Some("crm-user-7".into()),
                ..crate::common::fast()
            },
        )
        .await;
    let cal = account.calendar();
    let created = match cal
        .insert_event("primary", event("cond00001", 11))
        .await
        .unwrap()
    {
        InsertOutcome::Created(e) => e,
        other => panic!("{other:?}"),
    };
    let etag0 = created.etag.clone().unwrap();

    // With the current etag the patch goes through and returns the new etag.
    let patched = cal
        .patch_event_if_match("primary", "cond00001", summary("Ours 1"), &etag0)
        .await
        .unwrap();
    assert_eq!(patched.summary.as_deref(), Some("Ours 1"));
    let etag1 = patched.etag.clone().unwrap();
    assert_ne!(etag1, etag0);
    assert_eq!(patched.location, created.location, "patch semantics");

    // The user edits the event in Google (a second, independent client of the same user).
    let user = env.account("gina@example.com").await;
    let theirs = user
        .calendar()
        .patch_event("primary", "cond00001", summary("Theirs"))
        .await
        .unwrap();
    let etag2 = theirs.etag.unwrap();

    // Our write with the etag we read before their change is refused, and changes nothing.
    let err = cal
        .patch_event_if_match("primary", "cond00001", summary("Ours 2"), &etag1)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::PreconditionFailed, "{err}");
    assert_eq!(err.status, Some(412));
    assert_eq!(err.reason.as_deref(), Some("conditionNotMet"));
    assert_eq!(err.method, "calendar.events.patch");
    assert_eq!(err.attempts, 1, "a 412 is not retried");
    let now = cal
        .get_event("primary", "cond00001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.summary.as_deref(), Some("Theirs"));
    assert_eq!(now.etag.as_deref(), Some(etag2.as_str()));

    // Re-read, merge, write again with the fresh etag.
    let again = cal
        .patch_event_if_match("primary", "cond00001", summary("Ours 2"), &etag2)
        .await
        .unwrap();
    assert_eq!(again.summary.as_deref(), Some("Ours 2"));

    // Same client plumbing as the other calls: method ids, 412 counted, sendUpdates and
    // quotaUser sent, If-Match honoured by the emulator, metrics.
    let stats = env.emu().stats();
    assert_eq!(stats.count_status("calendar.events.patch", 200), 3);
    assert_eq!(stats.count_status("calendar.events.patch", 412), 1);
    let ours: Vec<_> = env
        .emu()
        .recent_requests()
        .into_iter()
        .filter(|r| r.method == "calendar.events.patch" && r.url.contains("quotaUser"))
        .collect();
    assert_eq!(ours.len(), 3, "{ours:?}");
    for r in &ours {
        assert!(r.url.contains("sendUpdates=none"), "{}", r.url);
        assert!(r.url.contains("quotaUser=crm-user-7"), "{}", r.url);
        assert!(r.url.contains("alt=json"), "{}", r.url);
        assert_eq!(r.http_method, "PATCH");
        assert_eq!(r.user.as_deref(), Some("gina@example.com"));
    }
    let writes = env.emu().calendar_writes();
    assert!(writes
        .iter()
        .all(|w| w.send_updates.as_deref() == Some("none")));
    let m = account.metrics();
    assert_eq!((m.calls, m.failures), (5, 1), "{m:?}");
}

#[tokio::test]
async fn conditional_update_and_delete() {
    let env = Env::new().await;
    let account = env.account("hank@example.com").await;
    let cal = account.calendar();
    cal.insert_event("primary", event("cond00002", 12))
        .await
        .unwrap();
    let etag0 = etag_of(cal, "cond00002").await;
    let mut full = cal
        .get_event("primary", "cond00002")
        .await
        .unwrap()
        .unwrap();
    full.summary = Some("Replaced".into());
    let updated = cal
        .update_event_if_match("primary", "cond00002", full.clone(), &etag0)
        .await
        .unwrap();
    assert_eq!(updated.summary.as_deref(), Some("Replaced"));
    let etag1 = updated.etag.unwrap();

    // A concurrent change by the user, then our stale update and stale delete.
    env.account("hank@example.com")
        .await
        .calendar()
        .patch_event("primary", "cond00002", summary("User's"))
        .await
        .unwrap();
    full.summary = Some("Stale".into());
    let err = cal
        .update_event_if_match("primary", "cond00002", full, &etag1)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::PreconditionFailed, "{err}");
    assert_eq!(err.method, "calendar.events.update");
    let err = cal
        .delete_event_if_match("primary", "cond00002", &etag1)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::PreconditionFailed, "{err}");
    let now = cal
        .get_event("primary", "cond00002")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.summary.as_deref(), Some("User's"));
    assert_eq!(now.status.as_deref(), Some("confirmed"));

    // With the fresh etag the delete goes through; a repeated delete is success.
    let etag2 = now.etag.unwrap();
    cal.delete_event_if_match("primary", "cond00002", &etag2)
        .await
        .unwrap();
    let gone = cal
        .get_event("primary", "cond00002")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gone.status.as_deref(), Some("cancelled"));
    cal.delete_event_if_match("primary", "cond00002", &etag2)
        .await
        .unwrap();
    // Unknown event: NotFound; an empty etag is refused before anything is sent.
    let err = cal
        .patch_event_if_match("primary", "unknown0002", summary("x"), &etag2)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound);
    let before = env.count("calendar.events.patch");
    let err = cal
        .patch_event_if_match("primary", "cond00002", summary("x"), " ")
        .await
        .unwrap_err();
    assert_eq!((err.kind, err.attempts), (ErrorKind::BadRequest, 0));
    assert_eq!(env.count("calendar.events.patch"), before);
}

#[tokio::test]
async fn conditional_writes_retry_like_the_others() {
    let env = Env::new().await;
    let account = env.account("ivy@example.com").await;
    let cal = account.calendar();
    cal.insert_event("primary", event("cond00003", 13))
        .await
        .unwrap();
    let etag = etag_of(cal, "cond00003").await;
    // A 503 before anything is applied: retried, then applied once.
    env.emu()
        .set_faults(vec![FaultRule::error("calendar.events.patch", 503, 1)]);
    let patched = cal
        .patch_event_if_match("primary", "cond00003", summary("After 503"), &etag)
        .await
        .unwrap();
    assert_eq!(patched.summary.as_deref(), Some("After 503"));
    assert_eq!(account.metrics().retries, 1);
    // An expired or refused token is refreshed like for any call: here a 401 fault once.
    env.emu()
        .set_faults(vec![FaultRule::error("calendar.events.patch", 401, 1)]);
    let etag = patched.etag.unwrap();
    let err = cal
        .patch_event_if_match("primary", "cond00003", summary("After 401"), &etag)
        .await
        .unwrap_err();
    // A fixed access token cannot be refreshed: the 401 is an Auth error.
    assert_eq!(err.kind, ErrorKind::Auth, "{err}");
    // Applied but the answer lost: the retry meets the new etag (documented caveat).
    env.emu().set_faults(vec![
        FaultRule::error("calendar.events.patch", 503, 1).applied()
    ]);
    let err = cal
        .patch_event_if_match("primary", "cond00003", summary("Applied"), &etag)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::PreconditionFailed, "{err}");
    assert_eq!(err.attempts, 2);
    let now = cal
        .get_event("primary", "cond00003")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(now.summary.as_deref(), Some("Applied"));
}

/// `events.instances` over a time range: the occurrences and exceptions of a series inside it,
/// paged; an unknown series is `None`; a single event has no instances.
#[tokio::test]
async fn instances_of_a_series_in_a_range() {
    let env = Env::new().await;
    let account = env.account("alice@example.com").await;
    let cal = account.calendar();
    let mut series = event("series0001", 2);
    series.recurrence = Some(vec!["RRULE:FREQ=DAILY;COUNT=10".into()]);
    cal.insert_event("primary", series).await.unwrap();
    cal.insert_event("primary", event("single0001", 2))
        .await
        .unwrap();
    let (min, max) = (
        Utc.with_ymd_and_hms(2026, 3, 4, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2026, 3, 8, 0, 0, 0).unwrap(),
    );
    let page = cal
        .list_instances("primary", "series0001", min, max, None)
        .await
        .unwrap()
        .expect("the series exists");
    let ids: Vec<String> = page.events.iter().filter_map(|e| e.id.clone()).collect();
    // March 4 to 7 at 09:00 UTC.
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(ids[0], "series0001_20260304T090000Z");
    assert!(page
        .events
        .iter()
        .all(|e| e.recurring_event_id.as_deref() == Some("series0001")));
    assert!(page.next_page_token.is_none() && page.next_sync_token.is_none());
    assert_eq!(env.count("calendar.events.instances"), 1);
    // A single event has no instances; an unknown id is no series.
    let single = cal
        .list_instances("primary", "single0001", min, max, None)
        .await
        .unwrap()
        .expect("the event exists");
    assert!(single.events.is_empty());
    assert!(cal
        .list_instances("primary", "unknown0001", min, max, None)
        .await
        .unwrap()
        .is_none());
}
