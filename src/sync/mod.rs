//! The sync executor: runs one pass ("run") of one (user, kind). It reads what changed on each
//! side since the cursors, asks the pure planner (`crmsync_engine::planner`) what to do, carries
//! the plan out against Google (in batches) and the CRM store, records every effect in the
//! journal, and stores the cursors only after everything they cover is committed.
//!
//! - `driver`: the shape of every run and the [`driver::Kind`] trait a kind implements;
//!   `executor`: the item machinery every kind shares (planning, passes, intents, commit).
//! - [`contacts`]: contacts <-> People (sync tag, sync group, e-mail linking, delete-as-untag).
//! - [`activities`]: activities <-> the organizer's primary calendar.
//! - [`google`]: Google access per user (service account or OAuth refresh token).
//! - [`record`]: counts and journal entries; [`crash`]: named crash points for tests.

pub mod activities;
mod commit;
pub mod contacts;
pub mod crash;
mod driver;
pub mod error;
mod executor;
pub mod google;
pub mod record;
mod remote;
mod tally;

use crate::clock::SharedClock;
use chrono::{DateTime, Utc};
use crash::{CrashPlan, CrashPoint, NoCrashes};
use crmsync_connectors::{CallMetrics, GoogleAccount};
use crmsync_engine::guard::GuardPolicy;
use crmsync_engine::ids::{RunId, SyncKind, UserId};
use crmsync_engine::model::{ConnectionState, User};
use crmsync_engine::planner::PlanPolicy;
use crmsync_schema::runs::{self, RunOutcome};
use crmsync_schema::sync_state::Cursor;
use crmsync_schema::{connections, users, Store};
use error::SyncError;
use google::AccountProvider;
use record::{Counts, ItemError, JournalCtx, Labels};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tracing::Instrument;

/// What started a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Manual,
    Push,
}

impl Trigger {
    pub fn as_str(&self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Push => "push",
        }
    }
}

/// What to do when the mass-untag guard would trip.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MassUntag {
    /// Stop before untagging and report (the default).
    #[default]
    Guard,
    /// The admin confirmed: carry the untags out.
    Confirm,
    /// The admin cancelled: put everything back (re-add to the group, re-tag in the CRM,
    /// re-create deleted Google contacts).
    Restore,
}

/// Options of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    #[serde(default)]
    pub mass_untag: MassUntag,
}

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Name of the Google contact group that holds the synced contacts.
    pub group_name: String,
    pub guard: GuardPolicy,
    pub contacts_policy: PlanPolicy,
    pub activities_policy: PlanPolicy,
    /// Recurring events are synced as instances up to now + this many days.
    pub horizon_days: i64,
    /// Without `synchronize_from`, a full calendar listing starts this many days back.
    pub default_lookback_days: i64,
    /// `connections.list` page size (max 1000).
    pub people_page_size: i32,
    /// `events.list` page size (max 2500).
    pub calendar_page_size: i32,
    /// Runs in a row a record may fail in before it is parked (stops holding the cursors back
    /// and is retried by id in every run); 0 never parks.
    pub park_after: i32,
    /// Concurrent Calendar writes per user (the rate limiter keeps them under the quota).
    pub calendar_concurrency: usize,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            group_name: "CRM".into(),
            guard: GuardPolicy::default(),
            contacts_policy: PlanPolicy::default(),
            activities_policy: PlanPolicy {
                pending_confirm_after: chrono::Duration::zero(),
                update_google_before_leave: false,
            },
            horizon_days: 365,
            default_lookback_days: 30,
            people_page_size: 1000,
            calendar_page_size: crmsync_connectors::CalendarClient::MAX_PAGE_SIZE,
            park_after: 3,
            calendar_concurrency: 8,
        }
    }
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Succeeded,
    /// Stopped by the mass-untag guard; nothing was untagged.
    Blocked,
    Failed,
}

