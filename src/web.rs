//! The web admin page: one static page (embedded in the binary) that shows each user's Google
//! connection and sync status per kind, the recent runs, and a "Start synchronization" button. It
//! talks to the REST API with the admin token the admin pastes (kept in the browser's local
//! storage); the page itself holds no data and needs no token to load.

use axum::http::header;
use axum::response::{Html, IntoResponse};

const INDEX: &str = include_str!("web/index.html");

/// `GET /`: the admin page.
pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::HeaderName::from_static("content-security-policy"),
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        Html(INDEX),
    )
}
