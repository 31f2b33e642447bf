//! Operations routes outside `/api/v1`, without a token (SPEC 6.2), none revealing personal
//! data: `GET /healthz` (the process answers), `GET /readyz` (the database is reachable and
//! every migration is applied; 503 with a JSON reason otherwise) and `GET /metrics` (the
//! Prometheus text format, see [`crate::telemetry`]; the overdue jobs and the webhook outbox
//! are counted in the database at scrape time).

use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use crmsync_schema::{jobs, DbKind};
use serde_json::json;
use std::time::Duration;

/// How long `/readyz` waits for the database before answering 503.
pub const READY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `/metrics` waits for the overdue-jobs count before rendering without it.
const OVERDUE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: 200 whenever the process answers.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: 200 when the database answers and no migration is pending; 503 with
/// `{"status": "not_ready", "reason": "..."}` otherwise (for load balancers and orchestrators).
pub async fn readyz(State(st): State<AppState>) -> Response {
    match readiness(&st).await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not_ready", "reason": reason})),
            )
                .into_response()
        }
    }
}

async fn readiness(st: &AppState) -> Result<(), String> {
    if st.store.kind() == DbKind::Sqlite && !st.store.database_file_exists() {
        return Err(
            "the SQLite database file was removed while the server runs; restore it and restart"
                .into(),
        );
    }
    let store = st.store.clone();
    let status = tokio::time::timeout(
        READY_TIMEOUT + Duration::from_secs(1),
        store.run(|s| s.migration_status_within(READY_TIMEOUT)),
    )
    .await
    .map_err(|_| {
        format!(
            "the database did not answer within {} seconds",
            READY_TIMEOUT.as_secs()
        )
    })?
    .map_err(|e| {
        tracing::warn!(error = %e, "readiness check: database error");
        "the database is unreachable".to_string()
    })?;
    if !status.pending.is_empty() {
        return Err(format!(
            "{} database migration(s) pending; run `crmsync migrate` (or restart `crmsync serve`, \
             which applies them)",
            status.pending.len()
        ));
    }
    Ok(())
}

/// `GET /metrics`: the Prometheus text format. The overdue-jobs gauges are read from the job
/// table first (left as they were when the database does not answer quickly).
pub async fn metrics(State(st): State<AppState>) -> Response {
    let now = st.now();
    let store = st.store.clone();
    let counted = tokio::time::timeout(
        OVERDUE_TIMEOUT,
        store.read_async(move |c| jobs::overdue(c, now)),
    )
    .await;
    match counted {
        Ok(Ok(o)) => {
            crate::telemetry::set_overdue(o.scheduled, o.manual, o.oldest.map(|t| now - t))
        }
        Ok(Err(e)) => tracing::debug!(error = %e, "metrics: cannot count overdue jobs"),
        Err(_) => tracing::debug!("metrics: counting overdue jobs timed out"),
    }
    let store = st.store.clone();
    let outbox = tokio::time::timeout(
        OVERDUE_TIMEOUT,
        store.read_async(crmsync_schema::webhooks::outbox_counts),
    )
    .await;
    match outbox {
        Ok(Ok((pending, failed))) => crate::telemetry::set_webhook_deliveries(pending, failed),
        Ok(Err(e)) => tracing::debug!(error = %e, "metrics: cannot count webhook deliveries"),
        Err(_) => tracing::debug!("metrics: counting webhook deliveries timed out"),
    }
    let store = st.store.clone();
    let channels = tokio::time::timeout(
        OVERDUE_TIMEOUT,
        store.read_async(move |c| crmsync_schema::channels::channel_counts(c, now)),
    )
    .await;
    match channels {
        Ok(Ok((live, failed))) => crate::telemetry::set_push_channels(live, failed),
        Ok(Err(e)) => tracing::debug!(error = %e, "metrics: cannot count watch channels"),
        Err(_) => tracing::debug!("metrics: counting watch channels timed out"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render(),
    )
        .into_response()
}
