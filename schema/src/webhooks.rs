//! Webhook subscriptions and their durable outbox (SPEC 6.4). An event is put in the outbox
//! ([`enqueue`]) in the transaction of the change it tells of, one delivery row per subscribed
//! endpoint, with its body already written: the body a receiver verifies is the one stored, and a
//! crash between the change and the delivery loses nothing.
//!
//! Subscriptions ([`create_webhook`], [`list_webhooks`], [`delete_webhook`]) keep their signing
//! secret encrypted with the store's [`crate::secrets::SecretBox`], bound to the webhook's row.
//!
//! Delivery: a worker takes due deliveries of one endpoint under a lease
//! ([`claim_due_for_webhook`]: `FOR UPDATE SKIP LOCKED` on PostgreSQL, the exclusive write
//! transaction on SQLite, as [`crate::jobs`] claims sync jobs), so two processes never send one
//! delivery at once; it records each attempt ([`record_attempt`]), which renews the leases of the
//! deliveries it still holds. A failed attempt is retried after the next delay of the retry
//! schedule; once the schedule is used up the delivery is `failed` until an admin retries it
//! ([`retry_delivery`]). A worker that dies leaves its leases to expire; the next claimer sends
//! those deliveries again (delivery is at least once).

use crate::db::{require_transaction, AnyConnection, Store};
use crate::error::{StoreError, StoreResult};
use crate::schema::{webhook_attempts, webhook_deliveries, webhooks};
use crate::util::{from_db_time, next_change_seq, parse_col, to_db_time};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use diesel::prelude::*;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// Every event type a subscription may name.
pub const EVENT_TYPES: &[&str] = &[
    "contact.created",
    "contact.updated",
    "contact.deleted",
    "contact.tagged",
    "contact.untagged",
    "activity.created",
    "activity.updated",
    "activity.deleted",
    "sync_run.finished",
    "connection.auth_error",
    "sync_run.blocked",
];

/// The prefix of a signing secret (Standard Webhooks).
pub const SECRET_PREFIX: &str = "whsec_";
/// Shortest and longest signing key accepted, in bytes (after base64 decoding).
pub const SECRET_BYTES: std::ops::RangeInclusive<usize> = 24..=64;
/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Longest error text kept per attempt.
pub const MAX_ERROR_LEN: usize = 500;

/// A delivery's id (`webhook-id`): `msg_` and 32 hex digits.
pub fn new_delivery_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

/// A webhook subscription's id (a UUID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookId(pub uuid::Uuid);

impl WebhookId {
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl fmt::Display for WebhookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for WebhookId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(Self)
    }
}

/// A delivery's id: `msg_` and 32 lowercase hex digits (what [`new_delivery_id`] makes).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct DeliveryId(String);

impl DeliveryId {
    pub fn new_random() -> Self {
        Self(new_delivery_id())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string that is not a delivery id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a delivery id (msg_ followed by 32 hex digits)")]
pub struct BadDeliveryId(pub String);

impl FromStr for DeliveryId {
    type Err = BadDeliveryId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = s.strip_prefix("msg_").is_some_and(|hex| {
            hex.len() == 32
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(BadDeliveryId(s.chars().take(80).collect()))
        }
    }
}

impl<'de> Deserialize<'de> for DeliveryId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its first attempt or for a retry.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every retry of the schedule failed; waits for an admin's retry.
    Failed,
}
crmsync_engine::str_enum!(DeliveryState { Pending => "pending", Delivered => "delivered", Failed => "failed" });

// ---- validation ----

/// Checks a webhook URL: `http` or `https` with a host, no user name or password, no fragment,
/// no whitespace or control characters, at most [`MAX_URL_LEN`] characters. Returns it
/// normalized (as the url crate writes it).
pub fn check_url(raw: &str) -> Result<String, String> {
    let shown: String = raw.chars().take(100).collect();
    if raw.is_empty() {
        return Err("url is empty; give the endpoint's http(s) URL, e.g. https://crm.example.com/hooks/crmsync".into());
    }
    if raw.len() > MAX_URL_LEN {
        return Err(format!(
            "url is {} characters long; at most {MAX_URL_LEN} are accepted",
            raw.len()
        ));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "url {shown:?} contains spaces or control characters; percent-encode them"
        ));
    }
    let url = url::Url::parse(raw).map_err(|e| {
        format!("url {shown:?} is not a URL ({e}); give an absolute http(s) URL, e.g. https://crm.example.com/hooks/crmsync")
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "url {shown:?} is not http or https (scheme {:?}); webhooks are delivered over HTTP(S)",
            url.scheme()
        ));
    }
    if !(raw.starts_with("http://") || raw.starts_with("https://")) {
        return Err(format!(
            "url {shown:?} must start with http:// or https:// (in lower case)"
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("url {shown:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "url carries a user name or password; leave credentials out (they would be stored in \
             clear and shown in every listing) and check the webhook-signature header instead"
                .into(),
        );
    }
    if url.fragment().is_some() {
        return Err(format!(
            "url {shown:?} has a #fragment, which is never sent; leave it out"
        ));
    }
    Ok(url.to_string())
}

/// Checks the event types of a subscription: `None` means every type; otherwise a non-empty
/// list of names from [`EVENT_TYPES`]. Returns them without duplicates, in the order of
/// [`EVENT_TYPES`].
pub fn check_event_types(types: Option<&[String]>) -> Result<Vec<String>, String> {
    let Some(types) = types else {
        return Ok(EVENT_TYPES.iter().map(|t| t.to_string()).collect());
    };
    if types.is_empty() {
        return Err(format!(
            "event_types is empty, so nothing would ever be delivered; leave the field out for \
             every event type, or name some of: {}",
            EVENT_TYPES.join(", ")
        ));
    }
    let unknown: Vec<String> = types
        .iter()
        .filter(|t| !EVENT_TYPES.contains(&t.as_str()))
        .map(|t| format!("{:?}", t.chars().take(60).collect::<String>()))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "event_types: unknown event type(s) {}; the event types are: {}",
            unknown.join(", "),
            EVENT_TYPES.join(", ")
        ));
    }
    Ok(EVENT_TYPES
        .iter()
        .filter(|t| types.iter().any(|g| g == *t))
        .map(|t| t.to_string())
        .collect())
}

