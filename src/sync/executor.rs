//! The item machinery every kind shares: an [`Item`] (its plan, link, both sides, the written
//! result, failure), the run's state (tally, records handled, records listed, link ends), and
//! the passes that turn records into planned items and carry them out: the CRM change feed,
//! pending creates, links read back after a full listing, links a kind found gone (instances a
//! recurring series no longer has), parked records retried by id, the intents committed before
//! Google creates, the batch splitter that isolates refused records, and the local commit. A
//! kind ([`Kind`]) supplies its record adapters, its identity resolution of listed records and
//! its Google writes.

use crate::sync::commit::{commit_items, commit_link, link_record, write_intents, LinkCommit};
use crate::sync::crash::CrashPoint;
use crate::sync::driver::{Kind, RemoteRecord};
use crate::sync::error::SyncError;
use crate::sync::record::JournalCtx;
use crate::sync::record::{plan_actions, record_label};
use crate::sync::tally::Tally;
use crate::sync::{PlannedItem, RunCtx, PREVIEW_ITEMS};
use chrono::{DateTime, Utc};
use crmsync_connectors::{ErrorKind, GoogleError};
use crmsync_engine::identity::KnownLink;
use crmsync_engine::ids::{LinkId, UserId};
use crmsync_engine::model::CrmRecord;
use crmsync_engine::planner::{
    self, GoogleObs, ItemPlan, LinkState, PairReason, Presence, ScopeOp,
};
use crmsync_schema::changes::Origin;
use crmsync_schema::reset;
use crmsync_schema::sync_state::{self, JournalEntry, Link, LinkWrite};
use crmsync_schema::{AnyConnection, StoreError, StoreResult};
use std::collections::{HashMap, HashSet};

/// Items per local transaction (and per Google batch where the API has batches).
pub(crate) const BATCH: usize = 200;
/// Links read per page when a pass walks every link of a state.
const LINK_PAGE: usize = 1000;

/// One record pair with its plan, and what carrying it out has produced so far.
pub(crate) struct Item<K: Kind> {
    pub plan: ItemPlan,
    /// The link as loaded (if any).
    pub link: Option<Link>,
    pub crm: Option<K::Record>,
    /// The Google record as last read (the base of a write), when known.
    pub remote: Option<K::Remote>,
    /// The Google record as Google returned it after this run's write.
    pub written: Option<K::Remote>,
    /// The link row id once it exists (pending links are inserted before Google creates).
    pub link_id: Option<LinkId>,
    /// The kind's mapping context for this item (activities: who the attendees are).
    pub extra: K::Extra,
    pub failed: bool,
}

impl<K: Kind> Clone for Item<K> {
    fn clone(&self) -> Self {
        Item {
            plan: self.plan.clone(),
            link: self.link.clone(),
            crm: self.crm.clone(),
            remote: self.remote.clone(),
            written: self.written.clone(),
            link_id: self.link_id,
            extra: self.extra.clone(),
            failed: self.failed,
        }
    }
}

impl<K: Kind> Item<K> {
    /// The CRM id: the record's, else the link's.
    pub fn crm_id(&self) -> Option<String> {
        self.crm
            .as_ref()
            .map(CrmRecord::record_id)
            .or_else(|| self.link.as_ref().map(|l| l.crm_id.clone()))
    }

    /// Google shows a newer version than the link records (a change to what the sync does not
    /// map): nothing to write, but for a kind that keeps the record with the link
    /// ([`Kind::KEEPS_RECORD`]) the link takes its etag and record, so the next update goes out
    /// on the current version.
    pub fn newer_remote(&self) -> bool {
        match (
            &self.link,
            self.remote.as_ref().and_then(RemoteRecord::etag),
        ) {
            (Some(l), Some(etag)) => l.state == LinkState::Active && l.etag.as_ref() != Some(&etag),
            _ => false,
        }
    }

    /// The Google id: what Google answered, else what was read, planned, linked, or (for kinds
    /// with deterministic ids) what the record's Google side will be called.
    pub fn google_id(&self) -> Option<String> {
        self.written
            .as_ref()
            .and_then(RemoteRecord::remote_id)
            .or_else(|| self.remote.as_ref().and_then(RemoteRecord::remote_id))
            .or_else(|| self.plan.google_id.as_ref().map(|g| g.0.clone()))
            .or_else(|| self.link.as_ref().and_then(|l| l.google_id.clone()))
            .or_else(|| self.crm.as_ref().and_then(K::planned_google_id))
    }
}

