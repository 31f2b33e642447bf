//! The scheduler: makes crmsync run on its own. It keeps every (user, kind)'s due time in the
//! job table ([`crmsync_schema::jobs`]), claims due work under a lease, and carries the runs out
//! with the [`SyncEngine`], up to `concurrency` (user, kind) runs at a time.
//!
//! - Due times: [`schedule::next_due`], a pure function of the settings, the last run's start,
//!   now and a seed (interval or cron, with bounded jitter; `auto_sync = false` = manual only).
//!   [`Scheduler::reconcile`] computes them for new and changed settings; each run's release
//!   computes the next one.
//! - Claims: [`crmsync_schema::jobs::claim_due`] (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the
//!   exclusive write transaction on SQLite) takes due rows whose lease is free or expired. Runs
//!   of the same (user, kind) therefore never overlap, in one process or across many.
//! - Leases: renewed every third of the lease while the run goes on; a run whose lease is lost
//!   (another worker took over after it expired) is stopped at once — the engine is crash-safe,
//!   so stopping between two committed steps is like a crash and the other worker's run
//!   converges. A worker that dies leaves its lease to expire; the next claimer re-runs the same
//!   run id.
//! - Manual starts ([`crmsync_schema::jobs::request_run`]) queue one run per (user, kind);
//!   further requests are coalesced into it; a request during a run queues exactly one
//!   follow-up. [`SchedulerHandle::wake`] makes an in-process scheduler claim it at once.
//! - Users whose connection is in `auth_error` (or `disabled`) get no scheduled runs; a manual
//!   start runs anyway, and its success clears the error.
//! - Graceful shutdown: no new claims; runs in progress finish (up to a grace period, after
//!   which they are stopped between steps and their leases expire at once for another worker).
//!
//! [`status`] reads the per-user, per-kind status the API and `crmsync status` show.

pub mod schedule;
pub mod status;

use crate::sync::{MassUntag, RunOptions, RunReport, RunState, SyncEngine};
use chrono::{DateTime, Utc};
use crmsync_engine::ids::{RunId, SyncKind, UserId};
use crmsync_schema::jobs::{self, Claim, Release, RunRequest};
use crmsync_schema::runs::{self, SyncRun};
use crmsync_schema::{settings, users, AnyConnection, StoreError};
use schedule::{next_due, seed_for, JitterPolicy};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tracing::Instrument;

/// Settings scheduled per reconciliation transaction.
const RECONCILE_BATCH: usize = 1000;
/// The running scheduler looks for changed settings at every tick through a cheap fingerprint
/// ([`jobs::settings_watermark`]) and reconciles in full at least this often.
const FULL_RECONCILE_EVERY: Duration = Duration::from_secs(30);
/// How often a scheduler prunes the change feed.
const FEED_PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How many days of the change feed are kept (SPEC 6.4: at least 30).
pub const FEED_KEEP_DAYS: i64 = 30;

/// How a scheduler (in `serve` or `worker`) behaves.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// This worker's name in leases and runs (default: host name and process id).
    pub worker_id: String,
    /// At most this many (user, kind) runs at a time in this process.
    pub concurrency: usize,
    /// How often due work is looked for when nothing wakes the scheduler.
    pub tick: Duration,
    /// How long a claim holds without renewal (a dead worker's runs are taken over after it).
    pub lease: chrono::Duration,
    pub jitter: JitterPolicy,
    /// On shutdown, how long runs in progress may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            worker_id: default_worker_id(),
            concurrency: 4,
            tick: Duration::from_secs(1),
            lease: chrono::Duration::seconds(60),
            jitter: JitterPolicy::default(),
            shutdown_grace: Duration::from_secs(120),
        }
    }
}

/// `HOSTNAME-PID`: unique per process on a machine, readable in `crmsync status`.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "worker".to_string());
    format!("{}-{}", host.trim(), std::process::id())
}

/// Why the scheduler could not do something.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("the run of {user}'s {kind} sync stopped before it recorded its outcome: {message}")]
    RunStopped {
        user: UserId,
        kind: SyncKind,
        message: String,
    },
}

/// Wakes or stops a running [`Scheduler`] from elsewhere in the process (the API).
#[derive(Clone, Debug)]
pub struct SchedulerHandle {
    wake: Arc<Notify>,
    stop: Arc<watch::Sender<bool>>,
}