/// Checks a signing secret: `whsec_` and the standard base64 of 24 to 64 bytes.
pub fn check_secret(secret: &str) -> Result<(), String> {
    let how = "a secret is whsec_ followed by the base64 of 24 to 64 random bytes (e.g. \
               whsec_ + `openssl rand -base64 32`); or leave it out and one is made";
    let Some(b64) = secret.strip_prefix(SECRET_PREFIX) else {
        return Err(format!("secret does not start with {SECRET_PREFIX}; {how}"));
    };
    let bytes = STANDARD
        .decode(b64)
        .map_err(|_| format!("secret is not valid base64 after {SECRET_PREFIX}; {how}"))?;
    if !SECRET_BYTES.contains(&bytes.len()) {
        return Err(format!("secret decodes to {} bytes; {how}", bytes.len()));
    }
    Ok(())
}

/// A fresh signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn generate_secret() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

// ---- subscriptions ----

/// A new subscription, checked with [`check_url`], [`check_event_types`] and [`check_secret`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewWebhook {
    pub url: String,
    pub event_types: Vec<String>,
    pub secret: String,
}

/// A subscription (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: String,
    pub event_types: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// A subscription with the state of its deliveries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookStatus {
    #[serde(flatten)]
    pub webhook: Webhook,
    /// Deliveries waiting for their first attempt or a retry.
    pub pending: i64,
    /// Deliveries whose every retry failed (until an admin retries them).
    pub failed: i64,
    /// The latest failed attempt among the deliveries not delivered yet (pending retries and
    /// failed deliveries); `None` when none of them has failed.
    pub last_failure: Option<Failure>,
}

impl WebhookStatus {
    /// `failing` (failed deliveries wait for an admin), `retrying` (deliveries failed and wait
    /// for a retry) or `healthy`.
    pub fn health(&self) -> &'static str {
        if self.failed > 0 {
            "failing"
        } else if self.last_failure.is_some() {
            "retrying"
        } else {
            "healthy"
        }
    }
}

/// A failed attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub delivery_id: DeliveryId,
    pub event_type: String,
    pub at: DateTime<Utc>,
    /// The endpoint's HTTP status (`None`: no answer: timeout, refused connection, ...).
    pub status: Option<i32>,
    pub error: String,
}

fn secret_context(id: WebhookId) -> String {
    format!("webhook_secret:{id}")
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = webhooks)]
struct WebhookRow {
    id: String,
    url: String,
    event_types: String,
    created_at: NaiveDateTime,
}

impl WebhookRow {
    fn into_webhook(self) -> StoreResult<Webhook> {
        let event_types: Vec<String> = serde_json::from_str(&self.event_types).map_err(|e| {
            StoreError::Corrupt(format!("webhooks.event_types of {}: {e}", self.id))
        })?;
        Ok(Webhook {
            id: parse_col(&self.id, "webhooks.id")?,
            url: self.url,
            event_types,
            created_at: from_db_time(self.created_at),
        })
    }
}

