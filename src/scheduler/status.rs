//! Where each user's sync stands, per kind: the state (`idle`, `queued`, `running`,
//! `auth_error`, `disabled`, `not_configured`), the last successful sync, the next due time, the
//! last error with what to do about it, and the last run. The API's
//! `GET /users/{id}/sync-status` and `crmsync status` show exactly this.

use chrono::{DateTime, Utc};
use crmsync_engine::ids::{RunId, SyncKind, UserId};
use crmsync_engine::model::{ConnectionMethod, ConnectionState, User};
use crmsync_schema::parked::{self, FailingItem};
use crmsync_schema::runs::{self, SyncRun};
use crmsync_schema::{connections, jobs, settings, sync_state, users, AnyConnection, StoreResult};
use serde::Serialize;
use std::collections::BTreeMap;

/// The state of one (user, kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Waiting for its next scheduled time (or a manual start, with auto-sync off).
    Idle,
    /// A manual start is waiting for a worker (or a dead worker's run waits to be taken over).
    Queued,
    Running,
    /// Google refused the user's credentials: no scheduled runs until fixed and started.
    AuthError,
    /// The user's connection is disabled: no scheduled runs.
    Disabled,
    /// No sync settings for this kind, or no way to reach the user's Google account.
    NotConfigured,
}

impl SyncState {
    /// Every state, in the order above.
    pub const ALL: [SyncState; 6] = [
        SyncState::Idle,
        SyncState::Queued,
        SyncState::Running,
        SyncState::AuthError,
        SyncState::Disabled,
        SyncState::NotConfigured,
    ];

    /// The state named `name` (`idle`, `auth_error`, ...).
    pub fn parse(name: &str) -> Option<SyncState> {
        SyncState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            SyncState::Idle => "idle",
            SyncState::Queued => "queued",
            SyncState::Running => "running",
            SyncState::AuthError => "auth_error",
            SyncState::Disabled => "disabled",
            SyncState::NotConfigured => "not_configured",
        }
    }
}

/// How crmsync reaches the user's Google account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConnectionStatus {
    /// `service_account` | `oauth` | `none`.
    pub method: String,
    /// `active` | `auth_error` | `disabled` | `not_configured`.
    pub state: String,
    /// Google's message for an `auth_error`.
    pub last_error: Option<String>,
}

/// One (user, kind). The API document describes the fields of other crates' types with the
/// stand-ins in `crate::api::openapi`.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KindStatus {
    #[schema(value_type = crate::api::openapi::SyncKindDoc)]
    pub kind: SyncKind,
    pub state: SyncState,
    pub auto_sync: bool,
    /// "every 15 minutes", "cron 0 0 8 * * *", ...
    pub schedule: Option<String>,
    pub last_success_at: Option<DateTime<Utc>>,
    /// The next scheduled run (`null` with auto-sync off or while the user is skipped).
    pub next_due_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// What the state means and what to do, when there is something to say.
    pub message: Option<String>,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub running_run_id: Option<RunId>,
    #[schema(value_type = Option<uuid::Uuid>)]
    pub queued_run_id: Option<RunId>,
    /// Who holds the lease (a running run's worker).
    pub worker: Option<String>,
    #[schema(value_type = Option<crate::api::openapi::SyncRunDoc>)]
    pub last_run: Option<SyncRun>,
    /// Records that failed in recent runs (parked ones first, at most 20): each with its side, id,
    /// attempts and last error. Parked records no longer hold the sync back; every run retries
    /// them until they go through.
    #[schema(value_type = Vec<crate::api::openapi::FailingItemDoc>)]
    pub failing: Vec<FailingItem>,
    /// How many records are parked.
    #[schema(format = Int64)]
    pub parked: i64,
    /// Google creates sent but not yet seen back (after a crash or a lost answer, Google may
    /// have made them): they are neither sent again nor forgotten until Google shows them or
    /// the wait is over. `null` when nothing waits.
    pub awaiting_confirmation: Option<AwaitingConfirmation>,
    /// Whether changes start this kind's runs within seconds (SPEC 5 "Push").
    pub push: PushStatus,
}

