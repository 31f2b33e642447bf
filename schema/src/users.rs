//! CRM users: create, read, update, and look-ups by id, e-mail and Google alias. E-mail addresses
//! and Google aliases are stored normalized (trimmed, lower-case), so the unique indexes compare
//! them case-insensitively: one e-mail per user, and one Google account per user (a taken alias
//! is a `Conflict` naming its holder, also when a concurrent writer took it first).

use crate::db::AnyConnection;
use crate::error::{StoreError, StoreResult};
use crate::schema::users;
use crate::util::{from_db_time, page_limit, parse_col, to_db_time};
use chrono::{DateTime, NaiveDateTime, Utc};
use crmsync_engine::ids::UserId;
use crmsync_engine::model::{normalize_email, User};
use diesel::prelude::*;

/// The fields of a new user.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub email: String,
    pub display_name: String,
    /// Defaults to `email`.
    pub google_alias: Option<String>,
    /// IANA name; the caller validates it (defaults to `UTC`).
    pub time_zone: Option<String>,
    /// The CRM's id of the user (unique).
    pub external_id: Option<String>,
}

/// A change to a user (absent fields stay).
#[derive(Clone, Debug, Default)]
pub struct UserPatch {
    pub display_name: Option<String>,
    pub google_alias: Option<String>,
    pub time_zone: Option<String>,
    /// A new e-mail address (a taken one is a `Conflict`).
    pub email: Option<String>,
    /// Gives the user the CRM's id (`Some(None)` takes it away).
    pub external_id: Option<Option<String>>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = users)]
struct UserRow {
    id: String,
    email: String,
    display_name: String,
    google_alias: String,
    time_zone: String,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
    external_id: Option<String>,
}

impl UserRow {
    fn into_user(self) -> StoreResult<User> {
        Ok(User {
            id: parse_col(&self.id, "users.id")?,
            email: self.email,
            display_name: self.display_name,
            google_alias: self.google_alias,
            time_zone: self.time_zone,
            created_at: from_db_time(self.created_at),
            updated_at: from_db_time(self.updated_at),
            external_id: self.external_id,
        })
    }
}

/// Creates a user. A taken e-mail is a `Conflict`.
pub fn create_user(
    conn: &mut AnyConnection,
    new: &NewUser,
    now: DateTime<Utc>,
) -> StoreResult<User> {
    let email = normalize_email(&new.email);
    if user_by_email(conn, &email)?.is_some() {
        return Err(StoreError::Conflict(format!(
            "a user with e-mail {email} already exists"
        )));
    }
    let id = UserId::new_random();
    let alias = new
        .google_alias
        .as_deref()
        .map(normalize_email)
        .unwrap_or_else(|| email.clone());
    check_alias_free(conn, &alias, None)?;
    let ts = to_db_time(now);
    let inserted = diesel::insert_into(users::table)
        .values((
            users::id.eq(id.to_string()),
            users::email.eq(&email),
            users::display_name.eq(&new.display_name),
            users::google_alias.eq(&alias),
            users::time_zone.eq(new.time_zone.as_deref().unwrap_or("UTC")),
            users::created_at.eq(ts),
            users::updated_at.eq(ts),
            users::external_id.eq(&new.external_id),
        ))
        .execute(conn);
    unique_as_conflict(conn, inserted, &email, &alias, None)?;
    get_user(conn, id)
}

/// The user whose Google alias is `alias` (compared normalized: trimmed, lower-case).
pub fn user_by_alias(conn: &mut AnyConnection, alias: &str) -> StoreResult<Option<User>> {
    users::table
        .filter(users::google_alias.eq(normalize_email(alias)))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?
        .map(UserRow::into_user)
        .transpose()
}

/// One Google account serves one CRM user: a `Conflict` naming the holder when another user
/// (not `except`) already syncs with `alias`.
fn check_alias_free(
    conn: &mut AnyConnection,
    alias: &str,
    except: Option<UserId>,
) -> StoreResult<()> {
    match user_by_alias(conn, alias)? {
        Some(holder) if Some(holder.id) != except => Err(alias_taken(alias, &holder)),
        _ => Ok(()),
    }
}

fn alias_taken(alias: &str, holder: &User) -> StoreError {
    StoreError::Conflict(format!(
        "the Google account {alias} already syncs with CRM user {} ({}); one Google account serves one \
         CRM user: give this user another google_alias, or change {}'s first",
        holder.email, holder.id, holder.email
    ))
}