/// What [`Executor::replan_links`] knows of the Google side of the links it plans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reread {
    /// Nothing: planned without a Google observation.
    No,
    /// Read back by id (absent: missing).
    Read,
    /// Known to be gone.
    Gone,
}

/// What identity resolution needs to know of a link.
pub(crate) fn known_link(l: &Link) -> KnownLink<'_> {
    KnownLink {
        google_id: l.google_id.as_deref(),
        state: l.state,
    }
}

/// The inputs of one item's plan.
pub(crate) struct Observed<K: Kind> {
    pub link: Option<Link>,
    pub crm: Option<K::Record>,
    pub google: GoogleObs,
    pub remote: Option<K::Remote>,
    pub paired: Option<PairReason>,
    pub extra: K::Extra,
}

/// One run of one kind: the kind, and what the run has done so far.
pub(crate) struct Executor<'a, K: Kind> {
    pub ctx: &'a RunCtx,
    pub kind: K,
    pub tally: Tally,
    /// CRM ids already handled in this run (each record is planned once).
    pub handled: HashSet<String>,
    /// Google ids listed in this run (for the reconciliation after a full listing).
    pub listed: HashSet<String>,
    /// Plans that end a link: carried out after the mass-untag guard.
    pub ends: Vec<Item<K>>,
    /// The listing of this run was a full one: a linked record it did not show may be gone.
    pub full_listing: bool,
    /// Link ends are being carried out (the guard has decided): a re-plan that ends a link is
    /// carried out at once instead of waiting for a guard that has already run.
    final_phase: bool,
    /// Records handled, of those read so far (the run's progress, stored as it goes).
    progress: (i64, i64),
}

impl<'a, K: Kind> Executor<'a, K> {
    pub fn new(ctx: &'a RunCtx, kind: K) -> Self {
        Executor {
            ctx,
            kind,
            tally: Tally::default(),
            handled: HashSet::new(),
            listed: HashSet::new(),
            ends: Vec::new(),
            full_listing: false,
            final_phase: false,
            progress: (0, 0),
        }
    }

    pub fn uid(&self) -> UserId {
        self.ctx.user.id
    }

    /// A Google failure that stops the run (credentials and outages), in the run's words.
    pub fn google_err(&self, e: GoogleError) -> SyncError {
        SyncError::from_google(&self.ctx.user.google_alias, e)
    }

    /// Plans one item.
    pub fn plan(&self, o: Observed<K>) -> Item<K> {
        let item = planner::Item {
            link: o.link.as_ref().map(link_record),
            crm: o
                .crm
                .as_ref()
                .map(|r| self.kind.crm_state(r, o.link.is_some())),
            google: o.google,
            paired: o.paired,
        };
        let plan = planner::plan_item(&item, K::policy(&self.ctx.config), self.ctx.now());
        Item {
            link_id: o.link.as_ref().map(|l| l.id),
            plan,
            link: o.link,
            crm: o.crm,
            remote: o.remote,
            written: None,
            extra: o.extra,
            failed: false,
        }
    }

    /// What Google holds for a linked item, from a fresh read (`None`: confirmed missing).
    pub fn observe(
        &self,
        remote: Option<&K::Remote>,
        extra: &K::Extra,
    ) -> (GoogleObs, Option<K::Remote>) {
        match remote.and_then(|r| Some((self.kind.google_state(r, extra, true)?, r))) {
            Some((s, r)) => (GoogleObs::Seen(s), Some(r.clone())),
            None => (GoogleObs::Missing, None),
        }
    }

    /// Records a failed item; it is retried by the next run (and parked if it keeps failing).
    pub fn fail(&mut self, item: &mut Item<K>, message: String, google_side: bool) {
        item.failed = true;
        let seq = item.crm.as_ref().map(CrmRecord::change_seq);
        self.tally
            .item_error(item.crm_id(), item.google_id(), seq, message, google_side);
    }