impl RunState {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunState::Succeeded => "succeeded",
            RunState::Blocked => "blocked",
            RunState::Failed => "failed",
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: RunId,
    pub user_id: UserId,
    pub kind: SyncKind,
    pub state: RunState,
    pub counts: Counts,
    pub errors: Vec<ItemError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Google API calls of this run (and retries, rate-limited answers).
    pub api_calls: u64,
    pub api_retries: u64,
    pub api_rate_limited: u64,
    /// Milliseconds during which at least one Google call was in flight (run time minus this
    /// is the engine's own time).
    pub api_time_ms: u64,
}

/// What a kind's run returns to the common run life cycle.
#[derive(Debug, Default)]
pub(crate) struct RunBody {
    pub counts: Counts,
    pub errors: Vec<ItemError>,
    pub blocked: Option<String>,
    pub message: Option<String>,
    /// A preview's planned items (the first [`PREVIEW_ITEMS`]).
    pub planned: Vec<PlannedItem>,
    /// A preview planned more items than [`RunBody::planned`] holds.
    pub planned_truncated: bool,
}

/// A run that plans without carrying anything out: it reads both sides and plans every record
/// as a run would, and writes nothing, neither to Google nor to the store (no run row, no link,
/// no cursor, no progress).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Preview {
    /// Plan what the first run after a reset (`crmsync_schema::reset`) would do: the links read
    /// as the reset leaves them (pairs without their merge base), no cursor (a full listing and
    /// every CRM record in scope), no failing records.
    pub reset: bool,
}

/// Items a preview lists one by one (the counts cover all of them).
pub const PREVIEW_ITEMS: usize = 200;

/// What a preview would do: the counts a run would report, and the first planned items.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewReport {
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    #[schema(value_type = crate::api::openapi::SyncKindDoc)]
    pub kind: SyncKind,
    /// Planned as the first run after a reset, or as the next run.
    pub reset: bool,
    /// What the run would report, per side and action (`created`, `updated`, `tagged`,
    /// `untagged`, `added_to_group`, ...), `linked` (pairs made) and `unlinked`.
    #[schema(value_type = Object)]
    pub counts: Counts,
    /// The first planned items with something to do, in planning order.
    pub items: Vec<PlannedItem>,
    /// More items were planned than are listed.
    pub truncated: bool,
    /// What the mass-untag guard would say: the run would stop before its untags and wait for
    /// an admin's confirm or restore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<String>,
    /// Google API calls the preview made (reads only).
    pub api_calls: u64,
}

/// One planned item of a preview.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlannedItem {
    /// What would happen, as `side.action` (`crm.created`, `google.updated`, `crm.untagged`)
    /// plus `linked` / `unlinked`.
    pub actions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crm_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub google_id: Option<String>,
    /// A name to recognise the record by (title, name or e-mail), when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The planner's rule (`pair_by_email`, `import`, `export`, ...).
    pub rule: String,
}

/// Everything a run needs.
pub(crate) struct RunCtx {
    pub store: Store,
    pub config: Arc<SyncConfig>,
    pub clock: SharedClock,
    pub crash: Arc<dyn CrashPlan>,
    pub user: User,
    pub account: GoogleAccount,
    pub options: RunOptions,
    pub journal: JournalCtx,
    /// Set for a run that only plans ([`SyncEngine::preview`]).
    pub preview: Option<Preview>,
}

impl RunCtx {
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
    /// Whether this run only plans.
    pub fn previewing(&self) -> bool {
        self.preview.is_some()
    }
    /// Whether this run plans what the first run after a reset would do.
    pub fn previews_reset(&self) -> bool {
        self.preview.is_some_and(|p| p.reset)
    }
    /// The cursor a run starts from: the stored one, or none for a preview of a reset.
    pub fn start_cursor(&self, stored: Cursor) -> Cursor {
        if self.previews_reset() {
            Cursor::default()
        } else {
            stored
        }
    }
    pub fn crash_point(&self, p: CrashPoint) -> Result<(), SyncError> {
        self.crash.check(p).map_err(SyncError::from)
    }
}

/// The sync engine: runs sync passes. Cheap to clone.
#[derive(Clone)]
pub struct SyncEngine {
    store: Store,
    accounts: Arc<AccountProvider>,
    config: Arc<SyncConfig>,
    clock: SharedClock,
    crash: Arc<dyn CrashPlan>,
}

