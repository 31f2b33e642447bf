//! The shape of every run, shared by contacts and activities: the Google pass over the listing
//! since the sync token (a full listing when there is none or it expired), the CRM pass over the
//! change feed, pending creates, the reconciliation after a full listing, the link ends through
//! the mass-untag guard, and the cursors stored last (with the records that failed: one that
//! keeps failing is parked, stops holding the cursors back and is retried by id in every run).
//! Each kind supplies the steps through [`KindRun`].

use crate::sync::crash::CrashPoint;
use crate::sync::error::SyncError;
use crate::sync::tally::{guard_decision, GuardDecision, Tally};
use crate::sync::{RunBody, RunCtx};
use crmsync_connectors::{ErrorKind, GoogleError};
use crmsync_engine::ids::SyncKind;
use crmsync_engine::planner::LinkState;
use crmsync_schema::parked::{self, ItemSide};
use crmsync_schema::sync_state::{self, Cursor};

/// One page of a Google listing.
pub(crate) struct ListedPage<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
    pub next_sync_token: Option<String>,
}

/// How many CRM changes are read and planned at a time.
pub(crate) const CRM_CHUNK: usize = 200;

/// What a kind supplies to [`drive`].
pub(crate) trait KindRun {
    /// A Google record as listed.
    type Listed;
    /// A CRM record from the change feed.
    type Record: Send + 'static;
    /// An item ready to be carried out.
    type Prepared;

    const KIND: SyncKind;

    fn ctx(&self) -> &RunCtx;
    fn tally(&mut self) -> &mut Tally;

    /// One page of the listing (full when `sync_token` is `None`).
    async fn list(
        &mut self,
        sync_token: Option<&str>,
        page_token: Option<&str>,
    ) -> Result<ListedPage<Self::Listed>, GoogleError>;
    /// Plans and carries out one page of the listing.
    async fn google_batch(&mut self, items: Vec<Self::Listed>) -> Result<(), SyncError>;
    /// What selects this run's records in the CRM change feed (the user, the sync tag).
    type Scope: Clone + Send + 'static;
    fn scope(&self) -> Self::Scope;
    /// Up to `limit` of the scope's CRM records changed after `seq`, in change order.
    fn changed_since(
        c: &mut crmsync_schema::AnyConnection,
        scope: &Self::Scope,
        seq: i64,
        limit: usize,
    ) -> crmsync_schema::StoreResult<Vec<Self::Record>>;
    fn change_seq(r: &Self::Record) -> i64;
    /// Plans and carries out a chunk of the CRM change feed.
    async fn crm_batch(&mut self, chunk: Vec<Self::Record>) -> Result<(), SyncError>;
    /// Parked Google records, read again by id and carried out like listed ones (a record gone
    /// from Google comes back as deleted).
    async fn retry_google(&mut self, ids: Vec<String>) -> Result<(), SyncError>;
    /// Parked CRM records, read again by id and carried out like fed ones.
    async fn retry_crm(&mut self, ids: Vec<String>) -> Result<(), SyncError>;
    /// Pending creates not settled in this run.
    async fn pending_pass(&mut self) -> Result<(), SyncError>;
    /// After a full listing: links whose Google record was not listed.
    async fn reconcile_unlisted(&mut self) -> Result<(), SyncError>;
    /// The link ends collected for the guard.
    fn take_ends(&mut self) -> Vec<Self::Prepared>;
    /// The undoing of a link end (the admin cancelled a mass change).
    fn restore(p: Self::Prepared) -> Self::Prepared;
    /// Carries out plans (`final_phase`: link ends included).
    async fn execute(
        &mut self,
        items: Vec<Self::Prepared>,
        final_phase: bool,
    ) -> Result<(), SyncError>;
    /// What the cursor records besides the token: the container and the listing parameters.
    fn cursor_extras(&self, old: &Cursor) -> (Option<String>, Option<String>);
}

