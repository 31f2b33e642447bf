//! Test helpers: start the real router on 127.0.0.1:0 over a `TestDb`, call it with reqwest, and
//! snapshot the CRM data to prove that refused requests changed nothing.

use chrono::{DateTime, TimeZone, Utc};
use crmsync::api::AppState;
use crmsync::clock::TestClock;
use crmsync_schema::test_support::TestDb;
use crmsync_schema::{activities, admin_tokens, contacts, settings, tags, users, Store};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0)
        .single()
        .expect("valid time")
}

/// A running API over a test database, with a valid admin token.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub token: String,
    pub store: Store,
    pub clock: TestClock,
}

impl TestApp {
    pub async fn start(db: &TestDb) -> TestApp {
        let store = db.store();
        let clock = TestClock::new(t0());
        let (_, token) = store
            .write(|c| admin_tokens::create_admin_token(c, "test", t0()))
            .expect("create a token");
        let state = AppState::new(store.clone(), Arc::new(clock.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(crmsync::server::serve(
            state,
            listener,
            std::future::pending(),
        ));
        TestApp {
            base: format!("http://{addr}/api/v1"),
            client: reqwest::Client::new(),
            token,
            store,
            clock,
        }
    }

    /// Sends a request with the admin token; returns the status and the JSON body (Null if none).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        read(resp).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(Method::PUT, path, body).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Creates a user and returns its id.
    pub async fn user(&self, email: &str) -> String {
        let (s, v) = self
            .post(
                "/users",
                serde_json::json!({"email": email, "display_name": email}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        id_of(&v)
    }

    /// Creates a tag and returns its id.
    pub async fn tag(&self, name: &str, visibility: &str, owner: Option<&str>) -> String {
        let mut body = serde_json::json!({"name": name, "visibility": visibility});
        if let Some(o) = owner {
            body["owner_user_id"] = Value::String(o.to_string());
        }
        let (s, v) = self.post("/tags", body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        id_of(&v)
    }

    /// Everything the CRM holds, for before/after comparisons.
    pub fn snapshot(&self) -> String {
        snapshot(&self.store)
    }
}

pub async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, value)
}

pub fn id_of(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

/// Asserts a JSON error body of the given status and returns its code.
pub fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, what: &str) -> String {
    assert_eq!(status, expected, "{what}: {body}");
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no error.code in {body}"));
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: no message in {body}"));
    assert!(!message.is_empty(), "{what}: empty message");
    code.to_string()
}

/// A dump of every CRM record (users, tags, contacts and activities with tombstones, settings,
/// change counter).
pub fn snapshot(store: &Store) -> String {
    store
        .read(|c| {
            let users = users::list_users(c, None, 1000)?;
            let tags = tags::list_tags(c, None, 1000)?;
            let contacts = contacts::contacts_changed_since(c, 0, 1000)?;
            let activities = activities::activities_changed_since(c, 0, 1000)?;
            let settings = settings::all_sync_settings(c)?;
            let seq = crmsync_schema::current_change_seq(c)?;
            Ok(format!(
                "{users:?}\n{tags:?}\n{contacts:?}\n{activities:?}\n{settings:?}\nseq={seq}"
            ))
        })
        .expect("snapshot")
}
