//! `/webhooks` (SPEC 6.4): subscribe an endpoint to events (`POST`, answering the signing secret
//! once), list and read subscriptions with the state of their deliveries, unsubscribe
//! (`DELETE`, the outbox of the endpoint goes with it), page through an endpoint's deliveries
//! with every attempt, and retry a delivery by hand. Delivery itself is [`crate::webhooks`].
//!
//! Bad input (a URL that is not http(s) or carries credentials, unknown event types, an empty
//! list of them, a malformed secret) is refused with 422 before anything is written. Storing the
//! secret needs `CRMSYNC_SECRET_KEY` (503 `secret_key` without it).

use super::error::{ApiError, ApiResult};
use super::extract::{non_null, ApiPath, ApiQuery, JsonBody};
use super::page::{self, Page};
use super::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use crmsync_schema::webhooks::{
    self as store, Attempt, Delivery, DeliveryId, DeliveryState, Failure, NewWebhook, WebhookId,
    WebhookStatus,
};
use crmsync_schema::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The event types, as the document names them.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEventType)]
#[allow(dead_code)]
pub enum EventTypeDoc {
    #[serde(rename = "contact.created")]
    ContactCreated,
    #[serde(rename = "contact.updated")]
    ContactUpdated,
    #[serde(rename = "contact.deleted")]
    ContactDeleted,
    #[serde(rename = "contact.tagged")]
    ContactTagged,
    #[serde(rename = "contact.untagged")]
    ContactUntagged,
    #[serde(rename = "activity.created")]
    ActivityCreated,
    #[serde(rename = "activity.updated")]
    ActivityUpdated,
    #[serde(rename = "activity.deleted")]
    ActivityDeleted,
    #[serde(rename = "sync_run.finished")]
    SyncRunFinished,
    #[serde(rename = "connection.auth_error")]
    ConnectionAuthError,
    #[serde(rename = "sync_run.blocked")]
    SyncRunBlocked,
}

/// A new subscription.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// The endpoint: an absolute `http` or `https` URL without user name, password or fragment.
    #[schema(
        pattern = r"^https?://\S+$",
        max_length = 2048,
        example = "https://crm.example.com/hooks/crmsync"
    )]
    url: String,
    /// The events to deliver (default: every event type); at least one.
    #[serde(default, deserialize_with = "non_null")]
    #[schema(value_type = Option<Vec<EventTypeDoc>>, min_items = 1, nullable = false)]
    event_types: Option<Vec<String>>,
    /// The signing secret: `whsec_` and the base64 of 24 to 64 bytes (default: a new one, of 32
    /// random bytes).
    #[serde(default, deserialize_with = "non_null")]
    #[schema(value_type = Option<String>, nullable = false, pattern = r"^whsec_[A-Za-z0-9+/]{32,88}={0,2}$", example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    secret: Option<String>,
}

/// A subscription just made: the only answer that shows its signing secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[schema(value_type = uuid::Uuid)]
    pub id: WebhookId,
    pub url: String,
    #[schema(value_type = Vec<EventTypeDoc>)]
    pub event_types: Vec<String>,
    /// The signing secret (`whsec_…`): keep it to verify `webhook-signature`; it is not shown
    /// again.
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

/// A failed attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookFailure {
    #[schema(value_type = String, example = "msg_0f8e2b6c1d3a4e5f8a9b0c1d2e3f4a5b")]
    pub delivery_id: DeliveryId,
    #[schema(value_type = EventTypeDoc)]
    pub event_type: String,
    pub at: DateTime<Utc>,
    /// The endpoint's HTTP status; `null` when it did not answer (timeout, no connection).
    #[schema(format = Int32)]
    pub status_code: Option<i32>,
    pub error: String,
}

impl From<Failure> for WebhookFailure {
    fn from(f: Failure) -> Self {
        WebhookFailure {
            delivery_id: f.delivery_id,
            event_type: f.event_type,
            at: f.at,
            status_code: f.status,
            error: f.error,
        }
    }
}

/// Health of a subscription's deliveries.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookHealth {
    /// No delivery waits after a failure.
    Healthy,
    /// Deliveries failed and wait for their retry.
    Retrying,
    /// Deliveries used up their retries and wait for an admin (retry them once the endpoint
    /// works).
    Failing,
}

/// A subscription and the state of its deliveries (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    #[schema(value_type = uuid::Uuid)]
    pub id: WebhookId,
    pub url: String,
    #[schema(value_type = Vec<EventTypeDoc>)]
    pub event_types: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub health: WebhookHealth,
    /// Deliveries waiting for their first attempt or a retry.
    #[schema(format = Int64)]
    pub pending_deliveries: i64,
    /// Deliveries whose every retry failed.
    #[schema(format = Int64)]
    pub failed_deliveries: i64,
    /// The latest failed attempt among the deliveries not delivered yet; `null` when none.
    pub last_failure: Option<WebhookFailure>,
}

