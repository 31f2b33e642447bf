//! Google connections against the emulator, on both backends: a domain's service account with
//! and without the delegated scopes (without: the run fails, the user is in `auth_error` with
//! Google's `unauthorized_client` message and skipped by the scheduler until the admin fixes the
//! grant and starts a sync); per-user OAuth through the emulator's authorization and token
//! endpoints via the API (start, consent, callback, refresh token stored encrypted, a sync
//! works); a revoked grant (`invalid_grant`) leads to `auth_error` with the message, and
//! reconnecting recovers.

use crate::sched_support::{clocked, job, runs_of, set_schedule, ApiWorld};
use crate::sync_support::{contact_data, SyncWorld, DOMAIN, SCOPES};
use chrono::{Duration, SubsecRound, Utc};
use crmsync::scheduler::schedule::JitterPolicy;
use crmsync::scheduler::status::{self, SyncState};
use crmsync::scheduler::Outcome;
use crmsync::sync::{RunOptions, RunState};
use crmsync_engine::ids::SyncKind::Contacts;
use crmsync_engine::model::{ConnectionMethod, ConnectionState, SyncSchedule, User};
use crmsync_schema::settings::NewSyncSettings;
use crmsync_schema::{connections, contacts, db_test, settings, users};
use reqwest::header::{ACCEPT, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn delegated_client_id(world: &SyncWorld) -> String {
    world
        .store
        .read(|c| connections::get_service_account(c, DOMAIN))
        .unwrap()
        .expect("service account")
        .client_id
}

fn connection(world: &SyncWorld, user: &User) -> connections::GoogleConnection {
    world
        .store
        .read(|c| connections::get_connection(c, user.id))
        .unwrap()
        .expect("a connection row")
}

db_test!(async fn service_account_without_delegated_scopes_is_auth_error_skipped_until_fixed_and_started(db) {
    let world = SyncWorld::new(db).await;
    world.crm_contact("Ann", "Able", "ann@clients.test");
    let client_id = delegated_client_id(&world);
    // The admin uploaded the key but has not authorized the scopes in the Admin console.
    world.emu.emulator().authorize_delegation(&client_id, &[]);
    // Whole seconds, so times read back from the database compare equal.
    let start = Utc::now().trunc_subsecs(0);
    let (sched, clock) = clocked(&world, start, JitterPolicy::none());
    set_schedule(&world, &world.alice, Contacts, true, SyncSchedule::IntervalMinutes(5), start);

    let done = sched.run_pending().await.unwrap();
    assert_eq!(done.len(), 1);
    let report = done[0].report().expect("the run completed").clone();
    assert_eq!(report.state, RunState::Failed);
    let message = report.message.clone().unwrap_or_default();
    assert!(message.contains("unauthorized_client"), "{message}");
    let conn = connection(&world, &world.alice);
    assert_eq!(conn.state, ConnectionState::AuthError);
    let google_says = conn.last_error.clone().unwrap_or_default();
    assert!(
        google_says.contains("unauthorized_client") && google_says.contains("Client is unauthorized"),
        "{google_says}"
    );
    // The error tells the admin what to authorize.
    assert!(google_says.contains(&client_id), "{google_says}");
    let st = world.store.read(|c| status::user_status(c, &world.alice, clock_now(&clock))).unwrap();
    let k = &st.kinds["contacts"];
    assert_eq!(k.state, SyncState::AuthError);
    assert_eq!(k.last_error.as_deref(), Some(google_says.as_str()));
    assert!(k.message.as_deref().unwrap_or("").contains("skipped"), "{k:?}");
    assert_eq!(k.next_due_at, None);
    assert_eq!(st.connection.state, "auth_error");

    // Due again and again, but skipped while the cause is not fixed and nobody starts it.
    for minutes in [5, 10, 60, 24 * 60] {
        clock.set(start + Duration::minutes(minutes));
        assert!(sched.run_pending().await.unwrap().is_empty(), "ran a user in auth_error");
    }
    // The admin fixes the grant: still skipped until a start.
    world.emu.emulator().authorize_delegation(&client_id, &SCOPES.map(String::from));
    clock.set(start + Duration::days(2));
    assert!(sched.run_pending().await.unwrap().is_empty());
    assert_eq!(runs_of(&world.store, world.alice.id, Contacts).len(), 1);

    // "Start synchronization" resumes: the run succeeds and the error clears.
    let req = sched.request(world.alice.id, Contacts, RunOptions::default()).await.unwrap();
    let done = sched.run_pending().await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].claim.run_id, req.run_id);
    assert!(matches!(&done[0].outcome, Outcome::Completed(r) if r.state == RunState::Succeeded), "{:?}", done[0].outcome);
    let conn = connection(&world, &world.alice);
    assert_eq!((conn.state, conn.last_error), (ConnectionState::Active, None));
    let k = world.store.read(|c| status::user_status(c, &world.alice, clock_now(&clock))).unwrap().kinds["contacts"].clone();
    assert_eq!(k.state, SyncState::Idle);
    assert_eq!(k.last_error, None);
    // ...and the schedule resumes: 5 minutes after that run.
    let next = job(&world.store, world.alice.id, Contacts).next_due_at.expect("scheduled");
    assert_eq!(next, start + Duration::days(2) + Duration::minutes(5));
    clock.set(next);
    let done = sched.run_pending().await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].claim.trigger, "schedule");
    assert_eq!(world.google_contacts().len(), 1);
});

