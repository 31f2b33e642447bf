//! Recurring events through google-calendar3: singleEvents expansion in the event's time zone
//! across DST, BYDAY/INTERVAL/UNTIL/COUNT/EXDATE, all-day series, instance ids, exceptions
//! made by patching an instance (originalStartTime kept), cancelled instances, instances().

use crate::common::*;
use chrono::{NaiveDate, TimeZone, Utc};
use google_calendar3::api::{Event, EventDateTime};

fn weekly_ny() -> Event {
    // 09:00 America/New_York on Monday 2026-03-02 (EST, UTC-5); DST starts 2026-03-08.
    Event {
        summary: Some("Weekly".into()),
        start: Some(EventDateTime {
            date_time: Some(Utc.with_ymd_and_hms(2026, 3, 2, 14, 0, 0).unwrap()),
            time_zone: Some("America/New_York".into()),
            ..Default::default()
        }),
        end: Some(EventDateTime {
            date_time: Some(Utc.with_ymd_and_hms(2026, 3, 2, 14, 30, 0).unwrap()),
            time_zone: Some("America/New_York".into()),
            ..Default::default()
        }),
        recurrence: Some(vec![
            "RRULE:FREQ=WEEKLY;BYDAY=MO;COUNT=4".into(),
            "EXDATE;TZID=America/New_York:20260323T090000".into(),
        ]),
        ..Default::default()
    }
}

#[tokio::test]
async fn weekly_series_keeps_local_time_across_dst() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let cal = env.calendar(&t);
    let (_, m) = cal
        .events()
        .insert(weekly_ny(), "primary")
        .doit()
        .await
        .unwrap();
    let id = m.id.unwrap();
    let (_, l) = cal
        .events()
        .list("primary")
        .single_events(true)
        .order_by("startTime")
        .doit()
        .await
        .unwrap();
    let items = l.items.unwrap();
    let ids: Vec<_> = items.iter().map(|e| e.id.clone().unwrap()).collect();
    assert_eq!(
        ids,
        [
            format!("{id}_20260302T140000Z"),
            format!("{id}_20260309T130000Z"),
            format!("{id}_20260316T130000Z")
        ]
    );
    for e in &items {
        assert_eq!(e.recurring_event_id.as_deref(), Some(id.as_str()));
        assert!(e.recurrence.is_none());
        assert!(e.original_start_time.is_some());
        assert_eq!(
            e.start.as_ref().unwrap().time_zone.as_deref(),
            Some("America/New_York")
        );
    }
    // Raw wire value shows the local offset change (-05:00 then -04:00).
    let raw = env
        .raw(
            reqwest::Method::GET,
            "/calendar/v3/calendars/primary/events?singleEvents=true&orderBy=startTime",
            &t,
            None,
            &[],
        )
        .await
        .1;
    assert_eq!(
        raw["items"][0]["start"]["dateTime"],
        "2026-03-02T09:00:00-05:00"
    );
    assert_eq!(
        raw["items"][1]["start"]["dateTime"],
        "2026-03-09T09:00:00-04:00"
    );
    // Without singleEvents the master comes back with its recurrence.
    let (_, l) = cal.events().list("primary").doit().await.unwrap();
    assert_eq!(l.items.unwrap()[0].recurrence.as_ref().unwrap().len(), 2);
    // events.instances with a window.
    let (_, inst) = cal
        .events()
        .instances("primary", &id)
        .time_min(Utc.with_ymd_and_hms(2026, 3, 5, 0, 0, 0).unwrap())
        .doit()
        .await
        .unwrap();
    assert_eq!(inst.items.unwrap().len(), 2);
    env.finish().await;
}

