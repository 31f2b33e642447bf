//! Admin API tokens: `crm_` followed by 32 random bytes (base64url), shown once at creation; only
//! the SHA-256 hash is stored. Verification hashes the presented token, finds it by hash and
//! compares hashes in constant time; revoked tokens never verify.

use crate::db::AnyConnection;
use crate::error::{StoreError, StoreResult};
use crate::schema::admin_tokens;
use crate::util::{from_db_time, parse_col, to_db_time};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, NaiveDateTime, Utc};
use crmsync_engine::ids::AdminTokenId;
use diesel::prelude::*;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every admin token.
pub const TOKEN_PREFIX: &str = "crm_";

/// An admin token's record (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AdminToken {
    pub id: AdminTokenId,
    pub label: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = admin_tokens)]
struct TokenRow {
    id: String,
    label: String,
    token_hash: String,
    created_at: NaiveDateTime,
    last_used_at: Option<NaiveDateTime>,
    revoked_at: Option<NaiveDateTime>,
}

impl TokenRow {
    fn into_token(self) -> StoreResult<AdminToken> {
        Ok(AdminToken {
            id: parse_col(&self.id, "admin_tokens.id")?,
            label: self.label,
            created_at: from_db_time(self.created_at),
            last_used_at: self.last_used_at.map(from_db_time),
            revoked_at: self.revoked_at.map(from_db_time),
        })
    }
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates a token; returns its record and the token, which is not stored and cannot be shown again.
pub fn create_admin_token(
    conn: &mut AnyConnection,
    label: &str,
    now: DateTime<Utc>,
) -> StoreResult<(AdminToken, String)> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let id = AdminTokenId::new_random();
    diesel::insert_into(admin_tokens::table)
        .values((
            admin_tokens::id.eq(id.to_string()),
            admin_tokens::label.eq(label),
            admin_tokens::token_hash.eq(hash_token(&token)),
            admin_tokens::created_at.eq(to_db_time(now)),
        ))
        .execute(conn)?;
    let record = get_admin_token(conn, id)?;
    Ok((record, token))
}

/// A token record by id.
pub fn get_admin_token(conn: &mut AnyConnection, id: AdminTokenId) -> StoreResult<AdminToken> {
    admin_tokens::table
        .find(id.to_string())
        .select(TokenRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::not_found("admin token", id))?
        .into_token()
}

/// The live (not revoked) token matching `token`, if any. Does not write.
pub fn verify_admin_token(
    conn: &mut AnyConnection,
    token: &str,
) -> StoreResult<Option<AdminToken>> {
    if !token.starts_with(TOKEN_PREFIX) || token.len() > 200 {
        return Ok(None);
    }
    let hash = hash_token(token);
    let row: Option<TokenRow> = admin_tokens::table
        .filter(admin_tokens::token_hash.eq(&hash))
        .select(TokenRow::as_select())
        .first(conn)
        .optional()?;
    match row {
        Some(r)
            if bool::from(r.token_hash.as_bytes().ct_eq(hash.as_bytes()))
                && r.revoked_at.is_none() =>
        {
            Ok(Some(r.into_token()?))
        }
        _ => Ok(None),
    }
}

/// Records a use of a token (callers throttle how often they call this).
pub fn touch_admin_token(
    conn: &mut AnyConnection,
    id: AdminTokenId,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    diesel::update(admin_tokens::table.find(id.to_string()))
        .set(admin_tokens::last_used_at.eq(Some(to_db_time(now))))
        .execute(conn)?;
    Ok(())
}

/// Revokes a token: it never verifies again.
pub fn revoke_admin_token(
    conn: &mut AnyConnection,
    id: AdminTokenId,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    let n = diesel::update(
        admin_tokens::table
            .find(id.to_string())
            .filter(admin_tokens::revoked_at.is_null()),
    )
    .set(admin_tokens::revoked_at.eq(Some(to_db_time(now))))
    .execute(conn)?;
    if n == 0 {
        get_admin_token(conn, id)?;
    }
    Ok(())
}

/// Every token record, oldest first.
pub fn list_admin_tokens(conn: &mut AnyConnection) -> StoreResult<Vec<AdminToken>> {
    admin_tokens::table
        .order((admin_tokens::created_at, admin_tokens::id))
        .select(TokenRow::as_select())
        .load(conn)?
        .into_iter()
        .map(TokenRow::into_token)
        .collect()
}
