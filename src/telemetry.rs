//! The process's metrics, rendered in the Prometheus text format by `GET /metrics`.
//!
//! One global recorder (metrics-exporter-prometheus behind the [`metrics`] facade), installed
//! the first time [`handle`] is called (building the router does it). What is counted, and where:
//!
//! - runs by kind, trigger and state, their duration, runs in progress, and the scheduling lag
//!   (claim time minus due time): the scheduler, as it carries each claimed run out
//!   ([`run_started`], [`scheduling_lag`]);
//! - Google calls by API method and HTTP status, retries, rate-limit answers, backoff and
//!   client-side throttling: the connectors (`crmsync_connectors::metrics::names`);
//! - overdue jobs: read from the job table when `/metrics` is scraped ([`set_overdue`]);
//! - webhook deliveries pending and failed: read from the outbox when `/metrics` is scraped
//!   ([`set_webhook_deliveries`]); attempts by outcome: the delivery worker, as it makes each
//!   ([`webhook_attempt`]).
//!
//! Labels carry no personal data: kinds, triggers, states, API method names and HTTP statuses
//! only (never a user, an e-mail address or an id).

use crmsync_engine::ids::SyncKind;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Counter `{kind, trigger, state}`: runs carried out by this process.
pub const RUNS: &str = "crmsync_sync_runs_total";
/// Histogram `{kind, state}`: run durations in seconds.
pub const RUN_DURATION: &str = "crmsync_sync_run_duration_seconds";
/// Gauge `{kind}`: runs in progress in this process.
pub const RUNS_IN_PROGRESS: &str = "crmsync_sync_runs_in_progress";
/// Histogram `{trigger}`: seconds between a run falling due (or being requested) and a worker
/// claiming it.
pub const SCHEDULING_LAG: &str = "crmsync_scheduler_lag_seconds";
/// Gauge `{trigger}`: jobs that are due and not claimed (every worker's, read from the database
/// at scrape time): `schedule` (the scheduled time has come) and `manual` (a Start
/// synchronization waits).
pub const JOBS_OVERDUE: &str = "crmsync_jobs_overdue";
/// Gauge: how long the oldest due, unclaimed job has waited, in seconds (0 when none waits).
pub const OLDEST_OVERDUE: &str = "crmsync_jobs_oldest_overdue_seconds";
/// Gauge `{version}`: 1.
pub const BUILD_INFO: &str = "crmsync_build_info";
/// Gauge `{state}`: webhook deliveries `pending` and `failed` (every process's, read from the
/// database at scrape time).
pub const WEBHOOK_DELIVERIES: &str = "crmsync_webhook_deliveries";
/// Gauge `{state}`: Calendar watch channels `live` and `failed` (a user whose channel could not be
/// made), from the database at scrape time.
pub const PUSH_CHANNELS: &str = "crmsync_push_channels";
/// Counter `{outcome}`: webhook delivery attempts made by this process, by outcome (`delivered`,
/// `http_error`, `timeout`, `transport_error`).
pub const WEBHOOK_ATTEMPTS: &str = "crmsync_webhook_attempts_total";

/// Run duration buckets, seconds: from a quiet run to a large initial sync.
const RUN_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Scheduling lag buckets, seconds: a tick or two is normal; minutes mean too few workers.
const LAG_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed as the global one on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(RUN_DURATION.into()), RUN_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(SCHEDULING_LAG.into()), LAG_BUCKETS)
            })
            .unwrap_or_else(|e| {
                // Only empty bucket lists are refused; the histograms become summaries then.
                tracing::warn!(error = %e, "metrics: histogram buckets refused");
                PrometheusBuilder::new()
            });
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; GET /metrics shows nothing");
        }
        describe();
        metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        // Histogram samples are folded into their buckets at every scrape; do it regularly too,
        // so that memory stays bounded when nothing scrapes.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
        }
        handle
    })
}