impl SchedulerHandle {
    /// Look for due work now (a manual start was queued).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stop claiming and finish the runs in progress; [`Scheduler::run`] then returns.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
        self.wake.notify_one();
    }

    /// Whether [`SchedulerHandle::shutdown`] was called.
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }
}

/// How a claimed run ended in this worker.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The engine carried the run out (succeeded, blocked or failed: see the report).
    Completed(RunReport),
    /// The lease was lost to another worker; the run was stopped between steps.
    LeaseLost,
    /// The run stopped without recording an outcome (database failure, simulated crash); the
    /// lease is left to expire so that another claim carries it out again.
    Stopped(String),
}

/// One claimed run and its outcome.
#[derive(Clone, Debug)]
pub struct Finished {
    pub claim: Claim,
    pub outcome: Outcome,
}

impl Finished {
    /// The report, if the run completed.
    pub fn report(&self) -> Option<&RunReport> {
        match &self.outcome {
            Outcome::Completed(r) => Some(r),
            _ => None,
        }
    }
}

/// The scheduler of one process.
pub struct Scheduler {
    engine: SyncEngine,
    config: Arc<SchedulerConfig>,
    wake: Arc<Notify>,
    stop: Arc<watch::Sender<bool>>,
    /// Calendar watch channels, when crmsync has a public URL (`push.rs`).
    channels: Option<Arc<crate::push::ChannelKeeper>>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    pub fn new(engine: SyncEngine, mut config: SchedulerConfig) -> Self {
        config.concurrency = config.concurrency.max(1);
        if config.lease < chrono::Duration::milliseconds(300) {
            config.lease = chrono::Duration::milliseconds(300);
        }
        let (stop, _) = watch::channel(false);
        Scheduler {
            engine,
            config: Arc::new(config),
            wake: Arc::new(Notify::new()),
            stop: Arc::new(stop),
            channels: None,
        }
    }

    /// Also keeps the Calendar watch channels (made, renewed, stopped) of every user with
    /// activity auto-sync, in a task of its own so Google's answers never delay claims.
    pub fn with_channels(mut self, keeper: crate::push::ChannelKeeper) -> Self {
        self.channels = Some(Arc::new(keeper));
        self
    }

