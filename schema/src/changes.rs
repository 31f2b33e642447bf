//! The change feed a CRM reads back (SPEC 6.4): one row per committed change to a contact or an
//! activity, with who made it (`origin`: the sync engine for a run, or the API) and the cursor the
//! write took from the change sequence.
//!
//! Gap-free by construction: every write takes its cursor from the single `change_counter` row
//! ([`crate::util::next_change_seq`]) and holds that row locked until its transaction ends, so
//! cursors commit in cursor order (a rolled-back write gives its number back). A reader first
//! takes the highest committed cursor, then reads rows up to it: everything at or below that
//! number is already committed, so a reader never moves past a change that commits later.
//!
//! Changes made by the sync engine are also put in the webhook outbox, in the same transaction
//! ([`crate::webhooks::enqueue`]); the API's own writes never are (echo suppression).
//!
//! Push (SPEC 5): a change requests a debounced run ([`crate::jobs::request_push`]) of each user
//! it concerns (the owners of the contact's sync tags; an activity's organizer and participant
//! users), except the user whose run made it.

use crate::db::AnyConnection;
use crate::error::StoreResult;
use crate::schema::changes;
use crate::util::{from_db_time, parse_col, to_db_time};
use chrono::{DateTime, Utc};
use crmsync_engine::ids::{RunId, SyncKind, TagId, UserId};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

/// Who made a write: the API (the CRM itself or an admin), or the sync engine during a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Api,
    Sync { run: RunId, user: UserId },
}

impl Origin {
    pub fn name(&self) -> OriginName {
        match self {
            Origin::Api => OriginName::Api,
            Origin::Sync { .. } => OriginName::Sync,
        }
    }
}

/// The `origin` of a change as the feed shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginName {
    Sync,
    Api,
}
crmsync_engine::str_enum!(OriginName { Sync => "sync", Api => "api" });

/// What kind of record changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Contact,
    Activity,
}
crmsync_engine::str_enum!(RecordKind { Contact => "contact", Activity => "activity" });

/// What happened to the record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Created,
    Updated,
    Deleted,
    Tagged,
    Untagged,
}
crmsync_engine::str_enum!(Action { Created => "created", Updated => "updated", Deleted => "deleted", Tagged => "tagged", Untagged => "untagged" });

/// One committed change, as the feed and webhooks show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Position in the feed: pass the last one seen as `after` to read on.
    pub cursor: i64,
    pub kind: RecordKind,
    /// The record's crmsync id.
    pub id: String,
    /// The record's external id when the change was made.
    pub external_id: Option<String>,
    pub action: Action,
    pub origin: OriginName,
    /// The user whose sync run made the change (`origin: sync`).
    pub user_id: Option<UserId>,
    /// The sync run that made the change (`origin: sync`).
    pub run_id: Option<RunId>,
    /// The tag put on or taken off (`tagged`, `untagged`).
    pub tag_id: Option<TagId>,
    pub at: DateTime<Utc>,
}

/// The facts of a change a store write reports (its cursor is the sequence number it took).
pub(crate) struct Made<'a> {
    pub cursor: i64,
    pub kind: RecordKind,
    pub id: &'a str,
    pub external_id: Option<&'a str>,
    pub action: Action,
    pub tag: Option<TagId>,
    /// The users whose sync the change concerns (they get a push run).
    pub concerns: Vec<UserId>,
}

/// Records a change in the feed and, when the sync engine made it, in the webhook outbox; inside
/// the writer's transaction.
pub(crate) fn record(
    conn: &mut AnyConnection,
    made: Made<'_>,
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let (user, run) = match origin {
        Origin::Api => (None, None),
        Origin::Sync { run, user } => (Some(user), Some(run)),
    };
    diesel::insert_into(changes::table)
        .values((
            changes::cursor.eq(made.cursor),
            changes::kind.eq(made.kind.as_str()),
            changes::record_id.eq(made.id),
            changes::external_id.eq(made.external_id),
            changes::action.eq(made.action.as_str()),
            changes::origin.eq(origin.name().as_str()),
            changes::user_id.eq(user.map(|u| u.to_string())),
            changes::run_id.eq(run.map(|r| r.to_string())),
            changes::tag_id.eq(made.tag.map(|t| t.to_string())),
            changes::at.eq(to_db_time(now)),
        ))
        .execute(conn)?;
    request_pushes(conn, &made, origin, now)?;
    if let Origin::Sync { run, user } = origin {
        let change = Change {
            cursor: made.cursor,
            kind: made.kind,
            id: made.id.to_string(),
            external_id: made.external_id.map(str::to_string),
            action: made.action,
            origin: OriginName::Sync,
            user_id: Some(user),
            run_id: Some(run),
            tag_id: made.tag,
            at: now,
        };
        let event = format!("{}.{}", made.kind.as_str(), made.action.as_str());
        crate::webhooks::enqueue(conn, &event, &change, Some(made.cursor), now)?;
    }
    Ok(())
}

/// Requests a push run of every user the change concerns but the one whose run made it.
fn request_pushes(
    conn: &mut AnyConnection,
    made: &Made<'_>,
    origin: Origin,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let by = match origin {
        Origin::Sync { user, .. } => Some(user),
        Origin::Api => None,
    };
    let mut users: Vec<UserId> = made
        .concerns
        .iter()
        .copied()
        .filter(|u| Some(*u) != by)
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    users.sort();
    users.dedup();
    let push = crate::jobs::push_settings(conn)?;
    let kind = match made.kind {
        RecordKind::Contact => SyncKind::Contacts,
        RecordKind::Activity => SyncKind::Activities,
    };
    for user in users {
        crate::jobs::request_push(conn, user, kind, &push, now)?;
    }
    Ok(())
}