/// Push for one user and kind.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PushStatus {
    /// CRM writes (and changes other users' runs make) start a run within seconds.
    pub crm_changes: bool,
    /// Activities: a Calendar watch channel brings Google edits within seconds, until
    /// `channel_expires_at` (it is renewed before then).
    pub google_changes: bool,
    pub channel_expires_at: Option<DateTime<Utc>>,
    /// A push run waiting for its debounce to end.
    pub run_due_at: Option<DateTime<Utc>>,
    /// Why push is not (fully) on, and what to do.
    pub message: Option<String>,
}

/// Records whose Google create awaits confirmation.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AwaitingConfirmation {
    #[schema(format = Int64)]
    pub count: i64,
    /// When the oldest is sent again if Google still has not shown it (the first run from then
    /// on does it).
    pub retry_at: Option<DateTime<Utc>>,
}

fn awaiting_confirmation(
    c: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
) -> StoreResult<Option<AwaitingConfirmation>> {
    let (count, oldest) = sync_state::awaiting_confirmation(c, user, kind)?;
    let wait = crmsync_engine::planner::PlanPolicy::default().pending_confirm_after;
    Ok((count > 0).then(|| AwaitingConfirmation {
        count,
        retry_at: oldest.map(|since| since + wait),
    }))
}

/// Every kind of one user.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct UserSyncStatus {
    #[schema(value_type = uuid::Uuid)]
    pub user_id: UserId,
    pub email: String,
    pub google_alias: String,
    pub connection: ConnectionStatus,
    /// Keyed by kind (`contacts`, `activities`).
    pub kinds: BTreeMap<String, KindStatus>,
}

fn connection_status(
    c: &mut AnyConnection,
    user: &User,
) -> StoreResult<(ConnectionStatus, Option<String>)> {
    let domain = crate::sync::google::domain_of(&user.google_alias).to_string();
    // An OAuth connection without a refresh token (left by a Connect never finished, before
    // such starts stopped touching the connection) is no connection: the domain's applies.
    let row = connections::get_connection(c, user.id)?
        .filter(|r| r.method != ConnectionMethod::Oauth || r.has_refresh_token);
    let sa = connections::get_service_account(c, &domain)?;
    let connect_hint = format!(
        "upload the service-account key of {domain} (PUT /api/v1/google/service-account) or connect \
         the user with OAuth (POST /api/v1/users/{}/google/oauth/start)",
        user.id
    );
    Ok(match row {
        Some(r) if r.method == ConnectionMethod::ServiceAccount && sa.is_none() => (
            ConnectionStatus {
                method: r.method.as_str().into(),
                state: "not_configured".into(),
                last_error: r.last_error,
            },
            Some(connect_hint),
        ),
        Some(r) => (
            ConnectionStatus {
                method: r.method.as_str().into(),
                state: r.state.as_str().into(),
                last_error: r.last_error,
            },
            None,
        ),
        None if sa.is_some() => (
            ConnectionStatus {
                method: ConnectionMethod::ServiceAccount.as_str().into(),
                state: ConnectionState::Active.as_str().into(),
                last_error: None,
            },
            None,
        ),
        None => (
            ConnectionStatus {
                method: "none".into(),
                state: "not_configured".into(),
                last_error: None,
            },
            Some(connect_hint),
        ),
    })
}

