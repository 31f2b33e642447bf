//! The sync engine's own state: links between CRM and Google records (with the last synced
//! snapshot, the planner's merge base), cursors (Google sync token and CRM change cursor), the
//! journal of every change the engine makes, and the life cycle of sync runs. The executor calls
//! these inside the same write transaction as the CRM change they describe, so a link, its
//! journal entries and the CRM write commit or roll back together.

use crate::db::AnyConnection;
use crate::error::{StoreError, StoreResult};
use crate::schema::{cursors, journal, links, sync_runs};
use crate::util::{from_db_time, parse_col, to_db_time};
use chrono::{DateTime, NaiveDateTime, Utc};
use crmsync_engine::fields::{self, Fields};
use crmsync_engine::ids::{LinkId, RunId, SyncKind, UserId};
use crmsync_engine::planner::LinkState;
use diesel::prelude::*;
use serde::Serialize;

fn parse_link_state(s: &str) -> StoreResult<LinkState> {
    match s {
        "pending" => Ok(LinkState::Pending),
        "active" => Ok(LinkState::Active),
        "ended" => Ok(LinkState::Ended),
        other => Err(StoreError::Corrupt(format!(
            "links.state: unknown state {other:?}"
        ))),
    }
}

/// A link row.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub id: LinkId,
    pub user_id: UserId,
    pub kind: SyncKind,
    pub crm_id: String,
    pub google_id: Option<String>,
    pub state: LinkState,
    pub snapshot: Fields,
    pub snapshot_hash: String,
    pub etag: Option<String>,
    pub google_updated: Option<DateTime<Utc>>,
    /// The CRM record's `change_seq` when it was last synced (a CRM change-feed entry with the
    /// same sequence is the engine's own write and needs no work).
    pub crm_change_seq: i64,
    pub pending_since: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = links)]
struct LinkRow {
    id: String,
    user_id: String,
    kind: String,
    crm_id: String,
    google_id: Option<String>,
    state: String,
    snapshot: String,
    snapshot_hash: String,
    etag: Option<String>,
    google_updated: Option<NaiveDateTime>,
    crm_change_seq: i64,
    pending_since: Option<NaiveDateTime>,
    end_reason: Option<String>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl LinkRow {
    fn into_link(self) -> StoreResult<Link> {
        Ok(Link {
            id: parse_col(&self.id, "links.id")?,
            user_id: parse_col(&self.user_id, "links.user_id")?,
            kind: parse_col(&self.kind, "links.kind")?,
            crm_id: self.crm_id,
            google_id: self.google_id,
            state: parse_link_state(&self.state)?,
            snapshot: fields::from_json(&self.snapshot),
            snapshot_hash: self.snapshot_hash,
            etag: self.etag,
            google_updated: self.google_updated.map(from_db_time),
            crm_change_seq: self.crm_change_seq,
            pending_since: self.pending_since.map(from_db_time),
            end_reason: self.end_reason,
            created_at: from_db_time(self.created_at),
            updated_at: from_db_time(self.updated_at),
        })
    }
}

fn rows_to_links(rows: Vec<LinkRow>) -> StoreResult<Vec<Link>> {
    rows.into_iter().map(LinkRow::into_link).collect()
}

/// Links of (user, kind) whose Google id (`by_google`) or CRM id is one of `ids`.
fn links_by_ids(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    ids: &[String],
    by_google: bool,
) -> StoreResult<Vec<Link>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let q = links::table
            .filter(links::user_id.eq(user.to_string()))
            .filter(links::kind.eq(kind.as_str()))
            .select(LinkRow::as_select())
            .into_boxed();
        let q = if by_google {
            q.filter(links::google_id.eq_any(chunk))
        } else {
            q.filter(links::crm_id.eq_any(chunk))
        };
        out.extend(rows_to_links(q.load(conn)?)?);
    }
    Ok(out)
}

/// Links of (user, kind) whose Google id is one of `ids`.
pub fn links_by_google_ids(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    ids: &[String],
) -> StoreResult<Vec<Link>> {
    links_by_ids(conn, user, kind, ids, true)
}