    pub fn handle(&self) -> SchedulerHandle {
        SchedulerHandle {
            wake: self.wake.clone(),
            stop: self.stop.clone(),
        }
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    pub fn engine(&self) -> &SyncEngine {
        &self.engine
    }

    fn now(&self) -> DateTime<Utc> {
        self.engine.clock().now()
    }

    /// Computes the due time of every (user, kind) whose settings are new or changed since it
    /// was last scheduled. Returns how many were (re)scheduled.
    pub async fn reconcile(&self) -> Result<usize, SchedulerError> {
        let mut total = 0;
        // Batches of RECONCILE_BATCH; a large domain set up at once takes several.
        for _ in 0..100 {
            let (found, scheduled) = self.reconcile_batch().await?;
            total += scheduled;
            if found < RECONCILE_BATCH {
                break;
            }
        }
        Ok(total)
    }

    async fn reconcile_batch(&self) -> Result<(usize, usize), SchedulerError> {
        let store = self.engine.store().clone();
        let any = store.run(|s| s.read(|c| jobs::unscheduled(c, 1))).await?;
        if any.is_empty() {
            return Ok((0, 0));
        }
        let (now, jitter) = (self.now(), self.config.jitter);
        let done = store
            .write_async(move |c| {
                    let pending = jobs::unscheduled(c, RECONCILE_BATCH)?;
                    let mut n = 0;
                    for u in &pending {
                        let next = compute_next(c, &u.settings, u.last_run_at, now, &jitter)?;
                        let (user, kind) = (u.settings.user_id, u.settings.kind);
                        if jobs::set_schedule(
                            c,
                            user,
                            kind,
                            next,
                            u.settings.updated_at,
                            u.last_run_at,
                            now,
                        )? {
                            tracing::debug!(%user, kind = kind.as_str(), next_due_at = ?next, "scheduled");
                            n += 1;
                        }
                    }
                    Ok((pending.len(), n))
                })
            .await?;
        Ok(done)
    }

    /// Claims up to `limit` due runs for this worker.
    pub async fn claim(&self, limit: usize) -> Result<Vec<Claim>, SchedulerError> {
        let (now, worker, lease) = (self.now(), self.config.worker_id.clone(), self.config.lease);
        Ok(self
            .engine
            .store()
            .write_async(move |c| {
                // The admin's domain-wide pause switch: nothing is claimed while it is on.
                if crate::api::admin::sync_paused(c)? {
                    return Ok(Vec::new());
                }
                jobs::claim_due(c, now, &worker, lease, limit)
            })
            .await?)
    }

    /// Carries out one claimed run under its lease and gives the job back.
    pub async fn carry_out(&self, claim: Claim) -> Finished {
        carry_out(self.engine.clone(), self.config.clone(), claim).await
    }

    /// One pass: computes due times, claims what is due (up to the concurrency), carries it all
    /// out and returns the outcomes. `run` does this continuously; tests step with it.
    pub async fn run_pending(&self) -> Result<Vec<Finished>, SchedulerError> {
        self.reconcile().await?;
        let claims = self.claim(self.config.concurrency).await?;
        let runs = claims
            .into_iter()
            .map(|c| carry_out(self.engine.clone(), self.config.clone(), c));
        Ok(futures::future::join_all(runs).await)
    }

    /// Queues a manual run of (user, kind) ("Start synchronization") and wakes this scheduler.
    pub async fn request(
        &self,
        user: UserId,
        kind: SyncKind,
        options: RunOptions,
    ) -> Result<RunRequest, SchedulerError> {
        let req = request_run(self.engine.store(), self.now(), user, kind, options).await?;
        self.wake.notify_one();
        Ok(req)
    }

    /// "Start synchronization" for the command line: queues a manual run and carries it out in
    /// this process as soon as the (user, kind) is free — or waits for another worker that
    /// claimed it first — and returns its report.
    pub async fn run_now(
        &self,
        user: UserId,
        kind: SyncKind,
        options: RunOptions,
    ) -> Result<RunReport, SchedulerError> {
        let req = self.request(user, kind, options).await?;
        let store = self.engine.store().clone();
        loop {
            let (now, worker, lease) =
                (self.now(), self.config.worker_id.clone(), self.config.lease);
            let claim = store
                .write_async(move |c| jobs::claim_job(c, user, kind, now, &worker, lease))
                .await?;
            if let Some(claim) = claim {
                let mine = claim.run_id == req.run_id;
                let done = self.carry_out(claim).await;
                if mine {
                    return match done.outcome {
                        Outcome::Completed(report) => Ok(report),
                        Outcome::LeaseLost => Err(SchedulerError::RunStopped {
                            user,
                            kind,
                            message: "another worker took the run over; see crmsync status".into(),
                        }),
                        Outcome::Stopped(message) => Err(SchedulerError::RunStopped {
                            user,
                            kind,
                            message,
                        }),
                    };
                }
                continue;
            }
            let id = req.run_id;
            if let Some(run) = store.read_async(move |c| runs::get_run(c, id)).await? {
                if run.finished_at.is_some() {
                    return Ok(report_of(&run));
                }
            }
            tokio::time::sleep(self.config.tick.min(Duration::from_millis(250))).await;
        }
    }

    /// How long to sleep before the next look: until the earliest push request falls due, if
    /// that comes before the next tick (so a debounced push run starts on time).
    async fn until_next_push(&self, tick: Duration) -> Duration {
        let next = self
            .engine
            .store()
            .run(|s| s.read(jobs::next_push_due))
            .await;
        match next {
            Ok(Some(due)) => match (due - self.now()).to_std() {
                Ok(d) => d.clamp(Duration::from_millis(10), tick),
                // Due already but not claimable now (leased or a full slot): the tick.
                Err(_) => tick,
            },
            Ok(None) => tick,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the next push time");
                tick
            }
        }
    }

