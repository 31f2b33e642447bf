//! Connections and transactions: the `AnyConnection` (diesel `MultiConnection` of PostgreSQL and
//! SQLite), the r2d2 pool chosen by `DATABASE_URL`, SQLite pragmas on every connection, write
//! transactions that take SQLite's write lock up front (`BEGIN IMMEDIATE`), the embedded
//! migrations, and `Store`, the cloneable handle every caller holds.

use crate::error::{StoreError, StoreResult};
use crate::secrets::SecretBox;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::migration::MigrationSource;
use diesel::prelude::*;
use diesel::r2d2::{ManageConnection, Pool, PooledConnection, R2D2Connection};
use diesel::{PgConnection, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use std::sync::Arc;
use std::time::Duration;

/// One connection to either backend. Store functions take `&mut AnyConnection`.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(PgConnection),
    Sqlite(SqliteConnection),
}

/// The SQLite migrations (`migrations/sqlite`), embedded in the binary.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
/// The PostgreSQL migrations (`migrations/postgres`), embedded in the binary.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// The default database: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://crmsync.db";

/// Which backend a store talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

impl DbKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            DbKind::Sqlite => "sqlite",
            DbKind::Postgres => "postgres",
        }
    }

    /// The names of the migrations embedded for this backend, in order.
    pub fn migration_names(&self) -> StoreResult<Vec<String>> {
        match self {
            DbKind::Sqlite => names_of(MigrationSource::<diesel::sqlite::Sqlite>::migrations(
                &SQLITE_MIGRATIONS,
            )),
            DbKind::Postgres => names_of(MigrationSource::<diesel::pg::Pg>::migrations(
                &POSTGRES_MIGRATIONS,
            )),
        }
    }
}

fn names_of<DB: diesel::backend::Backend>(
    migrations: diesel::migration::Result<Vec<Box<dyn diesel::migration::Migration<DB>>>>,
) -> StoreResult<Vec<String>> {
    let migrations = migrations.map_err(|e| StoreError::Migration(e.to_string()))?;
    Ok(migrations.iter().map(|m| m.name().to_string()).collect())
}

/// A parsed `DATABASE_URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A SQLite database file (created if missing).
    Sqlite(String),
    /// A PostgreSQL connection URL, passed to libpq as is.
    Postgres(String),
}

impl DatabaseUrl {
    /// Parses `sqlite://PATH`, `sqlite:PATH`, `postgres://…` or `postgresql://…`.
    pub fn parse(url: &str) -> StoreResult<Self> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"));
        match path {
            Some(p) if !p.is_empty() && p != ":memory:" => Ok(DatabaseUrl::Sqlite(p.to_string())),
            _ => Err(StoreError::Config(format!(
                "unsupported database URL {url:?}: use sqlite://PATH (for example sqlite://crmsync.db) \
                 or postgres://USER@HOST:PORT/DATABASE"
            ))),
        }
    }

    pub fn kind(&self) -> DbKind {
        match self {
            DatabaseUrl::Sqlite(_) => DbKind::Sqlite,
            DatabaseUrl::Postgres(_) => DbKind::Postgres,
        }
    }
}