/// Links of (user, kind) whose CRM id is one of `ids`.
pub fn links_by_crm_ids(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    ids: &[String],
) -> StoreResult<Vec<Link>> {
    links_by_ids(conn, user, kind, ids, false)
}

/// A page of (user, kind)'s links in `state`, ordered by id, after `after`.
pub fn links_in_state(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    state: LinkState,
    after: Option<LinkId>,
    limit: usize,
) -> StoreResult<Vec<Link>> {
    let mut q = links::table
        .filter(links::user_id.eq(user.to_string()))
        .filter(links::kind.eq(kind.as_str()))
        .filter(links::state.eq(state.as_str()))
        .order(links::id)
        .limit(limit.clamp(1, 10_000) as i64)
        .select(LinkRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        q = q.filter(links::id.gt(after.to_string()));
    }
    rows_to_links(q.load(conn)?)
}

/// How many of (user, kind)'s links are in `state`.
pub fn count_links(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    state: LinkState,
) -> StoreResult<i64> {
    Ok(links::table
        .filter(links::user_id.eq(user.to_string()))
        .filter(links::kind.eq(kind.as_str()))
        .filter(links::state.eq(state.as_str()))
        .count()
        .get_result(conn)?)
}

/// What to write into a link row.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkWrite {
    pub crm_id: String,
    pub google_id: Option<String>,
    pub state: LinkState,
    pub snapshot: Fields,
    pub etag: Option<String>,
    pub google_updated: Option<DateTime<Utc>>,
    pub crm_change_seq: i64,
    pub pending_since: Option<DateTime<Utc>>,
    pub end_reason: Option<String>,
}

/// Inserts a new link; returns its id.
pub fn insert_link(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    w: &LinkWrite,
    now: DateTime<Utc>,
) -> StoreResult<LinkId> {
    let id = LinkId::new_random();
    let ts = to_db_time(now);
    diesel::insert_into(links::table)
        .values((
            links::id.eq(id.to_string()),
            links::user_id.eq(user.to_string()),
            links::kind.eq(kind.as_str()),
            links::crm_id.eq(&w.crm_id),
            links::google_id.eq(&w.google_id),
            links::state.eq(w.state.as_str()),
            links::snapshot.eq(fields::to_json(&w.snapshot)),
            links::snapshot_hash.eq(fields::hash(&w.snapshot)),
            links::etag.eq(&w.etag),
            links::google_updated.eq(w.google_updated.map(to_db_time)),
            links::crm_change_seq.eq(w.crm_change_seq),
            links::pending_since.eq(w.pending_since.map(to_db_time)),
            links::end_reason.eq(&w.end_reason),
            links::created_at.eq(ts),
            links::updated_at.eq(ts),
        ))
        .execute(conn)?;
    Ok(id)
}

/// Inserts new links in multi-row inserts; returns their ids in order.
pub fn insert_links(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    writes: &[LinkWrite],
    now: DateTime<Utc>,
) -> StoreResult<Vec<LinkId>> {
    let ts = to_db_time(now);
    let ids: Vec<LinkId> = writes.iter().map(|_| LinkId::new_random()).collect();
    let rows: Vec<_> = writes
        .iter()
        .zip(&ids)
        .map(|(w, id)| {
            (
                links::id.eq(id.to_string()),
                links::user_id.eq(user.to_string()),
                links::kind.eq(kind.as_str()),
                links::crm_id.eq(w.crm_id.clone()),
                links::google_id.eq(w.google_id.clone()),
                links::state.eq(w.state.as_str()),
                links::snapshot.eq(fields::to_json(&w.snapshot)),
                links::snapshot_hash.eq(fields::hash(&w.snapshot)),
                links::etag.eq(w.etag.clone()),
                links::google_updated.eq(w.google_updated.map(to_db_time)),
                links::crm_change_seq.eq(w.crm_change_seq),
                links::pending_since.eq(w.pending_since.map(to_db_time)),
                links::end_reason.eq(w.end_reason.clone()),
                links::created_at.eq(ts),
                links::updated_at.eq(ts),
            )
        })
        .collect();
    for chunk in rows.chunks(500) {
        match conn {
            AnyConnection::Sqlite(c) => {
                diesel::insert_into(links::table).values(chunk).execute(c)?
            }
            AnyConnection::Postgresql(c) => {
                diesel::insert_into(links::table).values(chunk).execute(c)?
            }
        };
    }
    Ok(ids)
}

