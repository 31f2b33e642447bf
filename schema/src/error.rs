//! `StoreError`: every way a store call can fail, in variants that callers map to HTTP statuses
//! (not found → 404, conflict → 409, invalid → 422, the rest → 5xx).

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// The result of every store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record does not exist (or, where stated, was deleted).
    #[error("{what} {id} was not found")]
    NotFound { what: &'static str, id: String },
    /// The write conflicts with existing data (a unique value already taken, a record in use).
    #[error("{0}")]
    Conflict(String),
    /// The caller's `If-Match` names a version the record no longer has (or it is missing).
    #[error("{0}")]
    Stale(String),
    /// The input is not acceptable (a reference to a missing record, a value out of range, ...).
    #[error("{0}")]
    Invalid(String),
    /// A secret must be encrypted or decrypted and no key is configured.
    #[error(
        "no secret key is configured: set CRMSYNC_SECRET_KEY to the base64 of 32 random bytes \
         (generate one with `crmsync secret-key generate` or `openssl rand -base64 32`)"
    )]
    MissingSecretKey,
    /// A secret could not be decrypted or the key is malformed.
    #[error("{0}")]
    Secret(String),
    /// `DATABASE_URL` (or `--database-url`) is not a database crmsync can use.
    #[error("{0}")]
    Config(String),
    /// The database could not be reached.
    #[error("cannot connect to the database: {0}; check DATABASE_URL and that the server is up")]
    Connect(String),
    /// Applying the embedded migrations failed.
    #[error("applying database migrations failed: {0}")]
    Migration(String),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] DieselError),
    /// Stored data that cannot be read back (a bad enum name, malformed JSON in a column, ...).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The blocking task running a store call panicked or was cancelled.
    #[error("a background database task failed: {0}")]
    Task(String),
}

impl StoreError {
    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        StoreError::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        match e {
            DieselError::NotFound => StoreError::NotFound {
                what: "record",
                id: String::new(),
            },
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                StoreError::Conflict(format!(
                    "a record with this value already exists ({})",
                    info.message()
                ))
            }
            DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, info) => {
                StoreError::Invalid(format!(
                    "a referenced record does not exist ({})",
                    info.message()
                ))
            }
            DieselError::DatabaseError(DatabaseErrorKind::CheckViolation, info) => {
                StoreError::Invalid(format!("a value is out of range ({})", info.message()))
            }
            other => StoreError::Database(other),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        StoreError::Connect(e.to_string())
    }
}