/// Makes the SQLite database private to its owner (0600): creates the file so when it is missing
/// (SQLite then gives its `-wal` and `-shm` files the same mode), and takes group and other
/// access away from an existing database and its WAL files.
fn make_private(path: &std::path::Path) -> StoreResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let cannot = |e: std::io::Error| {
            StoreError::Config(format!(
                "cannot create or protect the SQLite database {}: {e}; check the folder's permissions",
                path.display()
            ))
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(cannot(e)),
        }
        let mut files = vec![path.to_path_buf()];
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            files.push(p.into());
        }
        for file in files {
            let Ok(meta) = std::fs::metadata(&file) else {
                continue;
            };
            let mode = meta.permissions().mode();
            if meta.is_file() && mode & 0o077 != 0 {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode & 0o700))
                    .map_err(cannot)?;
                tracing::warn!(
                    file = %file.display(),
                    "the database file was readable by other local users; it is now private to its owner (0600)"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// How long SQLite waits for a lock held by another connection before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 15_000;

/// The r2d2 connection manager: opens the backend named by the URL and prepares every
/// SQLite connection (WAL, busy timeout, foreign keys, `synchronous=NORMAL`).
#[derive(Debug, Clone)]
pub struct AnyConnectionManager {
    url: DatabaseUrl,
}

impl AnyConnectionManager {
    pub fn new(url: DatabaseUrl) -> Self {
        Self { url }
    }
}

impl ManageConnection for AnyConnectionManager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, Self::Error> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(path)
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                     PRAGMA cache_size = -16384; PRAGMA temp_store = MEMORY;"
                ))
                .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(conn))
            }
            DatabaseUrl::Postgres(url) => {
                let conn =
                    PgConnection::establish(url).map_err(diesel::r2d2::Error::ConnectionError)?;
                Ok(AnyConnection::Postgresql(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// A connection borrowed from the pool.
pub type PooledConn = PooledConnection<AnyConnectionManager>;

/// Where the key for secrets at rest comes from.
#[derive(Clone, Debug, Default)]
pub enum SecretKeySource {
    /// `CRMSYNC_SECRET_KEY`; its absence is tolerated until a secret must be stored or read.
    #[default]
    Env,
    /// This key.
    Key(SecretBox),
    /// No key: storing or reading a secret fails with [`StoreError::MissingSecretKey`].
    None,
}

/// Options for [`Store::open_with`].
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// Maximum pooled connections (default: 8 on SQLite, 10 on PostgreSQL).
    pub max_connections: Option<u32>,
    /// The key for secrets at rest.
    pub secret_key: SecretKeySource,
}

struct Inner {
    pool: Pool<AnyConnectionManager>,
    kind: DbKind,
    secrets: Option<SecretBox>,
    /// The SQLite database file (`None` on PostgreSQL).
    sqlite_path: Option<std::path::PathBuf>,
}

/// The handle to the CRM store: cheap to clone, `Send + Sync`. Blocking; from async code use
/// [`Store::run`].
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("kind", &self.inner.kind)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the database named by `url` with default options (secret key from the environment).
    pub fn open(url: &str) -> StoreResult<Store> {
        Store::open_with(url, StoreOptions::default())
    }

    /// Opens the database named by `url`. Does not apply migrations: see [`Store::run_migrations`].
    pub fn open_with(url: &str, options: StoreOptions) -> StoreResult<Store> {
        let url = DatabaseUrl::parse(url)?;
        let kind = url.kind();
        if let DatabaseUrl::Sqlite(path) = &url {
            if let Some(parent) = std::path::Path::new(path).parent() {
                if !parent.as_os_str().is_empty() && !parent.exists() {
                    return Err(StoreError::Config(format!(
                        "the folder {} of the SQLite database does not exist; create it or change DATABASE_URL",
                        parent.display()
                    )));
                }
            }
        }
        let sqlite_path = match &url {
            DatabaseUrl::Sqlite(path) => {
                make_private(std::path::Path::new(path))?;
                Some(std::path::PathBuf::from(path))
            }
            DatabaseUrl::Postgres(_) => None,
        };
        let max = options.max_connections.unwrap_or(match kind {
            DbKind::Sqlite => 8,
            DbKind::Postgres => 10,
        });
        let pool = Pool::builder()
            .max_size(max.max(1))
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(30))
            .build(AnyConnectionManager::new(url))
            .map_err(|e| StoreError::Connect(e.to_string()))?;
        let secrets = match options.secret_key {
            SecretKeySource::Key(key) => Some(key),
            SecretKeySource::Env => SecretBox::from_env()?,
            SecretKeySource::None => None,
        };
        Ok(Store {
            inner: Arc::new(Inner {
                pool,
                kind,
                secrets,
                sqlite_path,
            }),
        })
    }

    /// Which backend this store uses.
    pub fn kind(&self) -> DbKind {
        self.inner.kind
    }

    /// Whether the SQLite database file is still where it was opened (the pool's open
    /// connections would go on writing to a file removed from under them); always `true` on
    /// PostgreSQL.
    pub fn database_file_exists(&self) -> bool {
        self.inner.sqlite_path.as_ref().is_none_or(|p| p.exists())
    }

    /// The secret box, or the error that says how to configure one.
    pub fn secrets(&self) -> StoreResult<&SecretBox> {
        self.inner
            .secrets
            .as_ref()
            .ok_or(StoreError::MissingSecretKey)
    }

    /// Borrows a connection from the pool (no transaction).
    pub fn conn(&self) -> StoreResult<PooledConn> {
        Ok(self.inner.pool.get()?)
    }

    /// Runs `f` in a read transaction (a consistent snapshot for multi-query reads).
    pub fn read<T>(&self, f: impl FnOnce(&mut AnyConnection) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.conn()?;
        let conn: &mut AnyConnection = &mut conn;
        conn.transaction(f)
    }

    /// Runs `f` in a write transaction: `BEGIN IMMEDIATE` on SQLite (the write lock is taken up
    /// front, so concurrent writers wait instead of deadlocking), a plain transaction on
    /// PostgreSQL. Commits when `f` returns `Ok`, rolls back otherwise.
    pub fn write<T>(&self, f: impl FnOnce(&mut AnyConnection) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.conn()?;
        write_transaction(&mut conn, f)
    }

    /// Runs a blocking store closure on tokio's blocking pool (for async callers). A panic in
    /// the closure is raised again in the caller (a bug is not turned into a failed run).
    pub async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> StoreResult<T> + Send + 'static,
    {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(StoreError::Task(e.to_string())),
        }
    }

    /// [`Store::read`] on the blocking pool, for async callers.
    pub async fn read_async<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> StoreResult<T> + Send + 'static,
    {
        self.run(move |s| s.read(f)).await
    }

    /// [`Store::write`] on the blocking pool, for async callers.
    pub async fn write_async<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut AnyConnection) -> StoreResult<T> + Send + 'static,
    {
        self.run(move |s| s.write(f)).await
    }

    /// Applies every pending embedded migration; returns the names applied now.
    pub fn run_migrations(&self) -> StoreResult<Vec<String>> {
        let pending = self.migration_status()?.pending;
        let mut conn = self.conn()?;
        check_before_migrations(&mut conn, &pending)?;
        let err =
            |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Migration(e.to_string());
        let applied = match &mut *conn {
            AnyConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map_err(err)?,
            AnyConnection::Postgresql(c) => {
                c.run_pending_migrations(POSTGRES_MIGRATIONS).map_err(err)?
            }
        };
        let names: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
        if !names.is_empty() {
            tracing::info!(backend = self.kind().as_str(), applied = ?names, "applied database migrations");
        }
        Ok(names)
    }

    /// Embedded migrations that are applied and pending on this database.
    pub fn migration_status(&self) -> StoreResult<MigrationStatus> {
        let mut conn = self.conn()?;
        migration_status_of(&mut conn)
    }

    /// The migration status, waiting at most `timeout` for a connection (the pool's own wait is
    /// much longer): for readiness checks, which must answer quickly when the database is gone.
    pub fn migration_status_within(&self, timeout: Duration) -> StoreResult<MigrationStatus> {
        let mut conn = self
            .inner
            .pool
            .get_timeout(timeout)
            .map_err(|e| StoreError::Connect(e.to_string()))?;
        migration_status_of(&mut conn)
    }
}

