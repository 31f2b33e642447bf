//! Cursors: where a (user, kind)'s sync stands (the Google sync token with its listing
//! parameters and container, the CRM change cursor, the last full listing).

use crate::db::AnyConnection;
use crate::error::StoreResult;
use crate::schema::cursors;
use crate::util::{from_db_time, to_db_time};
use chrono::{DateTime, NaiveDateTime, Utc};
use crmsync_engine::ids::{SyncKind, UserId};
use diesel::prelude::*;

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