/// Creates a subscription with its secret encrypted. Checks the input again (the API checks it
/// first): an invalid value is `Invalid` and nothing is written. Fails with
/// `MissingSecretKey` when no key for secrets at rest is configured.
pub fn create_webhook(
    store: &Store,
    conn: &mut AnyConnection,
    new: &NewWebhook,
    now: DateTime<Utc>,
) -> StoreResult<Webhook> {
    let url = check_url(&new.url).map_err(StoreError::Invalid)?;
    let event_types = check_event_types(Some(&new.event_types)).map_err(StoreError::Invalid)?;
    check_secret(&new.secret).map_err(StoreError::Invalid)?;
    let id = WebhookId::new_random();
    let ciphertext = store
        .secrets()?
        .encrypt(new.secret.as_bytes(), &secret_context(id))?;
    let types_json = serde_json::to_string(&event_types)
        .map_err(|e| StoreError::Invalid(format!("event_types: {e}")))?;
    let ts = to_db_time(now);
    diesel::insert_into(webhooks::table)
        .values((
            webhooks::id.eq(id.to_string()),
            webhooks::url.eq(&url),
            webhooks::event_types.eq(&types_json),
            webhooks::secret_ciphertext.eq(&ciphertext),
            webhooks::created_at.eq(ts),
        ))
        .execute(conn)?;
    Ok(Webhook {
        id,
        url,
        event_types,
        created_at: from_db_time(ts),
    })
}

/// Subscriptions by id after `after`, at most `limit`, with their delivery counts and last
/// failure.
pub fn list_webhooks(
    conn: &mut AnyConnection,
    after: Option<WebhookId>,
    limit: usize,
) -> StoreResult<Vec<WebhookStatus>> {
    let mut q = webhooks::table
        .order(webhooks::id)
        .limit(crate::util::page_limit(limit))
        .select(WebhookRow::as_select())
        .into_boxed();
    if let Some(a) = after {
        q = q.filter(webhooks::id.gt(a.to_string()));
    }
    let hooks: Vec<Webhook> = q
        .load(conn)?
        .into_iter()
        .map(WebhookRow::into_webhook)
        .collect::<StoreResult<_>>()?;
    with_status(conn, hooks)
}

/// One subscription with its delivery counts and last failure.
pub fn get_webhook(conn: &mut AnyConnection, id: WebhookId) -> StoreResult<WebhookStatus> {
    let row: WebhookRow = webhooks::table
        .find(id.to_string())
        .select(WebhookRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::not_found("webhook", id))?;
    with_status(conn, vec![row.into_webhook()?])?
        .pop()
        .ok_or_else(|| StoreError::not_found("webhook", id))
}

fn with_status(conn: &mut AnyConnection, hooks: Vec<Webhook>) -> StoreResult<Vec<WebhookStatus>> {
    if hooks.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = hooks.iter().map(|h| h.id.to_string()).collect();
    let counts: Vec<(String, String, i64)> = webhook_deliveries::table
        .filter(webhook_deliveries::webhook_id.eq_any(&ids))
        .filter(webhook_deliveries::state.eq_any(["pending", "failed"]))
        .group_by((webhook_deliveries::webhook_id, webhook_deliveries::state))
        .select((
            webhook_deliveries::webhook_id,
            webhook_deliveries::state,
            diesel::dsl::count_star(),
        ))
        .load(conn)?;
    // The last attempt of every delivery not yet delivered that has been tried.
    // (webhook, delivery, event type, at, status, error)
    type FailureRow = (
        String,
        String,
        String,
        NaiveDateTime,
        Option<i32>,
        Option<String>,
    );
    let failures: Vec<FailureRow> = webhook_deliveries::table
        .inner_join(
            webhook_attempts::table.on(webhook_attempts::delivery_id
                .eq(webhook_deliveries::id)
                .and(webhook_attempts::attempt.eq(webhook_deliveries::attempts))),
        )
        .filter(webhook_deliveries::webhook_id.eq_any(&ids))
        .filter(webhook_deliveries::state.eq_any(["pending", "failed"]))
        .filter(webhook_attempts::error.is_not_null())
        .select((
            webhook_deliveries::webhook_id,
            webhook_deliveries::id,
            webhook_deliveries::event_type,
            webhook_attempts::at,
            webhook_attempts::status,
            webhook_attempts::error,
        ))
        .load(conn)?;
    let mut last: HashMap<String, Failure> = HashMap::new();
    for (hook, delivery, event_type, at, status, error) in failures {
        let failure = Failure {
            delivery_id: parse_col(&delivery, "webhook_deliveries.id")?,
            event_type,
            at: from_db_time(at),
            status,
            error: error.unwrap_or_default(),
        };
        match last.get(&hook) {
            Some(f) if (f.at, &f.delivery_id) >= (failure.at, &failure.delivery_id) => {}
            _ => {
                last.insert(hook, failure);
            }
        }
    }
    Ok(hooks
        .into_iter()
        .map(|webhook| {
            let key = webhook.id.to_string();
            let count = |state: &str| {
                counts
                    .iter()
                    .find(|(h, s, _)| *h == key && s == state)
                    .map_or(0, |(_, _, n)| *n)
            };
            WebhookStatus {
                pending: count("pending"),
                failed: count("failed"),
                last_failure: last.remove(&key),
                webhook,
            }
        })
        .collect())
}

