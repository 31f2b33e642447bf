//! Webhook delivery (SPEC 6.4): the task that sends the outbox ([`crmsync_schema::webhooks`])
//! to the subscribed endpoints, in `crmsync serve` and `crmsync worker`.
//!
//! - **Lanes.** A dispatcher looks for endpoints with due deliveries every poll interval
//!   (default 1 s) and gives each its own lane (a task): the lane claims the endpoint's due
//!   deliveries under a lease, in position (commit) order, and sends them one at a time. A slow
//!   or dead endpoint holds up only its own lane; sync runs and other endpoints never wait for
//!   it. A delivery waiting for a retry does not hold up the endpoint's later deliveries.
//! - **Leases.** A claim holds for twice the timeout plus 5 s; recording each attempt renews the
//!   leases of the deliveries the lane still holds, and a lane sends a delivery only while its
//!   lease has room for the whole attempt. Claims use `FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL, so any number of processes share the outbox and never send one delivery at
//!   once. A process that dies leaves its leases to expire; another (or the same, restarted)
//!   then sends those deliveries again: delivery is at least once.
//! - **Attempts.** A POST of the stored body with the Standard Webhooks headers `webhook-id`
//!   (the delivery id), `webhook-timestamp` (unix seconds of the attempt) and
//!   `webhook-signature` (`v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed
//!   with the decoded secret: [`sign`]). A 2xx answer within the timeout (default 10 s) delivers
//!   it; anything else (another status, a timeout, no connection; redirects are not followed) is
//!   a failure, retried after the next delay of the schedule (default 5 s, 5 min, 30 min, 2 h,
//!   5 h, 10 h, 10 h), then `failed` until an admin retries it. Every attempt is traced and
//!   counted ([`crate::telemetry::webhook_attempt`]).
//! - Delivered and failed deliveries are pruned 30 days after they finished.

use crate::clock::SharedClock;
use chrono::{DateTime, Utc};
use crmsync_schema::webhooks::{
    self as outbox, AttemptRecord, AttemptResult, Claimed, DeliveryId, Recorded, Target, WebhookId,
};
use crmsync_schema::{Store, StoreError};
use std::collections::{HashMap, HashSet, VecDeque};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The retry schedule of SPEC 6.4: the delays after the first, second, ... failed attempt.
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,10h";
/// How long an attempt may take (connect, send, answer).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often endpoints with due deliveries are looked for.
pub const DEFAULT_POLL: Duration = Duration::from_secs(1);
/// Deliveries a lane claims at a time.
const BATCH: usize = 50;
/// At most this many lanes (endpoints sending at the same time) per process.
const MAX_LANES: usize = 256;
/// Delivered and failed deliveries are kept this long after they finished.
const KEEP_DAYS: i64 = 30;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How much of an error answer's body is kept in the attempt's error.
const ERROR_BODY_CHARS: usize = 200;
/// How much of an answer's body is read (so that the connection can be reused).
const MAX_BODY_READ: usize = 64 * 1024;

/// Why webhook delivery could not start or sign.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// A signing secret that is not `whsec_` + base64.
    #[error(
        "the webhook signing secret is not usable ({0}); it must be whsec_ followed by base64"
    )]
    Secret(String),
    /// A setting (retry schedule, timeout) that cannot be used.
    #[error("webhook delivery setting: {0}")]
    Config(String),
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client for webhook deliveries: {0}")]
    Client(String),
    #[error("database: {0}")]
    Store(#[from] StoreError),
}

/// The `webhook-signature` value of a delivery: `v1,` and the base64 HMAC-SHA256 of
/// `{msg_id}.{timestamp}.{body}` keyed with the base64-decoded part of `secret` after `whsec_`
/// (Standard Webhooks, with the `standardwebhooks` crate).
pub fn sign(
    secret: &str,
    msg_id: &str,
    timestamp: i64,
    body: &str,
) -> Result<String, WebhookError> {
    let hook =
        standardwebhooks::Webhook::new(secret).map_err(|e| WebhookError::Secret(e.to_string()))?;
    hook.sign(msg_id, timestamp, body.as_bytes())
        .map_err(|e| WebhookError::Secret(e.to_string()))
}