/// The status of `user`, every kind, read in one transaction at `now`.
pub fn user_status(
    c: &mut AnyConnection,
    user: &User,
    now: DateTime<Utc>,
) -> StoreResult<UserSyncStatus> {
    let (connection, not_connected) = connection_status(c, user)?;
    let mut kinds = BTreeMap::new();
    for kind in SyncKind::ALL {
        let st = settings::get_sync_settings(c, user.id, kind)?;
        let job = jobs::get_job(c, user.id, kind)?;
        let last_run = runs::recent_runs(c, user.id, kind, 1)?.into_iter().next();
        let last_success_at = runs::last_success(c, user.id, kind)?;
        let leased = job.as_ref().is_some_and(|j| j.is_leased(now));
        let running = job
            .as_ref()
            .and_then(|j| j.running_run_id)
            .filter(|_| leased);
        let orphaned = job
            .as_ref()
            .and_then(|j| j.running_run_id)
            .filter(|_| !leased);
        let queued = job.as_ref().and_then(|j| j.requested_run_id);
        let failing = parked::failing_items(c, user.id, kind, 20)?;
        let parked = parked::count_parked(c, user.id, kind)?;
        let awaiting = awaiting_confirmation(c, user.id, kind)?;
        let mut message = None;
        let mut last_error = job.as_ref().and_then(|j| j.last_error.clone()).or_else(|| {
            last_run
                .as_ref()
                .filter(|r| matches!(r.state.as_str(), "failed" | "blocked"))
                .and_then(|r| r.message.clone())
        });
        let state = if running.is_some() {
            SyncState::Running
        } else if queued.is_some() || orphaned.is_some() {
            if orphaned.is_some() {
                message = Some("the worker running this sync stopped; another worker takes the run over when its lease expires".to_string());
            }
            SyncState::Queued
        } else if st.is_none() {
            message = Some(format!(
                "no {kind} sync settings: set them with PUT /api/v1/users/{}/sync-settings/{kind}",
                user.id
            ));
            SyncState::NotConfigured
        } else if let Some(hint) = &not_connected {
            message = Some(hint.clone());
            SyncState::NotConfigured
        } else if connection.state == ConnectionState::AuthError.as_str() {
            last_error = connection.last_error.clone().or(last_error);
            message = Some(format!(
                "Google refused access: scheduled syncs of {} are skipped until the cause is fixed; \
                 then start a sync (POST /api/v1/users/{}/sync/{kind} or crmsync sync --user {}) to resume",
                user.email, user.id, user.email
            ));
            SyncState::AuthError
        } else if connection.state == ConnectionState::Disabled.as_str() {
            message = Some(format!(
                "the Google connection of {} is disabled",
                user.email
            ));
            SyncState::Disabled
        } else {
            if parked > 0 {
                message = Some(format!(
                    "{parked} record(s) could not be synced in several runs and are parked: every \
                     run retries them, the others are not held back; see `failing` for the errors"
                ));
            }
            SyncState::Idle
        };
        let auto_sync = st.as_ref().is_some_and(|s| s.auto_sync);
        let push = push_status(c, user.id, kind, auto_sync, state, job.as_ref())?;
        let next_due_at = match state {
            SyncState::AuthError | SyncState::Disabled | SyncState::NotConfigured => None,
            _ if !auto_sync => None,
            _ => job.as_ref().and_then(|j| j.next_due_at),
        };
        kinds.insert(
            kind.as_str().to_string(),
            KindStatus {
                kind,
                state,
                auto_sync,
                schedule: st.as_ref().map(super::schedule::describe),
                last_success_at,
                next_due_at,
                last_error,
                message,
                running_run_id: running,
                queued_run_id: queued,
                worker: job
                    .as_ref()
                    .filter(|_| leased)
                    .and_then(|j| j.lease_owner.clone()),
                last_run,
                failing,
                parked,
                awaiting_confirmation: awaiting,
                push,
            },
        );
    }
    Ok(UserSyncStatus {
        user_id: user.id,
        email: user.email.clone(),
        google_alias: user.google_alias.clone(),
        connection,
        kinds,
    })
}

