//! Links between CRM and Google records: the last synced snapshot (the planner's merge base),
//! the Google etag and time, the CRM change sequence seen, pending creates and link ends.

use crate::db::AnyConnection;
use crate::error::{StoreError, StoreResult};
use crate::schema::links;
use crate::util::{from_db_time, parse_col, to_db_time};
use chrono::{DateTime, NaiveDateTime, Utc};
use crmsync_engine::fields::{self, Fields};
use crmsync_engine::ids::{LinkId, SyncKind, UserId};
use crmsync_engine::planner::LinkState;
use diesel::prelude::*;

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
    /// The Google record as last read or written (JSON, the kind's choice of fields; with the
    /// etag above), kept so an update can go out without reading it first. `None`: not kept.
    pub google_record: Option<String>,
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
    google_record: Option<String>,
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
            google_record: self.google_record,
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

/// (user, kind)'s links in `state` whose Google id contains `needle` (taken literally), e.g.
/// the `_` of recurring-event instance ids.
pub fn links_with_google_id_containing(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    state: LinkState,
    needle: &str,
) -> StoreResult<Vec<Link>> {
    let escaped: String = needle
        .chars()
        .flat_map(|c| match c {
            '\\' | '%' | '_' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    let rows = links::table
        .filter(links::user_id.eq(user.to_string()))
        .filter(links::kind.eq(kind.as_str()))
        .filter(links::state.eq(state.as_str()))
        .filter(links::google_id.like(format!("%{escaped}%")).escape('\\'))
        .order(links::id)
        .select(LinkRow::as_select())
        .load(conn)?;
    rows_to_links(rows)
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
    /// See [`Link::google_record`].
    pub google_record: Option<String>,
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
            links::google_record.eq(&w.google_record),
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
                links::google_record.eq(w.google_record.clone()),
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
            links::google_record.eq(&w.google_record),
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
            google_record: self.google_record.clone(),
        }
    }
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