/// Turns a unique-index violation of a concurrent writer (the check above passed, then another
/// transaction took the e-mail or alias first) into the same `Conflict` the check gives.
fn unique_as_conflict(
    conn: &mut AnyConnection,
    result: QueryResult<usize>,
    email: &str,
    alias: &str,
    except: Option<UserId>,
) -> StoreResult<()> {
    match result {
        Ok(_) => Ok(()),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            info,
        )) => {
            let message = info.message().to_string();
            if message.contains("external_id") {
                return Err(StoreError::Conflict(
                    "external_id is already taken by another user".into(),
                ));
            }
            // On PostgreSQL the transaction is aborted: name the holder only where a query works.
            if message.contains("google_alias") {
                if let Ok(Some(holder)) = user_by_alias(conn, alias) {
                    if Some(holder.id) != except {
                        return Err(alias_taken(alias, &holder));
                    }
                }
                return Err(StoreError::Conflict(format!(
                    "the Google account {alias} already syncs with another CRM user; one Google account \
                     serves one CRM user: give this user another google_alias"
                )));
            }
            Err(StoreError::Conflict(format!(
                "a user with e-mail {email} already exists ({message})"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// A user by id.
pub fn get_user(conn: &mut AnyConnection, id: UserId) -> StoreResult<User> {
    find_user(conn, id)?.ok_or_else(|| StoreError::not_found("user", id))
}

/// A user by id, `None` when missing.
pub fn find_user(conn: &mut AnyConnection, id: UserId) -> StoreResult<Option<User>> {
    users::table
        .find(id.to_string())
        .select(UserRow::as_select())
        .first(conn)
        .optional()?
        .map(UserRow::into_user)
        .transpose()
}

/// A user by (normalized) e-mail address.
pub fn user_by_email(conn: &mut AnyConnection, email: &str) -> StoreResult<Option<User>> {
    users::table
        .filter(users::email.eq(normalize_email(email)))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?
        .map(UserRow::into_user)
        .transpose()
}

/// Users ordered by id, after `after` (keyset pagination).
pub fn list_users(
    conn: &mut AnyConnection,
    after: Option<UserId>,
    limit: usize,
) -> StoreResult<Vec<User>> {
    let mut q = users::table
        .select(UserRow::as_select())
        .order(users::id)
        .limit(page_limit(limit))
        .into_boxed();
    if let Some(after) = after {
        q = q.filter(users::id.gt(after.to_string()));
    }
    q.load(conn)?.into_iter().map(UserRow::into_user).collect()
}

/// Changes a user's display name, Google alias, time zone, e-mail or external id.
pub fn update_user(
    conn: &mut AnyConnection,
    id: UserId,
    patch: &UserPatch,
    now: DateTime<Utc>,
) -> StoreResult<User> {
    let current = get_user(conn, id)?;
    let alias = patch
        .google_alias
        .as_deref()
        .map(normalize_email)
        .unwrap_or(current.google_alias);
    check_alias_free(conn, &alias, Some(id))?;
    let email = patch
        .email
        .as_deref()
        .map(normalize_email)
        .unwrap_or(current.email);
    if let Some(holder) = user_by_email(conn, &email)?.filter(|u| u.id != id) {
        return Err(StoreError::Conflict(format!(
            "a user with e-mail {email} already exists ({})",
            holder.id
        )));
    }
    let external_id = patch.external_id.clone().unwrap_or(current.external_id);
    let updated = diesel::update(users::table.find(id.to_string()))
        .set((
            users::display_name.eq(patch.display_name.as_ref().unwrap_or(&current.display_name)),
            users::google_alias.eq(&alias),
            users::time_zone.eq(patch.time_zone.as_ref().unwrap_or(&current.time_zone)),
            users::email.eq(&email),
            users::external_id.eq(&external_id),
            users::updated_at.eq(to_db_time(now)),
        ))
        .execute(conn);
    unique_as_conflict(conn, updated, &email, &alias, Some(id))?;
    get_user(conn, id)
}

/// The user with the CRM's `external_id`.
pub fn user_by_external_id(
    conn: &mut AnyConnection,
    external_id: &str,
) -> StoreResult<Option<User>> {
    users::table
        .filter(users::external_id.eq(external_id))
        .select(UserRow::as_select())
        .first(conn)
        .optional()?
        .map(UserRow::into_user)
        .transpose()
}

/// Users by external ids: `(external id, user id)` for those that exist.
pub fn user_ids_by_external_ids(
    conn: &mut AnyConnection,
    external_ids: &[String],
) -> StoreResult<Vec<(String, UserId)>> {
    let mut out = Vec::new();
    for chunk in external_ids.chunks(500) {
        let found: Vec<(Option<String>, String)> = users::table
            .filter(users::external_id.eq_any(chunk))
            .select((users::external_id, users::id))
            .load(conn)?;
        for (x, id) in found {
            if let Some(x) = x {
                out.push((x, parse_col(&id, "users.id")?));
            }
        }
    }
    Ok(out)
}

/// How many users there are.
pub fn count_users(conn: &mut AnyConnection) -> StoreResult<i64> {
    Ok(users::table.count().get_result(conn)?)
}

/// Whether `patch` would leave `user` as it is (values compared as they would be stored).
pub fn patch_changes_nothing(user: &User, patch: &UserPatch) -> bool {
    patch
        .display_name
        .as_ref()
        .is_none_or(|v| *v == user.display_name)
        && patch
            .google_alias
            .as_deref()
            .is_none_or(|v| normalize_email(v) == user.google_alias)
        && patch
            .time_zone
            .as_ref()
            .is_none_or(|v| *v == user.time_zone)
        && patch
            .email
            .as_deref()
            .is_none_or(|v| normalize_email(v) == user.email)
        && patch
            .external_id
            .as_ref()
            .is_none_or(|v| *v == user.external_id)
}
