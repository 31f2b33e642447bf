//! The REST API (SPEC 6.2) under `/api/v1`: one router for `serve` and for the tests, built by
//! [`router`] from an [`AppState`] (the store, the clock, where Google is, and the in-process
//! scheduler to wake). Every route needs an admin bearer token, except `/oauth/callback` (the
//! browser's return from Google's consent screen, checked by its one-time `state`); every error
//! is JSON `{"error": {"code", "message"}}`. Handlers are thin: validate, then one store call on
//! the blocking pool.

pub mod activities;
pub mod auth;
pub mod contacts;
pub mod error;
pub mod extract;
pub mod google;
pub mod page;
pub mod sync;
pub mod sync_settings;
pub mod tags;
pub mod users;
pub mod validate;

use crate::clock::SharedClock;
use crate::scheduler::SchedulerHandle;
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use chrono::{DateTime, Utc};
use crmsync_connectors::GoogleEndpoints;
use crmsync_schema::{Store, StoreResult};
use error::ApiError;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

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
        }
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
}

/// The `/api/v1` routes (with authentication), without the outer layers.
pub fn api_routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/users", get(users::list).post(users::create))
        .route("/users/{id}", get(users::get_one).patch(users::update))
        .route("/users/{id}/sync-settings", get(sync_settings::list))
        .route(
            "/users/{id}/sync-settings/{kind}",
            get(sync_settings::get_one).put(sync_settings::put_one),
        )
        .route("/users/{id}/sync/{kind}", post(sync::start))
        .route("/users/{id}/sync-status", get(sync::status))
        .route("/sync-status", get(sync::fleet_status))
        .route("/users/{id}/google/oauth/start", post(google::oauth_start))
        .route(
            "/users/{id}/google/connection",
            axum::routing::delete(google::reset_connection),
        )
        .route("/sync-runs", get(sync::history))
        .route("/sync-runs/{id}", get(sync::run_detail))
        .route("/journal", get(sync::journal))
        .route("/google/service-account", put(google::put_service_account))
        .route("/google/oauth-client", put(google::put_oauth_client))
        .route("/tags", get(tags::list).post(tags::create))
        .route("/tags/{id}", get(tags::get_one).delete(tags::delete))
        .route("/contacts", get(contacts::list).post(contacts::create))
        .route(
            "/contacts/{id}",
            get(contacts::get_one)
                .patch(contacts::update)
                .delete(contacts::delete),
        )
        .route(
            "/contacts/{id}/tags/{tag_id}",
            put(contacts::tag).delete(contacts::untag),
        )
        .route(
            "/activities",
            get(activities::list).post(activities::create),
        )
        .route(
            "/activities/{id}",
            get(activities::get_one)
                .patch(activities::update)
                .delete(activities::delete),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state,
            auth::require_token,
        ))
}

/// The whole application: `/api/v1` plus body limit, panic catcher and request tracing.
pub fn router(state: AppState) -> Router {
    Router::new()
        .nest("/api/v1", api_routes(state.clone()))
        // The browser comes back here from Google's consent screen: no bearer token.
        .route("/oauth/callback", get(google::oauth_callback))
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