fn migration_status_of(conn: &mut AnyConnection) -> StoreResult<MigrationStatus> {
    let err = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Migration(e.to_string());
    let (applied, pending) = match conn {
        AnyConnection::Sqlite(c) => (
            c.applied_migrations()
                .map_err(err)?
                .iter()
                .map(|v| v.to_string())
                .collect(),
            c.pending_migrations(SQLITE_MIGRATIONS)
                .map_err(err)?
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
        ),
        AnyConnection::Postgresql(c) => (
            c.applied_migrations()
                .map_err(err)?
                .iter()
                .map(|v| v.to_string())
                .collect(),
            c.pending_migrations(POSTGRES_MIGRATIONS)
                .map_err(err)?
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
        ),
    };
    Ok(MigrationStatus { applied, pending })
}

/// Data that a pending migration's unique index would refuse, found before anything is applied,
/// with what to change (the migration itself would only say "UNIQUE constraint failed").
fn check_before_migrations(conn: &mut AnyConnection, pending: &[String]) -> StoreResult<()> {
    use crate::schema::{tags, users};
    use diesel::dsl::count_star;
    let data_exists = !pending.iter().any(|m| m.contains("crm_core"));
    if !data_exists || !pending.iter().any(|m| m.contains("_security")) {
        return Ok(());
    }
    let shared: Vec<(String, i64)> = users::table
        .group_by(users::google_alias)
        .select((users::google_alias, count_star()))
        .having(count_star().gt(1))
        .load(conn)?;
    let mut problems: Vec<String> = Vec::new();
    for (alias, _) in &shared {
        let holders: Vec<String> = users::table
            .filter(users::google_alias.eq(alias))
            .select(users::email)
            .load(conn)?;
        problems.push(format!(
            "the Google alias {alias} is shared by the CRM users {}",
            holders.join(", ")
        ));
    }
    let private: Vec<(Option<String>, String)> = tags::table
        .filter(tags::visibility.eq("private"))
        .select((tags::owner_user_id, tags::name))
        .load(conn)?;
    let mut seen = std::collections::BTreeMap::new();
    for (owner, name) in private {
        *seen
            .entry((owner.unwrap_or_default(), name.to_ascii_lowercase()))
            .or_insert(0) += 1;
    }
    for ((owner, name), n) in seen {
        if n > 1 {
            problems.push(format!("user {owner} owns {n} private tags named {name:?}"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(StoreError::Migration(format!(
        "this version allows one Google account per CRM user and one private tag name per owner, \
         and the database breaks that rule: {}. With the previous crmsync version, give each user \
         its own google_alias (PATCH /api/v1/users/ID) and rename or delete the extra tags, then \
         start this version again; nothing was changed",
        problems.join("; ")
    )))
}

/// Applied and pending migrations (versions as diesel reports them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationStatus {
    pub applied: Vec<String>,
    pub pending: Vec<String>,
}

/// Runs `f` in a write transaction on `conn` (see [`Store::write`]). Errors if a transaction is
/// already open on `conn`.
pub fn write_transaction<T>(
    conn: &mut AnyConnection,
    f: impl FnOnce(&mut AnyConnection) -> StoreResult<T>,
) -> StoreResult<T> {
    match conn {
        AnyConnection::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
        AnyConnection::Postgresql(_) => {
            <AnyConnection as TransactionManager<AnyConnection>>::begin_transaction(conn)?
        }
    }
    match f(conn) {
        Ok(value) => {
            <AnyConnection as TransactionManager<AnyConnection>>::commit_transaction(conn)?;
            Ok(value)
        }
        Err(e) => {
            match <AnyConnection as TransactionManager<AnyConnection>>::rollback_transaction(conn) {
                Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(e),
                Err(rollback) => Err(rollback.into()),
            }
        }
    }
}

/// Fails unless `conn` is inside a transaction: store writes that must be atomic call this first.
pub(crate) fn require_transaction(conn: &mut AnyConnection) -> StoreResult<()> {
    let status =
        <AnyConnection as TransactionManager<AnyConnection>>::transaction_manager_status_mut(conn);
    match status.transaction_depth() {
        Ok(Some(_)) => Ok(()),
        _ => Err(StoreError::Invalid(
            "internal error: a store write was called outside a write transaction; wrap it in Store::write".into(),
        )),
    }
}