impl From<WebhookStatus> for WebhookView {
    fn from(s: WebhookStatus) -> Self {
        let health = match s.health() {
            "failing" => WebhookHealth::Failing,
            "retrying" => WebhookHealth::Retrying,
            _ => WebhookHealth::Healthy,
        };
        WebhookView {
            id: s.webhook.id,
            url: s.webhook.url,
            event_types: s.webhook.event_types,
            created_at: s.webhook.created_at,
            health,
            pending_deliveries: s.pending,
            failed_deliveries: s.failed,
            last_failure: s.last_failure.map(WebhookFailure::from),
        }
    }
}

/// Where a delivery stands.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStateView {
    /// Waiting for its first attempt or a retry (`next_attempt_at`).
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every retry failed; `POST …/retry` sends it again.
    Failed,
}

/// One attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// 1 for the first.
    #[schema(format = Int32)]
    pub attempt: i32,
    pub at: DateTime<Utc>,
    /// The endpoint's HTTP status; `null` when it did not answer.
    #[schema(format = Int32)]
    pub status_code: Option<i32>,
    /// What went wrong; `null` when delivered.
    pub error: Option<String>,
    #[schema(format = Int64)]
    pub duration_ms: i64,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        AttemptView {
            attempt: a.attempt,
            at: a.at,
            status_code: a.status,
            error: a.error,
            duration_ms: a.duration_ms,
        }
    }
}

/// One delivery of an event to an endpoint (its `id` is the `webhook-id` header).
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    #[schema(value_type = String, example = "msg_0f8e2b6c1d3a4e5f8a9b0c1d2e3f4a5b")]
    pub id: DeliveryId,
    #[schema(value_type = uuid::Uuid)]
    pub webhook_id: WebhookId,
    #[schema(value_type = EventTypeDoc)]
    pub event_type: String,
    pub state: DeliveryStateView,
    /// How many attempts were made.
    #[schema(format = Int32)]
    pub attempt_count: i32,
    /// When the next attempt is due (pending deliveries); `null` otherwise.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last attempt; `null` before the first or without an answer.
    #[schema(format = Int32)]
    pub last_status_code: Option<i32>,
    /// What went wrong in the last attempt; `null` when it was delivered or not tried yet.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it was delivered or failed for good; `null` while pending.
    pub finished_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first.
    pub attempts: Vec<AttemptView>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        DeliveryView {
            id: d.id,
            webhook_id: d.webhook_id,
            event_type: d.event_type,
            state: match d.state {
                DeliveryState::Pending => DeliveryStateView::Pending,
                DeliveryState::Delivered => DeliveryStateView::Delivered,
                DeliveryState::Failed => DeliveryStateView::Failed,
            },
            attempt_count: d.attempt_count,
            next_attempt_at: d.next_attempt_at,
            last_status_code: d.last_status,
            last_error: d.last_error,
            created_at: d.created_at,
            finished_at: d.finished_at,
            attempts: d.attempts.into_iter().map(AttemptView::from).collect(),
        }
    }
}

/// A page of subscriptions, by id.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct WebhookPage {
    pub items: Vec<WebhookView>,
    /// Continues the list (pass it as `cursor`); `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A page of an endpoint's deliveries, newest first.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryView>,
    /// Continues the list (pass it as `cursor`); `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `POST /webhooks`: checks the input, stores the subscription with its secret encrypted.
#[utoipa::path(
    post, path = "/webhooks", tag = "webhooks",
    operation_id = "webhooks_create",
    summary = "Subscribe an endpoint to events",
    description = "Deliveries are POSTs of `{type, timestamp, data}` signed as Standard Webhooks \
                   says (`webhook-id`, `webhook-timestamp`, `webhook-signature`). Events of the \
                   CRM's own API writes are never delivered. The answer is the only one that \
                   shows the secret.",
    request_body = CreateWebhook,
    responses(
        (status = 201, description = "subscribed; keep the secret", body = CreatedWebhook),
        (status = 422, description = "the URL is not http(s) or carries credentials, an event type is unknown, `event_types` is empty, or the secret is malformed (`validation_failed`); or the body is not the object described (`invalid_body`)", body = super::openapi::ErrorBody),
        (status = 503, description = "no secret key is configured to store the secret (`secret_key`: set CRMSYNC_SECRET_KEY), or the database is unavailable (`database_unavailable`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn create(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    let url = store::check_url(&body.url).map_err(ApiError::invalid)?;
    let event_types =
        store::check_event_types(body.event_types.as_deref()).map_err(ApiError::invalid)?;
    let secret = match body.secret {
        Some(s) => {
            store::check_secret(&s).map_err(ApiError::invalid)?;
            s
        }
        None => store::generate_secret(),
    };
    let new = NewWebhook {
        url,
        event_types,
        secret: secret.clone(),
    };
    let now = st.now();
    let hook = st
        .run(move |s| s.write(|c| store::create_webhook(s, c, &new, now)))
        .await?;
    tracing::info!(webhook = %hook.id, event_types = ?hook.event_types, "webhook subscribed");
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            id: hook.id,
            url: hook.url,
            event_types: hook.event_types,
            secret,
            created_at: hook.created_at,
        }),
    ))
}