fn describe() {
    use crmsync_connectors::metrics::names;
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        RUNS,
        "Sync runs carried out by this process, by kind, trigger (schedule, manual, push) and \
         state (succeeded, failed, blocked, lease_lost, stopped)"
    );
    describe_histogram!(
        RUN_DURATION,
        Unit::Seconds,
        "Duration of the sync runs carried out by this process"
    );
    describe_gauge!(RUNS_IN_PROGRESS, "Sync runs in progress in this process");
    describe_histogram!(
        SCHEDULING_LAG,
        Unit::Seconds,
        "Time from a run falling due (or being requested) to a worker claiming it"
    );
    describe_gauge!(
        JOBS_OVERDUE,
        "Jobs due and not claimed by any worker (from the database at scrape time)"
    );
    describe_gauge!(
        OLDEST_OVERDUE,
        Unit::Seconds,
        "How long the oldest due, unclaimed job has waited"
    );
    describe_gauge!(BUILD_INFO, "crmsync's version");
    describe_gauge!(
        WEBHOOK_DELIVERIES,
        "Webhook deliveries pending (waiting for an attempt or a retry) and failed (retries used \
         up, waiting for an admin), from the database at scrape time"
    );
    describe_gauge!(
        PUSH_CHANNELS,
        "Calendar watch channels live, and users whose channel could not be made (they sync on \
         their interval), from the database at scrape time"
    );
    describe_counter!(
        WEBHOOK_ATTEMPTS,
        "Webhook delivery attempts made by this process, by outcome (delivered, http_error, \
         timeout, transport_error)"
    );
    describe_counter!(
        names::REQUESTS,
        "HTTP requests sent to Google APIs, by API method and HTTP status (timeout, transport_error)"
    );
    describe_counter!(
        names::CALLS,
        "Logical Google API calls (whatever the retries), by method and result"
    );
    describe_counter!(names::RETRIES, "Retried Google API requests, by method");
    describe_counter!(
        names::RATE_LIMITED,
        "Rate-limit answers from Google (429, 403 rateLimitExceeded), by method"
    );
    describe_counter!(
        names::BACKOFF_MS,
        Unit::Milliseconds,
        "Time slept in backoff before Google retries, by method"
    );
    describe_counter!(
        names::THROTTLED_MS,
        Unit::Milliseconds,
        "Time Google calls waited for the client-side rate limiter, by API"
    );
}

/// The metrics in the Prometheus text format.
pub fn render() -> String {
    handle().render()
}

/// Keeps `crmsync_sync_runs_in_progress` up while a run goes on (even if its task is aborted).
#[must_use]
pub struct RunInProgress {
    kind: &'static str,
    started: Instant,
}

/// A claimed run starts in this process.
pub fn run_started(kind: SyncKind) -> RunInProgress {
    metrics::gauge!(RUNS_IN_PROGRESS, "kind" => kind.as_str()).increment(1.0);
    RunInProgress {
        kind: kind.as_str(),
        started: Instant::now(),
    }
}

impl RunInProgress {
    /// The run ended: counts it with its trigger and final state and records its duration.
    pub fn finished(self, trigger: &str, state: &'static str) {
        let trigger = trigger_label(trigger);
        metrics::counter!(RUNS, "kind" => self.kind, "trigger" => trigger, "state" => state)
            .increment(1);
        metrics::histogram!(RUN_DURATION, "kind" => self.kind, "state" => state)
            .record(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for RunInProgress {
    fn drop(&mut self) {
        metrics::gauge!(RUNS_IN_PROGRESS, "kind" => self.kind).decrement(1.0);
    }
}

/// A worker claimed a run `lag` after it fell due or was requested.
pub fn scheduling_lag(trigger: &str, lag: chrono::Duration) {
    let secs = lag.num_milliseconds().max(0) as f64 / 1000.0;
    metrics::histogram!(SCHEDULING_LAG, "trigger" => trigger_label(trigger)).record(secs);
}

/// The jobs due and not claimed, read from the database.
pub fn set_overdue(scheduled: i64, manual: i64, oldest_wait: Option<chrono::Duration>) {
    metrics::gauge!(JOBS_OVERDUE, "trigger" => "schedule").set(scheduled as f64);
    metrics::gauge!(JOBS_OVERDUE, "trigger" => "manual").set(manual as f64);
    let oldest = oldest_wait.map_or(0.0, |d| d.num_milliseconds().max(0) as f64 / 1000.0);
    metrics::gauge!(OLDEST_OVERDUE).set(oldest);
}

/// A run's trigger as a label: one of a fixed set.
fn trigger_label(trigger: &str) -> &'static str {
    match trigger {
        "schedule" => "schedule",
        "manual" => "manual",
        "push" => "push",
        _ => "other",
    }
}

/// A webhook delivery attempt ended with `outcome` (`delivered`, `http_error`, `timeout` or
/// `transport_error`).
pub fn webhook_attempt(outcome: &'static str) {
    metrics::counter!(WEBHOOK_ATTEMPTS, "outcome" => outcome).increment(1);
}

/// The Calendar watch channels live and failed, read from the database.
pub fn set_push_channels(live: i64, failed: i64) {
    metrics::gauge!(PUSH_CHANNELS, "state" => "live").set(live as f64);
    metrics::gauge!(PUSH_CHANNELS, "state" => "failed").set(failed as f64);
}

/// The webhook deliveries pending and failed, read from the database.
pub fn set_webhook_deliveries(pending: i64, failed: i64) {
    metrics::gauge!(WEBHOOK_DELIVERIES, "state" => "pending").set(pending as f64);
    metrics::gauge!(WEBHOOK_DELIVERIES, "state" => "failed").set(failed as f64);
}