/// The delays between attempts: after the n-th failed attempt the next one is due after the
/// n-th delay; when there is none, the delivery has failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

impl Default for RetrySchedule {
    fn default() -> Self {
        DEFAULT_RETRY_SCHEDULE
            .parse()
            .unwrap_or_else(|_| RetrySchedule(Vec::new()))
    }
}

impl FromStr for RetrySchedule {
    type Err = String;
    /// A comma-separated list of delays, each a number and a unit (`ms`, `s`, `m`, `h`, `d`),
    /// e.g. `5s,5m,30m,2h`; `none` for no retries.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("none") {
            return Ok(RetrySchedule(Vec::new()));
        }
        let delays = s
            .split(',')
            .map(|part| parse_delay(part.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if delays.len() > 100 {
            return Err(format!(
                "the retry schedule has {} delays; at most 100 are accepted",
                delays.len()
            ));
        }
        Ok(RetrySchedule(delays))
    }
}

fn parse_delay(part: &str) -> Result<Duration, String> {
    let how = "write delays like 5s, 5m, 2h or 500ms, separated by commas (e.g. 5s,5m,30m,2h,5h,10h,10h), or none";
    let split = part
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("the delay {part:?} has no unit; {how}"))?;
    let (number, unit) = part.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("the delay {part:?} does not start with a number; {how}"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(format!("the delay {part:?} has an unknown unit; {how}")),
    };
    if secs > 30 * 86_400 {
        return Err(format!("the delay {part:?} is longer than 30 days"));
    }
    Ok(Duration::from_secs(secs))
}

/// How a delivery worker behaves.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// This process's name in the leases (the scheduler's worker id).
    pub worker_id: String,
    /// How often endpoints with due deliveries are looked for.
    pub poll: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
    pub retry_schedule: RetrySchedule,
}

impl DeliveryConfig {
    /// The defaults of SPEC 6.4 for `worker_id`.
    pub fn new(worker_id: impl Into<String>) -> Self {
        DeliveryConfig {
            worker_id: worker_id.into(),
            poll: DEFAULT_POLL,
            timeout: DEFAULT_TIMEOUT,
            retry_schedule: RetrySchedule::default(),
        }
    }

    /// How long a claim holds without renewal: an attempt and its recording fit in it twice.
    pub fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(5)
    }
}

/// The webhook delivery flags of `serve` and `worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// Send no webhooks from this process (other processes on the same database still do).
    #[arg(long, env = "CRMSYNC_NO_WEBHOOK_DELIVERY")]
    pub no_webhook_delivery: bool,
    /// Delays before the retries of a failed webhook delivery, comma-separated (ms, s, m, h,
    /// d); after the last one the delivery is marked failed. `none`: no retries.
    #[arg(long, env = "CRMSYNC_WEBHOOK_RETRY_SCHEDULE", default_value = DEFAULT_RETRY_SCHEDULE)]
    pub webhook_retry_schedule: RetrySchedule,
    /// Milliseconds between looks for due webhook deliveries.
    #[arg(long, env = "CRMSYNC_WEBHOOK_POLL_MS", default_value_t = 1000)]
    pub webhook_poll_ms: u64,
    /// Seconds a webhook endpoint has to answer an attempt.
    #[arg(long, env = "CRMSYNC_WEBHOOK_TIMEOUT_SECS", default_value_t = 10.0)]
    pub webhook_timeout_secs: f64,
}

impl WebhookArgs {
    /// The delivery configuration these flags describe (`None`: delivery is off).
    pub fn config(&self, worker_id: &str) -> Result<Option<DeliveryConfig>, WebhookError> {
        if self.no_webhook_delivery {
            return Ok(None);
        }
        let t = self.webhook_timeout_secs;
        if !t.is_finite() || !(0.1..=300.0).contains(&t) {
            return Err(WebhookError::Config(format!(
                "--webhook-timeout-secs {t} is out of range; give 0.1 to 300 seconds (default 10)"
            )));
        }
        Ok(Some(DeliveryConfig {
            worker_id: worker_id.to_string(),
            poll: Duration::from_millis(self.webhook_poll_ms.clamp(10, 60_000)),
            timeout: Duration::from_secs_f64(t),
            retry_schedule: self.webhook_retry_schedule.clone(),
        }))
    }
}

