//! The part of a local commit every kind shares: writing the link row (create, update, end,
//! replace) with the snapshot, the Google etag and times and the CRM change sequence it has seen,
//! and appending the plan's journal entries. Runs inside the item's write transaction, after the
//! kind-specific CRM writes.

use crate::sync::record::{journal_entries, JournalCtx};
use chrono::{DateTime, Utc};
use crmsync_engine::fields::Fields;
use crmsync_engine::ids::{LinkId, UserId};
use crmsync_engine::planner::{ItemPlan, LinkAction, LinkState};
use crmsync_schema::sync_state::{self, JournalEntry, Link, LinkWrite};
use crmsync_schema::{AnyConnection, StoreResult};

/// What the link row should record about a carried-out plan.
pub(crate) struct LinkCommit<'a> {
    pub user: UserId,
    pub journal: &'a JournalCtx,
    pub plan: &'a ItemPlan,
    /// The link as loaded before the run (if any).
    pub link: Option<&'a Link>,
    /// The link row id (also set for a pending link inserted in this run).
    pub link_id: Option<LinkId>,
    pub crm_id: Option<String>,
    /// The CRM record's change sequence after the engine's own writes.
    pub crm_seq: i64,
    pub google_id: Option<String>,
    pub etag: Option<String>,
    pub google_updated: Option<DateTime<Utc>>,
    /// The Google record kept with the link (see `Kind::kept_record`), matching `etag`.
    pub google_record: Option<String>,
    /// A Google create (or write) was carried out in this run.
    pub google_written: bool,
}

/// Writes the link row for a carried-out plan; returns its journal entries (the caller appends
/// them, in one multi-row insert per transaction).
pub(crate) fn commit_link(
    c: &mut AnyConnection,
    lc: LinkCommit<'_>,
    now: DateTime<Utc>,
) -> StoreResult<Vec<JournalEntry>> {
    let kind = lc.journal.kind;
    let write = |state: LinkState, snapshot: &Fields, reason: Option<String>| LinkWrite {
        crm_id: lc.crm_id.clone().unwrap_or_default(),
        google_id: lc.google_id.clone(),
        state,
        snapshot: snapshot.clone(),
        etag: lc.etag.clone(),
        google_updated: lc.google_updated,
        crm_change_seq: lc.crm_seq,
        pending_since: None,
        end_reason: reason,
        google_record: lc.google_record.clone(),
    };
    // A Google create that was carried out makes its pending link active.
    let activate = |s: LinkState| {
        if s == LinkState::Pending && lc.google_written {
            LinkState::Active
        } else {
            s
        }
    };
    let mut link_id = lc.link_id;
    match &lc.plan.link {
        LinkAction::Create {
            state,
            snapshot,
            replaces,
        } => {
            if let Some(old) = replaces {
                sync_state::delete_link(c, *old)?;
            }
            let w = write(activate(*state), snapshot, None);
            match link_id {
                Some(id) if replaces.is_none() => sync_state::update_link(c, id, &w, now)?,
                _ => link_id = Some(sync_state::insert_link(c, lc.user, kind, &w, now)?),
            }
        }
        LinkAction::Update { state, snapshot } => {
            if let Some(id) = link_id {
                sync_state::update_link(c, id, &write(activate(*state), snapshot, None), now)?;
            }
        }
        LinkAction::End { snapshot, reason } => {
            if let Some(id) = link_id {
                sync_state::update_link(
                    c,
                    id,
                    &write(
                        LinkState::Ended,
                        snapshot,
                        Some(reason.as_str().to_string()),
                    ),
                    now,
                )?;
            }
        }
        LinkAction::None => {
            if let (Some(id), Some(l)) = (link_id, lc.link) {
                // A kept record that changed (a newer version, nothing to sync) is refreshed.
                let newer = lc.google_record.is_some() && l.google_record != lc.google_record;
                if l.crm_change_seq != lc.crm_seq || lc.google_written || newer {
                    let mut w = l.to_write();
                    w.crm_change_seq = lc.crm_seq;
                    w.etag = lc.etag.clone();
                    w.google_updated = lc.google_updated;
                    w.google_record = lc.google_record.clone();
                    sync_state::update_link(c, id, &w, now)?;
                }
            }
        }
    }
    let entries = journal_entries(
        lc.journal,
        lc.plan,
        link_id,
        lc.crm_id.as_deref(),
        lc.google_id.as_deref(),
    );
    Ok(entries)
}

/// Commits carried-out items: one transaction for all of them (journal appended in one go); if
/// that fails, one transaction per item, so one bad item does not block the others. Returns
/// each item with its outcome.
pub(crate) async fn commit_items<P, F>(
    store: &crmsync_schema::Store,
    items: Vec<P>,
    now: DateTime<Utc>,
    write: F,
) -> Result<Vec<(P, Result<(), crmsync_schema::StoreError>)>, crmsync_schema::StoreError>
where
    P: Clone + Send + Sync + 'static,
    F: Fn(&mut AnyConnection, &P) -> StoreResult<Vec<JournalEntry>> + Clone + Send + Sync + 'static,
{
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let (all, w) = (items.clone(), write.clone());
    let batch = store
        .write_async(move |c| {
            let mut journal = Vec::new();
            for p in &all {
                journal.extend(w(c, p)?);
            }
            sync_state::append_journal(c, &journal, now)
        })
        .await;
    if batch.is_ok() {
        return Ok(items.into_iter().map(|p| (p, Ok(()))).collect());
    }
    let mut out = Vec::with_capacity(items.len());
    for p in items {
        let (one, w) = (p.clone(), write.clone());
        let r = store
            .write_async(move |c| {
                let journal = w(c, &one)?;
                sync_state::append_journal(c, &journal, now)
            })
            .await;
        out.push((p, r));
    }
    Ok(out)
}

/// Commits the intents of Google creates: a `pending` link per item (updating the item's link
/// when it has one, inserting the others in multi-row inserts). Returns the link ids in order.
pub(crate) async fn write_intents(
    store: &crmsync_schema::Store,
    user: UserId,
    kind: crmsync_engine::ids::SyncKind,
    intents: Vec<(Option<LinkId>, LinkWrite)>,
    now: DateTime<Utc>,
) -> Result<Vec<LinkId>, crmsync_schema::StoreError> {
    store
        .write_async(move |c| {
            let new: Vec<LinkWrite> = intents
                .iter()
                .filter(|(id, _)| id.is_none())
                .map(|(_, w)| w.clone())
                .collect();
            let mut inserted = sync_state::insert_links(c, user, kind, &new, now)?.into_iter();
            let mut ids = Vec::with_capacity(intents.len());
            for (id, w) in &intents {
                match id {
                    Some(id) => {
                        sync_state::update_link(c, *id, w, now)?;
                        ids.push(*id);
                    }
                    None => ids.extend(inserted.next()),
                }
            }
            Ok(ids)
        })
        .await
}

/// The planner's view of a stored link.
pub(crate) fn link_record(l: &Link) -> crmsync_engine::planner::LinkRecord {
    crmsync_engine::planner::LinkRecord {
        id: l.id,
        crm_id: l.crm_id.clone(),
        google_id: l.google_id.clone().map(crmsync_engine::ids::GoogleId),
        state: l.state,
        snapshot: l.snapshot.clone(),
        pending_since: l.pending_since,
    }
}