    /// Re-plans an item against what Google holds now (`Missing`: confirmed gone). A re-plan
    /// that ends the link goes through the guard; one that would re-create the Google record is
    /// left to the next run.
    pub fn replan(&mut self, p: &mut Item<K>, google: GoogleObs) {
        let item = planner::Item {
            link: p.link.as_ref().map(link_record),
            crm: p
                .crm
                .as_ref()
                .map(|r| self.kind.crm_state(r, p.link.is_some())),
            google,
            paired: None,
        };
        let plan = planner::plan_item(&item, K::policy(&self.ctx.config), self.ctx.now());
        if plan.ends_link() && !self.final_phase {
            let mut later = p.clone();
            later.plan = plan;
            self.ends.push(later);
            p.failed = true;
            return;
        }
        if plan.google.create {
            p.failed = true;
            return;
        }
        p.plan = plan;
    }

    /// Reads Google records by id; absent ones are missing from the map.
    pub async fn fetch(&mut self, ids: &[String]) -> Result<HashMap<String, K::Remote>, SyncError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut out = HashMap::new();
        for (id, r) in self.kind.read_by_ids(ids).await {
            match r {
                Ok(Some(remote)) => {
                    out.insert(id, remote);
                }
                Ok(None) => {}
                Err(e) => return Err(self.google_err(e)),
            }
        }
        Ok(out)
    }

    /// Links as this run sees them: as stored, or (the dry run of a reset) as the reset will
    /// leave them. Every link the run reads goes through here.
    pub fn seen_links(&self, links: Vec<Link>) -> Vec<Link> {
        if self.ctx.previews_reset() {
            links.into_iter().map(reset::as_after_reset).collect()
        } else {
            links
        }
    }

    async fn links_by_crm_ids(&self, ids: Vec<String>) -> Result<HashMap<String, Link>, SyncError> {
        let uid = self.uid();
        let links = self
            .ctx
            .store
            .read_async(move |c| sync_state::links_by_crm_ids(c, uid, K::KIND, &ids))
            .await?;
        Ok(self
            .seen_links(links)
            .into_iter()
            .map(|l| (l.crm_id.clone(), l))
            .collect())
    }

    async fn records_by_ids(
        &self,
        ids: Vec<String>,
    ) -> Result<HashMap<String, K::Record>, SyncError> {
        Ok(self
            .ctx
            .store
            .read_async(move |c| K::records_by_ids(c, &ids))
            .await?
            .into_iter()
            .map(|r| (r.record_id(), r))
            .collect())
    }

    /// One page of links of `state` after `after`, in id order.
    pub async fn link_page(
        &self,
        state: LinkState,
        after: Option<LinkId>,
    ) -> Result<Vec<Link>, SyncError> {
        let uid = self.uid();
        let links = self
            .ctx
            .store
            .read_async(move |c| {
                sync_state::links_in_state(c, uid, K::KIND, state, after, LINK_PAGE)
            })
            .await?;
        Ok(self.seen_links(links))
    }

    /// Adds to the run's progress (`known` records read, `done` handled) and stores it; a
    /// progress that cannot be stored is only logged (it is for the people watching).
    async fn progress(&mut self, known: usize, done: usize) {
        if self.ctx.previewing() {
            return;
        }
        self.progress.0 += done as i64;
        self.progress.1 += known as i64;
        let (run, (done, known)) = (self.ctx.journal.run, self.progress);
        let stored = self
            .ctx
            .store
            .write_async(move |c| crmsync_schema::runs::set_progress(c, run, done, known))
            .await;
        if let Err(e) = stored {
            tracing::debug!(error = %e, "could not store the run's progress");
        }
    }

    /// Plans and carries out records of the Google listing.
    pub async fn google_pass(&mut self, listed: Vec<K::Remote>) -> Result<(), SyncError> {
        if listed.is_empty() {
            return Ok(());
        }
        let n = listed.len();
        self.progress(n, 0).await;
        self.listed
            .extend(listed.iter().filter_map(RemoteRecord::remote_id));
        let batch = K::plan_listed(self, listed).await?;
        self.execute(batch, false).await?;
        self.progress(0, n).await;
        Ok(())
    }

    /// Plans and carries out a chunk of the CRM change feed.
    pub async fn crm_pass(&mut self, chunk: Vec<K::Record>) -> Result<(), SyncError> {
        let chunk: Vec<K::Record> = chunk
            .into_iter()
            .filter(|r| !self.handled.contains(&r.record_id()))
            .collect();
        if chunk.is_empty() {
            return Ok(());
        }
        let n = chunk.len();
        self.progress(n, 0).await;
        let links = self
            .links_by_crm_ids(chunk.iter().map(CrmRecord::record_id).collect())
            .await?;
        let mut work: Vec<(K::Record, Option<Link>)> = Vec::new();
        for r in chunk {
            let link = links.get(&r.record_id()).cloned();
            let r = match &link {
                // The engine's own write, already in the snapshot.
                Some(l) if l.crm_change_seq == r.change_seq() => continue,
                Some(_) => r,
                None => match K::admit(self, r).await? {
                    Some(r) => r,
                    None => continue,
                },
            };
            self.handled.insert(r.record_id());
            work.push((r, link));
        }
        if work.is_empty() {
            self.progress(0, n).await;
            return Ok(());
        }
        // The Google side to read before planning (see `needs_read`).
        let reread: Vec<String> = work
            .iter()
            .filter_map(|(r, l)| self.needs_read(r, l.as_ref()).flatten())
            .collect();
        let fetched = self.fetch(&reread).await?;
        let extra = {
            let remotes: Vec<&K::Remote> = fetched.values().collect();
            let records: Vec<&K::Record> = work.iter().map(|(r, _)| r).collect();
            let links: Vec<&Link> = work.iter().filter_map(|(_, l)| l.as_ref()).collect();
            K::context(self, &remotes, &records, &links).await?
        };
        let mut batch = Vec::with_capacity(work.len());
        for (r, l) in work {
            let (google, remote) = match self.needs_read(&r, l.as_ref()) {
                Some(id) => self.observe(id.and_then(|g| fetched.get(&g)), &extra),
                None => (GoogleObs::NotObserved, None),
            };
            batch.push(self.plan(Observed {
                link: l,
                crm: Some(r),
                google,
                remote,
                paired: None,
                extra: extra.clone(),
            }));
        }
        self.execute(batch, false).await?;
        self.progress(0, n).await;
        Ok(())
    }

    /// Whether a changed CRM record's Google side must be read before planning it (`Some`, with
    /// its id when known): a pair whose merge base a reset forgot, a record coming back into
    /// scope (its link ended), and, after a full
    /// listing, a linked record the listing should have shown and did not (it may be gone: a
    /// plan made without reading it would never see the delete).
    fn needs_read(&self, r: &K::Record, l: Option<&Link>) -> Option<Option<String>> {
        let l = l?;
        if reset::base_forgotten(l) {
            // A pair after a reset: merged as a first pairing, so against what Google holds.
            return l.google_id.clone().map(Some);
        }
        match l.state {
            LinkState::Ended => (self.kind.crm_state(r, true).presence == Presence::InScope)
                .then(|| l.google_id.clone().or_else(|| K::planned_google_id(r))),
            LinkState::Active
                if self.full_listing
                    && self.kind.expected_in_listing(l)
                    && l.google_id
                        .as_ref()
                        .is_some_and(|g| !self.listed.contains(g)) =>
            {
                Some(l.google_id.clone())
            }
            _ => None,
        }
    }

    /// Parked Google records, read again by id (one gone from Google comes back as deleted) and
    /// carried out like listed ones.
    pub async fn retry_google(&mut self, ids: Vec<String>) -> Result<(), SyncError> {
        let mut remotes = Vec::with_capacity(ids.len());
        for (id, r) in self.kind.read_by_ids(&ids).await {
            match r {
                Ok(Some(remote)) => remotes.push(remote),
                Ok(None) => remotes.push(K::Remote::deleted(id)),
                Err(e) if e.kind == ErrorKind::Auth => return Err(self.google_err(e)),
                Err(e) => {
                    let message = format!("reading the parked {} failed: {e}", K::REMOTE_NOUN);
                    self.tally.item_error(None, Some(id), None, message, true);
                }
            }
        }
        self.google_pass(remotes).await
    }

    /// Parked CRM records, read again by id and carried out like fed ones.
    pub async fn retry_crm(&mut self, ids: Vec<String>) -> Result<(), SyncError> {
        let records: Vec<K::Record> = self.records_by_ids(ids).await?.into_values().collect();
        self.crm_pass(records).await
    }

    /// Pending creates not settled in this run: planned without a Google observation (retried
    /// once they waited long enough).
    pub async fn pending_pass(&mut self) -> Result<(), SyncError> {
        let mut after = None;
        loop {
            let page = self.link_page(LinkState::Pending, after).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let todo: Vec<Link> = page
                .into_iter()
                .filter(|l| !self.handled.contains(&l.crm_id))
                .collect();
            self.replan_links(todo, Reread::No).await?;
        }
        Ok(())
    }

    /// After a full listing: active links whose Google record was not listed (though the
    /// listing should have shown it) are read back; only a record Google confirms missing
    /// counts as deleted.
    pub async fn reconcile_unlisted(&mut self) -> Result<(), SyncError> {
        let mut after = None;
        loop {
            let page = self.link_page(LinkState::Active, after).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let unlisted: Vec<Link> = page
                .into_iter()
                .filter(|l| !self.handled.contains(&l.crm_id))
                .filter(|l| {
                    l.google_id
                        .as_ref()
                        .is_some_and(|g| !self.listed.contains(g))
                })
                .filter(|l| self.kind.expected_in_listing(l))
                .collect();
            self.replan_links(unlisted, Reread::Read).await?;
        }
        Ok(())
    }

    /// Links whose Google record a kind found gone although no listing said so (activities:
    /// instances a recurring series no longer has): planned as missing, so the link ends
    /// through the guard like any Google delete. With `confirm`, each is read back first and
    /// only a record Google confirms missing counts as gone (one still there is planned as
    /// read). Links already handled in this run are skipped.
    pub async fn reconcile_gone(
        &mut self,
        links: Vec<Link>,
        confirm: bool,
    ) -> Result<(), SyncError> {
        let links: Vec<Link> = links
            .into_iter()
            .filter(|l| !self.handled.contains(&l.crm_id))
            .collect();
        let how = if confirm { Reread::Read } else { Reread::Gone };
        self.replan_links(links, how).await
    }

    /// Plans links with a fresh read of their Google record, as known gone, or without a
    /// Google observation.
    async fn replan_links(&mut self, links: Vec<Link>, how: Reread) -> Result<(), SyncError> {
        for chunk in links.chunks(BATCH) {
            let records = self
                .records_by_ids(chunk.iter().map(|l| l.crm_id.clone()).collect())
                .await?;
            let fetched = if how == Reread::Read {
                let ids: Vec<String> = chunk.iter().filter_map(|l| l.google_id.clone()).collect();
                self.fetch(&ids).await?
            } else {
                HashMap::new()
            };
            let extra = {
                let remotes: Vec<&K::Remote> = fetched.values().collect();
                let recs: Vec<&K::Record> = records.values().collect();
                let lrefs: Vec<&Link> = chunk.iter().collect();
                K::context(self, &remotes, &recs, &lrefs).await?
            };
            let mut batch = Vec::with_capacity(chunk.len());
            for l in chunk {
                self.handled.insert(l.crm_id.clone());
                let (google, remote) = match (&l.google_id, how) {
                    (Some(g), Reread::Read) => self.observe(fetched.get(g), &extra),
                    (Some(_), Reread::Gone) => (GoogleObs::Missing, None),
                    _ => (GoogleObs::NotObserved, None),
                };
                batch.push(self.plan(Observed {
                    link: Some(l.clone()),
                    crm: records.get(&l.crm_id).cloned(),
                    google,
                    remote,
                    paired: None,
                    extra: extra.clone(),
                }));
            }
            self.execute(batch, false).await?;
        }
        Ok(())
    }

    /// Carries out plans: the kind's Google writes, then the local commit in batches. Link
    /// ends wait for the guard unless `final_phase`.
    pub async fn execute(
        &mut self,
        items: Vec<Item<K>>,
        final_phase: bool,
    ) -> Result<(), SyncError> {
        let labels = self.ctx.journal.labels;
        if self.ctx.previewing() {
            self.note_planned(items, final_phase);
            return Ok(());
        }
        let mut work = Vec::new();
        for p in items {
            if p.plan.ends_link() && !final_phase {
                self.ends.push(p);
            } else if p.plan.deferred
                || (p.plan.is_noop() && !(K::KEEPS_RECORD && p.newer_remote()))
            {
                self.tally.body.counts.add_plan(&p.plan, labels);
            } else {
                work.push(p);
            }
        }
        if work.is_empty() {
            return Ok(());
        }
        self.final_phase = final_phase;
        let written = K::write_google(self, &mut work).await;
        self.final_phase = false;
        written?;
        for chunk in work.chunks_mut(BATCH) {
            self.commit(chunk).await?;
        }
        Ok(())
    }

    /// A preview's "carrying out": counts what each plan would do and lists the first items
    /// (link ends still wait for the guard's decision, as in a run).
    fn note_planned(&mut self, items: Vec<Item<K>>, final_phase: bool) {
        let labels = self.ctx.journal.labels;
        for p in items {
            if p.plan.ends_link() && !final_phase {
                self.ends.push(p);
                continue;
            }
            self.tally.body.counts.add_plan(&p.plan, labels);
            let actions = plan_actions(&p.plan, labels);
            // Only what someone would see: a plan that records a new merge base alone is not.
            if p.plan.deferred || actions.is_empty() {
                continue;
            }
            let body = &mut self.tally.body;
            if body.planned.len() >= PREVIEW_ITEMS {
                body.planned_truncated = true;
                continue;
            }
            body.planned.push(PlannedItem {
                actions,
                crm_id: p.crm_id(),
                google_id: p.google_id(),
                label: record_label(&p.plan.crm.target),
                rule: p.plan.rule.as_str().to_string(),
            });
        }
    }

    /// The Google creates to send from `work` (positions and CRM ids), with their intents
    /// committed: a pending link per create, so a crash after Google applied one is recovered
    /// by adoption (the CRM id travels with the Google record), never by a duplicate. Then the
    /// crash point before the remote write.
    pub async fn begin_creates(
        &mut self,
        work: &mut [Item<K>],
    ) -> Result<Vec<(usize, String)>, SyncError> {
        let mut creates = Vec::new();
        for (i, p) in work.iter_mut().enumerate() {
            if !p.plan.google.create || p.failed {
                continue;
            }
            match p.crm_id() {
                Some(crm_id) => creates.push((i, crm_id)),
                // A Google create always comes from a CRM record: never write a link without one.
                None => self.fail(
                    p,
                    "internal error: a Google create without a CRM record".into(),
                    false,
                ),
            }
        }
        if creates.is_empty() {
            return Ok(creates);
        }
        let (uid, now) = (self.uid(), self.ctx.now());
        let intents: Vec<(Option<LinkId>, LinkWrite)> = creates
            .iter()
            .map(|(i, crm_id)| {
                let p = &work[*i];
                let write = LinkWrite {
                    crm_id: crm_id.clone(),
                    google_id: p.crm.as_ref().and_then(K::planned_google_id),
                    state: LinkState::Pending,
                    snapshot: p.plan.google.target.clone(),
                    etag: None,
                    google_updated: None,
                    crm_change_seq: p.crm.as_ref().map(CrmRecord::change_seq).unwrap_or(0),
                    pending_since: Some(now),
                    end_reason: None,
                    google_record: None,
                };
                (p.link_id, write)
            })
            .collect();
        let ids = write_intents(&self.ctx.store, uid, K::KIND, intents, now).await?;
        for ((i, _), id) in creates.iter().zip(ids) {
            work[*i].link_id = Some(id);
        }
        self.ctx.crash_point(CrashPoint::BeforeRemoteWrite)?;
        Ok(creates)
    }

    /// The local commit of carried-out items: CRM writes, links and journal in one transaction
    /// (one per item if the batch fails, so one bad item does not block the others).
    async fn commit(&mut self, chunk: &mut [Item<K>]) -> Result<(), SyncError> {
        let todo: Vec<Item<K>> = chunk.iter().filter(|p| !p.failed).cloned().collect();
        let (uid, jctx, now, cc) = (
            self.uid(),
            self.ctx.journal,
            self.ctx.now(),
            self.kind.commit_ctx(),
        );
        let results = commit_items(&self.ctx.store, todo, now, move |c, p| {
            commit_item::<K>(c, uid, &jctx, &cc, p, now)
        })
        .await?;
        for (mut p, r) in results {
            match r {
                Ok(()) => self.tally.body.counts.add_plan(&p.plan, jctx.labels),
                Err(StoreError::Stale(m)) => {
                    self.record_google_write(&p).await?;
                    self.fail(&mut p, m, true);
                }
                Err(e) => self.fail(&mut p, format!("saving in the CRM failed: {e}"), true),
            }
        }
        Ok(())
    }

    /// An item whose CRM record changed while the run planned it (see [`commit_item`]) is not
    /// committed, but what the run wrote to Google is recorded in its link's base: those fields
    /// now hold in Google what the CRM held when the plan was made. Without it the next run
    /// would take the run's own write for a Google edit, which a later Google change to another
    /// field (making the whole record newer) would let win over the user's newer CRM edit.
    async fn record_google_write(&self, p: &Item<K>) -> Result<(), SyncError> {
        let (Some(link), Some(written)) = (p.link.as_ref(), p.written.as_ref()) else {
            return Ok(());
        };
        if link.state != LinkState::Active || p.plan.google.update.is_empty() {
            return Ok(());
        }
        let mut w = link.to_write();
        for f in &p.plan.google.update {
            match p.plan.google.target.get(f) {
                Some(v) => w.snapshot.insert(f.clone(), v.clone()),
                None => w.snapshot.remove(f),
            };
        }
        w.etag = written.etag();
        w.google_updated = written.updated();
        // The kept Google record no longer matches: the next update reads the record first.
        w.google_record = None;
        let (id, now) = (link.id, self.ctx.now());
        self.ctx
            .store
            .write_async(move |c| sync_state::update_link(c, id, &w, now))
            .await?;
        Ok(())
    }
}