fn push_status(
    c: &mut AnyConnection,
    user: crmsync_engine::ids::UserId,
    kind: SyncKind,
    auto_sync: bool,
    state: SyncState,
    job: Option<&jobs::Job>,
) -> StoreResult<PushStatus> {
    let settings = jobs::push_settings(c)?;
    let connected = !matches!(
        state,
        SyncState::AuthError | SyncState::Disabled | SyncState::NotConfigured
    );
    let crm_changes = settings.enabled && auto_sync && connected;
    let channel = match kind {
        SyncKind::Activities => crmsync_schema::channels::channel_of(c, user)?,
        SyncKind::Contacts => None,
    };
    let channel_expires_at = channel
        .as_ref()
        .filter(|ch| ch.channel_id.is_some())
        .and_then(|ch| ch.expires_at);
    let google_changes = crm_changes && channel_expires_at.is_some();
    let message = if !settings.enabled {
        Some("push is off (CRMSYNC_PUSH=off): changes wait for the next scheduled run".to_string())
    } else if !auto_sync || !connected {
        None
    } else {
        match kind {
            SyncKind::Contacts => Some(
                "Google Contacts has no push notifications: changes made in Google arrive at the next scheduled run".to_string(),
            ),
            SyncKind::Activities => match channel {
                Some(ch) if ch.channel_id.is_none() => ch.last_error.map(|e| {
                    format!("no Calendar watch channel ({e}): Google Calendar edits arrive at the next scheduled run")
                }),
                None => Some(
                    "no Calendar watch channel (set CRMSYNC_PUBLIC_URL to crmsync's public https:// address): Google Calendar edits arrive at the next scheduled run".to_string(),
                ),
                Some(_) => None,
            },
        }
    };
    Ok(PushStatus {
        crm_changes,
        google_changes,
        channel_expires_at,
        run_due_at: job.and_then(|j| j.push_due_at),
        message,
    })
}

/// The status of every user (ordered by id), in pages of 500.
pub fn all_status(c: &mut AnyConnection, now: DateTime<Utc>) -> StoreResult<Vec<UserSyncStatus>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = fleet_page(c, after, 500, &FleetFilter::default(), now)?;
        out.extend(page.items.into_iter().map(|(_, st)| st));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(out)
}

/// How many users one [`fleet_page`] looks at, at most, when it filters by state: a page of a
/// filtered list may hold fewer items than asked (even none) and still continue.
pub const FLEET_SCAN_LIMIT: usize = 2000;

/// One page of [`fleet_page`].
#[derive(Clone, Debug)]
pub struct FleetPage {
    /// Each listed user with its status, ordered by user id.
    pub items: Vec<(User, UserSyncStatus)>,
    /// Where the next page starts (after this user id); `None` when there are no more users.
    pub next_after: Option<UserId>,
}

/// The status of the users after `after` (ordered by id, keyset paging as `GET /users`), at most
/// `limit` of them; with `state`, only the users having some kind in that state (looking at
/// [`FLEET_SCAN_LIMIT`] users at most). Read in one transaction at `now`, each user's status as
/// [`user_status`] makes it.
/// Which users a fleet page lists: those having one kind (of `kind`, when given) that passes
/// every filter set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FleetFilter {
    pub state: Option<SyncState>,
    pub kind: Option<SyncKind>,
    /// The kind has a last error or failing records.
    pub errors: bool,
    /// The kind's scheduled run is more than a minute past due.
    pub overdue: bool,
}

impl FleetFilter {
    /// Whether `st` passes.
    pub fn matches(&self, st: &UserSyncStatus, now: DateTime<Utc>) -> bool {
        st.kinds.values().any(|k| {
            self.kind.is_none_or(|want| k.kind == want)
                && self.state.is_none_or(|want| k.state == want)
                && (!self.errors || k.last_error.is_some() || !k.failing.is_empty())
                && (!self.overdue
                    || k.auto_sync
                        && k.next_due_at
                            .is_some_and(|d| d < now - chrono::Duration::minutes(1)))
        })
    }
}

pub fn fleet_page(
    c: &mut AnyConnection,
    after: Option<UserId>,
    limit: usize,
    filter: &FleetFilter,
    now: DateTime<Utc>,
) -> StoreResult<FleetPage> {
    let limit = limit.max(1);
    let mut items = Vec::new();
    let mut cursor = after;
    let mut scanned = 0usize;
    loop {
        let batch = users::list_users(c, cursor, limit)?;
        let exhausted = batch.len() < limit;
        for u in batch {
            cursor = Some(u.id);
            scanned += 1;
            let st = user_status(c, &u, now)?;
            if filter.matches(&st, now) {
                items.push((u, st));
                if items.len() == limit {
                    return Ok(FleetPage {
                        items,
                        next_after: cursor,
                    });
                }
            }
            if scanned >= FLEET_SCAN_LIMIT.max(limit) {
                return Ok(FleetPage {
                    items,
                    next_after: cursor,
                });
            }
        }
        if exhausted {
            return Ok(FleetPage {
                items,
                next_after: None,
            });
        }
    }
}
