//! The REST API (SPEC 6.2) under `/api/v1`: one router for `serve` and for the tests, built by
//! [`router`] from an [`AppState`] (the store, the clock, where Google is, and the in-process
//! scheduler to wake). Every route needs an admin bearer token, except `/oauth/callback` (the
//! browser's return from Google's consent screen, checked by its one-time `state`) and the
//! operations routes `/healthz`, `/readyz` and `/metrics` ([`ops`]); every error is JSON
//! `{"error": {"code", "message"}}`. Handlers are thin: validate, then one store call on the
//! blocking pool.
//!
//! The `/api/v1` routes are registered from their `#[utoipa::path]` annotations
//! ([`documented_routes`]), which also make the OpenAPI 3.1 document served at
//! `GET /api/v1/openapi.json` ([`openapi`]).

pub mod activities;
pub mod admin;
pub mod auth;
pub mod changes;
pub mod contacts;
pub mod error;
pub mod extract;
pub mod google;
pub mod notifications;
pub mod openapi;
pub mod ops;
pub mod page;
pub mod sync;
pub mod sync_settings;
pub mod tags;
pub mod upsert;
pub mod users;
pub mod validate;
pub mod versions;
pub mod webhooks;

use crate::clock::SharedClock;
use crate::scheduler::SchedulerHandle;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use crmsync_connectors::GoogleEndpoints;
use crmsync_schema::{Store, StoreResult};
use error::ApiError;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The largest batch request body (1,000 items).
pub const MAX_BATCH_BODY_BYTES: usize = 16 * 1024 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: SharedClock,
    /// Where Google is (for the OAuth consent URL and the code exchange).
    pub google: GoogleEndpoints,
    /// The scheduler of this process, woken by manual starts (`None`: workers elsewhere pick
    /// the runs up at their next tick).
    pub scheduler: Option<SchedulerHandle>,
    /// How long `POST /users/{id}/sync/{kind}?wait=true` waits for the run at most.
    pub wait_limit: std::time::Duration,
    /// The engine of this process's scheduler, for the routes that plan without running (a
    /// reset's preview); `None`: one is made from [`AppState::google`] with the default policy.
    pub engine: Option<crate::sync::SyncEngine>,
}

impl AppState {
    /// A state talking to Google itself, with no scheduler in the process.
    pub fn new(store: Store, clock: SharedClock) -> Self {
        Self {
            store,
            clock,
            google: GoogleEndpoints::google(),
            scheduler: None,
            wait_limit: std::time::Duration::from_secs(600),
            engine: None,
        }
    }

    /// The same state with the engine its scheduler runs (its policy and its Google accounts).
    pub fn with_engine(mut self, engine: crate::sync::SyncEngine) -> Self {
        self.engine = Some(engine);
        self
    }

    /// The engine to plan with: the scheduler's, else one talking to [`AppState::google`].
    pub fn sync_engine(&self) -> crate::sync::SyncEngine {
        self.engine.clone().unwrap_or_else(|| {
            crate::app::engine_at(
                &self.store,
                self.clock.clone(),
                self.google.clone(),
                crmsync_connectors::SendUpdates::None,
                crate::sync::SyncConfig::default(),
            )
        })
    }

    /// The same state with Google at `endpoints` (an emulator).
    pub fn with_google(mut self, endpoints: GoogleEndpoints) -> Self {
        self.google = endpoints;
        self
    }

    /// The same state with the in-process scheduler to wake on manual starts.
    pub fn with_scheduler(mut self, handle: SchedulerHandle) -> Self {
        self.scheduler = Some(handle);
        self
    }

    /// The same state with another limit for `?wait=true`.
    pub fn with_wait_limit(mut self, limit: std::time::Duration) -> Self {
        self.wait_limit = limit;
        self
    }

    /// The current time from the state's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Runs a blocking store closure on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> StoreResult<T> + Send + 'static,
    {
        Ok(self.store.run(f).await?)
    }

    /// A read transaction on the blocking pool.
    pub async fn read_async<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut crmsync_schema::AnyConnection) -> StoreResult<T> + Send + 'static,
    {
        Ok(self.store.read_async(f).await?)
    }

    /// A write transaction on the blocking pool. The scheduler in this process is woken after
    /// it, so a push run the write requested is timed at once (SPEC 5).
    pub async fn write_async<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut crmsync_schema::AnyConnection) -> StoreResult<T> + Send + 'static,
    {
        let out = self.store.write_async(f).await?;
        if let Some(s) = &self.scheduler {
            s.wake();
        }
        Ok(out)
    }
}