/// Rewrites a link row.
pub fn update_link(
    conn: &mut AnyConnection,
    id: LinkId,
    w: &LinkWrite,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let n = diesel::update(links::table.find(id.to_string()))
        .set((
            links::crm_id.eq(&w.crm_id),
            links::google_id.eq(&w.google_id),
            links::state.eq(w.state.as_str()),
            links::snapshot.eq(fields::to_json(&w.snapshot)),
            links::snapshot_hash.eq(fields::hash(&w.snapshot)),
            links::etag.eq(&w.etag),
            links::google_updated.eq(w.google_updated.map(to_db_time)),
            links::crm_change_seq.eq(w.crm_change_seq),
            links::pending_since.eq(w.pending_since.map(to_db_time)),
            links::end_reason.eq(&w.end_reason),
            links::updated_at.eq(to_db_time(now)),
        ))
        .execute(conn)?;
    if n == 0 {
        return Err(StoreError::not_found("link", id));
    }
    Ok(())
}

/// Sets only the CRM change sequence a link has seen (after the engine's own CRM write).
pub fn set_link_crm_seq(conn: &mut AnyConnection, id: LinkId, seq: i64) -> StoreResult<()> {
    diesel::update(links::table.find(id.to_string()))
        .set(links::crm_change_seq.eq(seq))
        .execute(conn)?;
    Ok(())
}

/// Marks pending creates as certainly not applied (Google refused them outright), so the next
/// run sends them again at once instead of waiting for them to show up.
pub fn clear_pending_since(conn: &mut AnyConnection, ids: &[LinkId]) -> StoreResult<()> {
    let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    diesel::update(
        links::table
            .filter(links::id.eq_any(ids))
            .filter(links::state.eq(LinkState::Pending.as_str())),
    )
    .set(links::pending_since.eq(None::<NaiveDateTime>))
    .execute(conn)?;
    Ok(())
}

/// Removes a link row (only when another link replaces it).
pub fn delete_link(conn: &mut AnyConnection, id: LinkId) -> StoreResult<()> {
    diesel::delete(links::table.find(id.to_string())).execute(conn)?;
    Ok(())
}

impl Link {
    /// The row's values as a [`LinkWrite`], to change a few of them.
    pub fn to_write(&self) -> LinkWrite {
        LinkWrite {
            crm_id: self.crm_id.clone(),
            google_id: self.google_id.clone(),
            state: self.state,
            snapshot: self.snapshot.clone(),
            etag: self.etag.clone(),
            google_updated: self.google_updated,
            crm_change_seq: self.crm_change_seq,
            pending_since: self.pending_since,
            end_reason: self.end_reason.clone(),
        }
    }
}

/// Where a (user, kind)'s sync stands.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Cursor {
    /// The Google sync token of the last complete listing, if any.
    pub google_sync_token: Option<String>,
    /// The listing parameters the token belongs to (JSON); a change means a full listing.
    pub google_token_params: Option<String>,
    /// Contacts: the sync group's resource name; activities: the calendar id.
    pub google_container: Option<String>,
    /// Every CRM change with `change_seq <= crm_seq` has been synced.
    pub crm_seq: i64,
    pub full_sync_at: Option<DateTime<Utc>>,
}

type CursorRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<NaiveDateTime>,
);

/// The cursor of (user, kind); the default (nothing synced yet) when there is none.
pub fn get_cursor(conn: &mut AnyConnection, user: UserId, kind: SyncKind) -> StoreResult<Cursor> {
    let row: Option<CursorRow> = cursors::table
        .find((user.to_string(), kind.as_str()))
        .select((
            cursors::google_sync_token,
            cursors::google_token_params,
            cursors::google_container,
            cursors::crm_seq,
            cursors::full_sync_at,
        ))
        .first(conn)
        .optional()?;
    Ok(row
        .map(|(token, params, container, crm_seq, full)| Cursor {
            google_sync_token: token,
            google_token_params: params,
            google_container: container,
            crm_seq,
            full_sync_at: full.map(from_db_time),
        })
        .unwrap_or_default())
}

