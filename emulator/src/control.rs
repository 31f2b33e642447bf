//! The `/_emulator/` control plane (JSON): everything a test in any language needs to set up
//! users, credentials, faults, quotas, the clock and propagation delay, and to read stats,
//! the request log and stored data. Errors use the project's `{"error":{"code","message"}}`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::errors::Api;
use crate::faults::FaultRule;
use crate::quotas::Quotas;
use crate::state::Emulator;

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    let slice = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(slice).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("invalid request body: {e}"),
        ))
    })
}

/// The control-plane routes (mounted under `/_emulator`).
pub fn routes() -> Router<Emulator> {
    Router::new()
        .route("/reset", post(reset))
        .route("/users", post(create_user).get(list_users))
        .route("/users/{email}/events", get(user_events))
        .route("/users/{email}/contacts", get(user_contacts))
        .route("/users/{email}/contact-groups", get(user_groups))
        .route("/service-accounts", post(service_account))
        .route("/domain-wide-delegation", post(delegation))
        .route("/oauth-clients", post(oauth_client))
        .route("/access-tokens", post(access_token))
        .route("/revoke", post(revoke))
        .route("/expire-sync-tokens", post(expire))
        .route(
            "/faults",
            post(set_faults).get(get_faults).delete(clear_faults),
        )
        .route("/quotas", put(set_quotas).get(get_quotas))
        .route("/people-propagation-delay", put(set_delay))
        .route("/merge-contacts", post(merge_contacts))
        .route("/split-series", post(split_series))
        .route("/clock", get(get_clock))
        .route("/clock/advance", post(advance_clock))
        .route("/stats", get(stats))
        .route("/requests", get(requests))
        .route("/calendar-writes", get(calendar_writes))
        .route("/recording", put(set_recording))
        .route("/responses", get(responses))
}

async fn reset(State(emu): State<Emulator>) -> Response {
    emu.reset();
    Json(json!({})).into_response()
}

#[derive(Deserialize)]
struct EmailBody {
    email: String,
}

async fn create_user(State(emu): State<Emulator>, body: axum::body::Bytes) -> Response {
    let b: EmailBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match emu.create_user(&b.email) {
        Ok(()) => (
            StatusCode::CREATED,
            Json(json!({"email": b.email.trim().to_ascii_lowercase()})),
        )
            .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_email", e.to_string()),
    }
}

async fn list_users(State(emu): State<Emulator>) -> Response {
    Json(json!({"users": emu.users()})).into_response()
}

fn require_user(emu: &Emulator, email: &str) -> Result<(), Box<Response>> {
    if emu.user_exists(email) {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "unknown_user",
            format!("no user {email}: create it with POST /_emulator/users"),
        )))
    }
}

async fn user_events(State(emu): State<Emulator>, Path(email): Path<String>) -> Response {
    if let Err(r) = require_user(&emu, &email) {
        return *r;
    }
    Json(json!({"items": emu.calendar_events(&email)})).into_response()
}

async fn user_contacts(State(emu): State<Emulator>, Path(email): Path<String>) -> Response {
    if let Err(r) = require_user(&emu, &email) {
        return *r;
    }
    Json(json!({"connections": emu.contacts(&email)})).into_response()
}

async fn user_groups(State(emu): State<Emulator>, Path(email): Path<String>) -> Response {
    if let Err(r) = require_user(&emu, &email) {
        return *r;
    }
    Json(json!({"contactGroups": emu.contact_groups(&email)})).into_response()
}

#[derive(Deserialize)]
struct SaBody {
    domain: String,
}

async fn service_account(
    State(emu): State<Emulator>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let b: SaBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let mut base = emu.base_url();
    if base.is_empty() {
        if let Some(host) = headers.get("host").and_then(|h| h.to_str().ok()) {
            base = format!("http://{host}");
        }
    }
    let emu2 = emu.clone();
    let result =
        tokio::task::spawn_blocking(move || emu2.try_create_service_account(&b.domain, &base))
            .await;
    match result {
        Ok(Ok(key)) => (StatusCode::CREATED, Json(key)).into_response(),
        Ok(Err(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "key_generation_failed",
            e.to_string(),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "key_generation_failed",
            e.to_string(),
        ),
    }
}

#[derive(Deserialize)]
struct DelegationBody {
    client_id: String,
    #[serde(default)]
    scopes: Vec<String>,
}

async fn delegation(State(emu): State<Emulator>, body: axum::body::Bytes) -> Response {
    let b: DelegationBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    emu.authorize_delegation(&b.client_id, &b.scopes);
    Json(json!({"client_id": b.client_id, "scopes": b.scopes.iter().map(|s| crate::auth::scope_url(s)).collect::<Vec<_>>()})).into_response()
}

async fn oauth_client(State(emu): State<Emulator>) -> Response {
    let (id, secret) = emu.create_oauth_client();
    let base = emu.base_url();
    (
        StatusCode::CREATED,
        Json(json!({
            "client_id": id,
            "client_secret": secret,
            "auth_uri": format!("{base}/o/oauth2/auth"),
            "token_uri": format!("{base}/token"),
        })),
    )
        .into_response()
}

#[derive(Deserialize)]
struct TokenBody {
    email: String,
    #[serde(default)]
    scopes: Vec<String>,
}

async fn access_token(State(emu): State<Emulator>, body: axum::body::Bytes) -> Response {
    let b: TokenBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match emu.mint_access_token(&b.email, &b.scopes) {
        Ok(t) => Json(json!({"access_token": t, "expires_in": crate::auth::ACCESS_TOKEN_SECONDS, "token_type": "Bearer"})).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, "unknown_user", e.to_string()),
    }
}

