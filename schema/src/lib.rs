//! The CRM store: diesel schema, row models and every query crmsync makes, for SQLite (embedded,
//! the default) and PostgreSQL through one `MultiConnection`.
//!
//! Use: open a [`Store`] from `DATABASE_URL`, apply [`Store::run_migrations`], then call the
//! module functions inside [`Store::read`] or [`Store::write`] (from async code, inside
//! [`Store::run`]), e.g. `store.write(|c| contacts::create_contact(c, &data, &[], now))`. Module
//! functions take `&mut AnyConnection`, so several of them compose into one transaction. Nothing
//! here reads the clock: writes take `now`.

pub mod activities;
pub mod admin_tokens;
pub mod app_settings;
pub mod changes;
pub mod channels;
pub mod connections;
pub mod contacts;
pub mod db;
pub mod error;
pub mod jobs;
pub mod key_check;
pub mod parked;
pub mod reset;
pub mod runs;
pub mod schema;
pub mod secrets;
pub mod settings;
pub mod sync_state;
pub mod tags;
pub mod users;
pub mod util;
pub mod webhooks;

#[cfg(feature = "test-support")]
pub mod test_support;

pub use db::{
    AnyConnection, DatabaseUrl, DbKind, SecretKeySource, Store, StoreOptions, DEFAULT_DATABASE_URL,
};
/// diesel, re-exported for callers that query the schema directly.
pub use diesel;
pub use error::{StoreError, StoreResult};
pub use util::current_change_seq;

/// Record counts for `crmsync status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub users: i64,
    pub tags: i64,
    pub contacts: i64,
    pub activities: i64,
    pub change_seq: i64,
}

/// Counts of live records and the current change sequence number.
pub fn counts(conn: &mut AnyConnection) -> StoreResult<Counts> {
    use diesel::prelude::*;
    Ok(Counts {
        users: users::count_users(conn)?,
        tags: schema::tags::table.count().get_result(conn)?,
        contacts: contacts::count_contacts(conn)?,
        activities: activities::count_activities(conn)?,
        change_seq: current_change_seq(conn)?,
    })
}