    /// Deletes the change-feed rows older than [`FEED_KEEP_DAYS`] (SPEC 6.4: at least 30 days
    /// are kept); a reader behind them is told to resynchronize in full.
    async fn prune_feed(&self) {
        let now = self.now();
        let cut = now - chrono::Duration::days(FEED_KEEP_DAYS);
        let pruned = self
            .engine
            .store()
            .run(move |s| s.write(|c| crmsync_schema::changes::prune(c, cut, now)))
            .await;
        match pruned {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, before = %cut, "pruned the change feed"),
            Err(e) => tracing::warn!(error = %e, "could not prune the change feed; retrying later"),
        }
    }

    /// Runs until [`SchedulerHandle::shutdown`]: claims due work whenever a slot is free (at
    /// every tick, when woken, and when a run ends), then finishes the runs in progress.
    pub async fn run(self) -> Result<(), SchedulerError> {
        let cfg = self.config.clone();
        tracing::info!(
            worker = %cfg.worker_id,
            concurrency = cfg.concurrency,
            lease_ms = cfg.lease.num_milliseconds(),
            "scheduler started"
        );
        let mut stop = self.stop.subscribe();
        let mut tasks: JoinSet<Finished> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, Claim> = HashMap::new();
        let mut last_look: Option<Instant> = None;
        let mut last_full: Option<Instant> = None;
        let mut last_prune: Option<Instant> = None;
        let mut last_channels: Option<Instant> = None;
        let mut channel_task: Option<tokio::task::JoinHandle<usize>> = None;
        let mut watermark = None;
        loop {
            if *stop.borrow_and_update() {
                break;
            }
            if last_look.is_none_or(|t| t.elapsed() >= cfg.tick) {
                last_look = Some(Instant::now());
                let mark = self
                    .engine
                    .store()
                    .run(|s| s.read(jobs::settings_watermark))
                    .await;
                let full_due = last_full.is_none_or(|t| t.elapsed() >= FULL_RECONCILE_EVERY);
                match mark {
                    Ok(m) if !full_due && watermark == Some(m) => {}
                    Ok(m) => match self.reconcile().await {
                        Ok(_) => {
                            watermark = Some(m);
                            last_full = Some(Instant::now());
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not compute due times; retrying at the next tick")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the sync settings; retrying at the next tick")
                    }
                }
            }
            if let Some(keeper) = &self.channels {
                let idle = channel_task.as_ref().is_none_or(|t| t.is_finished());
                if idle && last_channels.is_none_or(|t| t.elapsed() >= keeper.every) {
                    last_channels = Some(Instant::now());
                    let (keeper, engine, worker) =
                        (keeper.clone(), self.engine.clone(), cfg.worker_id.clone());
                    channel_task =
                        Some(tokio::spawn(
                            async move { keeper.tick(&engine, &worker).await },
                        ));
                }
            }
            if last_prune.is_none_or(|t| t.elapsed() >= FEED_PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                self.prune_feed().await;
            }
            let free = cfg.concurrency.saturating_sub(tasks.len());
            if free > 0 {
                match self.claim(free).await {
                    Ok(claims) => {
                        for c in claims {
                            let h =
                                tasks.spawn(carry_out(self.engine.clone(), cfg.clone(), c.clone()));
                            running.insert(h.id(), c);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not claim due runs; retrying at the next tick")
                    }
                }
            }
            let full = tasks.len() >= cfg.concurrency;
            let wait = if full {
                cfg.tick
            } else {
                self.until_next_push(cfg.tick).await
            };
            tokio::select! {
                _ = stop.changed() => {}
                _ = self.wake.notified(), if !full => {}
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    reap(done, &mut running);
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(
            in_progress = tasks.len(),
            "scheduler stopping: no new claims; letting runs in progress finish"
        );
        let deadline = tokio::time::sleep(cfg.shutdown_grace);
        tokio::pin!(deadline);
        while !tasks.is_empty() {
            tokio::select! {
                Some(done) = tasks.join_next_with_id() => reap(done, &mut running),
                _ = &mut deadline => {
                    tracing::warn!(
                        in_progress = tasks.len(),
                        "shutdown grace period over: stopping the remaining runs between steps; \
                         their leases expire now so another worker carries them out"
                    );
                    tasks.abort_all();
                    while let Some(done) = tasks.join_next_with_id().await {
                        reap(done, &mut running);
                    }
                }
            }
        }
        for (_, claim) in running.drain() {
            let (now, worker) = (self.now(), cfg.worker_id.clone());
            let c = claim.clone();
            let res = self
                .engine
                .store()
                .write_async(move |conn| {
                    jobs::abandon(conn, c.user_id, c.kind, &worker, c.run_id, now)
                })
                .await;
            if let Err(e) = res {
                tracing::warn!(error = %e, run = %claim.run_id, "could not give the lease back; it expires on its own");
            }
        }
        tracing::info!(worker = %cfg.worker_id, "scheduler stopped");
        Ok(())
    }
}

/// Removes a finished task from the bookkeeping (its lease was released by the task itself).
fn reap(
    done: Result<(tokio::task::Id, Finished), tokio::task::JoinError>,
    running: &mut HashMap<tokio::task::Id, Claim>,
) {
    match done {
        Ok((id, _)) => {
            running.remove(&id);
        }
        Err(e) if e.is_cancelled() => {
            // Aborted at shutdown: the claim stays in `running` and its lease is given up.
        }
        Err(e) => {
            let claim = running.remove(&e.id());
            tracing::error!(
                error = %e,
                run = ?claim.map(|c| c.run_id),
                "a run task panicked; its lease expires and another claim carries the run out"
            );
        }
    }
}

/// Queues a manual run (see [`jobs::request_run`]); run options other than the default replace
/// those of a coalesced run.
pub async fn request_run(
    store: &crmsync_schema::Store,
    now: DateTime<Utc>,
    user: UserId,
    kind: SyncKind,
    options: RunOptions,
) -> Result<RunRequest, StoreError> {
    let opts = (options != RunOptions::default())
        .then(|| serde_json::to_value(options).unwrap_or_default());
    store
        .write_async(move |c| jobs::request_run(c, user, kind, opts.as_ref(), now))
        .await
}

/// The due time of (user, kind) after a run that started at `anchor`, from its settings; `None`
/// when auto-sync is off or the schedule cannot be read (logged: manual starts still work).
fn compute_next(
    c: &mut AnyConnection,
    settings: &crmsync_engine::model::SyncSettings,
    anchor: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    jitter: &JitterPolicy,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let tz = users::find_user(c, settings.user_id)?
        .and_then(|u| chrono_tz::Tz::from_str(&u.time_zone).ok())
        .unwrap_or(chrono_tz::UTC);
    let seed = seed_for(settings.user_id, settings.kind, anchor);
    Ok(match next_due(settings, anchor, now, seed, jitter, &tz) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(user = %settings.user_id, kind = settings.kind.as_str(), error = %e, "no scheduled runs");
            None
        }
    })
}