fn clock_now(clock: &crmsync::clock::TestClock) -> chrono::DateTime<Utc> {
    use crmsync::clock::Clock;
    clock.now()
}

/// A CRM user of another domain (no service account there) with a contacts sync tag and one
/// tagged contact.
async fn oauth_user(world: &SyncWorld, email: &str) -> (User, crmsync_engine::model::Tag) {
    let user = world.user(email).await;
    let tag = world.private_tag(&user, "My clients");
    world
        .store
        .write(|c| {
            settings::put_sync_settings(
                c,
                &NewSyncSettings {
                    user_id: user.id,
                    kind: Contacts,
                    auto_sync: false,
                    schedule: SyncSchedule::IntervalMinutes(15),
                    tag_id: Some(tag.id),
                    synchronize_from: None,
                    trigger_words: vec![],
                },
                Utc::now(),
            )
        })
        .unwrap();
    (user, tag)
}

fn tagged_contact(world: &SyncWorld, tag: &crmsync_engine::model::Tag, given: &str, email: &str) {
    world
        .store
        .write(|c| {
            contacts::create_contact(
                c,
                &contact_data(given, "Client", email),
                &[tag.id],
                None,
                crmsync_schema::changes::Origin::Api,
                Utc::now(),
            )
        })
        .unwrap();
}

/// The user's browser: start, follow the consent URL (the emulator consents for the login hint
/// and redirects), land on the callback. Returns the callback URL.
async fn connect(app: &ApiWorld, user: &User) -> String {
    let (s, v) = app
        .post(&format!("/users/{}/google/oauth/start", user.id))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let url = v["authorization_url"]
        .as_str()
        .expect("authorization_url")
        .to_string();
    let parsed = url::Url::parse(&url).unwrap();
    assert!(
        url.starts_with(&format!("{}/o/oauth2/v2/auth?", app.world.emu.base_url())),
        "{url}"
    );
    let q: std::collections::HashMap<_, _> = parsed.query_pairs().into_owned().collect();
    assert_eq!(q["login_hint"], user.google_alias);
    assert_eq!(q["access_type"], "offline");
    let mut scopes: Vec<&str> = crmsync_connectors::ALL_SCOPES.to_vec();
    scopes.extend(crmsync_connectors::IDENTITY_SCOPES);
    assert_eq!(q["scope"], scopes.join(" "));
    assert_eq!(q["redirect_uri"], format!("{}/oauth/callback", app.root));
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let consent = browser.get(&url).send().await.unwrap();
    assert_eq!(
        consent.status(),
        StatusCode::FOUND,
        "{:?}",
        consent.text().await
    );
    let callback = consent.headers()[LOCATION].to_str().unwrap().to_string();
    assert!(
        callback.starts_with(&format!("{}/oauth/callback?", app.root)),
        "{callback}"
    );
    let page = browser
        .get(&callback)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    let status = page.status();
    let body = page.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("connected") && body.contains(&user.google_alias),
        "{body}"
    );
    callback
}

