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

db_test!(async fn upgrading_a_database_that_breaks_the_unique_rules_is_refused_with_what_to_fix(db) {
    use crmsync_schema::diesel;
    use crmsync_schema::diesel::prelude::*;
    use crmsync_schema::schema::{tags, users};
    let store = db.store();
    // Back to the version before the security migration (reverting the later ones first).
    let mut reverted_count = 0;
    loop {
        let reverted = crmsync_schema::test_support::revert_last_migration(&store).expect("down.sql runs");
        reverted_count += 1;
        if reverted.starts_with("20261207") {
            break;
        }
        assert!(reverted_count < 5, "{reverted}");
    }
    // What the previous version allowed: two users on one Google account, two private tags of
    // one name for one owner.
    let now = chrono::Utc::now().naive_utc();
    store
        .write(|c| {
            for (id, email) in [("00000000-0000-4000-8000-00000000000a", "ann@example.com"), ("00000000-0000-4000-8000-00000000000b", "bob@example.com")] {
                diesel::insert_into(users::table)
                    .values((users::id.eq(id), users::email.eq(email), users::display_name.eq("X"),
                             users::google_alias.eq("shared@example.com"), users::time_zone.eq("UTC"),
                             users::created_at.eq(now), users::updated_at.eq(now)))
                    .execute(c)?;
            }
            for (id, name) in [("00000000-0000-4000-8000-0000000000c1", "Clients"), ("00000000-0000-4000-8000-0000000000c2", "clients")] {
                diesel::insert_into(tags::table)
                    .values((tags::id.eq(id), tags::name.eq(name), tags::visibility.eq("private"),
                             tags::owner_user_id.eq(Some("00000000-0000-4000-8000-00000000000a")), tags::created_at.eq(now)))
                    .execute(c)?;
            }
            Ok(())
        })
        .expect("old data");
    let err = store.run_migrations().expect_err("the upgrade is refused").to_string();
    assert!(err.contains("shared@example.com") && err.contains("ann@example.com") && err.contains("bob@example.com"), "{err}");
    assert!(err.contains("\"clients\"") && err.contains("nothing was changed"), "{err}");
    assert_eq!(store.migration_status().expect("status").pending.len(), reverted_count, "nothing applied");
    // Fixed by the admin: the upgrade goes through.
    store
        .write(|c| {
            diesel::update(users::table.filter(users::email.eq("bob@example.com")))
                .set(users::google_alias.eq("bob@example.com"))
                .execute(c)?;
            diesel::update(tags::table.filter(tags::name.eq("clients")))
                .set(tags::name.eq("Clients 2"))
                .execute(c)?;
            Ok(())
        })
        .expect("fix");
    assert_eq!(store.run_migrations().expect("upgrade").len(), reverted_count);
});