/// Every `/api/v1` route, as (method, path under `/api/v1`): what the router serves and the
/// OpenAPI document describes (a test holds both to this list).
pub const API_ROUTES: &[(&str, &str)] = &[
    ("GET", "/users"),
    ("POST", "/users"),
    ("GET", "/users/{id}"),
    ("PATCH", "/users/{id}"),
    ("PUT", "/users/by-external-id/{external_id}"),
    ("GET", "/users/by-external-id/{external_id}"),
    ("GET", "/users/{id}/sync-settings"),
    ("GET", "/users/{id}/sync-settings/{kind}"),
    ("PUT", "/users/{id}/sync-settings/{kind}"),
    ("POST", "/users/{id}/sync/{kind}"),
    ("GET", "/users/{id}/sync-status"),
    ("GET", "/sync-status"),
    ("POST", "/users/{id}/google/oauth/start"),
    ("DELETE", "/users/{id}/google/connection"),
    ("GET", "/sync-runs"),
    ("GET", "/sync-runs/{id}"),
    ("GET", "/journal"),
    ("PUT", "/google/service-account"),
    ("PUT", "/google/oauth-client"),
    ("GET", "/tags"),
    ("POST", "/tags"),
    ("GET", "/tags/{id}"),
    ("DELETE", "/tags/{id}"),
    ("PUT", "/tags/by-external-id/{external_id}"),
    ("GET", "/tags/by-external-id/{external_id}"),
    ("DELETE", "/tags/by-external-id/{external_id}"),
    ("GET", "/contacts"),
    ("POST", "/contacts"),
    ("GET", "/contacts/{id}"),
    ("PATCH", "/contacts/{id}"),
    ("DELETE", "/contacts/{id}"),
    ("PUT", "/contacts/{id}/tags/{tag_id}"),
    ("DELETE", "/contacts/{id}/tags/{tag_id}"),
    ("PUT", "/contacts/by-external-id/{external_id}"),
    ("GET", "/contacts/by-external-id/{external_id}"),
    ("DELETE", "/contacts/by-external-id/{external_id}"),
    ("POST", "/contacts/batch"),
    ("GET", "/activities"),
    ("POST", "/activities"),
    ("GET", "/activities/{id}"),
    ("PATCH", "/activities/{id}"),
    ("DELETE", "/activities/{id}"),
    ("PUT", "/activities/by-external-id/{external_id}"),
    ("GET", "/activities/by-external-id/{external_id}"),
    ("DELETE", "/activities/by-external-id/{external_id}"),
    ("POST", "/activities/batch"),
    ("GET", "/changes"),
    ("GET", "/changes/head"),
    ("GET", "/openapi.json"),
    ("GET", "/webhooks"),
    ("POST", "/webhooks"),
    ("GET", "/webhooks/{id}"),
    ("DELETE", "/webhooks/{id}"),
    ("GET", "/webhooks/{id}/deliveries"),
    ("POST", "/webhooks/{id}/deliveries/{delivery_id}/retry"),
    ("POST", "/google/service-account/check"),
    ("GET", "/sync-pause"),
    ("PUT", "/sync-pause"),
    ("GET", "/users/{id}/sync-health"),
    ("GET", "/schedule-preview"),
    ("POST", "/users/{id}/sync-reset/{kind}"),
];