/// Writes one carried-out plan locally: the kind's CRM writes, then the link and the journal.
fn commit_item<K: Kind>(
    c: &mut AnyConnection,
    uid: UserId,
    jctx: &JournalCtx,
    cc: &K::CommitCtx,
    p: &Item<K>,
    now: DateTime<Utc>,
) -> StoreResult<Vec<JournalEntry>> {
    let origin = Origin::Sync {
        run: jctx.run,
        user: uid,
    };
    // A CRM write goes out on the record as it was read: if a user changed it since (an API
    // write while the run planned), writing now would lose that change. The item fails instead
    // (nothing of it is committed, the run's cursors stay before it) and the next run merges
    // both changes.
    let writes_crm =
        !p.plan.crm.create && (!p.plan.crm.update.is_empty() || p.plan.crm.scope != ScopeOp::Keep);
    if let Some(read) = p.crm.as_ref().filter(|_| writes_crm) {
        let now_seq = K::locked_change_seq(c, read)?;
        if now_seq != Some(read.change_seq()) {
            return Err(StoreError::Stale(format!(
                "the CRM record changed while the run was planning it (change {} read, {} now); the next run merges both",
                read.change_seq(),
                now_seq.map_or("deleted".to_string(), |s| s.to_string())
            )));
        }
    }
    let record = K::commit_crm(c, uid, cc, p, origin, now)?;
    let remote = p.written.as_ref().or(p.remote.as_ref());
    let lc = LinkCommit {
        user: uid,
        journal: jctx,
        plan: &p.plan,
        link: p.link.as_ref(),
        link_id: p.link_id,
        crm_id: record
            .as_ref()
            .map(CrmRecord::record_id)
            .or_else(|| p.crm_id()),
        crm_seq: record.as_ref().map(CrmRecord::change_seq).unwrap_or(0),
        google_id: p.google_id(),
        etag: remote
            .and_then(RemoteRecord::etag)
            .or_else(|| p.link.as_ref().and_then(|l| l.etag.clone())),
        google_updated: remote
            .and_then(RemoteRecord::updated)
            .or_else(|| p.link.as_ref().and_then(|l| l.google_updated)),
        // Kept together with the etag: from the same record, else as the link had them.
        google_record: match remote {
            Some(r) => K::kept_record(r),
            None => p.link.as_ref().and_then(|l| l.google_record.clone()),
        },
        google_written: p.written.is_some(),
    };
    commit_link(c, lc, now)
}