/// Deletes a subscription and every delivery of it (and their attempts).
pub fn delete_webhook(conn: &mut AnyConnection, id: WebhookId) -> StoreResult<()> {
    let key = id.to_string();
    let exists: i64 = webhooks::table.find(&key).count().get_result(conn)?;
    if exists == 0 {
        return Err(StoreError::not_found("webhook", id));
    }
    let deliveries = webhook_deliveries::table
        .filter(webhook_deliveries::webhook_id.eq(&key))
        .select(webhook_deliveries::id);
    diesel::delete(
        webhook_attempts::table.filter(webhook_attempts::delivery_id.eq_any(deliveries)),
    )
    .execute(conn)?;
    diesel::delete(webhook_deliveries::table.filter(webhook_deliveries::webhook_id.eq(&key)))
        .execute(conn)?;
    diesel::delete(webhooks::table.find(&key)).execute(conn)?;
    Ok(())
}

/// Where and how to deliver: a subscription's URL and its decrypted secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    pub id: WebhookId,
    pub url: String,
    pub secret: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("id", &self.id)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// The URL and decrypted secret of a subscription (`None`: it was deleted).
pub fn target(
    store: &Store,
    conn: &mut AnyConnection,
    id: WebhookId,
) -> StoreResult<Option<Target>> {
    let row: Option<(String, String)> = webhooks::table
        .find(id.to_string())
        .select((webhooks::url, webhooks::secret_ciphertext))
        .first(conn)
        .optional()?;
    let Some((url, ciphertext)) = row else {
        return Ok(None);
    };
    let secret = store
        .secrets()?
        .decrypt_string(&ciphertext, &secret_context(id))?;
    Ok(Some(Target { id, url, secret }))
}

// ---- the outbox ----

/// Puts `event` with `data` in the outbox of every webhook subscribed to it (none: nothing
/// written). The delivery's position is a change sequence number, so an endpoint's deliveries
/// keep commit order: the change's own cursor when the event tells of one (`position`), else
/// the next number.
pub fn enqueue<T: Serialize>(
    conn: &mut AnyConnection,
    event: &str,
    data: &T,
    position: Option<i64>,
    now: DateTime<Utc>,
) -> StoreResult<usize> {
    let hooks: Vec<(String, String)> = webhooks::table
        .select((webhooks::id, webhooks::event_types))
        .order(webhooks::id)
        .load(conn)?;
    let mut targets = Vec::new();
    for (id, types) in hooks {
        let types: Vec<String> = serde_json::from_str(&types)
            .map_err(|e| StoreError::Corrupt(format!("webhooks.event_types of {id}: {e}")))?;
        if types.iter().any(|t| t == event) {
            targets.push(id);
        }
    }
    if targets.is_empty() {
        return Ok(0);
    }
    let body = serde_json::to_string(&serde_json::json!({
        "type": event,
        "timestamp": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    }))
    .map_err(|e| StoreError::Invalid(format!("webhook body for {event}: {e}")))?;
    let position = match position {
        Some(p) => p,
        None => next_change_seq(conn)?,
    };
    let ts = to_db_time(now);
    for hook in &targets {
        diesel::insert_into(webhook_deliveries::table)
            .values((
                webhook_deliveries::id.eq(new_delivery_id()),
                webhook_deliveries::webhook_id.eq(hook),
                webhook_deliveries::position.eq(position),
                webhook_deliveries::event_type.eq(event),
                webhook_deliveries::body.eq(&body),
                webhook_deliveries::state.eq("pending"),
                webhook_deliveries::attempts.eq(0),
                webhook_deliveries::next_attempt_at.eq(ts),
                webhook_deliveries::created_at.eq(ts),
            ))
            .execute(conn)?;
    }
    Ok(targets.len())
}

/// One attempt to deliver, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub attempt: i32,
    pub at: DateTime<Utc>,
    /// The endpoint's HTTP status (`None`: no answer).
    pub status: Option<i32>,
    /// What went wrong (`None`: delivered).
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// A delivery with its attempts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    /// Commit order among the deliveries of the endpoint.
    pub position: i64,
    pub event_type: String,
    pub state: DeliveryState,
    /// How many attempts were made.
    pub attempt_count: i32,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it was delivered or failed for good.
    pub finished_at: Option<DateTime<Utc>>,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries)]
struct DeliveryRow {
    id: String,
    webhook_id: String,
    position: i64,
    event_type: String,
    state: String,
    attempts: i32,
    next_attempt_at: NaiveDateTime,
    last_status: Option<i32>,
    last_error: Option<String>,
    created_at: NaiveDateTime,
    finished_at: Option<NaiveDateTime>,
}

