//! The shape of every run, shared by contacts and activities: the Google pass over the listing
//! since the sync token (a full listing when there is none or it expired), the CRM pass over the
//! change feed, pending creates, the reconciliation after a full listing, the link ends through
//! the mass-untag guard, and the cursors stored last (with the records that failed: one that
//! keeps failing is parked, stops holding the cursors back and is retried by id in every run).
//! The item machinery lives in [`crate::sync::executor`]; a kind supplies what differs through
//! [`Kind`].

use crate::sync::crash::CrashPoint;
use crate::sync::error::SyncError;
use crate::sync::executor::{Executor, Item};
use crate::sync::tally::{guard_decision, GuardDecision};
use crate::sync::{RunBody, SyncConfig};
use chrono::{DateTime, Utc};
use crmsync_connectors::{ErrorKind, GoogleError};
use crmsync_engine::guard::{self, RejoinGoogle};
use crmsync_engine::ids::{SyncKind, UserId};
use crmsync_engine::model::CrmRecord;
use crmsync_engine::planner::{CrmState, GoogleState, LinkState, PlanPolicy};
use crmsync_schema::changes::Origin;
use crmsync_schema::parked::{self, ItemSide};
use crmsync_schema::sync_state::{self, Cursor, Link};
use crmsync_schema::{AnyConnection, StoreResult};

/// One page of a Google listing.
pub(crate) struct ListedPage<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
    pub next_sync_token: Option<String>,
}

/// What the sync needs of any Google record.
pub(crate) trait RemoteRecord: Sized {
    fn remote_id(&self) -> Option<String>;
    fn etag(&self) -> Option<String>;
    /// When Google last changed it.
    fn updated(&self) -> Option<DateTime<Utc>>;
    /// A record Google no longer has, as a sync listing shows it.
    fn deleted(id: String) -> Self;
}

/// How many CRM changes are read and planned at a time.
pub(crate) const CRM_CHUNK: usize = 200;