/// Which changes a reader wants.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only changes with this origin (`None`: any).
    pub origin: Option<OriginName>,
    /// Only these kinds (empty: both).
    pub kinds: Vec<RecordKind>,
}

/// A page of the feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangePage {
    pub changes: Vec<Change>,
    /// Where to read on from: the last change returned, or, when the page is not full, the
    /// highest committed cursor (every change up to it has been seen through the filter).
    pub next_cursor: i64,
    pub has_more: bool,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = changes)]
struct ChangeRow {
    cursor: i64,
    kind: String,
    record_id: String,
    external_id: Option<String>,
    action: String,
    origin: String,
    user_id: Option<String>,
    run_id: Option<String>,
    tag_id: Option<String>,
    at: chrono::NaiveDateTime,
}

impl ChangeRow {
    fn into_change(self) -> StoreResult<Change> {
        Ok(Change {
            cursor: self.cursor,
            kind: parse_col(&self.kind, "changes.kind")?,
            id: self.record_id,
            external_id: self.external_id,
            action: parse_col(&self.action, "changes.action")?,
            origin: parse_col(&self.origin, "changes.origin")?,
            user_id: self
                .user_id
                .map(|u| parse_col(&u, "changes.user_id"))
                .transpose()?,
            run_id: self
                .run_id
                .map(|r| parse_col(&r, "changes.run_id"))
                .transpose()?,
            tag_id: self
                .tag_id
                .map(|t| parse_col(&t, "changes.tag_id"))
                .transpose()?,
            at: from_db_time(self.at),
        })
    }
}

/// The changes after `after` that pass `filter`, in cursor order, at most `limit`.
///
/// The highest committed cursor is read first and the page is bounded by it: on PostgreSQL each
/// statement sees the changes committed before it started, and every change at or below that
/// number committed before it was read (see the module doc), so nothing can later appear behind
/// the returned `next_cursor`.
pub fn changes_after(
    conn: &mut AnyConnection,
    after: i64,
    filter: &Filter,
    limit: usize,
) -> StoreResult<ChangePage> {
    let high: Option<i64> = changes::table
        .select(diesel::dsl::max(changes::cursor))
        .first(conn)?;
    let Some(high) = high.filter(|h| *h > after) else {
        return Ok(ChangePage {
            changes: Vec::new(),
            next_cursor: after,
            has_more: false,
        });
    };
    let mut q = changes::table
        .filter(changes::cursor.gt(after))
        .filter(changes::cursor.le(high))
        .into_boxed();
    if let Some(origin) = filter.origin {
        q = q.filter(changes::origin.eq(origin.as_str()));
    }
    if !filter.kinds.is_empty() {
        let kinds: Vec<&str> = filter.kinds.iter().map(|k| k.as_str()).collect();
        q = q.filter(changes::kind.eq_any(kinds));
    }
    let rows: Vec<ChangeRow> = q
        .order(changes::cursor)
        .limit(crate::util::page_limit(limit) + 1)
        .select(ChangeRow::as_select())
        .load(conn)?;
    let has_more = rows.len() > limit;
    let changes: Vec<Change> = rows
        .into_iter()
        .take(limit)
        .map(ChangeRow::into_change)
        .collect::<StoreResult<_>>()?;
    let next_cursor = match (has_more, changes.last()) {
        (true, Some(last)) => last.cursor,
        _ => high,
    };
    Ok(ChangePage {
        changes,
        next_cursor,
        has_more,
    })
}

/// The settings key holding the highest cursor pruned away.
const PRUNED_THROUGH: &str = "changes.pruned_through";

/// The highest cursor pruned from the feed (0 when nothing was): a reader whose cursor is below
/// it has missed changes and must resynchronize in full.
pub fn pruned_through(conn: &mut AnyConnection) -> StoreResult<i64> {
    Ok(crate::app_settings::get_setting::<i64>(conn, PRUNED_THROUGH)?.unwrap_or(0))
}

/// Deletes the changes made before `before` (the feed keeps at least 30 days; callers pass
/// `now - 30 days` or older) and remembers the highest cursor deleted. Returns how many went.
pub fn prune(
    conn: &mut AnyConnection,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> StoreResult<usize> {
    let cut = to_db_time(before);
    let high: Option<i64> = changes::table
        .filter(changes::at.lt(cut))
        .select(diesel::dsl::max(changes::cursor))
        .first(conn)?;
    let Some(high) = high else {
        return Ok(0);
    };
    let n = diesel::delete(changes::table.filter(changes::cursor.le(high))).execute(conn)?;
    if high > pruned_through(conn)? {
        crate::app_settings::put_setting(conn, PRUNED_THROUGH, &high, now)?;
    }
    Ok(n)
}

/// The newest committed cursor: every change at or below it is committed (a writer holds the
/// counter row until it commits), so a CRM that read everything after taking it misses nothing.
pub fn head(conn: &mut AnyConnection) -> StoreResult<i64> {
    crate::util::current_change_seq(conn)
}