#[tokio::test]
async fn patching_an_instance_makes_an_exception() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let cal = env.calendar(&t);
    let (_, m) = cal
        .events()
        .insert(weekly_ny(), "primary")
        .doit()
        .await
        .unwrap();
    let id = m.id.unwrap();
    let (_, l0) = cal
        .events()
        .list("primary")
        .single_events(true)
        .doit()
        .await
        .unwrap();
    let sync = l0.next_sync_token.unwrap();
    let second = format!("{id}_20260309T130000Z");
    // Move the second instance one hour later.
    let moved = Event {
        start: Some(EventDateTime {
            date_time: Some(Utc.with_ymd_and_hms(2026, 3, 9, 14, 0, 0).unwrap()),
            time_zone: Some("America/New_York".into()),
            ..Default::default()
        }),
        end: Some(EventDateTime {
            date_time: Some(Utc.with_ymd_and_hms(2026, 3, 9, 14, 30, 0).unwrap()),
            time_zone: Some("America/New_York".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (_, x) = cal
        .events()
        .patch(moved, "primary", &second)
        .doit()
        .await
        .unwrap();
    assert_eq!(x.id.as_deref(), Some(second.as_str()));
    assert_eq!(x.recurring_event_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        x.original_start_time.unwrap().date_time,
        Some(Utc.with_ymd_and_hms(2026, 3, 9, 13, 0, 0).unwrap())
    );
    assert_eq!(x.summary.as_deref(), Some("Weekly"));
    // Cancel the third instance.
    cal.events()
        .delete("primary", &format!("{id}_20260316T130000Z"))
        .doit()
        .await
        .unwrap();
    let (_, l) = cal
        .events()
        .list("primary")
        .single_events(true)
        .order_by("startTime")
        .doit()
        .await
        .unwrap();
    let items = l.items.unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[1].start.as_ref().unwrap().date_time,
        Some(Utc.with_ymd_and_hms(2026, 3, 9, 14, 0, 0).unwrap())
    );
    // Incremental sync sees the moved instance and the cancelled one.
    let (_, inc) = cal
        .events()
        .list("primary")
        .single_events(true)
        .sync_token(&sync)
        .doit()
        .await
        .unwrap();
    let inc = inc.items.unwrap();
    assert_eq!(inc.len(), 2);
    let cancelled = inc
        .iter()
        .find(|e| e.status.as_deref() == Some("cancelled"))
        .unwrap();
    assert_eq!(cancelled.recurring_event_id.as_deref(), Some(id.as_str()));
    assert!(cancelled.original_start_time.is_some());
    // A non-existent instance id is 404.
    let err = cal
        .events()
        .get("primary", &format!("{id}_20260310T130000Z"))
        .doit()
        .await
        .unwrap_err();
    assert_eq!(reason(&err), (404, "notFound".into()));
    // showDeleted instances() includes the cancelled exception.
    let (_, all) = cal
        .events()
        .instances("primary", &id)
        .show_deleted(true)
        .doit()
        .await
        .unwrap();
    assert_eq!(all.items.unwrap().len(), 3);
    env.finish().await;
}

#[tokio::test]
async fn all_day_series_and_rule_variants() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let cal = env.calendar(&t);
    let day = |y, m, d| {
        Some(EventDateTime {
            date: NaiveDate::from_ymd_opt(y, m, d),
            ..Default::default()
        })
    };
    let ev = Event {
        summary: Some("Birthday".into()),
        start: day(2026, 5, 4),
        end: day(2026, 5, 5),
        recurrence: Some(vec!["RRULE:FREQ=YEARLY;UNTIL=20280504".into()]),
        ..Default::default()
    };
    let (_, m) = cal.events().insert(ev, "primary").doit().await.unwrap();
    let id = m.id.unwrap();
    let (_, l) = cal
        .events()
        .list("primary")
        .single_events(true)
        .doit()
        .await
        .unwrap();
    let items = l.items.unwrap();
    let ids: Vec<_> = items.iter().map(|e| e.id.clone().unwrap()).collect();
    assert_eq!(
        ids,
        [
            format!("{id}_20260504"),
            format!("{id}_20270504"),
            format!("{id}_20280504")
        ]
    );
    assert_eq!(
        items[1].start.as_ref().unwrap().date,
        NaiveDate::from_ymd_opt(2027, 5, 4)
    );
    assert_eq!(
        items[1].end.as_ref().unwrap().date,
        NaiveDate::from_ymd_opt(2027, 5, 5)
    );
    // Monthly on the last Friday, every other month, 3 times.
    let ev = Event {
        summary: Some("Review".into()),
        start: Some(EventDateTime {
            date_time: Some(Utc.with_ymd_and_hms(2026, 1, 30, 16, 0, 0).unwrap()),
            time_zone: Some("Europe/Berlin".into()),
            ..Default::default()
        }),
        end: Some(EventDateTime {
            date_time: Some(Utc.with_ymd_and_hms(2026, 1, 30, 17, 0, 0).unwrap()),
            time_zone: Some("Europe/Berlin".into()),
            ..Default::default()
        }),
        recurrence: Some(vec![
            "RRULE:FREQ=MONTHLY;INTERVAL=2;BYDAY=-1FR;COUNT=3".into()
        ]),
        ..Default::default()
    };
    let (_, m) = cal.events().insert(ev, "primary").doit().await.unwrap();
    let (_, inst) = cal
        .events()
        .instances("primary", m.id.as_ref().unwrap())
        .doit()
        .await
        .unwrap();
    let starts: Vec<_> = inst
        .items
        .unwrap()
        .iter()
        .map(|e| {
            e.start
                .as_ref()
                .unwrap()
                .date_time
                .unwrap()
                .format("%m-%d %H:%M")
                .to_string()
        })
        .collect();
    assert_eq!(starts, ["01-30 16:00", "03-27 16:00", "05-29 15:00"]);
    // Daily without an end: expansion is bounded by timeMax.
    let ev = Event {
        summary: Some("Standup".into()),
        start: Some(EventDateTime {
            date_time: Some(Utc.with_ymd_and_hms(2026, 1, 5, 8, 0, 0).unwrap()),
            time_zone: Some("UTC".into()),
            ..Default::default()
        }),
        end: Some(EventDateTime {
            date_time: Some(Utc.with_ymd_and_hms(2026, 1, 5, 8, 15, 0).unwrap()),
            time_zone: Some("UTC".into()),
            ..Default::default()
        }),
        recurrence: Some(vec!["RRULE:FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR".into()]),
        ..Default::default()
    };
    cal.events().insert(ev, "primary").doit().await.unwrap();
    let (_, l) = cal
        .events()
        .list("primary")
        .single_events(true)
        .q("standup")
        .time_min(Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap())
        .time_max(Utc.with_ymd_and_hms(2026, 1, 19, 0, 0, 0).unwrap())
        .doit()
        .await
        .unwrap();
    assert_eq!(l.items.unwrap().len(), 10);
    // Invalid rules and a timed series without a time zone are 400.
    let mut bad = weekly_ny();
    bad.recurrence = Some(vec!["RRULE:FREQ=SECONDLY".into()]);
    assert_eq!(
        reason(
            &cal.events()
                .insert(bad, "primary")
                .doit()
                .await
                .unwrap_err()
        )
        .0,
        400
    );
    let mut bad = weekly_ny();
    bad.start.as_mut().unwrap().time_zone = None;
    assert_eq!(
        reason(
            &cal.events()
                .insert(bad, "primary")
                .doit()
                .await
                .unwrap_err()
        ),
        (400, "required".into())
    );
    env.finish().await;
}

#[tokio::test]
async fn long_running_series_expand_inside_the_window() {
    let env = Env::new().await;
    let t = env.user("alice@example.com").await;
    let cal = env.calendar(&t);
    // A daily series that started 20 years ago, without an end.
    let ev = Event {
        summary: Some("Forever".into()),
        start: Some(EventDateTime {
            date_time: Some(Utc.with_ymd_and_hms(2006, 1, 2, 8, 0, 0).unwrap()),
            time_zone: Some("Europe/London".into()),
            ..Default::default()
        }),
        end: Some(EventDateTime {
            date_time: Some(Utc.with_ymd_and_hms(2006, 1, 2, 8, 30, 0).unwrap()),
            time_zone: Some("Europe/London".into()),
            ..Default::default()
        }),
        recurrence: Some(vec!["RRULE:FREQ=DAILY".into()]),
        ..Default::default()
    };
    let (_, m) = cal.events().insert(ev, "primary").doit().await.unwrap();
    let id = m.id.unwrap();
    let (_, l) = cal
        .events()
        .list("primary")
        .single_events(true)
        .order_by("startTime")
        .time_min(Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap())
        .time_max(Utc.with_ymd_and_hms(2026, 7, 8, 0, 0, 0).unwrap())
        .doit()
        .await
        .unwrap();
    let items = l.items.unwrap();
    assert_eq!(items.len(), 7);
    // Summer time in London: 08:00 local is 07:00 UTC.
    assert_eq!(
        items[0].id.as_deref(),
        Some(format!("{id}_20260701T070000Z").as_str())
    );
    let (_, g) = cal
        .events()
        .get("primary", &format!("{id}_20260701T070000Z"))
        .doit()
        .await
        .unwrap();
    assert_eq!(g.recurring_event_id.as_deref(), Some(id.as_str()));
    env.finish().await;
}
