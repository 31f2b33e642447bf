//! Security and robustness (issue 19), on both backends where a database is involved: the OAuth
//! consent is bound to the user's own Google account (another account is refused and nothing is
//! stored; an expired or replayed `state` is refused); one Google account per CRM user, also
//! under concurrent creates, and one private tag name per owner; a Connect never finished does
//! not pin the user to OAuth, and an admin can reset a connection; the secret key is checked at
//! startup; records awaiting Google's confirmation after a crash are counted in the status; slow
//! and idle clients are cut off while normal requests answer; SQLite files are private.

use crate::sched_support::ApiWorld;
use crate::support::{read, TestApp};
use crate::sync_support::SyncWorld;
use chrono::{Duration, Utc};
use crmsync::scheduler::status;
use crmsync_engine::ids::SyncKind::Contacts;
use crmsync_engine::model::{ConnectionMethod, User};
use crmsync_schema::key_check::{self, KeyStatus};
use crmsync_schema::secrets::{generate_key, SecretBox};
use crmsync_schema::test_support::TestDb;
use crmsync_schema::{connections, db_test, users, SecretKeySource, Store, StoreOptions};
use reqwest::header::{ACCEPT, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Registers an OAuth client of the emulator as the server's.
async fn set_oauth_client(app: &ApiWorld) {
    let (client_id, client_secret) = app.world.emu.emulator().create_oauth_client();
    let (s, v) = app
        .call(
            Method::PUT,
            "/google/oauth-client",
            Some(
                json!({"client_id": client_id, "client_secret": client_secret,
                        "redirect_uri": format!("{}/oauth/callback", app.root)}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

/// Starts a Connect for `user` and returns the consent URL.
async fn start_connect(app: &ApiWorld, user: &User) -> url::Url {
    let (s, v) = app
        .post(&format!("/users/{}/google/oauth/start", user.id))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let url = url::Url::parse(v["authorization_url"].as_str().expect("url")).expect("a URL");
    let scope = url
        .query_pairs()
        .find(|(k, _)| k == "scope")
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    assert!(
        scope.split(' ').any(|s| s == "openid") && scope.split(' ').any(|s| s == "email"),
        "the consent asks who consents: {scope}"
    );
    url
}

/// The browser signs in to Google as `account` and consents (the emulator consents for the
/// login hint); returns the status and body of the callback page.
async fn consent_as(mut url: url::Url, account: &str, root: &str) -> (StatusCode, String) {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "login_hint" {
                account.to_string()
            } else {
                v.to_string()
            };
            (k.to_string(), v)
        })
        .collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let consent = browser.get(url).send().await.expect("consent");
    assert_eq!(consent.status(), StatusCode::FOUND);
    let callback = consent.headers()[LOCATION]
        .to_str()
        .expect("location")
        .to_string();
    assert!(
        callback.starts_with(&format!("{root}/oauth/callback?")),
        "{callback}"
    );
    let page = browser
        .get(&callback)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .expect("callback");
    let status = page.status();
    (status, page.text().await.expect("body"))
}

fn no_connection(app: &ApiWorld, user: &User) -> bool {
    app.world
        .store
        .read(|c| connections::get_connection(c, user.id))
        .expect("read")
        .is_none()
}

db_test!(async fn oauth_consent_is_bound_to_the_users_google_account(db) {
    let app = ApiWorld::start(SyncWorld::new(db).await).await;
    // Bob is a CRM user of a domain without a service account; Mallory is another Google user.
    let bob = app.world.user("bob@oauth.test").await;
    app.world.emu.emulator().create_user("mallory@oauth.test").expect("mallory");
    set_oauth_client(&app).await;

    // Mallory completes Bob's Connect link with her own account: refused, nothing stored.
    let url = start_connect(&app, &bob).await;
    assert!(no_connection(&app, &bob), "starting a Connect changes nothing");
    let (status, body) = consent_as(url.clone(), "mallory@oauth.test", &app.root).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("mallory@oauth.test") && body.contains("bob@oauth.test"), "{body}");
    assert!(body.contains("nothing"), "{body}");
    assert!(no_connection(&app, &bob), "a refused consent stored a connection");
    // The link is used up: Bob cannot finish it now either.
    let (status, body) = consent_as(url, "bob@oauth.test", &app.root).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("already used"), "{body}");
    assert!(no_connection(&app, &bob));

    // An expired link is refused and forgotten.
    let expired_state = "e".repeat(64);
    let (bob_id, past) = (bob.id, Utc::now() - Duration::minutes(11));
    app.world
        .store
        .write(|c| connections::put_oauth_state(c, bob_id, &expired_state, past, past + Duration::minutes(10)))
        .expect("an old state");
    let r = reqwest::get(format!("{}/oauth/callback?code=x&state={expired_state}", app.root))
        .await
        .expect("callback");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.expect("body").contains("expired"));
    let r = reqwest::get(format!("{}/oauth/callback?code=x&state={expired_state}", app.root))
        .await
        .expect("callback");
    assert!(r.text().await.expect("body").contains("already used"), "an expired state is forgotten");

    // Bob's own consent connects him; the page names his account, a replay is refused.
    let url = start_connect(&app, &bob).await;
    let (status, body) = consent_as(url, "BOB@oauth.test", &app.root).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("bob@oauth.test"), "{body}");
    let conn = app.world.store.read(|c| connections::get_connection(c, bob_id)).expect("read").expect("row");
    assert_eq!(conn.method, ConnectionMethod::Oauth);
    assert!(conn.has_refresh_token);
    // States are stored hashed: nothing in the database equals a state the browser carried.
    let pending = app.world.store.read(|c| connections::pending_oauth_requests(c, bob_id, Utc::now())).expect("count");
    assert_eq!(pending, 0, "a completed Connect ends the user's other pending links");
    app.stop().await;
});

