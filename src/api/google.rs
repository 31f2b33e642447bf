//! Google connections: the domain's service-account key (`PUT /google/service-account`), the
//! OAuth client for per-user connections (`PUT /google/oauth-client`), the per-user consent URL
//! (`POST /users/{id}/google/oauth/start`) and the browser's return from Google
//! (`GET /oauth/callback`, outside `/api/v1` and without a bearer token: the one-time `state`
//! ties it to the user). Keys, secrets and refresh tokens are stored encrypted and never answered.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiPath, ApiQuery, JsonBody};
use super::validate;
use super::AppState;
use crate::sync::google::{OAuthClient, OAUTH_CLIENT_SETTING, OAUTH_SECRET_SETTING};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use crmsync_connectors::{oauth, ErrorKind, ALL_SCOPES, IDENTITY_SCOPES};
use crmsync_engine::ids::UserId;
use crmsync_engine::model::{normalize_email, User};
use crmsync_schema::connections::OAuthStateCheck;
use crmsync_schema::{app_settings, connections, users, StoreError};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{json, Value};

/// The domain's service-account key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutServiceAccount {
    /// The Workspace domain whose users the key impersonates (`example.com`).
    domain: String,
    /// The JSON key file Google gave (an object, or a string holding it).
    #[schema(schema_with = super::openapi::object_or_string)]
    key: Value,
}

fn check_domain(domain: &str) -> Result<String, ApiError> {
    let d = domain.trim().to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if d.len() > 253 || !d.contains('.') || !d.split('.').all(label_ok) {
        return Err(ApiError::invalid(format!(
            "domain: {domain:?} is not a domain name; give the Workspace domain, e.g. example.com"
        )));
    }
    Ok(d)
}

/// Checks a service-account key file; returns it as JSON text.
fn check_key(key: Value) -> Result<String, ApiError> {
    let text = match key {
        Value::String(s) => s,
        v @ Value::Object(_) => v.to_string(),
        _ => {
            return Err(ApiError::invalid(
                "key must be the service account's JSON key file (as an object, or a string holding it)",
            ))
        }
    };
    let parsed: Value = serde_json::from_str(&text).map_err(|e| {
        ApiError::invalid(format!(
            "key is not JSON ({e}); upload the JSON key file Google gave you"
        ))
    })?;
    let field = |name: &str| {
        parsed
            .get(name)
            .and_then(Value::as_str)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "key has no {name}; upload the JSON key file of a service account (IAM > Service accounts > Keys > Add key > JSON)"
                ))
            })
    };
    if field("type")? != "service_account" {
        return Err(ApiError::invalid(
            "key is not a service-account key (its type is not \"service_account\"); create a JSON key for a service account",
        ));
    }
    validate::email("key.client_email", field("client_email")?)?;
    field("client_id")?;
    let pem = field("private_key")?;
    if !pem.contains("PRIVATE KEY-----") {
        return Err(ApiError::invalid(
            "key.private_key is not a PEM private key; upload the key file unchanged",
        ));
    }
    // Parse the key for real (PKCS#8 as Google issues it, or PKCS#1), so that a damaged key is
    // refused now rather than at the first sync.
    {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        rsa::RsaPrivateKey::from_pkcs8_pem(pem)
            .map(drop)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem).map(drop))
            .map_err(|_| {
                ApiError::invalid(
                    "key.private_key is not a readable RSA private key (PEM PKCS#8 or PKCS#1); \
                     upload the JSON key file unchanged, or create a new key",
                )
            })?;
    }
    serde_json::from_str::<crmsync_connectors::yup_oauth2::ServiceAccountKey>(&text).map_err(
        |e| {
            ApiError::invalid(format!(
                "key cannot be used ({e}); upload the JSON key file unchanged"
            ))
        },
    )?;
    Ok(text)
}