/// Keeps the lease of `claim` alive; returns when it is lost (another worker holds it now, or
/// it could not be renewed before it expired). It also returns, before the run can take another
/// step, when this process was paused (or starved) for longer than the lease since the last
/// renewal: another worker may have taken the run over meanwhile.
async fn keep_lease(engine: SyncEngine, cfg: Arc<SchedulerConfig>, claim: Claim) {
    let lease = cfg.lease.to_std().unwrap_or(Duration::from_secs(60));
    let every = (lease / 3).max(Duration::from_millis(50));
    let mut expires = claim.lease_expires_at;
    let mut renewed_at = Instant::now();
    loop {
        tokio::time::sleep(every).await;
        if renewed_at.elapsed() >= lease {
            tracing::warn!("no lease renewal for longer than the lease (was this process paused?)");
            return;
        }
        let now = engine.clock().now();
        let new_expiry = now + cfg.lease;
        let (worker, c) = (cfg.worker_id.clone(), claim.clone());
        let renewed = engine
            .store()
            .write_async(move |conn| {
                jobs::renew_lease(conn, c.user_id, c.kind, &worker, c.run_id, new_expiry, now)
            })
            .await;
        match renewed {
            Ok(true) => {
                expires = new_expiry;
                renewed_at = Instant::now();
            }
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not renew the lease");
                if engine.clock().now() >= expires {
                    return;
                }
            }
        }
    }
}