impl DeliveryRow {
    fn into_delivery(self, attempts: Vec<Attempt>) -> StoreResult<Delivery> {
        let state: DeliveryState = parse_col(&self.state, "webhook_deliveries.state")?;
        Ok(Delivery {
            id: parse_col(&self.id, "webhook_deliveries.id")?,
            webhook_id: parse_col(&self.webhook_id, "webhook_deliveries.webhook_id")?,
            position: self.position,
            event_type: self.event_type,
            state,
            attempt_count: self.attempts,
            next_attempt_at: (state == DeliveryState::Pending)
                .then(|| from_db_time(self.next_attempt_at)),
            last_status: self.last_status,
            last_error: self.last_error,
            created_at: from_db_time(self.created_at),
            finished_at: self.finished_at.map(from_db_time),
            attempts,
        })
    }
}

fn with_attempts(conn: &mut AnyConnection, rows: Vec<DeliveryRow>) -> StoreResult<Vec<Delivery>> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    // (delivery, attempt, at, status, error, duration_ms)
    type AttemptRow = (String, i32, NaiveDateTime, Option<i32>, Option<String>, i64);
    let attempts: Vec<AttemptRow> = webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq_any(&ids))
        .order((webhook_attempts::delivery_id, webhook_attempts::attempt))
        .select((
            webhook_attempts::delivery_id,
            webhook_attempts::attempt,
            webhook_attempts::at,
            webhook_attempts::status,
            webhook_attempts::error,
            webhook_attempts::duration_ms,
        ))
        .load(conn)?;
    let mut by_delivery: HashMap<String, Vec<Attempt>> = HashMap::new();
    for (delivery, attempt, at, status, error, duration_ms) in attempts {
        by_delivery.entry(delivery).or_default().push(Attempt {
            attempt,
            at: from_db_time(at),
            status,
            error,
            duration_ms,
        });
    }
    rows.into_iter()
        .map(|r| {
            let attempts = by_delivery.remove(&r.id).unwrap_or_default();
            r.into_delivery(attempts)
        })
        .collect()
}

/// A page of a subscription's deliveries, newest first, after the delivery `before` (the last
/// one of the previous page). `NotFound` for an unknown webhook; `Invalid` when `before` is not
/// one of its deliveries.
pub fn list_deliveries(
    conn: &mut AnyConnection,
    hook: WebhookId,
    before: Option<&DeliveryId>,
    limit: usize,
) -> StoreResult<Vec<Delivery>> {
    let key = hook.to_string();
    let exists: i64 = webhooks::table.find(&key).count().get_result(conn)?;
    if exists == 0 {
        return Err(StoreError::not_found("webhook", hook));
    }
    let mut q = webhook_deliveries::table
        .filter(webhook_deliveries::webhook_id.eq(&key))
        .order((
            webhook_deliveries::position.desc(),
            webhook_deliveries::id.desc(),
        ))
        .limit(crate::util::page_limit(limit))
        .select(DeliveryRow::as_select())
        .into_boxed();
    if let Some(b) = before {
        let position: i64 = webhook_deliveries::table
            .filter(webhook_deliveries::id.eq(b.as_str()))
            .filter(webhook_deliveries::webhook_id.eq(&key))
            .select(webhook_deliveries::position)
            .first(conn)
            .optional()?
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "cursor: {b} is not a delivery of webhook {hook}; pass next_cursor from the previous page"
                ))
            })?;
        q = q.filter(
            webhook_deliveries::position
                .lt(position)
                .or(webhook_deliveries::position
                    .eq(position)
                    .and(webhook_deliveries::id.lt(b.as_str().to_string()))),
        );
    }
    let rows = q.load(conn)?;
    with_attempts(conn, rows)
}

/// One delivery of a subscription.
pub fn get_delivery(
    conn: &mut AnyConnection,
    hook: WebhookId,
    id: &DeliveryId,
) -> StoreResult<Delivery> {
    let row: DeliveryRow = webhook_deliveries::table
        .filter(webhook_deliveries::id.eq(id.as_str()))
        .filter(webhook_deliveries::webhook_id.eq(hook.to_string()))
        .select(DeliveryRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::not_found("delivery", format!("{id} of webhook {hook}")))?;
    with_attempts(conn, vec![row])?
        .pop()
        .ok_or_else(|| StoreError::not_found("delivery", id))
}