/// Calls [`isolating`] may spend on one batch before it stops splitting.
pub(crate) const MAX_SPLIT_CALLS: usize = 32;

/// Sends `items` with `call` as one request; when Google refuses the whole request as invalid
/// (400: People validates a batch all or nothing), splits it in halves until each refused record
/// is alone, so one record Google will not take cannot hold back the others (about 2·log2(n)
/// extra calls per refused record). When Google refuses everything (a systematic error rather
/// than a bad record), the splitting stops after [`MAX_SPLIT_CALLS`] extra calls and the rest
/// fails as a group. Returns each request's outcome with the positions (in `items`) it covered.
pub(crate) async fn isolating<T, R, F, Fut>(
    items: Vec<T>,
    mut call: F,
) -> Vec<(Vec<usize>, Result<R, GoogleError>)>
where
    T: Clone,
    F: FnMut(Vec<T>) -> Fut,
    Fut: std::future::Future<Output = Result<R, GoogleError>>,
{
    let mut out = Vec::new();
    let mut todo: Vec<Vec<usize>> = vec![(0..items.len()).collect()];
    let mut calls = 0usize;
    while let Some(group) = todo.pop() {
        if group.is_empty() {
            continue;
        }
        let batch = group.iter().map(|&i| items[i].clone()).collect();
        calls += 1;
        match call(batch).await {
            Err(e)
                if e.kind == ErrorKind::BadRequest
                    && group.len() > 1
                    && calls <= MAX_SPLIT_CALLS =>
            {
                tracing::warn!(
                    items = group.len(),
                    error = %e,
                    "Google refused the whole batch: splitting it to isolate the refused record"
                );
                let (a, b) = group.split_at(group.len() / 2);
                todo.push(b.to_vec());
                todo.push(a.to_vec());
            }
            result => out.push((group, result)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::Cell;

    /// The requests `isolating` made: the positions each covered, and its outcome.
    type Groups = Vec<(Vec<usize>, Result<(), GoogleError>)>;

    /// Runs `isolating` over `n` items of which `bad` are refused: a request fails with 400
    /// when it carries any refused item. Returns the groups and the number of requests.
    fn run(n: usize, bad: &HashSet<usize>) -> (Groups, usize) {
        let calls = Cell::new(0usize);
        let items: Vec<usize> = (0..n).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let groups = rt.block_on(isolating(items, |batch: Vec<usize>| {
            calls.set(calls.get() + 1);
            let refused = batch.iter().any(|i| bad.contains(i));
            async move {
                if refused {
                    Err(GoogleError::local(
                        ErrorKind::BadRequest,
                        "people.people.batchCreateContacts",
                        "refused",
                    ))
                } else {
                    Ok(())
                }
            }
        }));
        (groups, calls.get())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Every item is covered exactly once; no good item ends in a failed group when the
        /// splitting budget suffices; a refused item never ends in a successful group.
        #[test]
        fn isolating_covers_every_item_and_isolates_refused_ones(
            n in 1usize..=200,
            bad in proptest::collection::hash_set(0usize..200, 0..4),
        ) {
            let bad: HashSet<usize> = bad.into_iter().filter(|b| *b < n).collect();
            let (groups, calls) = run(n, &bad);
            let mut seen: Vec<usize> = groups.iter().flat_map(|(g, _)| g.clone()).collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..n).collect::<Vec<_>>());
            for (g, r) in &groups {
                if r.is_ok() {
                    prop_assert!(g.iter().all(|i| !bad.contains(i)));
                }
            }
            prop_assert!(calls <= 1 + MAX_SPLIT_CALLS + 16, "{} calls", calls);
            if bad.len() <= 2 {
                // Within budget: each refused record fails alone, the rest goes through.
                for (g, r) in &groups {
                    if r.is_err() {
                        prop_assert_eq!(g.len(), 1);
                    }
                }
            }
        }
    }
}
