//! The REST API (SPEC 6.2) under `/api/v1`: one router for `serve` and for the tests, built by
//! [`router`] from an [`AppState`] (the store and the clock). Every route needs an admin bearer
//! token; every error is JSON `{"error": {"code", "message"}}`. Handlers are thin: validate,
//! then one store call on the blocking pool.

pub mod activities;
pub mod auth;
pub mod contacts;
pub mod error;
pub mod extract;
pub mod page;
pub mod sync;
pub mod sync_settings;
pub mod tags;
pub mod users;
pub mod validate;

use crate::clock::SharedClock;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use chrono::{DateTime, Utc};
use crmsync_schema::{Store, StoreResult};
use error::ApiError;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: SharedClock,
}

impl AppState {
    pub fn new(store: Store, clock: SharedClock) -> Self {
        Self { store, clock }
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
        .route("/sync-runs/{id}", get(sync::run_detail))
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
        .fallback(not_found)
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