/// Runs the passes of one run and stores the cursors; `token` is the sync token to start from.
pub(crate) async fn drive<R: KindRun>(
    run: &mut R,
    cursor: Cursor,
    token: Option<String>,
    crm_high: i64,
) -> Result<RunBody, SyncError> {
    let alias = run.ctx().user.google_alias.clone();
    let uid = run.ctx().user.id;

    // 0. Records that failed in earlier runs (parked ones are retried below).
    let failing = run
        .ctx()
        .store
        .run(move |s| s.read(|c| parked::failing_items(c, uid, R::KIND, 10_000)))
        .await?;
    let park_after = run.ctx().config.park_after;
    run.tally().load_failures(failing, park_after);

    // 1. Google pass.
    run.tally().in_google_pass = true;
    let mut token = token;
    let mut full = token.is_none();
    let mut page_token: Option<String> = None;
    let new_token = loop {
        let page = match run.list(token.as_deref(), page_token.as_deref()).await {
            Ok(p) => p,
            Err(e) if e.kind == ErrorKind::SyncTokenExpired && token.is_some() => {
                tracing::info!(
                    kind = R::KIND.as_str(),
                    "sync token no longer valid: full re-listing, reconciled against the links"
                );
                token = None;
                full = true;
                page_token = None;
                continue;
            }
            Err(e) => return Err(SyncError::from_google(&alias, e)),
        };
        tracing::debug!(
            items = page.items.len(),
            more = page.next_page_token.is_some(),
            "listing page"
        );
        run.google_batch(page.items).await?;
        match page.next_page_token {
            Some(t) => {
                run.ctx().crash_point(CrashPoint::MidPagination)?;
                page_token = Some(t);
            }
            None => break page.next_sync_token,
        }
    };
    run.tally().in_google_pass = false;

    // 2. CRM pass, up to the change sequence read when the run started.
    let mut after = cursor.crm_seq;
    let scope = run.scope();
    loop {
        let (from, scope) = (after, scope.clone());
        let chunk = run
            .ctx()
            .store
            .run(move |s| s.read(|c| R::changed_since(c, &scope, from, CRM_CHUNK)))
            .await?;
        let chunk: Vec<R::Record> = chunk
            .into_iter()
            .filter(|r| R::change_seq(r) <= crm_high)
            .collect();
        let Some(last) = chunk.last() else { break };
        after = R::change_seq(last);
        run.crm_batch(chunk).await?;
        if after >= crm_high {
            break;
        }
    }

    // 2b. Parked records, retried by id.
    let parked_google = run.tally().parked(ItemSide::Google);
    if !parked_google.is_empty() {
        tracing::info!(
            count = parked_google.len(),
            "retrying parked Google records"
        );
        run.tally().in_google_pass = true;
        run.retry_google(parked_google).await?;
        run.tally().in_google_pass = false;
    }
    let parked_crm = run.tally().parked(ItemSide::Crm);
    if !parked_crm.is_empty() {
        tracing::info!(count = parked_crm.len(), "retrying parked CRM records");
        run.retry_crm(parked_crm).await?;
    }

    // 3. Pending creates; after a full listing, links whose record was not listed.
    run.pending_pass().await?;
    if full {
        run.ctx().crash_point(CrashPoint::DuringFullResync)?;
        run.reconcile_unlisted().await?;
    }

    // 4. Link ends, through the mass-untag guard.
    let ends = run.take_ends();
    if !ends.is_empty() {
        let linked = run
            .ctx()
            .store
            .run(move |s| s.read(|c| sync_state::count_links(c, uid, R::KIND, LinkState::Active)))
            .await?;
        match guard_decision(run.ctx(), linked, ends.len()) {
            GuardDecision::Block(message) => {
                let tally = run.tally();
                tally.body.blocked = Some(message);
                return Ok(std::mem::take(&mut tally.body));
            }
            GuardDecision::Restore => {
                let restored = ends.into_iter().map(R::restore).collect();
                run.execute(restored, true).await?;
            }
            GuardDecision::Proceed => run.execute(ends, true).await?,
        }
    }

    // 5. The cursors, only after everything they cover is committed.
    run.ctx()
        .crash_point(CrashPoint::AfterLocalCommitBeforeTokenStore)?;
    let (container, params) = run.cursor_extras(&cursor);
    let now = run.ctx().now();
    let tally = run.tally();
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
    run.ctx()
        .store
        .run(move |s| {
            s.write(|c| {
                parked::record_outcome(c, uid, R::KIND, &failed, &cleared, park_after, now)?;
                sync_state::put_cursor(c, uid, R::KIND, &new_cursor, now)
            })
        })
        .await?;
    Ok(body)
}