/// An admin's retry: the delivery becomes pending and due at `now`, whatever its state (a
/// failed one gets one more attempt, a delivered one is sent again, a pending one is sent
/// without waiting for its retry time). `Conflict` while a worker is sending it.
pub fn retry_delivery(
    conn: &mut AnyConnection,
    hook: WebhookId,
    id: &DeliveryId,
    now: DateTime<Utc>,
) -> StoreResult<Delivery> {
    require_transaction(conn)?;
    let current = get_delivery(conn, hook, id)?;
    let ts = to_db_time(now);
    let leased: Option<(Option<String>, Option<NaiveDateTime>)> = webhook_deliveries::table
        .filter(webhook_deliveries::id.eq(id.as_str()))
        .select((
            webhook_deliveries::lease_owner,
            webhook_deliveries::lease_until,
        ))
        .first(conn)
        .optional()?;
    if let Some((Some(_), Some(until))) = leased {
        if current.state == DeliveryState::Pending && until >= ts {
            return Err(StoreError::Conflict(format!(
                "delivery {id} is being sent right now; look at it again in a few seconds"
            )));
        }
    }
    diesel::update(webhook_deliveries::table.filter(webhook_deliveries::id.eq(id.as_str())))
        .set((
            webhook_deliveries::state.eq(DeliveryState::Pending.as_str()),
            webhook_deliveries::next_attempt_at.eq(ts),
            webhook_deliveries::finished_at.eq(None::<NaiveDateTime>),
            webhook_deliveries::lease_owner.eq(None::<String>),
            webhook_deliveries::lease_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    get_delivery(conn, hook, id)
}

/// Subscriptions that have deliveries due at `now` that no live lease holds.
pub fn due_webhooks(
    conn: &mut AnyConnection,
    now: DateTime<Utc>,
    limit: usize,
) -> StoreResult<Vec<WebhookId>> {
    let ts = to_db_time(now);
    let ids: Vec<String> = webhook_deliveries::table
        .filter(webhook_deliveries::state.eq(DeliveryState::Pending.as_str()))
        .filter(webhook_deliveries::next_attempt_at.le(ts))
        .filter(
            webhook_deliveries::lease_owner
                .is_null()
                .or(webhook_deliveries::lease_until.lt(ts)),
        )
        .select(webhook_deliveries::webhook_id)
        .distinct()
        .limit(limit.clamp(1, 10_000) as i64)
        .load(conn)?;
    ids.iter()
        .map(|id| parse_col(id, "webhook_deliveries.webhook_id"))
        .collect()
}

/// A delivery a worker claimed and must send under its lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    pub id: DeliveryId,
    pub webhook_id: WebhookId,
    pub position: i64,
    pub event_type: String,
    /// The body to send, as stored (and signed).
    pub body: String,
    /// The number of this attempt (1 for the first).
    pub attempt: i32,
}

/// Claims up to `limit` due deliveries of one subscription for `worker`, in position order,
/// with a lease until `lease_until`. On PostgreSQL the rows are locked with `FOR UPDATE SKIP
/// LOCKED`, so concurrent claimers take disjoint rows without waiting; SQLite's write
/// transaction is exclusive already.
pub fn claim_due_for_webhook(
    conn: &mut AnyConnection,
    hook: WebhookId,
    now: DateTime<Utc>,
    worker: &str,
    lease_until: DateTime<Utc>,
    limit: usize,
) -> StoreResult<Vec<Claimed>> {
    require_transaction(conn)?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let ts = to_db_time(now);
    let q = webhook_deliveries::table
        .filter(webhook_deliveries::webhook_id.eq(hook.to_string()))
        .filter(webhook_deliveries::state.eq(DeliveryState::Pending.as_str()))
        .filter(webhook_deliveries::next_attempt_at.le(ts))
        .filter(
            webhook_deliveries::lease_owner
                .is_null()
                .or(webhook_deliveries::lease_until.lt(ts)),
        )
        .order((webhook_deliveries::position, webhook_deliveries::id))
        .limit(limit.min(1000) as i64)
        .select((
            webhook_deliveries::id,
            webhook_deliveries::position,
            webhook_deliveries::event_type,
            webhook_deliveries::body,
            webhook_deliveries::attempts,
        ));
    type Row = (String, i64, String, String, i32);
    let rows: Vec<Row> = match &mut *conn {
        AnyConnection::Postgresql(pg) => q.for_update().skip_locked().load(pg)?,
        AnyConnection::Sqlite(lite) => q.load(lite)?,
    };
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    diesel::update(webhook_deliveries::table.filter(webhook_deliveries::id.eq_any(&ids)))
        .set((
            webhook_deliveries::lease_owner.eq(Some(worker)),
            webhook_deliveries::lease_until.eq(Some(to_db_time(lease_until))),
        ))
        .execute(conn)?;
    rows.into_iter()
        .map(|(id, position, event_type, body, attempts)| {
            Ok(Claimed {
                id: parse_col(&id, "webhook_deliveries.id")?,
                webhook_id: hook,
                position,
                event_type,
                body,
                attempt: attempts + 1,
            })
        })
        .collect()
}

/// What an attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// The endpoint answered 2xx.
    Delivered { status: i32 },
    /// A non-2xx answer (`status`), or none (timeout, refused connection, ...).
    Failed { status: Option<i32>, error: String },
}

/// One attempt, for [`record_attempt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    pub at: DateTime<Utc>,
    pub duration_ms: i64,
    pub result: AttemptResult,
}

/// What [`record_attempt`] did with the delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    Delivered,
    /// Failed; the next attempt is due at this time.
    Retry {
        at: DateTime<Utc>,
    },
    /// Failed and the retry schedule is used up: the delivery is `failed`.
    Failed,
    /// The lease was no longer `worker`'s (or the delivery or its webhook was deleted, or an
    /// admin changed it): nothing was recorded.
    LeaseLost,
}

