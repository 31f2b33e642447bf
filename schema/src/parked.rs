//! Records the sync engine could not carry over, counted per (user, kind, side, record). A
//! failure that repeats in `park_after` runs parks the record: it stops holding the run's
//! cursors back (one bad record must not make every run re-read the same changes, or re-list a
//! whole address book), and each run retries it by id until it goes through, when its row is
//! removed. Written in the same transaction as the cursors, so a cursor never passes a failed
//! record that is not parked.

use crate::db::AnyConnection;
use crate::error::StoreResult;
use crate::schema::parked_items;
use crate::util::{from_db_time, parse_col, to_db_time};
use chrono::{DateTime, NaiveDateTime, Utc};
use crmsync_engine::ids::{SyncKind, UserId};
use diesel::prelude::*;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// Where a failed change came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemSide {
    /// A CRM change; the item id is the CRM record's id.
    Crm,
    /// A change listed from Google; the item id is the Google id.
    Google,
}

impl ItemSide {
    pub fn as_str(&self) -> &'static str {
        match self {
            ItemSide::Crm => "crm",
            ItemSide::Google => "google",
        }
    }
}

impl fmt::Display for ItemSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ItemSide {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "crm" => Ok(ItemSide::Crm),
            "google" => Ok(ItemSide::Google),
            other => Err(format!("unknown item side {other:?}")),
        }
    }
}

/// One failing record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailingItem {
    pub side: ItemSide,
    pub item_id: String,
    /// Runs in which it failed (consecutively: a run it goes through in removes the row).
    pub attempts: i32,
    pub first_failed_at: DateTime<Utc>,
    pub last_failed_at: DateTime<Utc>,
    /// When it stopped holding the cursors back.
    pub parked_at: Option<DateTime<Utc>>,
    pub last_error: String,
}

type Row = (
    String,
    String,
    i32,
    NaiveDateTime,
    NaiveDateTime,
    Option<NaiveDateTime>,
    String,
);

fn from_row(r: Row) -> StoreResult<FailingItem> {
    Ok(FailingItem {
        side: parse_col(&r.0, "parked_items.side")?,
        item_id: r.1,
        attempts: r.2,
        first_failed_at: from_db_time(r.3),
        last_failed_at: from_db_time(r.4),
        parked_at: r.5.map(from_db_time),
        last_error: r.6,
    })
}

/// The failing records of a user and kind, parked ones first, then by last failure.
pub fn failing_items(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    limit: usize,
) -> StoreResult<Vec<FailingItem>> {
    let rows: Vec<Row> = parked_items::table
        .filter(parked_items::user_id.eq(user.to_string()))
        .filter(parked_items::kind.eq(kind.as_str()))
        .order((
            parked_items::parked_at.is_null(),
            parked_items::last_failed_at.desc(),
        ))
        .limit(i64::try_from(limit.max(1)).unwrap_or(i64::MAX))
        .select((
            parked_items::side,
            parked_items::item_id,
            parked_items::attempts,
            parked_items::first_failed_at,
            parked_items::last_failed_at,
            parked_items::parked_at,
            parked_items::last_error,
        ))
        .load(conn)?;
    rows.into_iter().map(from_row).collect()
}

/// How many records of a user and kind are parked.
pub fn count_parked(conn: &mut AnyConnection, user: UserId, kind: SyncKind) -> StoreResult<i64> {
    Ok(parked_items::table
        .filter(parked_items::user_id.eq(user.to_string()))
        .filter(parked_items::kind.eq(kind.as_str()))
        .filter(parked_items::parked_at.is_not_null())
        .count()
        .get_result(conn)?)
}

/// One run's outcome for the failing records: `failed` (side, id, message) failed again or for
/// the first time; `cleared` went through. A record reaching `park_after` attempts is parked.
pub fn record_outcome(
    conn: &mut AnyConnection,
    user: UserId,
    kind: SyncKind,
    failed: &[(ItemSide, String, String)],
    cleared: &[(ItemSide, String)],
    park_after: i32,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let ts = to_db_time(now);
    for (side, id) in cleared {
        diesel::delete(parked_items::table.find((
            user.to_string(),
            kind.as_str(),
            side.as_str(),
            id.as_str(),
        )))
        .execute(conn)?;
    }
    for (side, id, message) in failed {
        let key = (user.to_string(), kind.as_str(), side.as_str(), id.as_str());
        let current: Option<(i32, Option<NaiveDateTime>)> = parked_items::table
            .find(key.clone())
            .select((parked_items::attempts, parked_items::parked_at))
            .first(conn)
            .optional()?;
        let attempts = current.map(|c| c.0).unwrap_or(0).saturating_add(1);
        let parked_at = current
            .and_then(|c| c.1)
            .or_else(|| (attempts >= park_after).then_some(ts));
        if current.is_some() {
            diesel::update(parked_items::table.find(key))
                .set((
                    parked_items::attempts.eq(attempts),
                    parked_items::last_failed_at.eq(ts),
                    parked_items::parked_at.eq(parked_at),
                    parked_items::last_error.eq(message),
                ))
                .execute(conn)?;
        } else {
            diesel::insert_into(parked_items::table)
                .values((
                    parked_items::user_id.eq(user.to_string()),
                    parked_items::kind.eq(kind.as_str()),
                    parked_items::side.eq(side.as_str()),
                    parked_items::item_id.eq(id),
                    parked_items::attempts.eq(attempts),
                    parked_items::first_failed_at.eq(ts),
                    parked_items::last_failed_at.eq(ts),
                    parked_items::parked_at.eq(parked_at),
                    parked_items::last_error.eq(message),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}
