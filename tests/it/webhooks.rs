//! Webhooks (SPEC 6.4) end to end, on both backends, with a real HTTP receiver (axum on
//! 127.0.0.1:0) that verifies every signature with the `standardwebhooks` crate:
//!
//! - our signing function gives the Standard Webhooks test vector;
//! - changes the sync engine makes are delivered, signed, in commit order, to the endpoints
//!   subscribed to their event type; run and connection events are put in the outbox in the
//!   transaction of their state change;
//! - the CRM's own API writes never reach a webhook (echo suppression);
//! - a receiver failing its first two attempts gets the delivery on a retry, and the
//!   deliveries list shows the three attempts;
//! - an endpoint that answers too slowly does not delay another endpoint's deliveries;
//! - a `crmsync serve` killed with SIGKILL while deliveries are pending delivers them after a
//!   restart (at least once, none lost);
//! - two delivery workers over one database never send one delivery at the same time;
//! - bad input is refused with a 4xx and writes nothing; without a secret key the route answers
//!   503; a failed delivery shows in `GET /webhooks` and `crmsync status` and goes out again on a
//!   manual retry; deleting a webhook deletes its deliveries.
//!
//! Waits poll with generous deadlines; no test asserts a speed.

use crate::sched_support::eventually;
use crate::support::read;
use crate::sync_support::contact_data;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use chrono::Utc;
use crmsync::api::AppState;
use crmsync::clock::SystemClock;
use crmsync::webhooks::{sign, DeliveryConfig, DeliveryHandle, DeliveryWorker, RetrySchedule};
use crmsync_engine::ids::{ContactId, RunId, SyncKind, UserId};
use crmsync_engine::model::{ConnectionMethod, ConnectionState};
use crmsync_schema::changes::Origin;
use crmsync_schema::runs::{self, RunOutcome};
use crmsync_schema::secrets::{generate_key, SecretBox};
use crmsync_schema::users::NewUser;
use crmsync_schema::webhooks::{self as outbox, DeliveryState, NewWebhook, WebhookId};
use crmsync_schema::{
    admin_tokens, connections, contacts, db_test, users, SecretKeySource, Store, StoreOptions,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

// ---- the receiver ----

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Receipt {
    id: String,
    body: Value,
    /// The `standardwebhooks` crate accepted the signature (with the receiver's secret).
    verified: bool,
}

#[derive(Default)]
struct ReceiverState {
    secret: Mutex<String>,
    receipts: Mutex<Vec<Receipt>>,
    /// Requests per delivery id so far (to fail the first ones).
    seen: Mutex<HashMap<String, usize>>,
    /// Answer this status to the first `fail_first` requests of each delivery id.
    fail_first: AtomicUsize,
    fail_statuses: Mutex<Vec<u16>>,
    /// Answer 500 to everything while set.
    always_fail: std::sync::atomic::AtomicBool,
    /// Sleep this long (ms) before answering.
    delay_ms: AtomicUsize,
    /// Delivery ids being answered right now, and how often one arrived while in flight.
    in_flight: Mutex<HashSet<String>>,
    overlaps: AtomicUsize,
}

/// An HTTP endpoint on 127.0.0.1 that records and verifies what it gets.
#[derive(Clone)]
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("receiver address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    fn set_secret(&self, secret: &str) {
        *self.state.secret.lock().unwrap() = secret.to_string();
    }

    fn receipts(&self) -> Vec<Receipt> {
        self.state.receipts.lock().unwrap().clone()
    }

    /// Every delivery id received, with how often it came.
    fn counts(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for r in self.receipts() {
            *m.entry(r.id).or_insert(0) += 1;
        }
        m
    }
}

async fn receive(
    State(st): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AxumStatus {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !st.in_flight.lock().unwrap().insert(id.clone()) {
        st.overlaps.fetch_add(1, Ordering::SeqCst);
    }
    let secret = st.secret.lock().unwrap().clone();
    let verified = standardwebhooks::Webhook::new(&secret)
        .map(|w| w.verify(&body, &headers).is_ok())
        .unwrap_or(false);
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let delay = st.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay as u64)).await;
    }
    let n = {
        let mut seen = st.seen.lock().unwrap();
        let n = seen.entry(id.clone()).or_insert(0);
        *n += 1;
        *n
    };
    st.receipts.lock().unwrap().push(Receipt {
        id: id.clone(),
        body: value,
        verified,
    });
    st.in_flight.lock().unwrap().remove(&id);
    if st.always_fail.load(Ordering::SeqCst) {
        return AxumStatus::INTERNAL_SERVER_ERROR;
    }
    if n <= st.fail_first.load(Ordering::SeqCst) {
        let statuses = st.fail_statuses.lock().unwrap();
        let status = statuses.get(n - 1).copied().unwrap_or(500);
        return AxumStatus::from_u16(status).unwrap();
    }
    AxumStatus::NO_CONTENT
}

