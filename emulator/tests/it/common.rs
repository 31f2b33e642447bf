//! Test harness: a running emulator per test, hubs of the real client crates pointed at it,
//! control-plane helpers over HTTP, and the closing schema check.

use crmsync_emulator::{Emulator, EmulatorServer};
use google_calendar3::CalendarHub;
use google_people1::PeopleService;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

pub type Hub = CalendarHub<HttpConnector>;
pub type People = PeopleService<HttpConnector>;

pub const CAL: &str = "https://www.googleapis.com/auth/calendar";
pub const CONTACTS: &str = "https://www.googleapis.com/auth/contacts";

pub struct Env {
    pub server: EmulatorServer,
    pub base: String,
    pub http: reqwest::Client,
}

pub fn client() -> google_calendar3::common::Client<HttpConnector> {
    let mut http = HttpConnector::new();
    http.enforce_http(true);
    Client::builder(TokioExecutor::new()).build(http)
}

impl Env {
    pub async fn new() -> Env {
        let server = EmulatorServer::start_local()
            .await
            .expect("emulator starts");
        server.emulator().set_response_recording(true);
        let base = server.base_url().to_string();
        Env {
            server,
            base,
            http: reqwest::Client::new(),
        }
    }

    pub fn emu(&self) -> &Emulator {
        self.server.emulator()
    }

    pub fn calendar(&self, token: &str) -> Hub {
        let mut hub = CalendarHub::new(client(), token.to_string());
        hub.base_url(format!("{}/calendar/v3/", self.base));
        hub.root_url(format!("{}/", self.base));
        hub
    }

    pub fn people(&self, token: &str) -> People {
        let mut hub = PeopleService::new(client(), token.to_string());
        hub.base_url(format!("{}/", self.base));
        hub.root_url(format!("{}/", self.base));
        hub
    }

    /// POST a control-plane route; returns (status, body).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/_emulator{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("control plane reachable");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .put(format!("{}/_emulator{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("control plane reachable");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/_emulator{path}", self.base))
            .send()
            .await
            .expect("control plane reachable");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Creates a user over HTTP and mints a token with `scopes` (full URLs or short names).
    pub async fn user_token(&self, email: &str, scopes: &[&str]) -> String {
        let (s, _) = self.post("/users", json!({"email": email})).await;
        assert_eq!(s, 201);
        let (s, t) = self
            .post("/access-tokens", json!({"email": email, "scopes": scopes}))
            .await;
        assert_eq!(s, 200, "{t}");
        t["access_token"].as_str().expect("token").to_string()
    }

    /// A user with full Calendar and Contacts scopes.
    pub async fn user(&self, email: &str) -> String {
        self.user_token(email, &[CAL, CONTACTS]).await
    }

    /// Raw API request with a bearer token; returns (status, json body or Null).
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        let resp = r.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Checks every recorded response against the discovery schemas, then stops the server.
    pub async fn finish(self) {
        let recorded = self.emu().recorded_responses();
        let violations = crate::schema::check_all(&recorded);
        assert!(
            violations.is_empty(),
            "responses outside the discovery schemas:\n{}",
            violations.join("\n")
        );
        self.server.shutdown().await;
    }
}

/// The error envelope's reason: Calendar `errors[0].reason`, People ErrorInfo reason or status.
pub fn reason(err: &google_calendar3::Error) -> (i64, String) {
    match err {
        google_calendar3::Error::BadRequest(v) => error_parts(v),
        other => panic!("expected a Google error body, got {other:?}"),
    }
}

pub fn error_parts(v: &Value) -> (i64, String) {
    let e = &v["error"];
    let code = e["code"].as_i64().unwrap_or(0);
    let r = e["errors"][0]["reason"]
        .as_str()
        .or_else(|| {
            e["details"]
                .as_array()
                .and_then(|d| d.iter().find_map(|x| x["reason"].as_str()))
        })
        .or_else(|| e["status"].as_str())
        .unwrap_or("")
        .to_string();
    (code, r)
}

pub fn people_reason(err: &google_people1::Error) -> (i64, String, String) {
    match err {
        google_people1::Error::BadRequest(v) => {
            let (c, r) = error_parts(v);
            (
                c,
                r,
                v["error"]["status"].as_str().unwrap_or("").to_string(),
            )
        }
        other => panic!("expected a Google error body, got {other:?}"),
    }
}

/// The body of the last recorded response of `method`.
pub fn last_body(env: &Env, method: &str) -> Value {
    env.emu()
        .recorded_responses()
        .into_iter()
        .rev()
        .find(|r| r.method == method)
        .map(|r| r.body)
        .unwrap_or(Value::Null)
}
