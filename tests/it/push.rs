//! Push (SPEC 5, issue 15) on SQLite and PostgreSQL: a CRM write that concerns a user's synced
//! records starts that user's run within seconds, debounced and coalesced, without a manual
//! start; `CRMSYNC_PUSH=off`, auto-sync off and a connection in `auth_error` start nothing.

use crate::sched_support::ApiWorld;
use crate::sync_support::*;
use chrono::Utc;
use crmsync_engine::ids::SyncKind;
use crmsync_engine::model::ConnectionState;
use crmsync_schema::changes::Origin;
use crmsync_schema::jobs::{self, PushSettings};
use crmsync_schema::{db_test, runs};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

fn fast_push(debounce_ms: i64) -> PushSettings {
    PushSettings {
        enabled: true,
        debounce_ms,
        max_wait_ms: debounce_ms * 10,
    }
}

/// Polls `ok` every 50 ms until it holds; panics with `what` after `secs`.
async fn eventually(secs: u64, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The runs of (user, kind) by trigger: (push, other).
fn runs_of(app: &ApiWorld, user: crmsync_engine::ids::UserId, kind: SyncKind) -> (usize, usize) {
    let mine = app
        .world
        .store
        .read(|c| runs::recent_runs(c, user, kind, 1000))
        .expect("runs");
    let push = mine.iter().filter(|r| r.trigger == "push").count();
    (push, mine.len() - push)
}

/// Whether (user, kind) is quiet: no run in progress and no push waiting.
fn quiet(app: &ApiWorld, user: crmsync_engine::ids::UserId, kind: SyncKind) -> bool {
    app.world
        .store
        .read(|c| jobs::get_job(c, user, kind))
        .expect("job")
        .is_some_and(|j| {
            j.push_due_at.is_none() && j.running_run_id.is_none() && j.requested_run_id.is_none()
        })
}

/// Alice with contacts auto-sync on (every 10 hours), after her first scheduled run.
async fn alice_with_auto_contacts(app: &ApiWorld) {
    let alice = app.world.alice.id;
    let (s, v) = app
        .call(
            reqwest::Method::PUT,
            &format!("/users/{alice}/sync-settings/contacts"),
            Some(json!({"auto_sync": true, "interval_minutes": 600, "tag_id": app.world.tag.id})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    eventually(20, "the first scheduled run", || {
        runs_of(app, alice, SyncKind::Contacts).1 >= 1 && quiet(app, alice, SyncKind::Contacts)
    })
    .await;
}

db_test!(async fn a_crm_edit_of_a_tagged_contact_reaches_google_without_a_manual_start(db) {
    let w = SyncWorld::new(db).await;
    w.store.write(|c| jobs::put_push_settings(c, &fast_push(300), Utc::now())).expect("push settings");
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    let app = ApiWorld::start(w).await;
    let alice = app.world.alice.id;
    alice_with_auto_contacts(&app).await;
    assert_eq!(runs_of(&app, alice, SyncKind::Contacts).0, 0);

    let (s, v) = app.call(reqwest::Method::PATCH, &format!("/contacts/{}", ada.id), Some(json!({"job_title": "Countess"}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let started = Instant::now();
    eventually(20, "Ada's new title in Google", || {
        app.world
            .google_contacts()
            .iter()
            .any(|p| p["organizations"][0]["title"] == "Countess")
    })
    .await;
    println!("CRM edit to Google: {} ms (debounce 300 ms)", started.elapsed().as_millis());
    assert_eq!(runs_of(&app, alice, SyncKind::Contacts).0, 1, "one push run");
    // An untagged contact concerns nobody's sync: no run.
    let (s, other) = app.call(reqwest::Method::POST, "/contacts", Some(json!({"given_name": "Una", "family_name": "Tagged"}))).await;
    assert_eq!(s, StatusCode::CREATED, "{other}");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(runs_of(&app, alice, SyncKind::Contacts).0, 1, "an untagged contact started a run");
    app.stop().await;
});

db_test!(async fn a_burst_of_edits_makes_at_most_two_runs_per_user_and_kind(db) {
    let w = SyncWorld::new(db).await;
    w.store.write(|c| jobs::put_push_settings(c, &fast_push(500), Utc::now())).expect("push settings");
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    let app = ApiWorld::start(w).await;
    let alice = app.world.alice.id;
    alice_with_auto_contacts(&app).await;
    let t = Instant::now();
    for i in 0..100 {
        let (s, v) = app.call(reqwest::Method::PATCH, &format!("/contacts/{}", ada.id), Some(json!({"notes": format!("edit {i}")}))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    println!("100 edits in {} ms", t.elapsed().as_millis());
    eventually(30, "the burst's run to finish", || {
        runs_of(&app, alice, SyncKind::Contacts).0 >= 1 && quiet(&app, alice, SyncKind::Contacts)
    })
    .await;
    let (push, _) = runs_of(&app, alice, SyncKind::Contacts);
    assert!((1..=2).contains(&push), "{push} push runs for one burst");
    eventually(20, "the last edit in Google", || {
        app.world.google_contacts().iter().any(|p| p["biographies"][0]["value"] == "edit 99")
    })
    .await;
    app.stop().await;
});

db_test!(async fn push_off_auto_sync_off_and_auth_error_start_nothing(db) {
    let w = SyncWorld::new(db).await;
    w.store.write(|c| jobs::put_push_settings(c, &fast_push(200), Utc::now())).expect("push settings");
    let ada = w.crm_contact("Ada", "Lovelace", "ada@example.org");
    let app = ApiWorld::start(w).await;
    let alice = app.world.alice.id;
    alice_with_auto_contacts(&app).await;
    let edit = |n: u32| {
        let path = format!("/contacts/{}", ada.id);
        let app = &app;
        async move {
            let (s, v) = app.call(reqwest::Method::PATCH, &path, Some(json!({"notes": format!("n{n}")}))).await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
    };
    // CRMSYNC_PUSH=off.
    app.world.store.write(|c| jobs::put_push_settings(c, &PushSettings { enabled: false, ..fast_push(200) }, Utc::now())).expect("off");
    edit(1).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(runs_of(&app, alice, SyncKind::Contacts).0, 0, "push off started a run");
    // A connection in auth_error.
    app.world.store.write(|c| jobs::put_push_settings(c, &fast_push(200), Utc::now())).expect("on");
    app.world
        .store
        .write(|c| {
            crmsync_schema::connections::set_connection_method(c, alice, crmsync_engine::model::ConnectionMethod::ServiceAccount, Utc::now())?;
            crmsync_schema::connections::set_connection_state(c, alice, ConnectionState::AuthError, Some("test"), Utc::now())
        })
        .expect("auth_error");
    edit(2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(runs_of(&app, alice, SyncKind::Contacts).0, 0, "an auth_error user got a push run");
    app.world
        .store
        .write(|c| crmsync_schema::connections::set_connection_state(c, alice, ConnectionState::Active, None, Utc::now()))
        .expect("active");
    // Auto-sync off.
    let (s, v) = app
        .call(reqwest::Method::PUT, &format!("/users/{alice}/sync-settings/contacts"),
              Some(json!({"auto_sync": false, "interval_minutes": 600, "tag_id": app.world.tag.id})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    edit(3).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(runs_of(&app, alice, SyncKind::Contacts).0, 0, "auto-sync off got a push run");
    app.stop().await;
});

db_test!(async fn a_participants_crm_edit_reaches_the_organizers_event_in_seconds(db) {
    let w = SyncWorld::new(db).await;
    w.store.write(|c| jobs::put_push_settings(c, &fast_push(300), Utc::now())).expect("push settings");
    let bob = w.user("bob@example.com").await;
    w.set_activity_settings(&w.alice, None, &[]);
    w.set_activity_settings(&bob, None, &[]);
    let start = Utc::now() + chrono::Duration::days(30);
    let a = w.crm_activity(&meeting("Kick-off", &w.alice, start, 30, "Europe/London", vec![participant_user(&bob)]));
    w.sync_activities(&w.alice).await;
    w.sync_activities(&bob).await;
    // Both turn auto-sync on (every 10 hours) and let their first scheduled runs pass.
    let app = ApiWorld::start(w).await;
    for u in [app.world.alice.id, bob.id] {
        let (s, v) = app.call(reqwest::Method::PUT, &format!("/users/{u}/sync-settings/activities"),
                              Some(json!({"auto_sync": true, "interval_minutes": 600}))).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    for u in [app.world.alice.id, bob.id] {
        eventually(20, "the first scheduled runs", || runs_of(&app, u, SyncKind::Activities).1 >= 2 && quiet(&app, u, SyncKind::Activities)).await;
    }
    // Bob (a participant) changes the title in the CRM: Alice's run, which his edit starts,
    // writes her event.
    let (s, v) = app.call(reqwest::Method::PATCH, &format!("/activities/{}", a.id), Some(json!({"title": "Kick-off (room 2)"}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let started = Instant::now();
    eventually(20, "the new title in Alice's event", || {
        app.world
            .emu
            .emulator()
            .calendar_events("alice@example.com")
            .iter()
            .any(|e| e["summary"] == "Kick-off (room 2)")
    })
    .await;
    println!("participant's CRM edit to the organizer's event: {} ms", started.elapsed().as_millis());
    assert!(runs_of(&app, app.world.alice.id, SyncKind::Activities).0 >= 1, "Alice had a push run");
    app.stop().await;
});

db_test!(async fn push_requests_are_debounced_capped_and_covered_by_the_next_claim(db) {
    let w = SyncWorld::new(db).await;
    let alice = w.alice.id;
    let t0 = crate::support::t0();
    let push = fast_push(2000);
    w.store
        .write(|c| {
            let s = crmsync_schema::settings::get_sync_settings(c, alice, SyncKind::Contacts)?.expect("settings");
            crmsync_schema::settings::put_sync_settings(c, &crmsync_schema::settings::NewSyncSettings {
                user_id: alice, kind: SyncKind::Contacts, auto_sync: true, schedule: s.schedule,
                tag_id: s.tag_id, synchronize_from: None, trigger_words: vec![] }, t0)?;
            Ok(())
        })
        .expect("auto-sync on");
    let at = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
    let due = |store: &crmsync_schema::Store| store.read(|c| jobs::get_job(c, alice, SyncKind::Contacts)).expect("job").and_then(|j| j.push_due_at);
    // Each request moves the run to 2 s after it, but never past 20 s after the first.
    for ms in [0, 1000, 1900] {
        assert!(w.store.write(|c| jobs::request_push(c, alice, SyncKind::Contacts, &push, at(ms))).expect("request"));
        assert_eq!(due(&w.store), Some(at(ms + 2000)));
    }
    assert!(w.store.write(|c| jobs::request_push(c, alice, SyncKind::Contacts, &push, at(19_000))).expect("request"));
    assert_eq!(due(&w.store), Some(at(20_000)), "capped at max_wait from the first request");
    // Not due yet: nothing is claimed; due: claimed with trigger push, and the request is gone.
    let claims = w.store.write(|c| jobs::claim_due(c, at(19_500), "w", chrono::Duration::seconds(60), 10)).expect("claim");
    assert!(claims.iter().all(|c| c.trigger != "push"), "{claims:?}");
    let claims = w.store.write(|c| jobs::claim_due(c, at(20_000), "w", chrono::Duration::seconds(60), 10)).expect("claim");
    assert_eq!(claims.iter().map(|c| c.trigger.as_str()).collect::<Vec<_>>(), ["push"]);
    assert_eq!(due(&w.store), None);
    // A request while the run goes on waits for it: the job stays leased, the push stays.
    assert!(w.store.write(|c| jobs::request_push(c, alice, SyncKind::Contacts, &push, at(21_000))).expect("request"));
    let claims = w.store.write(|c| jobs::claim_due(c, at(24_000), "w2", chrono::Duration::seconds(60), 10)).expect("claim");
    assert!(claims.is_empty(), "a leased job was claimed again: {claims:?}");
    assert_eq!(due(&w.store), Some(at(23_000)));
    // A contact write through the store (origin api) requests a push of the tag's owner; one the
    // owner's own run makes does not.
    let run = crmsync_engine::ids::RunId::new_random();
    w.store
        .write(|c| {
            let b = crmsync_schema::contacts::create_contact(c, &contact_data("Bo", "B", "bo@example.org"), &[w.tag.id], None, Origin::Sync { run, user: alice }, at(30_000))?;
            Ok(b)
        })
        .expect("sync write");
    assert_eq!(due(&w.store), Some(at(23_000)), "the owner's own run requested a push of itself");
});

/// A world whose scheduler keeps Calendar watch channels notifying its own server, looking
/// every 100 ms, on `clock`.
async fn with_channels(w: SyncWorld, clock: crmsync::clock::SharedClock) -> ApiWorld {
    ApiWorld::start_with(w, clock, |s, root| {
        let mut keeper = crmsync::push::ChannelKeeper::new(root).expect("a loopback URL");
        keeper.every = Duration::from_millis(100);
        s.with_channels(keeper)
    })
    .await
}

fn channel(app: &ApiWorld) -> Option<crmsync_schema::channels::WatchChannel> {
    app.world
        .store
        .read(|c| crmsync_schema::channels::channel_of(c, app.world.alice.id))
        .expect("channel")
        .filter(|c| c.channel_id.is_some())
}

async fn notify(app: &ApiWorld, id: &str, token: &str, number: i64) -> StatusCode {
    app.client
        .post(format!("{}/google/notifications", app.root))
        .header("X-Goog-Channel-ID", id)
        .header("X-Goog-Channel-Token", token)
        .header("X-Goog-Resource-State", "exists")
        .header("X-Goog-Message-Number", number.to_string())
        .send()
        .await
        .expect("sent")
        .status()
}

db_test!(async fn a_google_calendar_edit_reaches_the_crm_through_the_watch_notification(db) {
    let w = SyncWorld::new(db).await;
    w.store.write(|c| jobs::put_push_settings(c, &fast_push(300), Utc::now())).expect("push settings");
    let app = with_channels(w, std::sync::Arc::new(crmsync::clock::SystemClock)).await;
    let alice = app.world.alice.id;
    let (s, v) = app
        .call(reqwest::Method::PUT, &format!("/users/{alice}/sync-settings/activities"), Some(json!({"auto_sync": true, "interval_minutes": 600})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    eventually(20, "the first run and a watch channel", || {
        runs_of(&app, alice, SyncKind::Activities).1 >= 1 && quiet(&app, alice, SyncKind::Activities) && channel(&app).is_some()
    })
    .await;
    let ch = channel(&app).expect("channel");
    let id = ch.channel_id.clone().expect("id");
    assert_eq!(app.world.emu.emulator().calendar_channels("alice@example.com"), vec![id.clone()]);
    assert!(ch.expires_at.is_some_and(|e| e > Utc::now() + chrono::Duration::days(6)));
    let (s, st) = app.get(&format!("/users/{alice}/sync-status")).await;
    assert_eq!(s, StatusCode::OK, "{st}");
    let push = &st["kinds"]["activities"]["push"];
    assert_eq!((push["crm_changes"].as_bool(), push["google_changes"].as_bool()), (Some(true), Some(true)), "{push}");
    assert!(push["channel_expires_at"].is_string(), "{push}");
    let contacts_push = &st["kinds"]["contacts"]["push"];
    assert_eq!(contacts_push["google_changes"], false, "{contacts_push}");
    let metrics = app.client.get(format!("{}/metrics", app.root)).send().await.expect("scrape").text().await.expect("text");
    assert!(metrics.contains("crmsync_push_channels{state=\"live\"} 1"), "{metrics}");

    // Forged and unknown notifications start nothing.
    assert_eq!(notify(&app, &id, "not-the-token", 1_000_000).await, StatusCode::NOT_FOUND);
    assert_eq!(notify(&app, "crmsync-unknown", "x", 1).await, StatusCode::NOT_FOUND);
    let r = app.client.post(format!("{}/google/notifications", app.root)).send().await.expect("sent");
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "no channel id");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(runs_of(&app, alice, SyncKind::Activities).0, 0, "a forged notification started a run");

    // Alice adds an event in Google Calendar: the notification brings it into the CRM.
    let start = (Utc::now() + chrono::Duration::days(3)).format("%Y-%m-%dT10:00:00Z").to_string();
    let end = (Utc::now() + chrono::Duration::days(3)).format("%Y-%m-%dT11:00:00Z").to_string();
    app.world
        .google_insert_event("alice@example.com", json!({"summary": "Planning", "start": {"dateTime": start}, "end": {"dateTime": end}}))
        .await;
    let t = Instant::now();
    eventually(20, "the Google event in the CRM", || app.world.crm_activities().iter().any(|a| a.data.title == "Planning")).await;
    println!("Google Calendar edit to the CRM: {} ms (debounce 300 ms)", t.elapsed().as_millis());
    assert!(runs_of(&app, alice, SyncKind::Activities).0 >= 1, "the notification's push run");
    app.stop().await;
});

db_test!(async fn watch_channels_are_renewed_before_expiry_remade_after_a_restart_and_stopped_with_sync(db) {
    let w = SyncWorld::new(db).await;
    let clock = crmsync::clock::TestClock::new(Utc::now());
    let shared: crmsync::clock::SharedClock = std::sync::Arc::new(clock.clone());
    let alice = w.alice.id;
    w.store
        .write(|c| {
            crmsync_schema::settings::put_sync_settings(c, &crmsync_schema::settings::NewSyncSettings {
                user_id: alice, kind: SyncKind::Activities, auto_sync: true,
                schedule: crmsync_engine::model::SyncSchedule::IntervalMinutes(600),
                tag_id: None, synchronize_from: None, trigger_words: vec![] }, Utc::now())
        })
        .expect("activity auto-sync");
    let app = with_channels(w, shared.clone()).await;
    eventually(20, "a watch channel", || channel(&app).is_some()).await;
    let first = channel(&app).expect("channel");
    // Close to the expiry on crmsync's clock: a new channel, the old one stopped at Google.
    clock.set(first.expires_at.expect("expiry") - chrono::Duration::hours(1));
    eventually(20, "a renewed channel", || channel(&app).is_some_and(|c| c.channel_id != first.channel_id)).await;
    // Back to the emulator's time (its channels expire on its own clock), then let it settle.
    clock.set(Utc::now());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = channel(&app).expect("channel");
    eventually(10, "the old channel stopped", || {
        app.world.emu.emulator().calendar_channels("alice@example.com") == vec![second.channel_id.clone().expect("id")]
    })
    .await;
    // A restart keeps the live channel; one Google no longer has (expired, forgotten) is made again.
    let w = app.stop().await;
    let app = with_channels(w, shared.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(channel(&app).map(|c| c.channel_id), Some(second.channel_id.clone()), "a restart made a second channel");
    let w = app.stop().await;
    w.store
        .write(|c| {
            crmsync_schema::channels::claim(c, alice, second.channel_id.as_deref(), "test", Utc::now(), chrono::Duration::seconds(1))?;
            crmsync_schema::channels::put_channel(c, alice, second.channel_id.as_deref().unwrap_or(""), second.resource_id.as_deref().unwrap_or(""), "t", clock_now(&clock) - chrono::Duration::minutes(1), Utc::now())
        })
        .expect("an expired channel");
    let app = with_channels(w, shared).await;
    eventually(20, "a channel made again", || channel(&app).is_some_and(|c| c.channel_id != second.channel_id && c.expires_at > Some(clock_now(&clock)))).await;
    // Activity auto-sync off: the channel is stopped and forgotten.
    let (s, v) = app
        .call(reqwest::Method::PUT, &format!("/users/{alice}/sync-settings/activities"), Some(json!({"auto_sync": false, "interval_minutes": 600})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    eventually(20, "the channel stopped", || {
        channel(&app).is_none() && app.world.emu.emulator().calendar_channels("alice@example.com").is_empty()
    })
    .await;
    app.stop().await;
});

fn clock_now(c: &crmsync::clock::TestClock) -> chrono::DateTime<Utc> {
    use crmsync::clock::Clock;
    c.now()
}

db_test!(async fn a_notification_needs_the_channel_token_and_a_new_message_number(db) {
    use crmsync_schema::channels::{self, Notification};
    let w = SyncWorld::new(db).await;
    let alice = w.alice.id;
    let now = Utc::now();
    w.store
        .write(|c| {
            channels::claim(c, alice, None, "test", now, chrono::Duration::seconds(60))?;
            channels::put_channel(c, alice, "ch-1", "res-1", "the-token", now + chrono::Duration::days(7), now)
        })
        .expect("a channel");
    let take = |id: &str, token: &str, state: &str, n: Option<i64>| {
        w.store.write(|c| channels::accept_notification(c, id, token, state, n, now)).expect("take")
    };
    assert_eq!(take("ch-1", "wrong", "exists", Some(2)), Notification::Unknown);
    assert_eq!(take("ch-2", "the-token", "exists", Some(2)), Notification::Unknown);
    assert_eq!(take("ch-1", "the-token", "sync", Some(1)), Notification::Started);
    assert!(matches!(take("ch-1", "the-token", "exists", Some(2)), Notification::Changed { user, .. } if user == alice));
    assert_eq!(take("ch-1", "the-token", "exists", Some(2)), Notification::Replayed, "the same message again");
    assert_eq!(take("ch-1", "the-token", "exists", Some(1)), Notification::Replayed, "an older message");
    assert!(matches!(take("ch-1", "the-token", "exists", Some(3)), Notification::Changed { .. }));
});

db_test!(async fn two_workers_keep_one_watch_channel_per_user(db) {
    let w = SyncWorld::new(db).await;
    let alice = w.alice.id;
    w.store
        .write(|c| {
            crmsync_schema::settings::put_sync_settings(c, &crmsync_schema::settings::NewSyncSettings {
                user_id: alice, kind: SyncKind::Activities, auto_sync: true,
                schedule: crmsync_engine::model::SyncSchedule::IntervalMinutes(600),
                tag_id: None, synchronize_from: None, trigger_words: vec![] }, Utc::now())
        })
        .expect("activity auto-sync");
    let clock: crmsync::clock::SharedClock = std::sync::Arc::new(crmsync::clock::SystemClock);
    let app = with_channels(w, clock.clone()).await;
    // A second worker over the same database, keeping channels too.
    let mut keeper = crmsync::push::ChannelKeeper::new(&app.root).expect("a loopback URL");
    keeper.every = Duration::from_millis(50);
    let second = crmsync::scheduler::Scheduler::new(
        crate::sched_support::engine_with_clock(&app.world, clock),
        crate::sched_support::config("second-worker", crmsync::scheduler::schedule::JitterPolicy::none()),
    )
    .with_channels(keeper);
    let second_handle = second.handle();
    let task = tokio::spawn(second.run());
    eventually(20, "a watch channel", || channel(&app).is_some()).await;
    // Both keep looking for a while: still one channel at Google, the one stored.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stored = channel(&app).and_then(|c| c.channel_id).expect("stored");
    assert_eq!(app.world.emu.emulator().calendar_channels("alice@example.com"), vec![stored]);
    second_handle.shutdown();
    let _ = task.await;
    app.stop().await;
});