/// Extends `worker`'s leases on `ids` to `lease_until`, where they are still its own and live
/// at `now`. Returns the ids it still holds (a lease that expired may have been taken over by
/// another worker, and a delivery may have been deleted or changed by an admin: those must not
/// be sent).
pub fn renew_leases(
    conn: &mut AnyConnection,
    worker: &str,
    ids: &[DeliveryId],
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<Vec<DeliveryId>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<&str> = ids.iter().map(DeliveryId::as_str).collect();
    let held = || {
        webhook_deliveries::table
            .filter(webhook_deliveries::id.eq_any(&keys))
            .filter(webhook_deliveries::lease_owner.eq(worker))
            .filter(webhook_deliveries::lease_until.ge(to_db_time(now)))
            .filter(webhook_deliveries::state.eq(DeliveryState::Pending.as_str()))
    };
    let renewed = diesel::update(held())
        .set(webhook_deliveries::lease_until.eq(Some(to_db_time(lease_until))))
        .execute(conn)?;
    if renewed == ids.len() {
        return Ok(ids.to_vec());
    }
    let still: Vec<String> = held().select(webhook_deliveries::id).load(conn)?;
    Ok(ids
        .iter()
        .filter(|i| still.iter().any(|s| s == i.as_str()))
        .cloned()
        .collect())
}

/// What [`record_attempt`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recording {
    pub recorded: Recorded,
    /// The deliveries of `renew` the worker still holds, in their order.
    pub held: Vec<DeliveryId>,
}