/// `GET /webhooks`.
#[utoipa::path(
    get, path = "/webhooks", tag = "webhooks",
    operation_id = "webhooks_list",
    summary = "List subscriptions with the state of their deliveries",
    params(super::openapi::PageParams),
    responses((status = 200, description = "a page of subscriptions, by id (never their secrets)", body = WebhookPage))
)]
pub async fn list(
    State(st): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<WebhookView>>> {
    let limit = page::limit(q.limit)?;
    let after = page::cursor::<WebhookId>(q.cursor.as_deref())?;
    let hooks = st
        .read_async(move |c| store::list_webhooks(c, after, limit))
        .await?;
    let items: Vec<WebhookView> = hooks.into_iter().map(WebhookView::from).collect();
    Ok(Json(Page::new(items, limit, |h| h.id.to_string())))
}

/// `GET /webhooks/{id}`.
#[utoipa::path(
    get, path = "/webhooks/{id}", tag = "webhooks",
    operation_id = "webhooks_get_one",
    summary = "Read a subscription with the state of its deliveries",
    params(("id" = uuid::Uuid, Path, description = "the webhook's id")),
    responses(
        (status = 200, description = "the subscription (never its secret)", body = WebhookView),
        (status = 404, description = "no such webhook (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn get_one(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<WebhookId>,
) -> ApiResult<Json<WebhookView>> {
    let hook = st.read_async(move |c| store::get_webhook(c, id)).await?;
    Ok(Json(hook.into()))
}

/// `DELETE /webhooks/{id}`.
#[utoipa::path(
    delete, path = "/webhooks/{id}", tag = "webhooks",
    operation_id = "webhooks_delete",
    summary = "Unsubscribe (the endpoint's deliveries are deleted with it)",
    params(("id" = uuid::Uuid, Path, description = "the webhook's id")),
    responses(
        (status = 204, description = "deleted, with every delivery of it"),
        (status = 404, description = "no such webhook (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn delete(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<WebhookId>,
) -> ApiResult<StatusCode> {
    st.write_async(move |c| store::delete_webhook(c, id))
        .await?;
    tracing::info!(webhook = %id, "webhook deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /webhooks/{id}/deliveries`.
#[utoipa::path(
    get, path = "/webhooks/{id}/deliveries", tag = "webhooks",
    operation_id = "webhooks_deliveries",
    summary = "An endpoint's deliveries with their attempts, newest first",
    params(
        ("id" = uuid::Uuid, Path, description = "the webhook's id"),
        super::openapi::PageParams,
    ),
    responses(
        (status = 200, description = "a page of deliveries, newest first", body = DeliveryPage),
        (status = 400, description = "a malformed id, limit or cursor (`invalid_path`, `bad_request`)", body = super::openapi::ErrorBody),
        (status = 404, description = "no such webhook (`not_found`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn deliveries(
    State(st): State<AppState>,
    ApiPath(id): ApiPath<WebhookId>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Page<DeliveryView>>> {
    let limit = page::limit(q.limit)?;
    let before = page::cursor::<DeliveryId>(q.cursor.as_deref())?;
    let found = st
        .store
        .read_async(move |c| store::list_deliveries(c, id, before.as_ref(), limit))
        .await;
    let items = match found {
        Ok(d) => d,
        // A cursor that is not one of this endpoint's deliveries.
        Err(StoreError::Invalid(m)) => return Err(ApiError::bad_request(m)),
        Err(e) => return Err(e.into()),
    };
    let items: Vec<DeliveryView> = items.into_iter().map(DeliveryView::from).collect();
    Ok(Json(Page::new(items, limit, |d| d.id.to_string())))
}

/// `POST /webhooks/{id}/deliveries/{delivery_id}/retry`.
#[utoipa::path(
    post, path = "/webhooks/{id}/deliveries/{delivery_id}/retry", tag = "webhooks",
    operation_id = "webhooks_retry_delivery",
    summary = "Send a delivery again now",
    description = "A failed delivery gets one more attempt, a delivered one is sent again, a \
                   pending one is sent without waiting for its retry time.",
    params(
        ("id" = uuid::Uuid, Path, description = "the webhook's id"),
        ("delivery_id" = String, Path, description = "the delivery's id (`msg_` and 32 hex digits)", pattern = "^msg_[0-9a-f]{32}$"),
    ),
    responses(
        (status = 202, description = "due now; the delivery as it stands", body = DeliveryView),
        (status = 404, description = "no such webhook or delivery (`not_found`)", body = super::openapi::ErrorBody),
        (status = 409, description = "the delivery is being sent right now (`conflict`)", body = super::openapi::ErrorBody),
    )
)]
pub async fn retry(
    State(st): State<AppState>,
    ApiPath((id, delivery)): ApiPath<(WebhookId, DeliveryId)>,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    let now = st.now();
    let d = st
        .write_async(move |c| store::retry_delivery(c, id, &delivery, now))
        .await?;
    tracing::info!(webhook = %id, delivery = %d.id, "webhook delivery retried by an admin");
    Ok((StatusCode::ACCEPTED, Json(d.into())))
}
