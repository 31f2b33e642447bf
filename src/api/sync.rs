//! Sync routes that answer 501 until the sync executor lands: start a run, run detail, and the
//! per-user sync status.

use super::error::{ApiError, ApiResult};
use super::extract::ApiPath;
use axum::response::Response;
use crmsync_engine::ids::{RunId, UserId};

fn pending() -> ApiError {
    ApiError::not_implemented("synchronization is not available in this build yet")
}

/// `POST /users/{id}/sync/{kind}`.
pub async fn start(ApiPath((_user, _kind)): ApiPath<(UserId, String)>) -> ApiResult<Response> {
    Err(pending())
}

/// `GET /users/{id}/sync-status`.
pub async fn status(ApiPath(_user): ApiPath<UserId>) -> ApiResult<Response> {
    Err(pending())
}

/// `GET /sync-runs/{id}`.
pub async fn run_detail(ApiPath(_run): ApiPath<RunId>) -> ApiResult<Response> {
    Err(pending())
}