/// `PUT /google/service-account` `{domain, key}`: stores the key encrypted; answers what to
/// authorize in the Admin console (never the key).
#[utoipa::path(
    put, path = "/google/service-account", tag = "google",
    operation_id = "google_put_service_account",
    summary = "Store the domain's service-account key",
    request_body = PutServiceAccount,
    responses((status = 200, description = "stored (encrypted); what to authorize in the Admin console", body = super::openapi::ServiceAccountStored))
)]
pub async fn put_service_account(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<PutServiceAccount>,
) -> ApiResult<Json<Value>> {
    let domain = check_domain(&body.domain)?;
    let key = check_key(body.key)?;
    let now = st.now();
    let d = domain.clone();
    let sa = st
        .run(move |s| s.write(|c| connections::put_service_account(s, c, &d, &key, now)))
        .await?;
    Ok(Json(json!({
        "domain": sa.domain,
        "client_email": sa.client_email,
        "client_id": sa.client_id,
        "updated_at": sa.updated_at,
        "scopes": ALL_SCOPES,
        "message": format!(
            "stored (encrypted). In the Google Admin console (Security > Access and data control > API controls > \
             Domain-wide delegation) authorize client id {} for the scopes {}; then every user of {} syncs \
             through this service account",
            sa.client_id,
            ALL_SCOPES.join(","),
            domain
        ),
    })))
}

/// The OAuth client for per-user connections.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutOAuthClient {
    client_id: String,
    client_secret: String,
    /// This server's `/oauth/callback` as registered with the OAuth client.
    redirect_uri: String,
}

/// `PUT /google/oauth-client` `{client_id, client_secret, redirect_uri}`: the OAuth client for
/// per-user connections (the secret is stored encrypted and never answered).
#[utoipa::path(
    put, path = "/google/oauth-client", tag = "google",
    operation_id = "google_put_oauth_client",
    summary = "Store the OAuth client for per-user connections",
    request_body = PutOAuthClient,
    responses((status = 200, description = "stored (the secret encrypted)", body = super::openapi::OAuthClientStored))
)]
pub async fn put_oauth_client(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<PutOAuthClient>,
) -> ApiResult<Json<Value>> {
    validate::required_text("client_id", &body.client_id, 1000)?;
    validate::required_text("client_secret", &body.client_secret, 1000)?;
    let uri_ok = url::Url::parse(&body.redirect_uri)
        .map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .unwrap_or(false);
    if !uri_ok {
        return Err(ApiError::invalid(format!(
            "redirect_uri: {:?} is not an http(s) URL; give this server's callback, e.g. https://crm.example.com/oauth/callback",
            body.redirect_uri
        )));
    }
    let client = OAuthClient {
        client_id: body.client_id.trim().to_string(),
        redirect_uri: body.redirect_uri,
    };
    let (secret, now, c2) = (body.client_secret, st.now(), client.clone());
    st.run(move |s| {
        s.write(|c| {
            app_settings::put_setting(c, OAUTH_CLIENT_SETTING, &c2, now)?;
            app_settings::put_secret_setting(s, c, OAUTH_SECRET_SETTING, &secret, now)
        })
    })
    .await?;
    Ok(Json(json!({
        "client_id": client.client_id,
        "redirect_uri": client.redirect_uri,
        "updated_at": now,
    })))
}

/// A fresh, unguessable `state` for one authorization request.
fn new_state() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// How long a Connect link works: the `state` it carries is refused after this, and after its
/// first use.
pub const OAUTH_STATE_LIFETIME_MINUTES: i64 = 10;