async fn carry_out(engine: SyncEngine, cfg: Arc<SchedulerConfig>, claim: Claim) -> Finished {
    let span = tracing::info_span!(
        "scheduled_run",
        worker = %cfg.worker_id,
        user = %claim.user_id,
        kind = claim.kind.as_str(),
        run = %claim.run_id,
        trigger = %claim.trigger,
    );
    async move {
        if let Some(previous) = &claim.taken_over_from {
            tracing::warn!(previous_worker = %previous, "taking over a run whose worker stopped renewing its lease");
        }
        if let Some(due) = claim.due_at {
            crate::telemetry::scheduling_lag(&claim.trigger, claim.claimed_at - due);
        }
        let in_progress = crate::telemetry::run_started(claim.kind);
        let options: RunOptions = serde_json::from_value(claim.options.clone()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "unreadable run options; running with the defaults");
            RunOptions::default()
        });
        let exec = engine.execute(
            claim.run_id,
            claim.user_id,
            claim.kind,
            options,
            Some(cfg.worker_id.clone()),
        );
        let lease = keep_lease(engine.clone(), cfg.clone(), claim.clone());
        // The lease keeper is polled first: after a pause it stops the run before its next step.
        let result = tokio::select! {
            biased;
            () = lease => None,
            r = exec => Some(r),
        };
        let outcome = match result {
            None => {
                tracing::warn!("lease lost: run stopped between steps; the worker holding the lease carries it out");
                in_progress.finished(&claim.trigger, "lease_lost");
                Outcome::LeaseLost
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "run stopped before recording its outcome; it is carried out again when the lease expires");
                in_progress.finished(&claim.trigger, "stopped");
                Outcome::Stopped(e.to_string())
            }
            Some(Ok(report)) => {
                in_progress.finished(&claim.trigger, report.state.as_str());
                if let Err(e) = release(&engine, &cfg, &claim, &report).await {
                    tracing::warn!(error = %e, "could not give the job back; its lease expires on its own");
                }
                Outcome::Completed(report)
            }
        };
        Finished { claim, outcome }
    }
    .instrument(span)
    .await
}

async fn release(
    engine: &SyncEngine,
    cfg: &SchedulerConfig,
    claim: &Claim,
    report: &RunReport,
) -> Result<(), StoreError> {
    let now = engine.clock().now();
    let (c, worker, jitter) = (claim.clone(), cfg.worker_id.clone(), cfg.jitter);
    let succeeded = report.state == RunState::Succeeded;
    let error = (!succeeded).then(|| {
        report
            .message
            .clone()
            .unwrap_or_else(|| format!("the run {}", report.state.as_str()))
    });
    let released = engine
        .store()
        .write_async(move |conn| {
            let settings = settings::get_sync_settings(conn, c.user_id, c.kind)?;
            let (next, version) = match &settings {
                Some(st) => (
                    compute_next(conn, st, Some(c.claimed_at), now, &jitter)?,
                    Some(st.updated_at),
                ),
                None => (None, None),
            };
            let r = Release {
                started_at: c.claimed_at,
                succeeded,
                error,
                next_due_at: next,
                settings_version: version,
            };
            jobs::release(conn, c.user_id, c.kind, &worker, c.run_id, &r, now).map(|ok| (ok, next))
        })
        .await?;
    match released {
        (true, next) => {
            tracing::info!(state = report.state.as_str(), next_due_at = ?next, "run done")
        }
        (false, _) => tracing::warn!(
            "the lease was taken over before the run was recorded; the other worker's run stands"
        ),
    }
    Ok(())
}

/// A stored run as a [`RunReport`] (for a run another process carried out; API call counts are
/// not stored and read 0).
pub fn report_of(run: &SyncRun) -> RunReport {
    let state = match run.state.as_str() {
        "succeeded" => RunState::Succeeded,
        "blocked" => RunState::Blocked,
        _ => RunState::Failed,
    };
    RunReport {
        run_id: run.id,
        user_id: run.user_id,
        kind: run.kind,
        state,
        counts: serde_json::from_value(run.counts.clone()).unwrap_or_default(),
        errors: serde_json::from_value(run.errors.clone()).unwrap_or_default(),
        message: run.message.clone(),
        api_calls: 0,
        api_retries: 0,
        api_rate_limited: 0,
        api_time_ms: 0,
    }
}

/// Parses `mass_untag` as the API and CLI accept it (`confirm` | `restore`).
pub fn parse_mass_untag(value: &str) -> Option<MassUntag> {
    match value {
        "confirm" => Some(MassUntag::Confirm),
        "restore" => Some(MassUntag::Restore),
        "guard" => Some(MassUntag::Guard),
        _ => None,
    }
}

/// Waits (polling the database, so it works whichever process runs it) until `run` has finished,
/// for at most `limit`, or until `scheduler` (this process's) stops. Returns the run as last read.
pub async fn wait_for_run(
    store: &crmsync_schema::Store,
    run: RunId,
    limit: Duration,
    scheduler: Option<&SchedulerHandle>,
) -> Result<Option<SyncRun>, StoreError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        let found = store.read_async(move |c| runs::get_run(c, run)).await?;
        let stopping = scheduler.is_some_and(SchedulerHandle::is_stopping);
        match &found {
            Some(r) if r.finished_at.is_none() && started.elapsed() < limit && !stopping => {}
            _ => return Ok(found),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}