impl std::fmt::Debug for SyncEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl SyncEngine {
    pub fn new(
        store: Store,
        accounts: AccountProvider,
        config: SyncConfig,
        clock: SharedClock,
    ) -> Self {
        SyncEngine {
            store,
            accounts: Arc::new(accounts),
            config: Arc::new(config),
            clock,
            crash: Arc::new(NoCrashes),
        }
    }

    /// The same engine with a crash plan (tests).
    pub fn with_crash_plan(&self, crash: Arc<dyn CrashPlan>) -> Self {
        SyncEngine {
            crash,
            ..self.clone()
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
    pub fn config(&self) -> &SyncConfig {
        &self.config
    }
    pub fn accounts(&self) -> &AccountProvider {
        &self.accounts
    }
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Creates a run and carries it out now ("Start synchronization").
    pub async fn sync(
        &self,
        user: UserId,
        kind: SyncKind,
        trigger: Trigger,
        options: RunOptions,
    ) -> Result<RunReport, SyncError> {
        let now = self.clock.now();
        let opts = serde_json::to_value(options).unwrap_or_default();
        let run_id = self
            .store
            .write_async(move |c| runs::create_run(c, user, kind, trigger.as_str(), &opts, now))
            .await?;
        self.execute(run_id, user, kind, options, None).await
    }

    /// Carries out an existing (queued) run. A failure is recorded in the run and returned as a
    /// report with state `failed`; only a simulated crash returns `Err`, leaving the run as a dead
    /// process would.
    pub async fn execute(
        &self,
        run_id: RunId,
        user_id: UserId,
        kind: SyncKind,
        options: RunOptions,
        worker: Option<String>,
    ) -> Result<RunReport, SyncError> {
        let span =
            tracing::info_span!("sync_run", run = %run_id, user = %user_id, kind = kind.as_str());
        async move {
            let now = self.clock.now();
            let w = worker.clone();
            self.store.write_async(move |c| runs::start_run(c, run_id, w.as_deref(), now)).await?;
            tracing::info!("run started");
            let mut metrics_before = CallMetrics::default();
            let result = self.run_kind(run_id, user_id, kind, options, &mut metrics_before).await;
            let metrics = match self.account_metrics(user_id).await {
                Some(m) => m.since(&metrics_before),
                None => CallMetrics::default(),
            };
            let (state, body) = match result {
                Ok(body) if body.blocked.is_some() => (RunState::Blocked, body),
                Ok(body) => (RunState::Succeeded, body),
                Err(SyncError::Crashed(p)) => return Err(SyncError::Crashed(p)),
                Err(e) => {
                    tracing::warn!(error = %e, "run failed");
                    if let SyncError::Auth { message, .. } = &e {
                        self.accounts.forget(user_id);
                        let (m, now) = (message.clone(), self.clock.now());
                        self.store
                            .write_async(move |c| {
                                    if connections::get_connection(c, user_id)?.is_some() {
                                        connections::set_connection_state(c, user_id, ConnectionState::AuthError, Some(&m), now)?;
                                    } else {
                                        connections::set_connection_method(c, user_id, crmsync_engine::model::ConnectionMethod::ServiceAccount, now)?;
                                        connections::set_connection_state(c, user_id, ConnectionState::AuthError, Some(&m), now)?;
                                    }
                                    Ok(())
                                })
                            .await?;
                    }
                    (RunState::Failed, RunBody { message: Some(e.to_string()), ..Default::default() })
                }
            };
            let report = RunReport {
                run_id,
                user_id,
                kind,
                state,
                message: body.blocked.clone().or(body.message.clone()),
                counts: body.counts,
                errors: body.errors,
                api_calls: metrics.calls,
                api_retries: metrics.retries,
                api_rate_limited: metrics.rate_limited,
                api_time_ms: u64::try_from(metrics.busy.as_millis()).unwrap_or(u64::MAX),
            };
            let outcome = RunOutcome {
                state: state.as_str().to_string(),
                counts: serde_json::to_value(&report.counts).unwrap_or_default(),
                conflicts: i32::try_from(report.counts.conflicts).unwrap_or(i32::MAX),
                errors: serde_json::to_value(&report.errors).unwrap_or_default(),
                message: report.message.clone(),
            };
            let now = self.clock.now();
            self.store.write_async(move |c| runs::finish_run(c, run_id, &outcome, now)).await?;
            tracing::info!(state = state.as_str(), counts = ?report.counts, errors = report.errors.len(), "run finished");
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Plans a run of (user, kind) and carries nothing out (the dry run of a reset with `reset`,
    /// else of the next run): Google is read (a full listing for a reset), the store only read. The report holds what a run would count and the first planned items.
    pub async fn preview(
        &self,
        user_id: UserId,
        kind: SyncKind,
        reset: bool,
    ) -> Result<PreviewReport, SyncError> {
        let span =
            tracing::info_span!("sync_preview", user = %user_id, kind = kind.as_str(), reset);
        async move {
            let user = self
                .store
                .read_async(move |c| users::find_user(c, user_id))
                .await?
                .ok_or_else(|| {
                    SyncError::NotConfigured(format!("user {user_id} does not exist"))
                })?;
            let account = self.accounts.account_for(&user).await?;
            let before = account.metrics();
            let ctx = RunCtx {
                store: self.store.clone(),
                config: self.config.clone(),
                clock: self.clock.clone(),
                crash: Arc::new(NoCrashes),
                user,
                account: account.clone(),
                options: RunOptions::default(),
                // Nothing is written under this id: a preview has no run row and no journal.
                journal: JournalCtx {
                    run: RunId::new_random(),
                    user: user_id,
                    kind,
                    labels: Labels::of(kind),
                },
                preview: Some(Preview { reset }),
            };
            let body = match kind {
                SyncKind::Contacts => contacts::run(&ctx).await?,
                SyncKind::Activities => activities::run(&ctx).await?,
            };
            tracing::info!(counts = ?body.counts, "preview planned");
            Ok(PreviewReport {
                user_id,
                kind,
                reset,
                truncated: body.planned_truncated,
                blocked: body.blocked,
                counts: body.counts,
                items: body.planned,
                api_calls: account.metrics().since(&before).calls,
            })
        }
        .instrument(span)
        .await
    }

    async fn account_metrics(&self, user: UserId) -> Option<CallMetrics> {
        let u = self
            .store
            .read_async(move |c| users::find_user(c, user))
            .await
            .ok()??;
        self.accounts
            .account_for(&u)
            .await
            .ok()
            .map(|a| a.metrics())
    }

    async fn run_kind(
        &self,
        run_id: RunId,
        user_id: UserId,
        kind: SyncKind,
        options: RunOptions,
        metrics_before: &mut CallMetrics,
    ) -> Result<RunBody, SyncError> {
        let user = self
            .store
            .read_async(move |c| users::find_user(c, user_id))
            .await?
            .ok_or_else(|| SyncError::NotConfigured(format!("user {user_id} does not exist")))?;
        let account = self.accounts.account_for(&user).await?;
        *metrics_before = account.metrics();
        let ctx = RunCtx {
            preview: None,
            store: self.store.clone(),
            config: self.config.clone(),
            clock: self.clock.clone(),
            crash: self.crash.clone(),
            user,
            account,
            options,
            journal: JournalCtx {
                run: run_id,
                user: user_id,
                kind,
                labels: Labels::of(kind),
            },
        };
        let body = match kind {
            SyncKind::Contacts => contacts::run(&ctx).await?,
            SyncKind::Activities => activities::run(&ctx).await?,
        };
        // A successful run clears an earlier auth error.
        let now = self.clock.now();
        self.store
            .write_async(move |c| {
                if let Some(conn) = connections::get_connection(c, user_id)? {
                    if conn.state == ConnectionState::AuthError {
                        connections::set_connection_state(
                            c,
                            user_id,
                            ConnectionState::Active,
                            None,
                            now,
                        )?;
                    }
                }
                Ok(())
            })
            .await?;
        Ok(body)
    }
}