/// Stores the cursor of (user, kind). Call only once everything it covers is committed.
pub fn put_cursor(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    c: &Cursor,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let values = (
        cursors::google_sync_token.eq(&c.google_sync_token),
        cursors::google_token_params.eq(&c.google_token_params),
        cursors::google_container.eq(&c.google_container),
        cursors::crm_seq.eq(c.crm_seq),
        cursors::full_sync_at.eq(c.full_sync_at.map(to_db_time)),
        cursors::updated_at.eq(to_db_time(now)),
    );
    let updated = diesel::update(cursors::table.find((user.to_string(), kind.as_str())))
        .set(values)
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(cursors::table)
            .values((
                cursors::user_id.eq(user.to_string()),
                cursors::kind.eq(kind.as_str()),
                values,
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// One journal entry: a change the engine made (or a conflict it decided), with before and after.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JournalEntry {
    pub run_id: RunId,
    pub user_id: UserId,
    pub kind: SyncKind,
    pub link_id: Option<LinkId>,
    pub crm_id: Option<String>,
    pub google_id: Option<String>,
    /// `crm` | `google` | `link`.
    pub side: String,
    pub action: String,
    pub rule: String,
    pub field: Option<String>,
    pub winner: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// A stored journal entry.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StoredJournalEntry {
    pub id: i64,
    #[serde(flatten)]
    pub entry: JournalEntry,
    pub created_at: DateTime<Utc>,
}

/// Appends entries to the journal (multi-row inserts).
pub fn append_journal(
    conn: &mut AnyConnection,
    entries: &[JournalEntry],
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let ts = to_db_time(now);
    let rows: Vec<_> = entries
        .iter()
        .map(|e| {
            (
                journal::run_id.eq(e.run_id.to_string()),
                journal::user_id.eq(e.user_id.to_string()),
                journal::kind.eq(e.kind.as_str()),
                journal::link_id.eq(e.link_id.map(|l| l.to_string())),
                journal::crm_id.eq(e.crm_id.clone()),
                journal::google_id.eq(e.google_id.clone()),
                journal::side.eq(e.side.clone()),
                journal::action.eq(e.action.clone()),
                journal::rule.eq(e.rule.clone()),
                journal::field.eq(e.field.clone()),
                journal::winner.eq(e.winner.clone()),
                journal::before_value.eq(e.before.as_ref().map(|v| v.to_string())),
                journal::after_value.eq(e.after.as_ref().map(|v| v.to_string())),
                journal::created_at.eq(ts),
            )
        })
        .collect();
    // SQLite allows at most 32766 bound parameters per statement: 14 columns x 500 rows is safe.
    // (Multi-row inserts go to the concrete connection: `MultiConnection` has no batch insert.)
    for chunk in rows.chunks(500) {
        match conn {
            AnyConnection::Sqlite(c) => diesel::insert_into(journal::table)
                .values(chunk)
                .execute(c)?,
            AnyConnection::Postgresql(c) => diesel::insert_into(journal::table)
                .values(chunk)
                .execute(c)?,
        };
    }
    Ok(())
}

type JournalTuple = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    NaiveDateTime,
);

fn journal_from_tuple(t: JournalTuple) -> StoreResult<StoredJournalEntry> {
    let value = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    Ok(StoredJournalEntry {
        id: t.0,
        entry: JournalEntry {
            run_id: parse_col(&t.1, "journal.run_id")?,
            user_id: parse_col(&t.2, "journal.user_id")?,
            kind: parse_col(&t.3, "journal.kind")?,
            link_id: t
                .4
                .as_deref()
                .map(|l| parse_col(l, "journal.link_id"))
                .transpose()?,
            crm_id: t.5,
            google_id: t.6,
            side: t.7,
            action: t.8,
            rule: t.9,
            field: t.10,
            winner: t.11,
            before: value(t.12),
            after: value(t.13),
        },
        created_at: from_db_time(t.14),
    })
}

macro_rules! journal_columns {
    () => {
        (
            journal::id,
            journal::run_id,
            journal::user_id,
            journal::kind,
            journal::link_id,
            journal::crm_id,
            journal::google_id,
            journal::side,
            journal::action,
            journal::rule,
            journal::field,
            journal::winner,
            journal::before_value,
            journal::after_value,
            journal::created_at,
        )
    };
}

/// The journal of one run, in order.
pub fn journal_of_run(
    conn: &mut AnyConnection,
    run: RunId,
) -> StoreResult<Vec<StoredJournalEntry>> {
    let rows: Vec<JournalTuple> = journal::table
        .filter(journal::run_id.eq(run.to_string()))
        .order(journal::id)
        .select(journal_columns!())
        .load(conn)?;
    rows.into_iter().map(journal_from_tuple).collect()
}

/// The journal of one CRM record (every run), in order.
pub fn journal_of_record(
    conn: &mut AnyConnection,
    crm_id: &str,
) -> StoreResult<Vec<StoredJournalEntry>> {
    let rows: Vec<JournalTuple> = journal::table
        .filter(journal::crm_id.eq(crm_id))
        .order(journal::id)
        .select(journal_columns!())
        .load(conn)?;
    rows.into_iter().map(journal_from_tuple).collect()
}

/// Which journal entries to read: those of one run, of one CRM record, or both (at least one is
/// needed, so a read always uses an index).
#[derive(Clone, Debug, Default)]
pub struct JournalFilter {
    pub run: Option<RunId>,
    pub crm_id: Option<String>,
}

/// One page of the journal, oldest first, after entry `after` (keyset paging on the entry id).
pub fn journal_page(
    conn: &mut AnyConnection,
    filter: &JournalFilter,
    after: Option<i64>,
    limit: usize,
) -> StoreResult<Vec<StoredJournalEntry>> {
    let mut q = journal::table
        .order(journal::id)
        .limit(crate::util::page_limit(limit))
        .select(journal_columns!())
        .into_boxed();
    if let Some(run) = filter.run {
        q = q.filter(journal::run_id.eq(run.to_string()));
    }
    if let Some(crm_id) = &filter.crm_id {
        q = q.filter(journal::crm_id.eq(crm_id.clone()));
    }
    if let Some(after) = after {
        q = q.filter(journal::id.gt(after));
    }
    let rows: Vec<JournalTuple> = q.load(conn)?;
    rows.into_iter().map(journal_from_tuple).collect()
}

/// Creates a run in state `queued`.
pub fn create_run(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    trigger: &str,
    options: &serde_json::Value,
    now: DateTime<Utc>,
) -> StoreResult<RunId> {
    let id = RunId::new_random();
    diesel::insert_into(sync_runs::table)
        .values((
            sync_runs::id.eq(id.to_string()),
            sync_runs::user_id.eq(user.to_string()),
            sync_runs::kind.eq(kind.as_str()),
            sync_runs::trigger.eq(trigger),
            sync_runs::state.eq("queued"),
            sync_runs::requested_at.eq(to_db_time(now)),
            sync_runs::counts.eq("{}"),
            sync_runs::conflicts.eq(0),
            sync_runs::errors.eq("[]"),
            sync_runs::options.eq(options.to_string()),
        ))
        .execute(conn)?;
    Ok(id)
}

/// Marks a run as running.
pub fn start_run(
    conn: &mut AnyConnection,
    id: RunId,
    worker: Option<&str>,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    diesel::update(sync_runs::table.find(id.to_string()))
        .set((
            sync_runs::state.eq("running"),
            sync_runs::started_at.eq(Some(to_db_time(now))),
            sync_runs::worker.eq(worker),
        ))
        .execute(conn)?;
    Ok(())
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    /// `succeeded` | `failed` | `blocked` | `skipped`.
    pub state: String,
    pub counts: serde_json::Value,
    pub conflicts: i32,
    pub errors: serde_json::Value,
    pub message: Option<String>,
}

/// Records how a run ended.
pub fn finish_run(
    conn: &mut AnyConnection,
    id: RunId,
    o: &RunOutcome,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    diesel::update(sync_runs::table.find(id.to_string()))
        .set((
            sync_runs::state.eq(&o.state),
            sync_runs::finished_at.eq(Some(to_db_time(now))),
            sync_runs::counts.eq(o.counts.to_string()),
            sync_runs::conflicts.eq(o.conflicts),
            sync_runs::errors.eq(o.errors.to_string()),
            sync_runs::message.eq(&o.message),
        ))
        .execute(conn)?;
    Ok(())
}

/// Google creates of (user, kind) that were sent and not yet seen in a listing (links in state
/// `pending`): how many, and since when the oldest waits.
pub fn awaiting_confirmation(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
) -> StoreResult<(i64, Option<DateTime<Utc>>)> {
    let pending = links::table
        .filter(links::user_id.eq(user.to_string()))
        .filter(links::kind.eq(kind.as_str()))
        .filter(links::state.eq(LinkState::Pending.as_str()));
    let count: i64 = pending.clone().count().get_result(conn)?;
    if count == 0 {
        return Ok((0, None));
    }
    let oldest: Option<NaiveDateTime> = pending
        .select(diesel::dsl::min(links::pending_since))
        .first(conn)?;
    Ok((count, oldest.map(from_db_time)))
}

/// When (user, kind) last synced successfully.
pub fn last_success(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
) -> StoreResult<Option<DateTime<Utc>>> {
    let t: Option<Option<NaiveDateTime>> = sync_runs::table
        .filter(sync_runs::user_id.eq(user.to_string()))
        .filter(sync_runs::kind.eq(kind.as_str()))
        .filter(sync_runs::state.eq("succeeded"))
        .order(sync_runs::finished_at.desc())
        .select(sync_runs::finished_at)
        .first(conn)
        .optional()?;
    Ok(t.flatten().map(from_db_time))
}

/// Live contacts carrying `tag` with one of the (normalized) `emails`: the candidates for linking
/// a new Google contact by e-mail instead of importing a duplicate.
pub fn tagged_contacts_with_emails(
    conn: &mut AnyConnection,
    tag: crmsync_engine::ids::TagId,
    emails: &[String],
) -> StoreResult<Vec<crmsync_engine::model::Contact>> {
    use crate::schema::{contact_emails, contact_tags, contacts};
    let mut ids: Vec<String> = Vec::new();
    for chunk in emails.chunks(500) {
        let found: Vec<String> = contact_emails::table
            .inner_join(contacts::table)
            .inner_join(contact_tags::table.on(contact_tags::contact_id.eq(contacts::id)))
            .filter(contact_emails::address_norm.eq_any(chunk))
            .filter(contact_tags::tag_id.eq(tag.to_string()))
            .filter(contacts::deleted_at.is_null())
            .select(contacts::id)
            .distinct()
            .load(conn)?;
        ids.extend(found);
    }
    ids.sort();
    ids.dedup();
    let ids: Vec<crmsync_engine::ids::ContactId> = ids
        .iter()
        .map(|i| parse_col(i, "contacts.id"))
        .collect::<StoreResult<_>>()?;
    crate::contacts::contacts_by_ids(conn, &ids)
}

/// Live contacts with one of the (normalized) `emails` (for matching calendar attendees).
pub fn contacts_with_emails(
    conn: &mut AnyConnection,
    emails: &[String],
) -> StoreResult<Vec<(String, crmsync_engine::ids::ContactId)>> {
    use crate::schema::{contact_emails, contacts};
    let mut out = Vec::new();
    for chunk in emails.chunks(500) {
        let found: Vec<(String, String)> = contact_emails::table
            .inner_join(contacts::table)
            .filter(contact_emails::address_norm.eq_any(chunk))
            .filter(contacts::deleted_at.is_null())
            .select((contact_emails::address_norm, contacts::id))
            .order((contact_emails::address_norm, contacts::id))
            .load(conn)?;
        for (email, id) in found {
            out.push((email, parse_col(&id, "contacts.id")?));
        }
    }
    Ok(out)
}

/// Users whose e-mail or Google alias is one of the (normalized) `emails`: `(address, user id)`.
pub fn users_with_emails(
    conn: &mut AnyConnection,
    emails: &[String],
) -> StoreResult<Vec<(String, UserId)>> {
    use crate::schema::users;
    let mut out = Vec::new();
    for chunk in emails.chunks(500) {
        let found: Vec<(String, String, String)> = users::table
            .filter(
                users::email
                    .eq_any(chunk)
                    .or(users::google_alias.eq_any(chunk)),
            )
            .select((users::id, users::email, users::google_alias))
            .load(conn)?;
        for (id, email, alias) in found {
            let id: UserId = parse_col(&id, "users.id")?;
            for address in [email, alias] {
                let norm = crmsync_engine::model::normalize_email(&address);
                if chunk.contains(&norm) {
                    out.push((norm, id));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The CRM change feed of one user's contacts sync: contacts changed after `seq` that carry the
/// user's sync `tag` or are linked for the user, in change order, at most `limit`. Other users'
/// contacts are never read, so a run costs what changed for its user.
pub fn user_contacts_changed_since(
    conn: &mut AnyConnection,
    user: UserId,
    tag: crmsync_engine::ids::TagId,
    seq: i64,
    limit: usize,
) -> StoreResult<Vec<crmsync_engine::model::Contact>> {
    use crate::schema::{contact_tags, contacts};
    use diesel::dsl::exists;
    // Correlated EXISTS probes, so the query walks the change_seq index from the cursor and
    // costs nothing when nothing changed (an IN (subquery) made SQLite build the whole set of
    // tagged and linked contacts first, on every run).
    let tagged = exists(
        contact_tags::table
            .filter(contact_tags::contact_id.eq(contacts::id))
            .filter(contact_tags::tag_id.eq(tag.to_string())),
    );
    let linked = exists(
        links::table
            .filter(links::user_id.eq(user.to_string()))
            .filter(links::kind.eq(SyncKind::Contacts.as_str()))
            .filter(links::crm_id.eq(contacts::id)),
    );
    let ids: Vec<String> = contacts::table
        .filter(contacts::change_seq.gt(seq))
        .filter(tagged.or(linked))
        .order(contacts::change_seq)
        .limit(limit.clamp(1, 1000) as i64)
        .select(contacts::id)
        .load(conn)?;
    let ids: Vec<crmsync_engine::ids::ContactId> = ids
        .iter()
        .map(|i| parse_col(i, "contacts.id"))
        .collect::<StoreResult<_>>()?;
    let mut out = crate::contacts::contacts_by_ids(conn, &ids)?;
    out.sort_by_key(|c| c.change_seq);
    Ok(out)
}

/// The CRM change feed of one user's activities sync: activities changed after `seq` that the
/// user organizes, takes part in, or has linked, in change order, at most `limit`.
pub fn user_activities_changed_since(
    conn: &mut AnyConnection,
    user: UserId,
    seq: i64,
    limit: usize,
) -> StoreResult<Vec<crmsync_engine::model::Activity>> {
    use crate::schema::{activities, activity_participants};
    use diesel::dsl::exists;
    // Correlated EXISTS probes (see user_contacts_changed_since).
    let participant = exists(
        activity_participants::table
            .filter(activity_participants::activity_id.eq(activities::id))
            .filter(activity_participants::user_id.eq(user.to_string())),
    );
    let linked = exists(
        links::table
            .filter(links::user_id.eq(user.to_string()))
            .filter(links::kind.eq(SyncKind::Activities.as_str()))
            .filter(links::crm_id.eq(activities::id)),
    );
    let ids: Vec<String> = activities::table
        .filter(activities::change_seq.gt(seq))
        .filter(
            activities::organizer_user_id
                .eq(user.to_string())
                .or(participant)
                .or(linked),
        )
        .order(activities::change_seq)
        .limit(limit.clamp(1, 1000) as i64)
        .select(activities::id)
        .load(conn)?;
    let ids: Vec<crmsync_engine::ids::ActivityId> = ids
        .iter()
        .map(|i| parse_col(i, "activities.id"))
        .collect::<StoreResult<_>>()?;
    let mut out = crate::activities::activities_by_ids(conn, &ids)?;
    out.sort_by_key(|a| a.change_seq);
    Ok(out)
}