db_test!(async fn an_abandoned_connect_does_not_pin_the_user_and_an_admin_can_reset_the_connection(db) {
    // Alice's domain has the service account (SyncWorld); she also starts an OAuth Connect and
    // never finishes it.
    let app = ApiWorld::start(SyncWorld::new(db).await).await;
    set_oauth_client(&app).await;
    let alice = app.world.alice.clone();
    app.world.crm_contact("Ada", "Lovelace", "ada@example.org");
    let _abandoned = start_connect(&app, &alice).await;
    let (s, run) = app.post(&format!("/users/{}/sync/contacts?wait=true", alice.id)).await;
    assert_eq!(s, StatusCode::OK, "{run}");
    assert_eq!(run["state"], "succeeded", "the domain connection still serves alice: {run}");
    let (_, st) = app.get(&format!("/users/{}/sync-status", alice.id)).await;
    assert_eq!(st["connection"]["method"], "service_account", "{st}");

    // A row left by an older version (OAuth, never finished) does not block the domain either.
    let (id, now) = (alice.id, Utc::now());
    app.world
        .store
        .write(|c| connections::set_connection_method(c, id, ConnectionMethod::Oauth, now).map(|_| ()))
        .expect("legacy row");
    app.world.crm_contact("Bea", "B", "bea@example.org");
    let (_, run) = app.post(&format!("/users/{}/sync/contacts?wait=true", alice.id)).await;
    assert_eq!(run["state"], "succeeded", "{run}");
    assert_eq!(app.world.emu.emulator().contacts("alice@example.com").len(), 2);

    // The admin resets the connection: the row and pending links are gone, the domain serves.
    let (s, v) = app.call(Method::DELETE, &format!("/users/{}/google/connection", alice.id), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["connection"]["method"], "service_account", "{v}");
    assert_eq!(v["connection"]["state"], "active", "{v}");
    assert!(no_connection(&app, &alice));
    let pending = app.world.store.read(|c| connections::pending_oauth_requests(c, id, Utc::now())).expect("count");
    assert_eq!(pending, 0);
    let (s, v) = app
        .call(Method::DELETE, "/users/00000000-0000-4000-8000-000000000000/google/connection", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    app.stop().await;
});

db_test!(async fn one_google_account_serves_one_user_and_private_tag_names_are_unique(db) {
    let app = TestApp::start(&db).await;
    let bob = app.user("bob@example.com").await;
    let before = app.snapshot();
    // Creating a user whose alias (or e-mail, when no alias) is taken: 409 naming the holder.
    for body in [
        json!({"email": "robert@example.com", "display_name": "R", "google_alias": "BOB@example.com"}),
        json!({"email": "carol@example.com", "display_name": "C", "google_alias": "Bob@Example.COM"}),
    ] {
        let (s, v) = app.post("/users", body.clone()).await;
        assert_eq!(s, StatusCode::CONFLICT, "{body}: {v}");
        let m = v["error"]["message"].as_str().unwrap_or_default();
        assert!(m.contains("bob@example.com") && m.contains(&bob), "{m}");
    }
    assert_eq!(app.snapshot(), before, "refused creates changed nothing");
    // An alias that is someone's e-mail (their default alias) is taken too.
    let carol = app.user("carol@example.com").await;
    let before = app.snapshot();
    let (s, v) = app.patch(&format!("/users/{carol}"), json!({"google_alias": "Bob@Example.com"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(app.snapshot(), before, "a refused change changed nothing");
    // A user may keep (or restate) its own alias.
    let (s, v) = app.patch(&format!("/users/{bob}"), json!({"google_alias": "BOB@example.com"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // Sixteen concurrent creates with one new alias: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (client, base, token) = (app.client.clone(), app.base.clone(), app.token.clone());
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(format!("{base}/users"))
                .bearer_auth(token)
                .json(&json!({"email": format!("u{i}@example.com"), "display_name": "U", "google_alias": "shared@example.com"}))
                .send()
                .await
                .expect("sent");
            read(resp).await
        }));
    }
    let mut created = 0;
    for t in tasks {
        let (s, v) = t.await.expect("task");
        match s {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => assert!(v["error"]["message"].as_str().unwrap_or_default().contains("shared@example.com"), "{v}"),
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(created, 1, "one Google account, one user");
    let holders = app.store.read(|c| users::list_users(c, None, 100)).expect("users")
        .into_iter().filter(|u| u.google_alias == "shared@example.com").count();
    assert_eq!(holders, 1);

    // Private tag names are unique per owner (case-insensitive); another owner may reuse one.
    app.tag("Clients", "private", Some(&bob)).await;
    let before = app.snapshot();
    let (s, v) = app.post("/tags", json!({"name": "clients", "visibility": "private", "owner_user_id": bob})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"]["message"].as_str().unwrap_or_default().contains("name"), "{v}");
    assert_eq!(app.snapshot(), before);
    app.tag("Clients", "private", Some(&carol)).await;
    app.tag("Clients", "public", None).await;
});

db_test!(async fn the_secret_key_is_checked_against_the_stored_secrets(db) {
    let key_a = SecretBox::from_base64(&generate_key()).expect("key");
    let key_b = SecretBox::from_base64(&generate_key()).expect("key");
    let open = |key: Option<&SecretBox>| {
        Store::open_with(
            db.url(),
            StoreOptions {
                max_connections: Some(2),
                secret_key: key.map_or(SecretKeySource::None, |k| SecretKeySource::Key(k.clone())),
            },
        )
        .expect("open")
    };
    let now = Utc::now();
    // No secrets yet: any key (or none) is fine; a key is recorded on first check.
    assert_eq!(key_check::verify_secret_key(&open(None), now).expect("no key, no secrets"), KeyStatus::NoKeyNoSecrets);
    // Secrets stored with key A by an older version (no check value yet).
    let a = open(Some(&key_a));
    a.write(|c| connections::put_service_account(&a, c, "example.com", r#"{"client_email":"sa@x.iam.gserviceaccount.com","client_id":"1"}"#, now).map(|_| ()))
        .expect("store a secret");
    let missing = key_check::verify_secret_key(&open(None), now).expect_err("no key with secrets");
    assert!(missing.to_string().contains("is not set") && missing.to_string().contains("service-account"), "{missing}");
    let wrong = key_check::verify_secret_key(&open(Some(&key_b)), now).expect_err("wrong key");
    assert!(wrong.to_string().contains("not the key"), "{wrong}");
    assert_eq!(key_check::verify_secret_key(&a, now).expect("right key"), KeyStatus::Verified);
    // From now on the check value finds a wrong key at once, secrets or not.
    let wrong = key_check::verify_secret_key(&open(Some(&key_b)), now).expect_err("wrong key");
    assert!(wrong.to_string().contains("not the key"), "{wrong}");
    assert_eq!(key_check::verify_secret_key(&a, now).expect("right key"), KeyStatus::Verified);
});

#[test]
fn the_binary_refuses_to_start_with_a_wrong_or_malformed_key() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("crm.db").display());
    let key_a = generate_key();
    let store = Store::open_with(
        &url,
        StoreOptions {
            max_connections: Some(1),
            secret_key: SecretKeySource::Key(SecretBox::from_base64(&key_a).expect("key")),
        },
    )
    .expect("open");
    store.run_migrations().expect("migrate");
    store
        .write(|c| {
            connections::put_service_account(
                &store,
                c,
                "example.com",
                r#"{"client_email":"sa@x.iam.gserviceaccount.com","client_id":"1"}"#,
                Utc::now(),
            )
            .map(|_| ())
        })
        .expect("a secret");
    drop(store);
    let run = |key: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_crmsync"));
        cmd.args([
            "sync",
            "--user",
            "nobody@example.com",
            "--google-endpoint",
            "http://127.0.0.1:9",
        ])
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .env_remove("CRMSYNC_SECRET_KEY");
        if let Some(k) = key {
            cmd.env("CRMSYNC_SECRET_KEY", k);
        }
        let out = cmd.output().expect("run crmsync");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(Some(&generate_key()));
    assert!(
        !ok && err.contains("refusing to start") && err.contains("not the key"),
        "{err}"
    );
    let (ok, err) = run(None);
    assert!(
        !ok && err.contains("refusing to start") && err.contains("CRMSYNC_SECRET_KEY is not set"),
        "{err}"
    );
    let (ok, err) = run(Some("not-base64!"));
    assert!(
        !ok && err.contains("CRMSYNC_SECRET_KEY must be the base64"),
        "{err}"
    );
    assert!(!err.contains("cannot open the database"), "{err}");
    // The right key gets past the check (and then finds no such user).
    let (ok, err) = run(Some(&key_a));
    assert!(
        !ok && err.contains("no CRM user has the e-mail nobody@example.com"),
        "{err}"
    );
}

db_test!(async fn records_awaiting_googles_confirmation_are_counted_in_the_status(db) {
    use crmsync::sync::crash::{CrashAt, CrashPoint};
    let w = SyncWorld::new(db).await;
    w.sync_contacts().await; // a sync token: later listings are incremental
    for i in 0..3 {
        w.crm_contact("Ada", &format!("L{i}"), &format!("ada{i}@example.org"));
    }
    // The process dies after the intents are committed and before Google hears of them.
    let crashing = w.engine.with_crash_plan(std::sync::Arc::new(CrashAt::new(CrashPoint::BeforeRemoteWrite, 1)));
    let crashed = crashing
        .sync(w.alice.id, Contacts, crmsync::sync::Trigger::Manual, Default::default())
        .await;
    assert!(crashed.is_err(), "{crashed:?}");
    let before = Utc::now();
    // The next run waits for them (Google may have made them) and says so.
    let report = w.sync_contacts().await;
    assert_eq!(report.counts.awaiting_confirmation, 3, "{report:?}");
    let alice = w.alice.clone();
    let st = w.store.read(|c| status::user_status(c, &alice, Utc::now())).expect("status");
    let awaiting = st.kinds["contacts"].awaiting_confirmation.clone().expect("awaiting");
    assert_eq!(awaiting.count, 3);
    let retry_at = awaiting.retry_at.expect("retry time");
    assert!(retry_at > before + Duration::minutes(9) && retry_at <= Utc::now() + Duration::minutes(10), "{retry_at}");
    let json = serde_json::to_value(&st).expect("json");
    assert_eq!(json["kinds"]["contacts"]["awaiting_confirmation"]["count"], 3, "{json}");
    assert!(w.google_contacts().is_empty(), "nothing was sent twice");
});

/// A server with short limits on loopback.
async fn limited_server(
    db: &TestDb,
    limits: crmsync::server::ServerLimits,
) -> std::net::SocketAddr {
    let state =
        crmsync::api::AppState::new(db.store(), std::sync::Arc::new(crmsync::clock::SystemClock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(crmsync::server::serve_with(
        state,
        listener,
        std::future::pending(),
        limits,
    ));
    addr
}

/// Reads until the server closes the connection (or `limit` passes); true when it closed.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: std::time::Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off_while_requests_still_answer() {
    let db = TestDb::sqlite();
    let limits = crmsync::server::ServerLimits {
        header_read_timeout: std::time::Duration::from_secs(1),
        body_timeout: std::time::Duration::from_secs(1),
        max_connections: 40,
        shutdown_grace: std::time::Duration::from_secs(1),
    };
    let addr = limited_server(&db, limits).await;
    // 60 clients send half a request head and stop (more than the cap).
    let mut slow = Vec::new();
    for _ in 0..60 {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /api/v1/users HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        slow.push(s);
    }
    // A client that sends a head and half its body.
    let mut half_body = tokio::net::TcpStream::connect(addr).await.expect("connect");
    half_body
        .write_all(b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":")
        .await
        .expect("write");
    // A normal request still answers (401: no token), within a few timeouts.
    let t0 = Instant::now();
    let resp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        reqwest::get(format!("http://{addr}/api/v1/users")),
    )
    .await
    .expect("a normal request answers while slow clients hold connections")
    .expect("response");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    // Every slow client is cut off.
    for s in slow.iter_mut() {
        assert!(
            closed_within(s, std::time::Duration::from_secs(5)).await,
            "a half-sent request head kept its connection"
        );
    }
    assert!(
        closed_within(&mut half_body, std::time::Duration::from_secs(5)).await,
        "a half-sent body kept its connection"
    );
    // An idle keep-alive connection is closed too.
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz-nope HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.expect("an answer");
    assert!(
        n > 0 && buf.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(
        closed_within(&mut idle, std::time::Duration::from_secs(5)).await,
        "an idle keep-alive connection stayed open"
    );
}

#[cfg(unix)]
#[test]
fn sqlite_database_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("crm.db");
    let store = Store::open_with(
        &format!("sqlite://{}", path.display()),
        StoreOptions::default(),
    )
    .expect("open");
    store.run_migrations().expect("migrate");
    store
        .write(|c| {
            users::create_user(
                c,
                &users::NewUser {
                    external_id: None,
                    email: "a@example.com".into(),
                    display_name: "A".into(),
                    google_alias: None,
                    time_zone: None,
                },
                Utc::now(),
            )
        })
        .expect("write");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    let wal = dir.path().join("crm.db-wal");
    assert!(wal.exists(), "WAL mode");
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(mode(&dir.path().join("crm.db-shm")), 0o600);
    drop(store);
    // A database made readable by others is made private again on open.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let _store = Store::open_with(
        &format!("sqlite://{}", path.display()),
        StoreOptions::default(),
    )
    .expect("open");
    assert_eq!(mode(&path), 0o600);
}