/// Stops a running [`DeliveryWorker`].
#[derive(Clone, Debug)]
pub struct DeliveryHandle {
    stop: Arc<watch::Sender<bool>>,
}

impl DeliveryHandle {
    /// Stop looking for work; lanes finish the attempt in flight, give back the deliveries they
    /// hold, and [`DeliveryWorker::run`] returns.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

struct Inner {
    store: Store,
    clock: SharedClock,
    config: DeliveryConfig,
    schedule: Vec<chrono::Duration>,
    lease: chrono::Duration,
    /// The longest an attempt can take (the timeout and a margin for its recording).
    attempt_span: chrono::Duration,
    http: reqwest::Client,
}

/// The webhook delivery task of one process.
pub struct DeliveryWorker {
    inner: Arc<Inner>,
    stop: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for DeliveryWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryWorker")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// How a lane ended.
enum LaneEnd {
    /// Nothing is due any more (or the webhook is gone, or the process stops).
    Done,
    /// Something went wrong (database, secret); the endpoint gets no new lane for a while.
    Rest(Duration),
}

impl DeliveryWorker {
    pub fn new(
        store: Store,
        clock: SharedClock,
        config: DeliveryConfig,
    ) -> Result<Self, WebhookError> {
        let to_chrono = |d: &Duration| {
            chrono::Duration::from_std(*d).map_err(|e| WebhookError::Config(e.to_string()))
        };
        let schedule = config
            .retry_schedule
            .0
            .iter()
            .map(to_chrono)
            .collect::<Result<Vec<_>, _>>()?;
        let lease = to_chrono(&config.lease())?;
        let attempt_span = to_chrono(&(config.timeout + Duration::from_secs(2)))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.timeout)
            .user_agent(concat!("crmsync-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        let (stop, _) = watch::channel(false);
        Ok(DeliveryWorker {
            inner: Arc::new(Inner {
                store,
                clock,
                config,
                schedule,
                lease,
                attempt_span,
                http,
            }),
            stop: Arc::new(stop),
        })
    }

    pub fn handle(&self) -> DeliveryHandle {
        DeliveryHandle {
            stop: self.stop.clone(),
        }
    }

    /// Runs until [`DeliveryHandle::shutdown`].
    pub async fn run(self) -> Result<(), WebhookError> {
        let inner = self.inner;
        let mut stop = self.stop.subscribe();
        let mut lanes: JoinSet<LaneEnd> = JoinSet::new();
        let mut lane_of: HashMap<tokio::task::Id, WebhookId> = HashMap::new();
        let mut active: HashSet<WebhookId> = HashSet::new();
        let mut resting: HashMap<WebhookId, Instant> = HashMap::new();
        let mut next_prune = Instant::now() + Duration::from_secs(60);
        tracing::info!(
            worker = %inner.config.worker_id,
            timeout_ms = inner.config.timeout.as_millis() as u64,
            retries = inner.schedule.len(),
            "webhook delivery started"
        );
        loop {
            while let Some(res) = lanes.try_join_next_with_id() {
                lane_finished(res, &mut active, &mut lane_of, &mut resting);
            }
            if *stop.borrow() {
                break;
            }
            let now = inner.clock.now();
            match inner
                .store
                .read_async(move |c| outbox::due_webhooks(c, now, MAX_LANES))
                .await
            {
                Ok(due) => {
                    for hook in due {
                        let rests = resting.get(&hook).is_some_and(|t| *t > Instant::now());
                        if active.contains(&hook) || rests || active.len() >= MAX_LANES {
                            continue;
                        }
                        resting.remove(&hook);
                        active.insert(hook);
                        let handle = lanes.spawn(lane(inner.clone(), hook, stop.clone()));
                        lane_of.insert(handle.id(), hook);
                    }
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "webhook delivery: cannot look for due deliveries; trying again shortly"
                ),
            }
            if Instant::now() >= next_prune {
                next_prune = Instant::now() + PRUNE_EVERY;
                let before = now - chrono::Duration::days(KEEP_DAYS);
                match inner
                    .store
                    .write_async(move |c| outbox::prune_deliveries(c, before))
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        pruned = n,
                        "pruned finished webhook deliveries older than {KEEP_DAYS} days"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "webhook delivery: pruning old deliveries failed")
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(inner.config.poll) => {}
                _ = stop.changed() => {}
                Some(res) = lanes.join_next_with_id(), if !lanes.is_empty() => {
                    lane_finished(res, &mut active, &mut lane_of, &mut resting);
                }
            }
        }
        // Lanes finish the attempt in flight (bounded by the timeout) and give the rest back.
        let grace = inner.config.timeout + Duration::from_secs(5);
        let drained = tokio::time::timeout(grace, async {
            while let Some(res) = lanes.join_next_with_id().await {
                lane_finished(res, &mut active, &mut lane_of, &mut resting);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                "webhook delivery: lanes did not stop in time; their leases expire on their own"
            );
            lanes.abort_all();
        }
        tracing::info!("webhook delivery stopped");
        Ok(())
    }
}

/// Forgets a lane that ended; one that ran into trouble rests its endpoint for a while.
fn lane_finished(
    res: Result<(tokio::task::Id, LaneEnd), tokio::task::JoinError>,
    active: &mut HashSet<WebhookId>,
    lane_of: &mut HashMap<tokio::task::Id, WebhookId>,
    resting: &mut HashMap<WebhookId, Instant>,
) {
    let (id, end) = match res {
        Ok((id, end)) => (id, end),
        Err(e) => {
            if e.is_panic() {
                tracing::error!(error = %e, "a webhook delivery lane panicked");
            }
            (e.id(), LaneEnd::Rest(Duration::from_secs(5)))
        }
    };
    if let Some(hook) = lane_of.remove(&id) {
        active.remove(&hook);
        if let LaneEnd::Rest(d) = end {
            resting.insert(hook, Instant::now() + d);
        }
    }
}

/// One endpoint's lane: claims its due deliveries in position order and sends them one by one.
async fn lane(inner: Arc<Inner>, hook: WebhookId, stop: watch::Receiver<bool>) -> LaneEnd {
    let target = match inner
        .store
        .run(move |s| s.read(|c| outbox::target(s, c, hook)))
        .await
    {
        Ok(Some(t)) => t,
        Ok(None) => return LaneEnd::Done,
        Err(e) => {
            tracing::error!(
                webhook = %hook,
                error = %e,
                "cannot read the webhook's signing secret, so its deliveries wait; check CRMSYNC_SECRET_KEY"
            );
            return LaneEnd::Rest(Duration::from_secs(60));
        }
    };
    let signer = match standardwebhooks::Webhook::new(&target.secret) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(webhook = %hook, error = %e, "the webhook's stored signing secret is not usable; delete the webhook and subscribe again");
            return LaneEnd::Rest(Duration::from_secs(60));
        }
    };
    let worker = inner.config.worker_id.clone();
    loop {
        if *stop.borrow() {
            return LaneEnd::Done;
        }
        let now = inner.clock.now();
        let (w, until) = (worker.clone(), now + inner.lease);
        let claimed = inner
            .store
            .write_async(move |c| outbox::claim_due_for_webhook(c, hook, now, &w, until, BATCH))
            .await;
        let mut queue: VecDeque<Claimed> = match claimed {
            Ok(c) if c.is_empty() => return LaneEnd::Done,
            Ok(c) => c.into(),
            Err(e) => {
                tracing::warn!(webhook = %hook, error = %e, "webhook delivery: claiming deliveries failed; trying again shortly");
                return LaneEnd::Rest(Duration::from_secs(5));
            }
        };
        // Until when the deliveries in the queue are ours for sure.
        let mut held_until = until;
        while let Some(delivery) = queue.pop_front() {
            // Stopping, or the lease could run out during the attempt (a slow database): give
            // the rest back rather than risk another worker sending one of them at the same time.
            let short = inner.clock.now() + inner.attempt_span >= held_until;
            if *stop.borrow() || short {
                let mut give_back: Vec<DeliveryId> = vec![delivery.id.clone()];
                give_back.extend(queue.iter().map(|c| c.id.clone()));
                let w = worker.clone();
                if let Err(e) = inner
                    .store
                    .write_async(move |c| outbox::release_leases(c, &w, &give_back))
                    .await
                {
                    tracing::warn!(webhook = %hook, error = %e, "could not give back claimed webhook deliveries; their leases expire on their own");
                }
                return LaneEnd::Done;
            }
            let (record, outcome) = attempt(&inner, &target, &signer, &delivery).await;
            crate::telemetry::webhook_attempt(outcome);
            let renew: Vec<DeliveryId> = queue.iter().map(|c| c.id.clone()).collect();
            let now = inner.clock.now();
            let (w, until, schedule, id, rec) = (
                worker.clone(),
                now + inner.lease,
                inner.schedule.clone(),
                delivery.id.clone(),
                record.clone(),
            );
            let recorded = inner
                .store
                .write_async(move |c| {
                    outbox::record_attempt(c, &id, &w, &rec, &schedule, &renew, until, now)
                })
                .await;
            trace_attempt(&delivery, &record, recorded.as_ref().map(|r| &r.recorded));
            match recorded {
                Ok(r) => {
                    held_until = until;
                    // Send only what is still ours (an admin may have changed a delivery, or a
                    // lease may have been lost).
                    if r.held.len() != queue.len() {
                        queue.retain(|c| r.held.contains(&c.id));
                    }
                }
                Err(_) => return LaneEnd::Rest(Duration::from_secs(5)),
            }
        }
    }
}

/// Sends one delivery; returns the attempt and its outcome label for the metrics.
async fn attempt(
    inner: &Inner,
    target: &Target,
    signer: &standardwebhooks::Webhook,
    d: &Claimed,
) -> (AttemptRecord, &'static str) {
    let at: DateTime<Utc> = inner.clock.now();
    let timestamp = at.timestamp();
    let started = Instant::now();
    let (result, outcome) = match signer.sign(d.id.as_str(), timestamp, d.body.as_bytes()) {
        Err(e) => (
            AttemptResult::Failed {
                status: None,
                error: format!("cannot sign the body: {e}"),
            },
            "transport_error",
        ),
        Ok(signature) => post(inner, target, d, timestamp, &signature).await,
    };
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    (
        AttemptRecord {
            at,
            duration_ms,
            result,
        },
        outcome,
    )
}

async fn post(
    inner: &Inner,
    target: &Target,
    d: &Claimed,
    timestamp: i64,
    signature: &str,
) -> (AttemptResult, &'static str) {
    let request = inner
        .http
        .post(&target.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", d.id.as_str())
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(d.body.clone());
    let exchange = async {
        let mut response = request.send().await?;
        let status = response.status();
        // Read (a bounded part of) the answer, so the connection can be reused and an error
        // answer can be shown to the admin.
        let mut body: Vec<u8> = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() < MAX_BODY_READ {
                body.extend_from_slice(&chunk);
            } else {
                break;
            }
        }
        Ok::<_, reqwest::Error>((status, body))
    };
    match tokio::time::timeout(inner.config.timeout, exchange).await {
        Err(_) => (
            AttemptResult::Failed {
                status: None,
                error: format!(
                    "no answer within {:.1} s (timeout); the endpoint must answer 2xx quickly and do slow work afterwards",
                    inner.config.timeout.as_secs_f64()
                ),
            },
            "timeout",
        ),
        Ok(Err(e)) => (
            AttemptResult::Failed {
                status: None,
                error: describe_transport_error(&e),
            },
            if e.is_timeout() {
                "timeout"
            } else {
                "transport_error"
            },
        ),
        Ok(Ok((status, _))) if status.is_success() => (
            AttemptResult::Delivered {
                status: i32::from(status.as_u16()),
            },
            "delivered",
        ),
        Ok(Ok((status, body))) => {
            let text: String = String::from_utf8_lossy(&body)
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(ERROR_BODY_CHARS)
                .collect();
            let text = text.trim();
            let redirect = if status.is_redirection() {
                " (redirects are not followed; subscribe the final URL)"
            } else {
                ""
            };
            let error = if text.is_empty() {
                format!("the endpoint answered HTTP {status}{redirect}")
            } else {
                format!("the endpoint answered HTTP {status}{redirect}: {text}")
            };
            (
                AttemptResult::Failed {
                    status: Some(i32::from(status.as_u16())),
                    error,
                },
                "http_error",
            )
        }
    }
}

/// A transport error with its causes (reqwest's own message names only the URL, which may
/// carry a token: it is left out).
fn describe_transport_error(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "could not connect to the endpoint"
    } else if e.is_timeout() {
        "the endpoint did not answer in time"
    } else if e.is_request() || e.is_body() {
        "sending the request failed"
    } else {
        "the exchange with the endpoint failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !causes.contains(&text) {
            causes.push(text);
        }
        source = s.source();
    }
    if causes.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {}", causes.join(": "))
    }
}

