//! Bearer-token authentication for every API route: the token from `Authorization: Bearer …` must
//! be a live admin token (`crmsync admin-token create`). Otherwise 401 with a JSON error.

use super::error::ApiError;
use super::AppState;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use crmsync_schema::admin_tokens;

/// Middleware: lets the request through only with a valid admin token.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_string());
    let Some(token) = token else {
        return ApiError::unauthorized().into_response();
    };
    let now = state.now();
    let verified = state
        .run(move |s| {
            let found = s.read(|c| admin_tokens::verify_admin_token(c, &token))?;
            if let Some(t) = &found {
                if t.last_used_at
                    .is_none_or(|u| now - u > Duration::minutes(1))
                {
                    if let Err(e) = s.write(|c| admin_tokens::touch_admin_token(c, t.id, now)) {
                        tracing::warn!(error = %e, "could not record the use of an admin token");
                    }
                }
            }
            Ok(found.is_some())
        })
        .await;
    match verified {
        Ok(true) => next.run(req).await,
        Ok(false) => ApiError::unauthorized().into_response(),
        Err(e) => e.into_response(),
    }
}
