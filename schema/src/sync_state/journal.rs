//! The journal: every change the engine makes and every conflict it decides, with before and
//! after, by run and by record.

use crate::db::AnyConnection;
use crate::error::StoreResult;
use crate::schema::journal;
use crate::util::{from_db_time, parse_col, to_db_time};
use chrono::{DateTime, NaiveDateTime, Utc};
use crmsync_engine::ids::{LinkId, RunId, SyncKind, UserId};
use diesel::prelude::*;
use serde::Serialize;

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