/// `POST /users/{id}/google/oauth/start`: `{authorization_url, expires_at}` to send the user's
/// browser to. Changes nothing about the user's connection: until the consent is complete the
/// user keeps syncing as before (through the domain's service account, if there is one).
#[utoipa::path(
    post, path = "/users/{id}/google/oauth/start", tag = "google",
    operation_id = "google_oauth_start",
    summary = "Authorization URL for the user's Connect",
    params(("id" = uuid::Uuid, Path, description = "the user's id")),
    responses(
        (status = 200, description = "the link to send the user's browser to", body = super::openapi::OAuthStarted),
        (status = 404, description = "no such user (`not_found`)", body = super::openapi::ErrorBody),
        (status = 409, description = "no OAuth client is configured (`conflict`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn oauth_start(
    State(st): State<AppState>,
    ApiPath(user): ApiPath<UserId>,
) -> ApiResult<Json<Value>> {
    let (state, now) = (new_state(), st.now());
    let expires_at = now + chrono::Duration::minutes(OAUTH_STATE_LIFETIME_MINUTES);
    let s2 = state.clone();
    let (u, client) = st
        .run(move |s| {
            s.write(|c| {
                let u = users::get_user(c, user)?;
                let client: Option<OAuthClient> = app_settings::get_setting(c, OAUTH_CLIENT_SETTING)?;
                let has_secret = app_settings::get_secret_setting(s, c, OAUTH_SECRET_SETTING)?.is_some();
                let Some(client) = client.filter(|_| has_secret) else {
                    return Err(StoreError::Conflict(
                        "no OAuth client is configured: set it first with PUT /api/v1/google/oauth-client \
                         {client_id, client_secret, redirect_uri}"
                            .into(),
                    ));
                };
                connections::put_oauth_state(c, user, &s2, now, expires_at)?;
                Ok((u, client))
            })
        })
        .await?;
    let mut scopes: Vec<&str> = ALL_SCOPES.to_vec();
    scopes.extend(IDENTITY_SCOPES);
    let url = oauth::authorization_url(
        &st.google,
        &client.client_id,
        &client.redirect_uri,
        &state,
        Some(&u.google_alias),
        &scopes,
    );
    Ok(Json(json!({
        "user_id": u.id,
        "google_account": u.google_alias,
        "authorization_url": url,
        "redirect_uri": client.redirect_uri,
        "expires_at": expires_at,
    })))
}

/// `DELETE /users/{id}/google/connection`: forgets the user's own connection (OAuth refresh
/// token, state, last error) and every pending Connect link; the user then syncs through the
/// domain's service account, if there is one, or waits for a new Connect. Answers the user's
/// connection status afterwards.
#[utoipa::path(
    delete, path = "/users/{id}/google/connection", tag = "google",
    operation_id = "google_reset_connection",
    summary = "Forget the user's own Google connection",
    params(("id" = uuid::Uuid, Path, description = "the user's id")),
    responses(
        (status = 200, description = "the user's connection afterwards", body = super::openapi::ConnectionReset),
        (status = 404, description = "no such user (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn reset_connection(
    State(st): State<AppState>,
    ApiPath(user): ApiPath<UserId>,
) -> ApiResult<Json<Value>> {
    let now = st.now();
    let (status, had_token) = st
        .run(move |s| {
            s.write(|c| {
                let u = users::get_user(c, user)?;
                let token = connections::reset_connection(s, c, user)?;
                let status = crate::scheduler::status::user_status(c, &u, now)?;
                Ok((status, token.is_some()))
            })
        })
        .await?;
    tracing::info!(%user, had_token, "Google connection reset");
    Ok(Json(json!({
        "user_id": user,
        "connection": status.connection,
        "forgot_refresh_token": had_token,
        "message": if had_token {
            "the user's OAuth connection is forgotten (revoke crmsync's access in the user's Google account \
             settings if it should end there too); the user syncs through the domain's service account if \
             there is one, or connects again"
        } else {
            "the user has no connection of its own now; it syncs through the domain's service account if \
             there is one, or connects again"
        },
    })))
}

#[derive(Debug, Default, Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// A callback failure: the status and what to tell the user.
struct Failure(StatusCode, String);

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure(e.status, e.message)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

const RESTART: &str =
    "ask the administrator for a new Connect link (POST /api/v1/users/{id}/google/oauth/start)";

async fn complete(st: &AppState, q: CallbackQuery) -> Result<User, Failure> {
    let state = q.state.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
        Failure(
            StatusCode::BAD_REQUEST,
            format!(
                "the request has no state parameter, so it cannot be matched to a user; {RESTART}"
            ),
        )
    })?;
    let now = st.now();
    let taken = st
        .write_async(move |c| connections::take_oauth_state(c, &state, now))
        .await?;
    let user = match taken {
        OAuthStateCheck::Valid(user) => user,
        OAuthStateCheck::Expired(_) => {
            return Err(Failure(
                StatusCode::BAD_REQUEST,
                format!(
                    "this authorization link has expired (links work for {OAUTH_STATE_LIFETIME_MINUTES} minutes); {RESTART}"
                ),
            ))
        }
        OAuthStateCheck::Unknown => {
            return Err(Failure(
                StatusCode::BAD_REQUEST,
                format!("this authorization link is unknown or was already used; {RESTART}"),
            ))
        }
    };
    if let Some(err) = q.error {
        let detail = q
            .error_description
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        return Err(Failure(
            StatusCode::BAD_REQUEST,
            format!("Google did not grant access ({err}{detail}); {RESTART} and accept the requested permissions"),
        ));
    }
    let code = q.code.filter(|c| !c.trim().is_empty()).ok_or_else(|| {
        Failure(
            StatusCode::BAD_REQUEST,
            format!("Google sent no authorization code; {RESTART}"),
        )
    })?;
    let (u, client, secret) = st
        .run(move |s| {
            s.read(|c| {
                let u = users::get_user(c, user)?;
                let client: Option<OAuthClient> =
                    app_settings::get_setting(c, OAUTH_CLIENT_SETTING)?;
                let secret = app_settings::get_secret_setting(s, c, OAUTH_SECRET_SETTING)?;
                Ok((u, client, secret))
            })
        })
        .await?;
    let (Some(client), Some(secret)) = (client, secret) else {
        return Err(Failure(
            StatusCode::CONFLICT,
            "the OAuth client was removed; set it again with PUT /api/v1/google/oauth-client"
                .into(),
        ));
    };
    let grant = oauth::exchange_code(
        &st.google,
        &client.client_id,
        &secret,
        &code,
        &client.redirect_uri,
    )
    .await
    .map_err(|e| {
        let status = if e.kind == ErrorKind::Auth {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::BAD_GATEWAY
        };
        tracing::warn!(user = %u.id, error = %e, "OAuth code exchange failed");
        Failure(status, format!("Google refused the authorization: {e}"))
    })?;
    // The consent must come from the user's own Google account: a link completed by someone
    // else would sync the user's private contacts into that person's account.
    let account = grant.consenting_account(&client.client_id).map_err(|e| {
        tracing::warn!(user = %u.id, error = %e, "OAuth consent without a usable identity");
        Failure(
            StatusCode::BAD_REQUEST,
            format!("the Google account that consented cannot be told: {e}; nothing was stored"),
        )
    })?;
    if account.email != normalize_email(&u.google_alias) {
        tracing::warn!(user = %u.id, "OAuth consent by another Google account refused");
        return Err(Failure(
            StatusCode::FORBIDDEN,
            format!(
                "you signed in to Google as {}, but this link connects {}'s Google account {}; nothing \
                 was stored. Sign in to Google as {} and {}, or have the administrator change {}'s \
                 Google alias (PATCH /api/v1/users/{})",
                account.email,
                u.email,
                u.google_alias,
                u.google_alias,
                RESTART.trim_start_matches("ask "),
                u.email,
                u.id
            ),
        ));
    }
    let (now, id) = (st.now(), u.id);
    st.run(move |s| {
        s.write(|c| connections::put_refresh_token(s, c, id, &grant.refresh_token, now))
    })
    .await?;
    tracing::info!(user = %u.id, "Google account connected with OAuth");
    Ok(u)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, message: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>crmsync: {t}</title>\
         <link rel=\"stylesheet\" href=\"/app.css\"></head>\
         <body class=\"callback\"><h1>{t}</h1><p>{m}</p></body></html>",
        t = escape(title),
        m = escape(message)
    )
}

/// `GET /oauth/callback?code=&state=`: exchanges the code, stores the refresh token (encrypted)
/// and answers a page (or JSON when asked with `Accept: application/json`) either way.
pub async fn oauth_callback(
    State(st): State<AppState>,
    headers: HeaderMap,
    query: Result<ApiQuery<CallbackQuery>, ApiError>,
) -> Response {
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let result = match query {
        Ok(ApiQuery(q)) => complete(&st, q).await,
        Err(e) => Err(e.into()),
    };
    match (result, wants_json) {
        (Ok(u), true) => Json(json!({"connected": true, "user_id": u.id, "google_account": u.google_alias}))
            .into_response(),
        (Ok(u), false) => Html(page(
            "Google account connected",
            &format!(
                "{} is connected to crmsync; contacts and calendar sync with it from now on. You can close this page.",
                u.google_alias
            ),
        ))
        .into_response(),
        (Err(Failure(status, message)), true) => {
            (status, Json(json!({"error": {"code": "oauth_failed", "message": message}}))).into_response()
        }
        (Err(Failure(status, message)), false) => {
            (status, Html(page("Google account not connected", &message))).into_response()
        }
    }
}