/// The `/api/v1` routes with their OpenAPI descriptions (no authentication, no fallbacks).
pub fn documented_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get_one, users::update))
        .routes(routes!(sync_settings::list))
        .routes(routes!(sync_settings::get_one, sync_settings::put_one))
        .routes(routes!(sync::start))
        .routes(routes!(sync::status))
        .routes(routes!(sync::fleet_status))
        .routes(routes!(google::oauth_start))
        .routes(routes!(google::reset_connection))
        .routes(routes!(sync::history))
        .routes(routes!(sync::run_detail))
        .routes(routes!(sync::journal))
        .routes(routes!(google::put_service_account))
        .routes(routes!(google::put_oauth_client))
        .routes(routes!(tags::list, tags::create))
        .routes(routes!(tags::get_one, tags::delete))
        .routes(routes!(contacts::list, contacts::create))
        .routes(routes!(
            contacts::get_one,
            contacts::update,
            contacts::delete
        ))
        .routes(routes!(contacts::tag, contacts::untag))
        .routes(routes!(activities::list, activities::create))
        .routes(routes!(
            activities::get_one,
            activities::update,
            activities::delete
        ))
        .routes(routes!(
            users::put_by_external_id,
            users::get_by_external_id
        ))
        .routes(routes!(
            tags::put_by_external_id,
            tags::get_by_external_id,
            tags::delete_by_external_id
        ))
        .routes(routes!(
            contacts::put_by_external_id,
            contacts::get_by_external_id,
            contacts::delete_by_external_id
        ))
        .routes(routes!(
            activities::put_by_external_id,
            activities::get_by_external_id,
            activities::delete_by_external_id
        ))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(contacts::batch))
                .routes(routes!(activities::batch))
                .layer(DefaultBodyLimit::max(MAX_BATCH_BODY_BYTES)),
        )
        .routes(routes!(changes::list))
        .routes(routes!(changes::head))
        .routes(routes!(openapi_document))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::get_one, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::retry))
        .routes(routes!(admin::check_service_account))
        .routes(routes!(admin::get_pause, admin::put_pause))
        .routes(routes!(admin::health))
        .routes(routes!(admin::schedule_preview))
        .routes(routes!(admin::reset))
}

/// The OpenAPI 3.1 document of every `/api/v1` route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = documented_routes().into_openapi();
    openapi::finish(&mut doc);
    doc
}

static OPENAPI_JSON: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| openapi::to_json(&openapi()).to_string());

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get, path = "/openapi.json", tag = "meta",
    operation_id = "openapi_document",
    summary = "This document (OpenAPI 3.1)",
    responses((status = 200, description = "the OpenAPI 3.1 document of every /api/v1 route", body = Object, content_type = "application/json"))
)]
pub async fn openapi_document() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON.as_str(),
    )
        .into_response()
}

/// The `/api/v1` routes (with authentication), without the outer layers.
pub fn api_routes(state: AppState) -> Router<AppState> {
    let (routes, _) = documented_routes().split_for_parts();
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state,
            auth::require_token,
        ))
}

/// The whole application: `/api/v1` plus body limit, panic catcher and request tracing.
pub fn router(state: AppState) -> Router {
    // The process's metrics recorder, before anything is counted.
    crate::telemetry::handle();
    Router::new()
        .nest("/api/v1", api_routes(state.clone()))
        // Operations: no token, no personal data.
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        // The browser comes back here from Google's consent screen: no bearer token.
        .route("/oauth/callback", get(google::oauth_callback))
        // Google Calendar's watch-channel notifications: each channel's token authenticates.
        .route(
            "/google/notifications",
            axum::routing::post(notifications::google_notification),
        )
        // The admin page (static; it calls the API with the admin's token).
        .route("/", get(crate::web::index))
        .route("/app.js", get(crate::web::script))
        .route("/app.css", get(crate::web::style))
        .fallback(not_found)
        // `POST /` and the like: JSON 405 with the `Allow` header (set after the routes above).
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred; the server log has the details",
                )
                .into_response()
            },
        ))
        .layer(TraceLayer::new_for_http())
        // Every answer (API JSON, errors, the OAuth callback page, 404s, panics) is not cached,
        // not sniffed, leaks no referrer and cannot be framed; routes may set their own values
        // (the admin page sets its own CSP).
        .layer(security_header(header::CACHE_CONTROL, "no-store"))
        .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(security_header(header::REFERRER_POLICY, "no-referrer"))
        .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(security_header(
            header::CONTENT_SECURITY_POLICY,
            DEFAULT_CSP,
        ))
}

/// `/healthz`, `/readyz` and `/metrics` alone (what `crmsync worker --metrics-listen` serves),
/// with the same security headers as [`router`].
pub fn ops_router(state: AppState) -> Router {
    crate::telemetry::handle();
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(TraceLayer::new_for_http())
        .layer(security_header(header::CACHE_CONTROL, "no-store"))
        .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(security_header(header::REFERRER_POLICY, "no-referrer"))
        .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(security_header(
            header::CONTENT_SECURITY_POLICY,
            DEFAULT_CSP,
        ))
}

/// The Content-Security-Policy of every answer that sets none: nothing may load or run but this
/// server's stylesheet (for the OAuth callback page), and nothing may frame it.
pub const DEFAULT_CSP: &str =
    "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn security_header(
    name: header::HeaderName,
    value: &'static str,
) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

async fn not_found() -> Response {
    ApiError::not_found("no such route; the API lives under /api/v1 (see SPEC 6.2)").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this method is not allowed on this route",
    )
    .into_response()
}