/// Records an attempt at delivery `id` made under `worker`'s lease: delivered; or, after a
/// failure, due again after `schedule[n - 1]` where `n` counts the attempts made so far, or
/// `failed` when the schedule has no such entry. In the same transaction, extends `worker`'s
/// leases on `renew` (the deliveries it claimed and has not sent yet) to `lease_until`
/// ([`renew_leases`]).
#[allow(clippy::too_many_arguments)]
pub fn record_attempt(
    conn: &mut AnyConnection,
    id: &DeliveryId,
    worker: &str,
    record: &AttemptRecord,
    schedule: &[chrono::Duration],
    renew: &[DeliveryId],
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<Recording> {
    require_transaction(conn)?;
    let held = renew_leases(conn, worker, renew, lease_until, now)?;
    let recorded = record_one(conn, id, worker, record, schedule, now)?;
    Ok(Recording { recorded, held })
}

fn record_one(
    conn: &mut AnyConnection,
    id: &DeliveryId,
    worker: &str,
    record: &AttemptRecord,
    schedule: &[chrono::Duration],
    now: DateTime<Utc>,
) -> StoreResult<Recorded> {
    let row: Option<(i32, String, Option<String>)> = webhook_deliveries::table
        .filter(webhook_deliveries::id.eq(id.as_str()))
        .select((
            webhook_deliveries::attempts,
            webhook_deliveries::state,
            webhook_deliveries::lease_owner,
        ))
        .first(conn)
        .optional()?;
    let attempts = match row {
        Some((attempts, state, Some(owner)))
            if owner == worker && state == DeliveryState::Pending.as_str() =>
        {
            attempts + 1
        }
        _ => return Ok(Recorded::LeaseLost),
    };
    let (status, error) = match &record.result {
        AttemptResult::Delivered { status } => (Some(*status), None),
        AttemptResult::Failed { status, error } => {
            let mut e: String = error
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(MAX_ERROR_LEN)
                .collect();
            if e.is_empty() {
                e = "failed".into();
            }
            (*status, Some(e))
        }
    };
    diesel::insert_into(webhook_attempts::table)
        .values((
            webhook_attempts::delivery_id.eq(id.as_str()),
            webhook_attempts::attempt.eq(attempts),
            webhook_attempts::at.eq(to_db_time(record.at)),
            webhook_attempts::status.eq(status),
            webhook_attempts::error.eq(&error),
            webhook_attempts::duration_ms.eq(record.duration_ms),
        ))
        .execute(conn)?;
    let ts = to_db_time(now);
    let target = webhook_deliveries::table
        .filter(webhook_deliveries::id.eq(id.as_str()))
        .filter(webhook_deliveries::lease_owner.eq(worker));
    let common = (
        webhook_deliveries::attempts.eq(attempts),
        webhook_deliveries::lease_owner.eq(None::<String>),
        webhook_deliveries::lease_until.eq(None::<NaiveDateTime>),
        webhook_deliveries::last_status.eq(status),
        webhook_deliveries::last_error.eq(&error),
    );
    let outcome = match &record.result {
        AttemptResult::Delivered { .. } => {
            diesel::update(target)
                .set((
                    common,
                    webhook_deliveries::state.eq(DeliveryState::Delivered.as_str()),
                    webhook_deliveries::finished_at.eq(Some(ts)),
                ))
                .execute(conn)?;
            Recorded::Delivered
        }
        AttemptResult::Failed { .. } => {
            let delay = usize::try_from(attempts - 1)
                .ok()
                .and_then(|i| schedule.get(i));
            match delay {
                Some(d) => {
                    let at = now + *d;
                    diesel::update(target)
                        .set((
                            common,
                            webhook_deliveries::next_attempt_at.eq(to_db_time(at)),
                        ))
                        .execute(conn)?;
                    Recorded::Retry { at }
                }
                None => {
                    diesel::update(target)
                        .set((
                            common,
                            webhook_deliveries::state.eq(DeliveryState::Failed.as_str()),
                            webhook_deliveries::finished_at.eq(Some(ts)),
                        ))
                        .execute(conn)?;
                    Recorded::Failed
                }
            }
        }
    };
    Ok(outcome)
}

/// Gives up `worker`'s leases on deliveries it claimed and will not send (shutdown): they are
/// due again at once for any worker.
pub fn release_leases(
    conn: &mut AnyConnection,
    worker: &str,
    ids: &[DeliveryId],
) -> StoreResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let ids: Vec<&str> = ids.iter().map(DeliveryId::as_str).collect();
    Ok(diesel::update(
        webhook_deliveries::table
            .filter(webhook_deliveries::id.eq_any(&ids))
            .filter(webhook_deliveries::lease_owner.eq(worker)),
    )
    .set((
        webhook_deliveries::lease_owner.eq(None::<String>),
        webhook_deliveries::lease_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?)
}

/// Deliveries pending and failed, over every subscription (for the metrics).
pub fn outbox_counts(conn: &mut AnyConnection) -> StoreResult<(i64, i64)> {
    let rows: Vec<(String, i64)> = webhook_deliveries::table
        .filter(webhook_deliveries::state.eq_any(["pending", "failed"]))
        .group_by(webhook_deliveries::state)
        .select((webhook_deliveries::state, diesel::dsl::count_star()))
        .load(conn)?;
    let count = |s: &str| rows.iter().find(|(st, _)| st == s).map_or(0, |(_, n)| *n);
    Ok((count("pending"), count("failed")))
}

/// Deletes the deliveries (and their attempts) that were delivered, or failed for good, before
/// `before`. Returns how many went.
pub fn prune_deliveries(conn: &mut AnyConnection, before: DateTime<Utc>) -> StoreResult<usize> {
    let cut = to_db_time(before);
    let old = webhook_deliveries::table
        .filter(webhook_deliveries::state.eq_any(["delivered", "failed"]))
        .filter(webhook_deliveries::finished_at.lt(cut))
        .select(webhook_deliveries::id);
    diesel::delete(webhook_attempts::table.filter(webhook_attempts::delivery_id.eq_any(old)))
        .execute(conn)?;
    Ok(diesel::delete(
        webhook_deliveries::table
            .filter(webhook_deliveries::state.eq_any(["delivered", "failed"]))
            .filter(webhook_deliveries::finished_at.lt(cut)),
    )
    .execute(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            check_url("https://crm.example.com/hooks").unwrap(),
            "https://crm.example.com/hooks"
        );
        assert!(check_url("http://127.0.0.1:9000/x?y=1").is_ok());
        for bad in [
            "",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "https://example.com/#frag",
            "example.com/hook",
            "https://exa mple.com/",
            "https://example.com/\nx",
            "mailto:a@b.c",
            "HTTPS://example.com/",
            "https:example.com/",
        ] {
            assert!(check_url(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn event_types() {
        assert_eq!(check_event_types(None).unwrap().len(), EVENT_TYPES.len());
        assert!(check_event_types(Some(&[])).is_err());
        let e = check_event_types(Some(&["contact.nope".to_string()])).unwrap_err();
        assert!(
            e.contains("contact.nope") && e.contains("sync_run.blocked"),
            "{e}"
        );
        assert_eq!(
            check_event_types(Some(&[
                "sync_run.finished".to_string(),
                "contact.created".to_string(),
                "contact.created".to_string()
            ]))
            .unwrap(),
            vec!["contact.created", "sync_run.finished"]
        );
    }

    #[test]
    fn secrets() {
        assert!(check_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_ok());
        assert!(check_secret(&generate_secret()).is_ok());
        assert!(check_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(check_secret("whsec_c2hvcnQ=").is_err(), "too short");
        assert!(check_secret("whsec_not base64!").is_err());
        assert!(check_secret(&format!("whsec_{}", STANDARD.encode([7u8; 65]))).is_err());
    }

    #[test]
    fn delivery_ids() {
        let id = DeliveryId::new_random();
        assert_eq!(id.as_str().parse::<DeliveryId>().unwrap(), id);
        assert!("msg_xyz".parse::<DeliveryId>().is_err());
        assert!("msg_0123456789ABCDEF0123456789abcdef"
            .parse::<DeliveryId>()
            .is_err());
    }
}