async fn sync_wait(app: &ApiWorld, user: &User) -> Value {
    let (s, run) = app
        .post(&format!("/users/{}/sync/contacts?wait=true", user.id))
        .await;
    assert_eq!(s, StatusCode::OK, "{run}");
    run
}

db_test!(async fn per_user_oauth_through_the_api_then_revoked_then_reconnected(db) {
    let app = ApiWorld::start(SyncWorld::new(db).await).await;
    let (bob, tag) = oauth_user(&app.world, "bob@oauth.test").await;
    tagged_contact(&app.world, &tag, "Carl", "carl@clients.test");
    // Not connected yet: the status says how to connect.
    let (_, st) = app.get(&format!("/users/{}/sync-status", bob.id)).await;
    assert_eq!(st["kinds"]["contacts"]["state"], "not_configured", "{st}");
    assert!(st["kinds"]["contacts"]["message"].as_str().unwrap().contains("oauth/start"));

    let (client_id, client_secret) = app.world.emu.emulator().create_oauth_client();
    let redirect_uri = format!("{}/oauth/callback", app.root);
    let (s, v) = app
        .call(
            Method::PUT,
            "/google/oauth-client",
            Some(json!({"client_id": client_id, "client_secret": client_secret, "redirect_uri": redirect_uri})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(!v.to_string().contains(&client_secret), "the secret was answered");

    let callback = connect(&app, &bob).await;
    let conn = connection(&app.world, &bob);
    assert_eq!(conn.method, ConnectionMethod::Oauth);
    assert_eq!(conn.state, ConnectionState::Active);
    assert!(conn.has_refresh_token);
    // The refresh token is stored encrypted.
    let store = app.world.store.clone();
    let token = store
        .read(|c| connections::refresh_token(&store, c, bob.id))
        .unwrap()
        .expect("a refresh token");
    let raw: Option<String> = store
        .read(|c| {
            use crmsync_schema::diesel::prelude::*;
            use crmsync_schema::schema::google_connections as gc;
            Ok(gc::table
                .find(bob.id.to_string())
                .select(gc::refresh_token_ciphertext)
                .first::<Option<String>>(c)?)
        })
        .unwrap();
    let raw = raw.expect("ciphertext");
    assert!(!raw.contains(&token), "the refresh token is stored in clear");
    // The one-time state cannot be replayed.
    let replay = reqwest::get(&callback).await.unwrap();
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert!(replay.text().await.unwrap().contains("already used"));

    // A sync works with the user's own token.
    let run = sync_wait(&app, &bob).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(app.world.emu.emulator().contacts("bob@oauth.test").len(), 1);

    // The user revokes crmsync's access in Google.
    let resp = reqwest::Client::new()
        .post(format!("{}/_emulator/revoke", app.world.emu.base_url()))
        .json(&json!({"email": "bob@oauth.test"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    tagged_contact(&app.world, &tag, "Dora", "dora@clients.test");
    let run = sync_wait(&app, &bob).await;
    assert_eq!(run["state"], "failed", "{run}");
    let (_, st) = app.get(&format!("/users/{}/sync-status", bob.id)).await;
    let k = &st["kinds"]["contacts"];
    assert_eq!(k["state"], "auth_error", "{st}");
    let err = k["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("invalid_grant") && err.contains("Token has been expired or revoked"), "{err}");
    assert_eq!(st["connection"]["state"], "auth_error");
    assert!(k["message"].as_str().unwrap().contains("skipped"));

    // Reconnecting (a new consent) recovers; the next sync brings the change made meanwhile.
    connect(&app, &bob).await;
    let conn = connection(&app.world, &bob);
    assert_eq!((conn.state, conn.last_error), (ConnectionState::Active, None));
    let run = sync_wait(&app, &bob).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    let google = app.world.emu.emulator().contacts("bob@oauth.test");
    assert_eq!(google.len(), 2, "no duplicate, nothing lost");
    let (_, st) = app.get(&format!("/users/{}/sync-status", bob.id)).await;
    assert_eq!(st["kinds"]["contacts"]["state"], "idle", "{st}");
    assert_eq!(st["kinds"]["contacts"]["last_error"], Value::Null);
    let runs = runs_of(&app.world.store, bob.id, Contacts);
    assert_eq!(runs.iter().map(|r| r.state.as_str()).collect::<Vec<_>>(), ["succeeded", "failed", "succeeded"]);
    app.stop().await;
});

db_test!(async fn oauth_callback_failures_answer_clearly_and_connect_nothing(db) {
    let app = ApiWorld::start(SyncWorld::new(db).await).await;
    let (bob, _) = oauth_user(&app.world, "bob@oauth.test").await;
    let (client_id, client_secret) = app.world.emu.emulator().create_oauth_client();
    let (s, _) = app
        .call(
            Method::PUT,
            "/google/oauth-client",
            Some(json!({"client_id": client_id, "client_secret": client_secret, "redirect_uri": format!("{}/oauth/callback", app.root)})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let http = reqwest::Client::new();
    // No state at all.
    let r = http.get(format!("{}/oauth/callback?code=abc", app.root)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("no state"));
    // An unknown state, asking for JSON.
    let r = http
        .get(format!("{}/oauth/callback?code=abc&state=forged", app.root))
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "oauth_failed");
    // The user refused consent.
    let (_, v) = app.post(&format!("/users/{}/google/oauth/start", bob.id)).await;
    let url = url::Url::parse(v["authorization_url"].as_str().unwrap()).unwrap();
    let state = url.query_pairs().find(|(k, _)| k == "state").unwrap().1.to_string();
    let r = http
        .get(format!("{}/oauth/callback?error=access_denied&state={state}", app.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("did not grant access (access_denied)"));
    // A forged code with a valid state: Google refuses the exchange.
    let (_, v) = app.post(&format!("/users/{}/google/oauth/start", bob.id)).await;
    let url = url::Url::parse(v["authorization_url"].as_str().unwrap()).unwrap();
    let state = url.query_pairs().find(|(k, _)| k == "state").unwrap().1.to_string();
    let r = http
        .get(format!("{}/oauth/callback?code=forged&state={state}", app.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("invalid_grant"));
    let conn = app.world.store.read(|c| connections::get_connection(c, bob.id)).unwrap();
    assert!(conn.is_none(), "a failed callback stored a connection: {conn:?}");
    let u = app.world.store.read(|c| users::get_user(c, bob.id)).unwrap();
    assert_eq!(u.id, bob.id);
    app.stop().await;
});

db_test!(async fn a_service_account_uploaded_through_the_api_syncs_its_domain_once_delegated(db) {
    let app = ApiWorld::start(SyncWorld::new(db).await).await;
    let key = app.world.emu.emulator().create_service_account("corp.test", app.world.emu.base_url());
    let (s, v) = app
        .call(Method::PUT, "/google/service-account", Some(json!({"domain": "corp.test", "key": key})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (carol, tag) = oauth_user(&app.world, "carol@corp.test").await;
    tagged_contact(&app.world, &tag, "Eve", "eve@clients.test");
    let (_, st) = app.get(&format!("/users/{}/sync-status", carol.id)).await;
    assert_eq!(st["connection"]["method"], "service_account");
    assert_eq!(st["kinds"]["contacts"]["state"], "idle", "{st}");

    // Not delegated yet: Google's unauthorized_client, auth_error.
    let run = sync_wait(&app, &carol).await;
    assert_eq!(run["state"], "failed");
    assert!(run["message"].as_str().unwrap().contains("unauthorized_client"), "{run}");
    let (_, st) = app.get(&format!("/users/{}/sync-status", carol.id)).await;
    assert_eq!(st["kinds"]["contacts"]["state"], "auth_error", "{st}");

    // The admin authorizes the client id for exactly the scopes crmsync asks for.
    let scopes: Vec<String> = v["scopes"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    app.world.emu.emulator().authorize_delegation(v["client_id"].as_str().unwrap(), &scopes);
    let run = sync_wait(&app, &carol).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(app.world.emu.emulator().contacts("carol@corp.test").len(), 1);
    let (_, st) = app.get(&format!("/users/{}/sync-status", carol.id)).await;
    assert_eq!(st["kinds"]["contacts"]["state"], "idle");
    assert_eq!(st["connection"]["state"], "active");
    app.stop().await;
});