fn trace_attempt(d: &Claimed, record: &AttemptRecord, recorded: Result<&Recorded, &StoreError>) {
    let (status, error) = match &record.result {
        AttemptResult::Delivered { status } => (Some(*status), None),
        AttemptResult::Failed { status, error } => (*status, Some(error.as_str())),
    };
    match recorded {
        Ok(Recorded::Delivered) => tracing::info!(
            webhook = %d.webhook_id, delivery = %d.id, event = %d.event_type, attempt = d.attempt,
            status, duration_ms = record.duration_ms, "webhook delivered"
        ),
        Ok(Recorded::Retry { at }) => tracing::warn!(
            webhook = %d.webhook_id, delivery = %d.id, event = %d.event_type, attempt = d.attempt,
            status, error, duration_ms = record.duration_ms, next_attempt_at = %at,
            "webhook delivery failed; it will be retried"
        ),
        Ok(Recorded::Failed) => tracing::error!(
            webhook = %d.webhook_id, delivery = %d.id, event = %d.event_type, attempt = d.attempt,
            status, error, duration_ms = record.duration_ms,
            "webhook delivery failed for good (retry schedule used up); fix the endpoint, then retry it with POST /api/v1/webhooks/{}/deliveries/{}/retry",
            d.webhook_id, d.id
        ),
        Ok(Recorded::LeaseLost) => tracing::warn!(
            webhook = %d.webhook_id, delivery = %d.id, attempt = d.attempt, status, error,
            "webhook attempt not recorded: the delivery was changed or deleted meanwhile, or its lease expired"
        ),
        Err(e) => tracing::warn!(
            webhook = %d.webhook_id, delivery = %d.id, attempt = d.attempt, status, error = %e,
            "could not record a webhook attempt; the delivery is sent again when its lease expires"
        ),
    }
}