// ---- the API and the delivery worker ----

/// The API over `store` on the wall clock, with an admin token.
struct Api {
    base: String,
    client: reqwest::Client,
    token: String,
}

impl Api {
    async fn start(store: &Store) -> Api {
        let (_, token) = store
            .write(|c| admin_tokens::create_admin_token(c, "test", Utc::now()))
            .expect("token");
        let state = AppState::new(store.clone(), Arc::new(SystemClock));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(crmsync::server::serve(
            state,
            listener,
            std::future::pending(),
        ));
        Api {
            base: format!("http://{addr}/api/v1"),
            client: reqwest::Client::new(),
            token,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        read(req.send().await.expect("request sent")).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Subscribes `url`; returns the answer (with `id` and `secret`).
    async fn subscribe(&self, body: Value) -> Value {
        let (s, v) = self.post("/webhooks", body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    async fn deliveries(&self, hook: &str) -> Vec<Value> {
        let (s, v) = self.get(&format!("/webhooks/{hook}/deliveries")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["items"].as_array().unwrap().clone()
    }
}

/// A quick delivery configuration for tests.
fn quick(worker: &str, schedule: &str, timeout: Duration) -> DeliveryConfig {
    DeliveryConfig {
        worker_id: worker.to_string(),
        poll: Duration::from_millis(20),
        timeout,
        retry_schedule: schedule.parse::<RetrySchedule>().unwrap(),
    }
}

/// A delivery worker over `store`, running until the handle stops it.
fn start_worker(
    store: &Store,
    config: DeliveryConfig,
) -> (DeliveryHandle, tokio::task::JoinHandle<()>) {
    let worker = DeliveryWorker::new(store.clone(), Arc::new(SystemClock), config).unwrap();
    let handle = worker.handle();
    let task = tokio::spawn(async move { worker.run().await.expect("delivery worker") });
    (handle, task)
}

async fn stop_worker(w: (DeliveryHandle, tokio::task::JoinHandle<()>)) {
    w.0.shutdown();
    tokio::time::timeout(Duration::from_secs(60), w.1)
        .await
        .expect("the delivery worker stops")
        .expect("the delivery worker task");
}

// ---- store helpers ----

fn new_user(store: &Store, email: &str) -> UserId {
    store
        .write(|c| {
            users::create_user(
                c,
                &NewUser {
                    external_id: None,
                    email: email.into(),
                    display_name: email.into(),
                    google_alias: None,
                    time_zone: None,
                },
                Utc::now(),
            )
        })
        .unwrap()
        .id
}

/// A contact created by the sync engine (origin sync), as a run writes it.
fn sync_created_contact(store: &Store, user: UserId, run: RunId, n: usize) -> ContactId {
    store
        .write(|c| {
            contacts::create_contact(
                c,
                &contact_data(&format!("Sync{n}"), "Made", &format!("s{n}@clients.test")),
                &[],
                None,
                Origin::Sync { run, user },
                Utc::now(),
            )
        })
        .unwrap()
        .id
}

fn subscribe_in_store(store: &Store, url: &str, types: &[&str], secret: &str) -> WebhookId {
    let new = NewWebhook {
        url: url.to_string(),
        event_types: types.iter().map(|t| t.to_string()).collect(),
        secret: secret.to_string(),
    };
    store
        .write(|c| outbox::create_webhook(store, c, &new, Utc::now()))
        .unwrap()
        .id
}

fn all_types() -> Vec<&'static str> {
    outbox::EVENT_TYPES.to_vec()
}

/// Every delivery of `hook` (newest first).
fn deliveries_of(store: &Store, hook: WebhookId) -> Vec<outbox::Delivery> {
    store
        .read(|c| outbox::list_deliveries(c, hook, None, 1000))
        .unwrap()
}

// ---- (a) the signature ----

#[test]
fn signing_gives_the_standard_webhooks_test_vector() {
    let signature = sign(
        VECTOR_SECRET,
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        r#"{"test": 2432232314}"#,
    )
    .unwrap();
    assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    assert!(sign("not-a-secret!", "msg_x", 1, "{}").is_err());
}

// ---- (b) sync changes are delivered, signed, in order ----

db_test!(async fn sync_made_changes_reach_subscribed_endpoints_signed_and_in_order(db) {
    let store = db.store();
    let api = Api::start(&store).await;
    let all = Receiver::start().await;
    let updates_only = Receiver::start().await;
    let created = api.subscribe(json!({"url": all.url})).await;
    all.set_secret(created["secret"].as_str().unwrap());
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(created["event_types"].as_array().unwrap().len(), outbox::EVENT_TYPES.len(), "absent event_types = all");
    let hook = created["id"].as_str().unwrap().to_string();
    let narrow = api
        .subscribe(json!({"url": updates_only.url, "event_types": ["contact.updated"], "secret": VECTOR_SECRET}))
        .await;
    updates_only.set_secret(VECTOR_SECRET);
    assert_eq!(narrow["secret"], VECTOR_SECRET);
    assert_eq!(narrow["event_types"], json!(["contact.updated"]));

    let user = new_user(&store, "alice@example.com");
    let run = RunId::new_random();
    let contact = sync_created_contact(&store, user, run, 1);
    store
        .write(|c| {
            contacts::update_contact(
                c,
                contact,
                &contact_data("Sync1", "Changed", "s1@clients.test"),
                Origin::Sync { run, user },
                Utc::now(),
            )
        })
        .unwrap();

    let worker = start_worker(&store, quick("w1", "1s", Duration::from_secs(5)));
    eventually(60, "both deliveries to the first endpoint", || (all.receipts().len() >= 2).then_some(())).await;
    eventually(60, "the update to the second endpoint", || (!updates_only.receipts().is_empty()).then_some(())).await;
    // The receiver records a request before it answers; the worker records the attempt after.
    let hook_id: WebhookId = hook.parse().unwrap();
    eventually(60, "both attempts recorded", || {
        let d = deliveries_of(&store, hook_id);
        (d.len() == 2 && d.iter().all(|d| d.state == DeliveryState::Delivered)).then_some(())
    })
    .await;
    let got = all.receipts();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|r| r.verified), "every signature verifies: {got:?}");
    assert_eq!(got[0].body["type"], "contact.created", "commit order");
    assert_eq!(got[1].body["type"], "contact.updated");
    for r in &got {
        let data = &r.body["data"];
        assert_eq!(data["kind"], "contact");
        assert_eq!(data["id"], contact.to_string());
        assert_eq!(data["origin"], "sync");
        assert_eq!(data["user_id"], user.to_string());
        assert_eq!(data["run_id"], run.to_string());
        assert!(data["cursor"].is_i64(), "the change's feed cursor: {data}");
        assert!(r.body["timestamp"].is_string());
    }
    assert!(got[0].body["data"]["cursor"].as_i64() < got[1].body["data"]["cursor"].as_i64());
    let narrow_got = updates_only.receipts();
    assert_eq!(narrow_got.len(), 1, "only contact.updated: {narrow_got:?}");
    assert!(narrow_got[0].verified);
    assert_eq!(narrow_got[0].body["type"], "contact.updated");

    // The deliveries list: the webhook-id header is the delivery id; delivered in one attempt.
    let list = api.deliveries(&hook).await;
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], got[1].id.as_str(), "newest first");
    assert_eq!(list[1]["id"], got[0].id.as_str());
    for d in &list {
        assert_eq!(d["state"], "delivered", "{d}");
        assert_eq!(d["attempt_count"], 1);
        assert_eq!(d["last_status_code"], 204);
        assert_eq!(d["attempts"][0]["status_code"], 204);
        assert!(d["attempts"][0]["error"].is_null());
        assert!(d["next_attempt_at"].is_null());
    }
    let (s, v) = api.get(&format!("/webhooks/{hook}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["health"], "healthy");
    assert_eq!(v["pending_deliveries"], 0);
    assert!(v.get("secret").is_none(), "the secret is only shown when subscribing: {v}");
    let (_, listed) = api.get("/webhooks").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains("whsec_"), "no secret in the list: {listed}");
    stop_worker(worker).await;
});

db_test!(async fn run_and_connection_events_are_put_in_the_outbox_with_their_state_change(db) {
    let store = db.store();
    let hook = subscribe_in_store(&store, "https://crm.example.com/hook", &all_types(), VECTOR_SECRET);
    let user = new_user(&store, "bob@example.com");
    let now = Utc::now();
    // A run stopped by the mass-untag guard: sync_run.finished and sync_run.blocked.
    let run = store
        .write(|c| runs::create_run(c, user, SyncKind::Contacts, "schedule", &json!({}), now))
        .unwrap();
    store
        .write(|c| {
            runs::finish_run(
                c,
                run,
                &RunOutcome {
                    state: "blocked".into(),
                    counts: json!({"crm": {}, "google": {}}),
                    conflicts: 0,
                    errors: json!([]),
                    message: Some("the mass-untag guard stopped the run".into()),
                },
                now,
            )
        })
        .unwrap();
    // A connection going to auth_error (once: staying there is no new event).
    store
        .write(|c| {
            connections::set_connection_method(c, user, ConnectionMethod::ServiceAccount, now)?;
            connections::set_connection_state(c, user, ConnectionState::AuthError, Some("invalid_grant"), now)?;
            connections::set_connection_state(c, user, ConnectionState::AuthError, Some("invalid_grant"), now)
        })
        .unwrap();
    // A write that fails rolls its event back with it.
    let failed = store.write(|c| {
        let r = runs::create_run(c, user, SyncKind::Activities, "manual", &json!({}), now)?;
        runs::finish_run(c, r, &RunOutcome { state: "succeeded".into(), counts: json!({}), conflicts: 0, errors: json!([]), message: None }, now)?;
        Err::<(), _>(crmsync_schema::StoreError::Invalid("rolled back".into()))
    });
    assert!(failed.is_err());

    let mut got = deliveries_of(&store, hook);
    got.reverse();
    let types: Vec<&str> = got.iter().map(|d| d.event_type.as_str()).collect();
    assert_eq!(types, ["sync_run.finished", "sync_run.blocked", "connection.auth_error"]);
    assert!(got.iter().all(|d| d.state == DeliveryState::Pending));
    let body = |i: usize| -> Value {
        let raw: String = store
            .read(|c| {
                use crmsync_schema::diesel::prelude::*;
                use crmsync_schema::schema::webhook_deliveries as wd;
                Ok(wd::table.filter(wd::id.eq(got[i].id.as_str())).select(wd::body).first::<String>(c)?)
            })
            .unwrap();
        serde_json::from_str(&raw).unwrap()
    };
    let finished = body(0);
    assert_eq!(finished["type"], "sync_run.finished");
    assert_eq!(finished["data"]["run_id"], run.to_string());
    assert_eq!(finished["data"]["user_id"], user.to_string());
    assert_eq!(finished["data"]["kind"], "contacts");
    assert_eq!(finished["data"]["trigger"], "schedule");
    assert_eq!(finished["data"]["state"], "blocked");
    assert!(finished["data"]["counts"].is_object());
    assert_eq!(body(1)["data"]["message"], "the mass-untag guard stopped the run");
    let auth = body(2);
    assert_eq!(auth["data"]["user_id"], user.to_string());
    assert_eq!(auth["data"]["state"], "auth_error");
    assert_eq!(auth["data"]["error"], "invalid_grant");
});

// ---- (c) echo suppression ----

db_test!(async fn the_crms_own_api_writes_never_reach_a_webhook(db) {
    let store = db.store();
    let api = Api::start(&store).await;
    let receiver = Receiver::start().await;
    let created = api.subscribe(json!({"url": receiver.url})).await;
    receiver.set_secret(created["secret"].as_str().unwrap());
    let hook = created["id"].as_str().unwrap().to_string();

    // Every kind of write through the API.
    let (s, user) = api.post("/users", json!({"email": "org@example.com", "display_name": "Org"})).await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let user_id = user["id"].as_str().unwrap().to_string();
    let (s, tag) = api.post("/tags", json!({"name": "Clients", "visibility": "private", "owner_user_id": user_id})).await;
    assert_eq!(s, StatusCode::CREATED, "{tag}");
    let tag_id = tag["id"].as_str().unwrap().to_string();
    let (s, contact) = api
        .post("/contacts", json!({"given_name": "Api", "family_name": "Made", "emails": [{"address": "api@clients.test", "kind": "work"}]}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{contact}");
    let contact_id = contact["id"].as_str().unwrap().to_string();
    let (s, v) = api.call(Method::PATCH, &format!("/contacts/{contact_id}"), Some(json!({"job_title": "Buyer"}))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api.call(Method::PUT, &format!("/contacts/{contact_id}/tags/{tag_id}"), None).await;
    assert!(s.is_success(), "{v}");
    let (s, v) = api.call(Method::DELETE, &format!("/contacts/{contact_id}/tags/{tag_id}"), None).await;
    assert!(s.is_success(), "{v}");
    let (s, activity) = api
        .post("/activities", json!({"title": "Call", "start": "2026-03-02T10:00:00Z", "end": "2026-03-02T11:00:00Z",
                                    "time_zone": "UTC", "display_in_calendar": true, "organizer_user_id": user_id}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{activity}");
    let activity_id = activity["id"].as_str().unwrap().to_string();
    let (s, v) = api.call(Method::DELETE, &format!("/activities/{activity_id}"), None).await;
    assert!(s.is_success(), "{v}");
    let (s, v) = api.call(Method::DELETE, &format!("/contacts/{contact_id}"), None).await;
    assert!(s.is_success(), "{v}");

    // Then one change by the sync engine: it is the only thing delivered.
    let user: UserId = user_id.parse().unwrap();
    let synced = sync_created_contact(&store, user, RunId::new_random(), 7);
    let worker = start_worker(&store, quick("w1", "1s", Duration::from_secs(5)));
    eventually(60, "the sync-made change", || (!receiver.receipts().is_empty()).then_some(())).await;
    stop_worker(worker).await;
    let got = receiver.receipts();
    assert_eq!(got.len(), 1, "only the sync-made change: {got:?}");
    assert_eq!(got[0].body["data"]["id"], synced.to_string());
    assert_eq!(got[0].body["data"]["origin"], "sync");
    assert!(got[0].verified);
    assert_eq!(api.deliveries(&hook).await.len(), 1, "nothing else was ever put in the outbox");
});

// ---- (d) retries ----

db_test!(async fn a_receiver_failing_twice_gets_the_delivery_on_a_retry(db) {
    let store = db.store();
    let api = Api::start(&store).await;
    let receiver = Receiver::start().await;
    receiver.state.fail_first.store(2, Ordering::SeqCst);
    *receiver.state.fail_statuses.lock().unwrap() = vec![500, 503];
    let created = api.subscribe(json!({"url": receiver.url, "event_types": ["contact.created"]})).await;
    receiver.set_secret(created["secret"].as_str().unwrap());
    let hook = created["id"].as_str().unwrap().to_string();
    let user = new_user(&store, "carol@example.com");
    sync_created_contact(&store, user, RunId::new_random(), 1);

    let worker = start_worker(&store, quick("w1", "300ms,300ms,300ms", Duration::from_secs(5)));
    let hook_id: WebhookId = hook.parse().unwrap();
    eventually(60, "the delivery after two failures", || {
        deliveries_of(&store, hook_id)
            .first()
            .filter(|d| d.state == DeliveryState::Delivered)
            .map(|_| ())
    })
    .await;
    stop_worker(worker).await;

    let got = receiver.receipts();
    assert_eq!(got.len(), 3, "three attempts: {got:?}");
    assert!(got.iter().all(|r| r.id == got[0].id), "one delivery, the same webhook-id each time");
    assert!(got.iter().all(|r| r.verified), "each attempt is signed anew and verifies");
    let list = api.deliveries(&hook).await;
    assert_eq!(list.len(), 1);
    let d = &list[0];
    assert_eq!(d["state"], "delivered", "{d}");
    assert_eq!(d["attempt_count"], 3);
    let statuses: Vec<Value> = d["attempts"].as_array().unwrap().iter().map(|a| a["status_code"].clone()).collect();
    assert_eq!(statuses, [json!(500), json!(503), json!(204)]);
    assert!(d["attempts"][0]["error"].as_str().unwrap().contains("500"), "{d}");
    assert!(d["attempts"][2]["error"].is_null());
    assert!(d["attempts"].as_array().unwrap().iter().all(|a| a["duration_ms"].is_i64() && a["at"].is_string()));
    let (_, v) = api.get(&format!("/webhooks/{hook}")).await;
    assert_eq!(v["health"], "healthy", "{v}");
    assert!(v["last_failure"].is_null(), "{v}");
});

// ---- (e) a slow endpoint does not hold others up ----

db_test!(async fn an_endpoint_that_answers_too_slowly_does_not_delay_another(db) {
    let store = db.store();
    let slow = Receiver::start().await;
    slow.state.delay_ms.store(60_000, Ordering::SeqCst);
    let healthy = Receiver::start().await;
    healthy.set_secret(VECTOR_SECRET);
    let slow_hook = subscribe_in_store(&store, &slow.url, &["contact.created"], VECTOR_SECRET);
    let healthy_hook = subscribe_in_store(&store, &healthy.url, &["contact.created"], VECTOR_SECRET);
    let user = new_user(&store, "dave@example.com");
    let run = RunId::new_random();
    const N: usize = 20;
    for n in 0..N {
        sync_created_contact(&store, user, run, n);
    }
    // Each attempt at the slow endpoint takes the whole 2 s timeout: it needs 40 s for all 20.
    let worker = start_worker(&store, quick("w1", "1h", Duration::from_secs(2)));
    eventually(120, "every delivery to the healthy endpoint", || (healthy.counts().len() == N).then_some(())).await;
    let slow_tried = deliveries_of(&store, slow_hook).iter().filter(|d| d.attempt_count > 0).count();
    assert!(
        slow_tried < N,
        "the healthy endpoint got everything while the slow one was still on its first attempts ({slow_tried} of {N} tried)"
    );
    assert!(healthy.receipts().iter().all(|r| r.verified));
    // Positions are kept per endpoint: the healthy one got them in commit order.
    let cursors: Vec<i64> = healthy.receipts().iter().map(|r| r.body["data"]["cursor"].as_i64().unwrap()).collect();
    let mut sorted = cursors.clone();
    sorted.sort();
    assert_eq!(cursors, sorted);
    // The slow endpoint's attempts are recorded as timeouts, to be retried.
    let timed_out = eventually(60, "a recorded timeout", || {
        deliveries_of(&store, slow_hook).into_iter().find(|d| d.attempt_count > 0)
    })
    .await;
    assert_eq!(timed_out.state, DeliveryState::Pending);
    assert!(timed_out.next_attempt_at.is_some());
    assert!(timed_out.attempts[0].status.is_none());
    assert!(timed_out.attempts[0].error.as_deref().unwrap_or("").contains("timeout"), "{timed_out:?}");
    assert!(deliveries_of(&store, healthy_hook).iter().all(|d| d.state == DeliveryState::Delivered));
    stop_worker(worker).await;
});

// ---- (f) a killed server loses nothing ----

/// A `crmsync serve` process, killed (SIGKILL) on drop.
struct ServeProcess(std::process::Child);

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_serve(db_url: &str, key: &str) -> ServeProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_crmsync"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--google-endpoint", &format!("http://127.0.0.1:{closed}")])
        .env("DATABASE_URL", db_url)
        .env("CRMSYNC_SECRET_KEY", key)
        .env("CRMSYNC_WEBHOOK_POLL_MS", "50")
        .env("CRMSYNC_WEBHOOK_TIMEOUT_SECS", "2")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start crmsync serve");
    ServeProcess(child)
}

db_test!(async fn deliveries_pending_when_serve_is_killed_go_out_after_a_restart(db) {
    // The process must read the secret: a store with a known key on the test database.
    let key = generate_key();
    let store = Store::open_with(
        db.url(),
        StoreOptions { max_connections: Some(2), secret_key: SecretKeySource::Key(SecretBox::from_base64(&key).unwrap()) },
    )
    .unwrap();
    let receiver = Receiver::start().await;
    receiver.set_secret(VECTOR_SECRET);
    receiver.state.delay_ms.store(300, Ordering::SeqCst);
    let hook = subscribe_in_store(&store, &receiver.url, &["contact.created"], VECTOR_SECRET);
    let user = new_user(&store, "erin@example.com");
    let run = RunId::new_random();
    const N: usize = 20;
    for n in 0..N {
        sync_created_contact(&store, user, run, n);
    }

    let first = start_serve(db.url(), &key);
    eventually(60, "the first deliveries", || (receiver.receipts().len() >= 3).then_some(())).await;
    drop(first); // SIGKILL, in the middle of the endpoint's deliveries
    let pending = deliveries_of(&store, hook).iter().filter(|d| d.state == DeliveryState::Pending).count();
    assert!(pending > 0, "the kill left deliveries pending");

    let second = start_serve(db.url(), &key);
    eventually(120, "every delivery after the restart", || {
        let all_delivered = deliveries_of(&store, hook).iter().all(|d| d.state == DeliveryState::Delivered);
        (all_delivered && receiver.counts().len() == N).then_some(())
    })
    .await;
    drop(second);
    let counts = receiver.counts();
    assert_eq!(counts.len(), N, "none lost");
    let again: usize = counts.values().map(|n| n - 1).sum();
    assert!(again <= 2, "at least once: only what was in flight at the kill comes twice ({again})");
    assert!(receiver.receipts().iter().all(|r| r.verified));
});

// ---- (g) two workers, one outbox ----

db_test!(async fn two_delivery_workers_never_send_one_delivery_at_once(db) {
    let store = db.store();
    let receiver = Receiver::start().await;
    receiver.set_secret(VECTOR_SECRET);
    receiver.state.delay_ms.store(5, Ordering::SeqCst);
    let hooks: Vec<WebhookId> = (0..2)
        .map(|_| subscribe_in_store(&store, &receiver.url, &["contact.created"], VECTOR_SECRET))
        .collect();
    let user = new_user(&store, "frank@example.com");
    let run = RunId::new_random();
    const N: usize = 150;
    for n in 0..N {
        sync_created_contact(&store, user, run, n);
    }
    let a = start_worker(&store, quick("worker-a", "1s", Duration::from_secs(5)));
    let b = start_worker(&store, quick("worker-b", "1s", Duration::from_secs(5)));
    eventually(180, "every delivery", || (receiver.counts().len() == 2 * N).then_some(())).await;
    stop_worker(a).await;
    stop_worker(b).await;
    let counts = receiver.counts();
    assert_eq!(counts.len(), 2 * N);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "no delivery was sent twice: {twice:?}");
    assert_eq!(receiver.state.overlaps.load(Ordering::SeqCst), 0, "never two requests of one delivery at once");
    for hook in hooks {
        assert!(deliveries_of(&store, hook).iter().all(|d| d.state == DeliveryState::Delivered && d.attempt_count == 1));
    }
});

// ---- (h) bad input, the secret key, failed deliveries and manual retries ----

db_test!(async fn bad_input_is_refused_and_writes_nothing(db) {
    let store = db.store();
    let api = Api::start(&store).await;
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (json!({"url": "ftp://crm.example.com/hook"}), StatusCode::UNPROCESSABLE_ENTITY, "not http or https"),
        (json!({"url": "mailto:ops@example.com"}), StatusCode::UNPROCESSABLE_ENTITY, "not http or https"),
        (json!({"url": "https://user:pw@crm.example.com/hook"}), StatusCode::UNPROCESSABLE_ENTITY, "password"),
        (json!({"url": "/relative/hook"}), StatusCode::UNPROCESSABLE_ENTITY, "not a URL"),
        (json!({"url": "https://crm.example.com/ho ok"}), StatusCode::UNPROCESSABLE_ENTITY, "spaces"),
        (json!({"url": ""}), StatusCode::UNPROCESSABLE_ENTITY, "empty"),
        (json!({"url": "https://crm.example.com/hook", "event_types": ["contact.created", "contact.exploded"]}), StatusCode::UNPROCESSABLE_ENTITY, "contact.exploded"),
        (json!({"url": "https://crm.example.com/hook", "event_types": []}), StatusCode::UNPROCESSABLE_ENTITY, "empty"),
        (json!({"url": "https://crm.example.com/hook", "event_types": null}), StatusCode::UNPROCESSABLE_ENTITY, "null"),
        (json!({"url": "https://crm.example.com/hook", "event_types": "contact.created"}), StatusCode::UNPROCESSABLE_ENTITY, "event_types"),
        (json!({"url": "https://crm.example.com/hook", "secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}), StatusCode::UNPROCESSABLE_ENTITY, "whsec_"),
        (json!({"url": "https://crm.example.com/hook", "secret": "whsec_!!!not-base64"}), StatusCode::UNPROCESSABLE_ENTITY, "base64"),
        (json!({"url": "https://crm.example.com/hook", "secret": "whsec_c2hvcnQ="}), StatusCode::UNPROCESSABLE_ENTITY, "5 bytes"),
        (json!({"url": "https://crm.example.com/hook", "secret": null}), StatusCode::UNPROCESSABLE_ENTITY, "null"),
        (json!({"url": "https://crm.example.com/hook", "colour": "red"}), StatusCode::UNPROCESSABLE_ENTITY, "colour"),
        (json!({"event_types": ["contact.created"]}), StatusCode::UNPROCESSABLE_ENTITY, "url"),
        (json!([{"url": "https://crm.example.com/hook"}]), StatusCode::UNPROCESSABLE_ENTITY, "object"),
    ];
    for (body, status, says) in cases {
        let (s, v) = api.post("/webhooks", body.clone()).await;
        assert_eq!(s, status, "{body} -> {v}");
        let message = v["error"]["message"].as_str().unwrap_or_else(|| panic!("no message: {v}"));
        assert!(message.contains(says), "{body}: {message:?} should say {says:?}");
    }
    let (_, v) = api.post("/webhooks", json!({"url": "https://crm.example.com/hook", "event_types": ["nope"]})).await;
    let message = v["error"]["message"].as_str().unwrap();
    for t in outbox::EVENT_TYPES {
        assert!(message.contains(t), "the allowed types are named: {message}");
    }
    let (s, v) = api.get("/webhooks").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["items"], json!([]), "nothing was written");

    // Unknown and malformed ids.
    let unknown = WebhookId::new_random();
    let (s, _) = api.get(&format!("/webhooks/{unknown}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.call(Method::DELETE, &format!("/webhooks/{unknown}"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.get(&format!("/webhooks/{unknown}/deliveries")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.get("/webhooks/not-a-uuid").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let real = api.subscribe(json!({"url": "https://crm.example.com/hook"})).await;
    let real = real["id"].as_str().unwrap();
    let (s, _) = api.post(&format!("/webhooks/{real}/deliveries/msg_0123456789abcdef0123456789abcdef/retry"), json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.post(&format!("/webhooks/{real}/deliveries/msg_nope/retry"), json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api.get(&format!("/webhooks/{real}/deliveries?cursor=msg_0123456789abcdef0123456789abcdef")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api.get(&format!("/webhooks/{real}/deliveries?limit=0")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Without CRMSYNC_SECRET_KEY the secret cannot be stored: 503, nothing written.
    let keyless = Store::open_with(db.url(), StoreOptions { max_connections: Some(2), secret_key: SecretKeySource::None }).unwrap();
    let keyless_api = Api::start(&keyless).await;
    let (s, v) = keyless_api.post("/webhooks", json!({"url": "https://crm.example.com/other"})).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "secret_key");
    assert!(v["error"]["message"].as_str().unwrap().contains("CRMSYNC_SECRET_KEY"));
    let (_, v) = api.get("/webhooks").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "only the one subscribed with a key");
});

db_test!(async fn a_failed_delivery_is_shown_and_goes_out_on_a_manual_retry(db) {
    let store = db.store();
    let api = Api::start(&store).await;
    let receiver = Receiver::start().await;
    receiver.state.always_fail.store(true, Ordering::SeqCst);
    let created = api.subscribe(json!({"url": receiver.url, "event_types": ["contact.created"]})).await;
    receiver.set_secret(created["secret"].as_str().unwrap());
    let hook = created["id"].as_str().unwrap().to_string();
    let hook_id: WebhookId = hook.parse().unwrap();
    let user = new_user(&store, "gina@example.com");
    sync_created_contact(&store, user, RunId::new_random(), 1);

    // One retry, then failed.
    let worker = start_worker(&store, quick("w1", "200ms", Duration::from_secs(5)));
    eventually(60, "the delivery to fail for good", || {
        deliveries_of(&store, hook_id).first().filter(|d| d.state == DeliveryState::Failed).map(|_| ())
    })
    .await;
    let (_, v) = api.get(&format!("/webhooks/{hook}")).await;
    assert_eq!(v["health"], "failing", "{v}");
    assert_eq!(v["failed_deliveries"], 1);
    assert_eq!(v["pending_deliveries"], 0);
    assert_eq!(v["last_failure"]["status_code"], 500);
    assert!(v["last_failure"]["error"].as_str().unwrap().contains("HTTP 500"), "{v}");
    let (_, listed) = api.get("/webhooks").await;
    assert_eq!(listed["items"][0]["health"], "failing");
    let d = api.deliveries(&hook).await.remove(0);
    assert_eq!(d["state"], "failed");
    assert_eq!(d["attempt_count"], 2);
    assert!(d["finished_at"].is_string() && d["next_attempt_at"].is_null());
    let delivery_id = d["id"].as_str().unwrap().to_string();

    // `crmsync status` shows the failing endpoint.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crmsync"))
        .arg("status")
        .env("DATABASE_URL", db.url())
        .env_remove("CRMSYNC_SECRET_KEY")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("webhooks:   1 endpoint(s), 1 failing"), "{stdout}");
    let line = stdout.lines().find(|l| l.contains(&hook)).unwrap_or_else(|| panic!("no line for the webhook: {stdout}"));
    assert!(line.contains("FAILING") && line.contains("failed 1"), "{line}");
    assert!(stdout.contains("HTTP 500") && stdout.contains("retry"), "{stdout}");

    // The endpoint is fixed; the admin retries: one more attempt, delivered.
    receiver.state.always_fail.store(false, Ordering::SeqCst);
    let (s, v) = api.post(&format!("/webhooks/{hook}/deliveries/{delivery_id}/retry"), json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["id"], delivery_id.as_str());
    assert_eq!(v["state"], "pending");
    assert!(v["next_attempt_at"].is_string());
    eventually(60, "the retried delivery", || {
        deliveries_of(&store, hook_id).first().filter(|d| d.state == DeliveryState::Delivered).map(|_| ())
    })
    .await;
    stop_worker(worker).await;
    let d = api.deliveries(&hook).await.remove(0);
    assert_eq!(d["attempt_count"], 3);
    assert_eq!(d["last_status_code"], 204);
    let (_, v) = api.get(&format!("/webhooks/{hook}")).await;
    assert_eq!(v["health"], "healthy", "{v}");
    assert_eq!(v["failed_deliveries"], 0);
    let got = receiver.receipts();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.verified && r.id == delivery_id));

    // Unsubscribing deletes the deliveries with the webhook.
    let (s, _) = api.call(Method::DELETE, &format!("/webhooks/{hook}"), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = api.get(&format!("/webhooks/{hook}/deliveries")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let left: i64 = store
        .read(|c| {
            use crmsync_schema::diesel::prelude::*;
            use crmsync_schema::schema::{webhook_attempts, webhook_deliveries};
            let d: i64 = webhook_deliveries::table.count().get_result(c)?;
            let a: i64 = webhook_attempts::table.count().get_result(c)?;
            Ok(d + a)
        })
        .unwrap();
    assert_eq!(left, 0, "deliveries and attempts went with the webhook");
});