async fn revoke(State(emu): State<Emulator>, body: axum::body::Bytes) -> Response {
    let b: EmailBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    emu.revoke(&b.email);
    Json(json!({})).into_response()
}

#[derive(Deserialize)]
struct ExpireBody {
    email: String,
    api: Api,
}

async fn expire(State(emu): State<Emulator>, body: axum::body::Bytes) -> Response {
    let b: ExpireBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Err(r) = require_user(&emu, &b.email) {
        return *r;
    }
    emu.expire_sync_tokens(&b.email, b.api);
    Json(json!({})).into_response()
}

#[derive(Deserialize)]
struct FaultsBody {
    rules: Vec<FaultRule>,
}

async fn set_faults(State(emu): State<Emulator>, body: axum::body::Bytes) -> Response {
    let b: FaultsBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    emu.set_faults(b.rules);
    Json(json!({"rules": emu.faults()})).into_response()
}

async fn get_faults(State(emu): State<Emulator>) -> Response {
    Json(json!({"rules": emu.faults()})).into_response()
}

async fn clear_faults(State(emu): State<Emulator>) -> Response {
    emu.clear_faults();
    Json(json!({})).into_response()
}

async fn set_quotas(State(emu): State<Emulator>, body: axum::body::Bytes) -> Response {
    let q: Quotas = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if q.calendar_status.is_some_and(|s| s != 403 && s != 429) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_quota",
            "calendar_status must be 403 or 429",
        );
    }
    emu.set_quotas(q);
    Json(json!(emu.quotas())).into_response()
}

async fn get_quotas(State(emu): State<Emulator>) -> Response {
    Json(json!(emu.quotas())).into_response()
}

#[derive(Deserialize)]
struct DelayBody {
    seconds: u64,
}

async fn set_delay(State(emu): State<Emulator>, body: axum::body::Bytes) -> Response {
    let b: DelayBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    emu.set_people_propagation_delay(b.seconds);
    Json(json!({"seconds": b.seconds})).into_response()
}

/// `{email, resource_names: [survivor, absorbed, …]}` (SPEC 6.3) or
/// `{email, survivor, merged: [absorbed, …]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeBody {
    email: String,
    #[serde(default)]
    resource_names: Vec<String>,
    #[serde(default)]
    survivor: Option<String>,
    #[serde(default)]
    merged: Vec<String>,
}

async fn merge_contacts(State(emu): State<Emulator>, body: axum::body::Bytes) -> Response {
    let b: MergeBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Err(r) = require_user(&emu, &b.email) {
        return *r;
    }
    let (survivor, merged) = match (b.survivor, b.resource_names.split_first()) {
        (Some(s), None) => (s, b.merged),
        (None, Some((s, rest))) if b.merged.is_empty() => (s.clone(), rest.to_vec()),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "give either resource_names: [survivor, absorbed, …] or survivor and merged",
            )
        }
    };
    match emu.merge_contacts(&b.email, &survivor, &merged) {
        Ok(person) => Json(person).into_response(),
        Err(crate::EmulatorError::NotFound(m)) => error(StatusCode::NOT_FOUND, "not_found", m),
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
    }
}

/// `{email, instance_id, changes?}`: "this and following" as Google Calendar's UI does it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitBody {
    email: String,
    instance_id: String,
    #[serde(default)]
    changes: Value,
}

async fn split_series(State(emu): State<Emulator>, body: axum::body::Bytes) -> Response {
    let b: SplitBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Err(r) = require_user(&emu, &b.email) {
        return *r;
    }
    match emu.split_series(&b.email, &b.instance_id, b.changes) {
        Ok((old, new)) => Json(json!({"old": old, "new": new})).into_response(),
        Err(crate::EmulatorError::NotFound(m)) => error(StatusCode::NOT_FOUND, "not_found", m),
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_request", e.to_string()),
    }
}

async fn get_clock(State(emu): State<Emulator>) -> Response {
    Json(json!({"now": emu.now().to_rfc3339()})).into_response()
}

#[derive(Deserialize)]
struct AdvanceBody {
    seconds: i64,
}

async fn advance_clock(State(emu): State<Emulator>, body: axum::body::Bytes) -> Response {
    let b: AdvanceBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    emu.advance_clock(chrono::Duration::seconds(b.seconds));
    Json(json!({"now": emu.now().to_rfc3339()})).into_response()
}

async fn stats(State(emu): State<Emulator>) -> Response {
    Json(json!(emu.stats())).into_response()
}

async fn requests(State(emu): State<Emulator>) -> Response {
    Json(json!({"requests": emu.recent_requests()})).into_response()
}

async fn calendar_writes(State(emu): State<Emulator>) -> Response {
    Json(json!({"writes": emu.calendar_writes()})).into_response()
}

#[derive(Deserialize)]
struct RecordingBody {
    enabled: bool,
}

async fn set_recording(State(emu): State<Emulator>, body: axum::body::Bytes) -> Response {
    let b: RecordingBody = match parse(&body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    emu.set_response_recording(b.enabled);
    Json(json!({"enabled": b.enabled})).into_response()
}

async fn responses(State(emu): State<Emulator>) -> Response {
    let v: Vec<Value> = emu
        .recorded_responses()
        .into_iter()
        .map(|r| json!({"method": r.method, "status": r.status, "body": r.body}))
        .collect();
    Json(json!({"responses": v})).into_response()
}