/// A running delivery worker: the handle that stops it and its task.
pub type Running = (
    DeliveryHandle,
    tokio::task::JoinHandle<Result<(), WebhookError>>,
);

/// Starts delivery for `serve` or `worker` (unless `--no-webhook-delivery`): the handle to stop
/// it and its task.
pub fn spawn(
    store: &Store,
    clock: SharedClock,
    args: &WebhookArgs,
    worker_id: &str,
) -> Result<Option<Running>, WebhookError> {
    let Some(config) = args.config(worker_id)? else {
        tracing::info!("webhook delivery is off in this process (--no-webhook-delivery)");
        return Ok(None);
    };
    let worker = DeliveryWorker::new(store.clone(), clock, config)?;
    let handle = worker.handle();
    Ok(Some((handle, tokio::spawn(worker.run()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let d = RetrySchedule::default();
        assert_eq!(d.0.len(), 7);
        assert_eq!(d.0[0], Duration::from_secs(5));
        assert_eq!(d.0[6], Duration::from_secs(36_000));
        assert_eq!(
            "200ms, 1s".parse::<RetrySchedule>().unwrap().0,
            vec![Duration::from_millis(200), Duration::from_secs(1)]
        );
        assert!("none".parse::<RetrySchedule>().unwrap().0.is_empty());
        for bad in ["", "5", "5x", "s", "5s,,5s", "31d"] {
            assert!(bad.parse::<RetrySchedule>().is_err(), "{bad:?}");
        }
    }
}
