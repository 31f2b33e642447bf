//! Small conversions shared by the store modules: timestamps (naive UTC, microsecond precision on
//! both backends), ids stored as text, enum names read back from columns, and the change counter.

use crate::db::{require_transaction, AnyConnection};
use crate::error::{StoreError, StoreResult};
use crate::schema::change_counter;
use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};
use diesel::prelude::*;
use std::str::FromStr;

/// `now` as stored: naive UTC, truncated to microseconds (PostgreSQL's precision), so that a
/// value reads back identically from both backends.
pub fn to_db_time(t: DateTime<Utc>) -> NaiveDateTime {
    t.trunc_subsecs(6).naive_utc()
}

/// A stored timestamp as an instant.
pub fn from_db_time(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

/// Parses a stored enum name or id; a failure means the row is corrupt.
pub fn parse_col<T: FromStr>(value: &str, column: &'static str) -> StoreResult<T>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|e: T::Err| StoreError::Corrupt(format!("{column}: {e}")))
}

/// Takes the next value of the single-row change counter (`UPDATE … RETURNING`). Must run
/// inside the write transaction that uses it: the row lock orders commits by sequence number.
pub fn next_change_seq(conn: &mut AnyConnection) -> StoreResult<i64> {
    require_transaction(conn)?;
    let seq = diesel::update(change_counter::table.filter(change_counter::id.eq(1)))
        .set(change_counter::value.eq(change_counter::value + 1))
        .returning(change_counter::value)
        .get_result::<i64>(conn)?;
    Ok(seq)
}

/// The last change sequence number handed out (0 on a fresh database).
pub fn current_change_seq(conn: &mut AnyConnection) -> StoreResult<i64> {
    Ok(change_counter::table
        .filter(change_counter::id.eq(1))
        .select(change_counter::value)
        .first::<i64>(conn)?)
}

/// Clamps a page size to 1..=1000.
pub fn page_limit(limit: usize) -> i64 {
    limit.clamp(1, 1000) as i64
}
