//! Test support (feature `test-support`): [`TestDb`] gives each test its own migrated database,
//! a temporary SQLite file or a fresh PostgreSQL database `crmsync_test_<uuid>` on the server
//! named by `CRMSYNC_TEST_POSTGRES_URL` (dropped afterwards), and [`db_test!`](crate::db_test)
//! turns one async test body into a `<name>_sqlite` and a `<name>_postgres` test.

// Test support only (feature `test-support`): a failure here fails the test that called it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::db::{SecretKeySource, Store, StoreOptions};
use crate::secrets::{generate_key, SecretBox};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

#[doc(hidden)]
pub use paste;

/// The variable naming the PostgreSQL server for tests (`bash scripts/test` sets it).
pub const TEST_POSTGRES_ENV: &str = "CRMSYNC_TEST_POSTGRES_URL";

enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, database: String },
}

/// A migrated, empty database that lives as long as the value.
pub struct TestDb {
    store: Option<Store>,
    url: String,
    cleanup: Option<Cleanup>,
}

impl TestDb {
    /// A migrated SQLite database in a temporary directory.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("create a temporary directory for the test database");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        let store = open(&url);
        TestDb {
            store: Some(store),
            url,
            cleanup: Some(Cleanup::Sqlite(dir)),
        }
    }

    /// A migrated fresh PostgreSQL database on the server of `CRMSYNC_TEST_POSTGRES_URL`.
    /// Panics (fails the test) when the variable is missing: run the tests with `bash scripts/test`.
    pub fn postgres() -> TestDb {
        let admin_url = std::env::var(TEST_POSTGRES_ENV).unwrap_or_else(|_| {
            panic!(
                "{TEST_POSTGRES_ENV} is not set: the PostgreSQL half of the suite needs a server. \
                 Run the tests with `bash scripts/test` (README), which starts a throwaway \
                 PostgreSQL and sets it"
            )
        });
        let database = format!("crmsync_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::establish(&admin_url)
            .unwrap_or_else(|e| panic!("cannot connect to {TEST_POSTGRES_ENV}={admin_url}: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .unwrap_or_else(|e| panic!("cannot create test database {database}: {e}"));
        let mut url = url::Url::parse(&admin_url).expect("CRMSYNC_TEST_POSTGRES_URL is a URL");
        url.set_path(&format!("/{database}"));
        let url = url.to_string();
        let store = open(&url);
        TestDb {
            store: Some(store),
            url,
            cleanup: Some(Cleanup::Postgres {
                admin_url,
                database,
            }),
        }
    }

    /// The store (a clone shares the pool).
    pub fn store(&self) -> Store {
        self.store.clone().expect("the test database is open")
    }

    /// The database URL (for opening a second store on the same database).
    pub fn url(&self) -> &str {
        &self.url
    }
}

fn open(url: &str) -> Store {
    let key = SecretBox::from_base64(&generate_key()).expect("a fresh key is valid");
    let store = Store::open_with(
        url,
        StoreOptions {
            max_connections: Some(4),
            secret_key: SecretKeySource::Key(key),
        },
    )
    .unwrap_or_else(|e| panic!("cannot open test database {url}: {e}"));
    store
        .run_migrations()
        .unwrap_or_else(|e| panic!("cannot migrate test database {url}: {e}"));
    store
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.store.take();
        if let Some(Cleanup::Postgres {
            admin_url,
            database,
        }) = self.cleanup.take()
        {
            let dropped = PgConnection::establish(&admin_url)
                .map_err(|e| e.to_string())
                .and_then(|mut c| {
                    c.batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = dropped {
                eprintln!("warning: could not drop test database {database}: {e}");
            }
        }
    }
}

/// Defines `<name>_sqlite` and `<name>_postgres` tokio tests from one body that receives a
/// [`TestDb`]:
///
/// ```ignore
/// crmsync_schema::db_test!(async fn creates_users(db) {
///     let store = db.store();
///     // ...
/// });
/// ```
#[macro_export]
macro_rules! db_test {
    ($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block) => {
        $crate::test_support::paste::paste! {
            $(#[$meta])*
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn [<$name _sqlite>]() {
                #[allow(unused_variables)]
                let $db = $crate::test_support::TestDb::sqlite();
                $body
            }

            $(#[$meta])*
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn [<$name _postgres>]() {
                #[allow(unused_variables)]
                let $db = $crate::test_support::TestDb::postgres();
                $body
            }
        }
    };
}

/// Reverts the last applied migration (its `down.sql`), for tests of upgrades from the version
/// before it. Returns the reverted migration's version.
pub fn revert_last_migration(store: &Store) -> crate::StoreResult<String> {
    use crate::db::{AnyConnection, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS};
    use diesel_migrations::MigrationHarness;
    let mut conn = store.conn()?;
    let reverted = match &mut *conn {
        AnyConnection::Sqlite(c) => c.revert_last_migration(SQLITE_MIGRATIONS),
        AnyConnection::Postgresql(c) => c.revert_last_migration(POSTGRES_MIGRATIONS),
    }
    .map_err(|e| crate::StoreError::Migration(e.to_string()))?;
    Ok(reverted.to_string())
}
