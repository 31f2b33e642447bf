//! The OAuth 2.0 endpoints: `POST /token` (JWT-bearer with RS256 and domain-wide delegation,
//! authorization_code, refresh_token) and the authorization endpoint `GET /o/oauth2/auth`,
//! which consents automatically for the `login_hint` user (there is no UI) and redirects to
//! `redirect_uri?code=…&state=…`.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, Response, StatusCode};
use base64::Engine;
use serde_json::Value;
use std::collections::HashMap;

use crate::auth::{OAuthError, TokenGrant};
use crate::state::Emulator;
use crate::stats::RequestRecord;

fn json(status: u16, v: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
        .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(serde_json::to_vec(v).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (id, secret) = s.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// `POST /token`.
pub async fn token(State(emu): State<Emulator>, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let inner = emu.inner();
    let now = inner.clock.now();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let (client_id, secret) = match basic_credentials(&headers) {
        Some(c) => c,
        None => (
            get("client_id").to_string(),
            get("client_secret").to_string(),
        ),
    };
    let grant_type = get("grant_type");
    let result: Result<TokenGrant, OAuthError> = match grant_type {
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let emu2 = emu.clone();
            inner
                .auth
                .jwt_bearer(get("assertion"), now, move |u| emu2.user_exists(u))
        }
        "authorization_code" => {
            inner
                .auth
                .exchange_code(get("code"), &client_id, &secret, get("redirect_uri"), now)
        }
        "refresh_token" => inner
            .auth
            .refresh(get("refresh_token"), &client_id, &secret, now),
        "" => Err(OAuthError::new(
            400,
            "unsupported_grant_type",
            "Missing grant_type.",
        )),
        other => Err(OAuthError::new(
            400,
            "unsupported_grant_type",
            format!("Invalid grant_type: {other}"),
        )),
    };
    let (status, body, user) = match result {
        Ok(g) => {
            let user = inner
                .auth
                .check_token(Some(&g.access_token), now)
                .ok()
                .map(|t| t.user);
            (200, g.body(), user)
        }
        Err(e) => {
            tracing::info!(error = e.error, description = %e.description, grant_type, "token request refused");
            (e.status, e.body(), None)
        }
    };
    inner.obs.record_request(RequestRecord {
        method: "oauth2.token".into(),
        http_method: "POST".into(),
        url: "/token".into(),
        status,
        user,
    });
    json(status, &body)
}

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from(msg.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

/// `GET /o/oauth2/auth` (and `/o/oauth2/v2/auth`): auto-consent and redirect with a code.
pub async fn authorize(
    State(emu): State<Emulator>,
    Query(q): Query<HashMap<String, String>>,
) -> Response<Body> {
    let inner = emu.inner();
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let record = |status: u16, user: Option<String>| {
        inner.obs.record_request(RequestRecord {
            method: "oauth2.authorize".into(),
            http_method: "GET".into(),
            url: "/o/oauth2/auth".into(),
            status,
            user,
        });
    };
    let client_id = get("client_id");
    if !inner.auth.client_exists(client_id) {
        record(401, None);
        return text(
            StatusCode::UNAUTHORIZED,
            "Error 401: invalid_client\nThe OAuth client was not found.",
        );
    }
    if get("response_type") != "code" {
        record(400, None);
        return text(
            StatusCode::BAD_REQUEST,
            "Error 400: unsupported_response_type\nOnly response_type=code is supported.",
        );
    }
    let redirect = get("redirect_uri");
    let Ok(mut target) = url::Url::parse(redirect) else {
        record(400, None);
        return text(
            StatusCode::BAD_REQUEST,
            "Error 400: redirect_uri_mismatch\nInvalid redirect_uri.",
        );
    };
    let scopes: Vec<String> = get("scope")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if scopes.is_empty() {
        record(400, None);
        return text(
            StatusCode::BAD_REQUEST,
            "Error 400: invalid_request\nMissing required parameter: scope",
        );
    }
    let user = match q.get("login_hint") {
        Some(h) => h.to_ascii_lowercase(),
        None => {
            let users = emu.users();
            if users.len() == 1 {
                users[0].clone()
            } else {
                record(400, None);
                return text(StatusCode::BAD_REQUEST, "Error 400: invalid_request\nThe emulator has no consent screen: pass login_hint=<user email>.");
            }
        }
    };
    if !emu.user_exists(&user) {
        record(400, None);
        return text(
            StatusCode::BAD_REQUEST,
            "Error 400: invalid_request\nlogin_hint is not a user of the emulated domain.",
        );
    }
    let code = inner.auth.issue_code(
        client_id,
        redirect,
        &user,
        scopes.clone(),
        inner.clock.now(),
    );
    {
        let mut qp = target.query_pairs_mut();
        qp.append_pair("code", &code);
        if let Some(state) = q.get("state") {
            qp.append_pair("state", state);
        }
        qp.append_pair("scope", &scopes.join(" "));
    }
    record(302, Some(user));
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, target.as_str())
        .body(Body::empty())
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