/// What a kind supplies: its records on both sides and how they map to the planner's view, its
/// listing and reads by id, which records enter the sync, how listed records are matched to
/// links and CRM records, its Google writes, and the CRM side of a commit. Everything else (the
/// passes, the item machinery, the guard, the cursors) is shared.
pub(crate) trait Kind: Sized + Send + 'static {
    /// The CRM record.
    type Record: CrmRecord + Clone + Send + Sync + 'static;
    /// The Google record (as listed and written).
    type Remote: RemoteRecord + Clone + Send + Sync + 'static;
    /// Per-item mapping context (activities: who the attendees are).
    type Extra: Clone + Send + Sync + 'static;
    /// What selects this run's records in the CRM change feed (the user, the sync tag).
    type Scope: Clone + Send + 'static;
    /// What the CRM side of a commit needs, moved into the store's blocking task.
    type CommitCtx: Clone + Send + Sync + 'static;

    const KIND: SyncKind;
    /// The Google record in messages ("Google contact", "calendar event").
    const REMOTE_NOUN: &'static str;

    /// The Google id a record's Google side has before it exists (kinds with deterministic ids).
    fn planned_google_id(_r: &Self::Record) -> Option<String> {
        None
    }
    fn policy(config: &SyncConfig) -> &PlanPolicy;

    /// The CRM side of an item, for the planner.
    fn crm_state(&self, r: &Self::Record, linked: bool) -> CrmState;
    /// The Google side of an item, for the planner (`None`: not a record this kind syncs).
    fn google_state(
        &self,
        g: &Self::Remote,
        extra: &Self::Extra,
        linked: bool,
    ) -> Option<GoogleState>;

    /// One page of the listing (full when `sync_token` is `None`).
    async fn list(
        &mut self,
        sync_token: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<ListedPage<Self::Remote>, GoogleError>;
    /// Google records by id: each id with its record, `None` when Google no longer has it.
    async fn read_by_ids(
        &mut self,
        ids: &[String],
    ) -> Vec<(String, Result<Option<Self::Remote>, GoogleError>)>;
    fn scope(&self) -> Self::Scope;
    /// Up to `limit` of the scope's CRM records changed after `seq`, in change order.
    fn changed_since(
        c: &mut AnyConnection,
        scope: &Self::Scope,
        seq: i64,
        limit: usize,
    ) -> StoreResult<Vec<Self::Record>>;
    /// CRM records by id (unknown ids are skipped).
    fn records_by_ids(c: &mut AnyConnection, ids: &[String]) -> StoreResult<Vec<Self::Record>>;

    /// The mapping context of a batch about to be planned.
    async fn context(
        ex: &mut Executor<'_, Self>,
        remotes: &[&Self::Remote],
        records: &[&Self::Record],
        links: &[&Link],
    ) -> Result<Self::Extra, SyncError>;
    /// Listed Google records, matched to links and CRM records and planned.
    async fn plan_listed(
        ex: &mut Executor<'_, Self>,
        listed: Vec<Self::Remote>,
    ) -> Result<Vec<Item<Self>>, SyncError>;
    /// After the Google listing (`full` or incremental) was carried out: what the listing does
    /// not report and the kind must read itself (activities: the instances of every recurring
    /// series the listing showed changed, since Google does not list instances a whole-series
    /// change made vanish). Runs as part of the Google pass: a failure holds the sync token back.
    async fn after_listing(_ex: &mut Executor<'_, Self>, _full: bool) -> Result<(), SyncError> {
        Ok(())
    }
    /// Whether a changed CRM record without a link enters the sync (and as which record).
    async fn admit(
        ex: &mut Executor<'_, Self>,
        r: Self::Record,
    ) -> Result<Option<Self::Record>, SyncError>;
    /// Whether a full listing should have shown a linked record.
    fn expected_in_listing(&self, _link: &Link) -> bool {
        true
    }
    /// Carries out the Google side of `work` (creates after [`Executor::commit_intents`]).
    async fn write_google(
        ex: &mut Executor<'_, Self>,
        work: &mut [Item<Self>],
    ) -> Result<(), SyncError>;
    fn commit_ctx(&self) -> Self::CommitCtx;
    /// Locks the CRM record's row in the commit's transaction and answers its change sequence
    /// now (`None`: gone).
    fn locked_change_seq(c: &mut AnyConnection, r: &Self::Record) -> StoreResult<Option<i64>>;
    /// The CRM side of a carried-out plan, in the commit's transaction; returns the record as
    /// written (or as it was).
    fn commit_crm(
        c: &mut AnyConnection,
        user: UserId,
        cc: &Self::CommitCtx,
        item: &Item<Self>,
        origin: Origin,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Self::Record>>;
    /// Whether the kind keeps Google records with their links ([`Kind::kept_record`]).
    const KEEPS_RECORD: bool = false;
    /// What of a Google record is kept with its link (JSON, beside the etag), so that a later
    /// write can start from it without reading the record again; `None` keeps nothing.
    fn kept_record(_r: &Self::Remote) -> Option<String> {
        None
    }
    /// What the cursor records besides the token: the container and the listing parameters.
    fn cursor_extras(&self, old: &Cursor) -> (Option<String>, Option<String>);
    /// How undoing a link end puts back a record that left Google's scope.
    const REJOIN_GOOGLE: RejoinGoogle;
}

/// Runs the passes of one run and stores the cursors; `token` is the sync token to start from.
pub(crate) async fn drive<K: Kind>(
    ex: &mut Executor<'_, K>,
    cursor: Cursor,
    token: Option<String>,
    crm_high: i64,
) -> Result<RunBody, SyncError> {
    let uid = ex.uid();

    // 0. Records that failed in earlier runs (parked ones are retried below; a reset forgets
    // them, and the full listing reads them again).
    let failing = if ex.ctx.previews_reset() {
        Vec::new()
    } else {
        ex.ctx
            .store
            .read_async(move |c| parked::failing_items(c, uid, K::KIND, 10_000))
            .await?
    };
    let park_after = ex.ctx.config.park_after;
    ex.tally.load_failures(failing, park_after);

    // 1. Google pass.
    ex.tally.in_google_pass = true;
    let mut token = token;
    let mut full = token.is_none();
    let mut page_token: Option<String> = None;
    let new_token = loop {
        let page = match ex.kind.list(token.as_deref(), page_token.as_deref()).await {
            Ok(p) => p,
            Err(e) if e.kind == ErrorKind::SyncTokenExpired && token.is_some() => {
                tracing::info!(
                    kind = K::KIND.as_str(),
                    "sync token no longer valid: full re-listing, reconciled against the links"
                );
                token = None;
                full = true;
                page_token = None;
                continue;
            }
            Err(e) => return Err(ex.google_err(e)),
        };
        tracing::debug!(
            items = page.items.len(),
            more = page.next_page_token.is_some(),
            "listing page"
        );
        ex.google_pass(page.items).await?;
        match page.next_page_token {
            Some(t) => {
                ex.ctx.crash_point(CrashPoint::MidPagination)?;
                page_token = Some(t);
            }
            None => break page.next_sync_token,
        }
    };
    K::after_listing(ex, full).await?;
    ex.tally.in_google_pass = false;
    ex.full_listing = full;

    // 2. CRM pass, up to the change sequence read when the run started.
    let mut after = cursor.crm_seq;
    let scope = ex.kind.scope();
    loop {
        let (from, scope) = (after, scope.clone());
        let chunk = ex
            .ctx
            .store
            .read_async(move |c| K::changed_since(c, &scope, from, CRM_CHUNK))
            .await?;
        let chunk: Vec<K::Record> = chunk
            .into_iter()
            .filter(|r| r.change_seq() <= crm_high)
            .collect();
        let Some(last) = chunk.last() else { break };
        after = last.change_seq();
        ex.crm_pass(chunk).await?;
        if after >= crm_high {
            break;
        }
    }

    // 2b. Parked records, retried by id.
    let parked_google = ex.tally.parked(ItemSide::Google);
    if !parked_google.is_empty() {
        tracing::info!(
            count = parked_google.len(),
            "retrying parked Google records"
        );
        ex.tally.in_google_pass = true;
        ex.retry_google(parked_google).await?;
        ex.tally.in_google_pass = false;
    }
    let parked_crm = ex.tally.parked(ItemSide::Crm);
    if !parked_crm.is_empty() {
        tracing::info!(count = parked_crm.len(), "retrying parked CRM records");
        ex.retry_crm(parked_crm).await?;
    }

    // 3. Pending creates; after a full listing, links whose record was not listed.
    ex.pending_pass().await?;
    if full {
        ex.ctx.crash_point(CrashPoint::DuringFullResync)?;
        ex.reconcile_unlisted().await?;
    }

    // 4. Link ends, through the mass-untag guard.
    let ends = std::mem::take(&mut ex.ends);
    let decision = if ends.is_empty() {
        None
    } else {
        let linked = ex
            .ctx
            .store
            .read_async(move |c| sync_state::count_links(c, uid, K::KIND, LinkState::Active))
            .await?;
        Some(guard_decision(ex.ctx, linked, ends.len()))
    };
    if ex.ctx.previewing() {
        // Counted as if the guard let them through, with what it would say; nothing is stored.
        if let Some(GuardDecision::Block(message)) = decision {
            ex.tally.body.blocked = Some(message);
        }
        ex.execute(ends, true).await?;
        return Ok(std::mem::take(&mut ex.tally.body));
    }
    if let Some(decision) = decision {
        match decision {
            GuardDecision::Block(message) => {
                ex.tally.body.blocked = Some(message);
                return Ok(std::mem::take(&mut ex.tally.body));
            }
            GuardDecision::Restore => {
                let undone = ends
                    .into_iter()
                    .map(|mut item| {
                        if let Some(plan) = guard::undo_end(&item.plan, K::REJOIN_GOOGLE) {
                            if plan.google.create {
                                // Created again from the snapshot, not written over what is gone.
                                item.remote = None;
                            }
                            item.plan = plan;
                        }
                        item
                    })
                    .collect();
                ex.execute(undone, true).await?;
            }
            GuardDecision::Proceed => ex.execute(ends, true).await?,
        }
    }

    // 5. The cursors, only after everything they cover is committed.
    ex.ctx
        .crash_point(CrashPoint::AfterLocalCommitBeforeTokenStore)?;
    let (container, params) = ex.kind.cursor_extras(&cursor);
    let now = ex.ctx.now();
    let tally = &mut ex.tally;
    let new_cursor = Cursor {
        google_sync_token: if tally.google_incomplete {
            cursor.google_sync_token.clone().filter(|_| !full)
        } else {
            new_token
        },
        google_token_params: params,
        google_container: container,
        crm_seq: tally.crm_cursor(cursor.crm_seq, crm_high),
        full_sync_at: if full { Some(now) } else { cursor.full_sync_at },
    };
    let (failed, cleared) = tally.failure_outcome();
    let body = std::mem::take(&mut tally.body);
    // The failing records and the cursors together: a cursor never passes a failed record
    // that is not parked.
    ex.ctx
        .store
        .write_async(move |c| {
            parked::record_outcome(c, uid, K::KIND, &failed, &cleared, park_after, now)?;
            sync_state::put_cursor(c, uid, K::KIND, &new_cursor, now)
        })
        .await?;
    Ok(body)
}
