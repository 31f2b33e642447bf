//! Migrations: the SQLite and PostgreSQL folders hold the same migration names, and a fresh
//! database ends with all of them applied and none pending.

use crmsync_schema::db_test;
use crmsync_schema::DbKind;

#[test]
fn sqlite_and_postgres_migration_names_are_identical() {
    let sqlite = DbKind::Sqlite.migration_names().expect("sqlite migrations");
    let postgres = DbKind::Postgres
        .migration_names()
        .expect("postgres migrations");
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite, postgres,
        "migrations/sqlite and migrations/postgres must hold the same names"
    );
}

db_test!(async fn fresh_database_is_fully_migrated(db) {
    let store = db.store();
    let status = store.migration_status().expect("status");
    assert!(status.pending.is_empty(), "pending: {:?}", status.pending);
    assert_eq!(status.applied.len(), store.kind().migration_names().unwrap().len());
    assert!(store.run_migrations().expect("idempotent").is_empty());
});
