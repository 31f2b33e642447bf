//! Store behaviours beyond the feed: secrets encrypted at rest, admin tokens, look-ups by
//! normalized e-mail, keyset pagination by tag and by organizer, database URL parsing.

use crate::support::t0;
use chrono::Duration;
use crmsync_engine::ids::ContactId;
use crmsync_engine::model::{
    ActivityData, ActivityStatus, ActivityTime, ContactData, Email, EmailKind, TagVisibility,
};
use crmsync_schema::diesel::prelude::*;
use crmsync_schema::schema::{app_settings, google_connections, service_accounts};
use crmsync_schema::tags::NewTag;
use crmsync_schema::users::NewUser;
use crmsync_schema::{
    activities, admin_tokens, app_settings as settings_store, connections, contacts, db_test, tags,
    users, DatabaseUrl, SecretKeySource, Store, StoreError, StoreOptions,
};

const PRIVATE_KEY: &str =
    "-----BEGIN PRIVATE KEY-----\\nTOPSECRETKEYMATERIAL\\n-----END PRIVATE KEY-----\\n";

db_test!(async fn secrets_round_trip_and_are_not_stored_in_plaintext(db) {
    let store = db.store();
    let key_json = format!(
        r#"{{"type":"service_account","client_email":"sa@proj.iam.gserviceaccount.com","client_id":"1234","private_key":"{PRIVATE_KEY}"}}"#
    );
    let user = store
        .write(|c| users::create_user(c, &NewUser { external_id: None, email: "a@example.com".into(), display_name: "A".into(), google_alias: None, time_zone: None }, t0()))
        .unwrap();
    let sa = store.write(|c| connections::put_service_account(&store, c, "example.com", &key_json, t0())).unwrap();
    assert_eq!(sa.client_id, "1234");
    store.write(|c| connections::put_refresh_token(&store, c, user.id, "1//refresh-TOKEN-value", t0())).unwrap();
    store.write(|c| settings_store::put_secret_setting(&store, c, "oauth_client_secret", "GOCSPX-shh", t0())).unwrap();

    // Round trip.
    assert_eq!(store.read(|c| connections::service_account_key(&store, c, "example.com")).unwrap(), key_json);
    assert_eq!(store.read(|c| connections::refresh_token(&store, c, user.id)).unwrap().as_deref(), Some("1//refresh-TOKEN-value"));
    assert_eq!(store.read(|c| settings_store::get_secret_setting(&store, c, "oauth_client_secret")).unwrap().as_deref(), Some("GOCSPX-shh"));
    let conn_state = store.read(|c| connections::get_connection(c, user.id)).unwrap().unwrap();
    assert!(conn_state.has_refresh_token);

    // The stored bytes are not the plaintext.
    let mut conn = store.conn().unwrap();
    let stored_key: String = service_accounts::table.select(service_accounts::key_ciphertext).first(&mut *conn).unwrap();
    let stored_token: Option<String> = google_connections::table.select(google_connections::refresh_token_ciphertext).first(&mut *conn).unwrap();
    let stored_setting: String = app_settings::table.select(app_settings::value).first(&mut *conn).unwrap();
    drop(conn);
    for stored in [stored_key.as_str(), stored_token.as_deref().unwrap(), stored_setting.as_str()] {
        assert!(!stored.contains("TOPSECRET") && !stored.contains("refresh-TOKEN") && !stored.contains("GOCSPX"), "{stored}");
        assert!(stored.contains("v1:"));
    }

    // Another key cannot read them; no key gives the error that says how to configure one.
    let other = Store::open_with(db.url(), StoreOptions { max_connections: Some(1), secret_key: SecretKeySource::Key(crmsync_schema::secrets::SecretBox::from_base64(&crmsync_schema::secrets::generate_key()).unwrap()) }).unwrap();
    assert!(matches!(other.read(|c| connections::refresh_token(&other, c, user.id)), Err(StoreError::Secret(_))));
    drop(other);
    let keyless = Store::open_with(db.url(), StoreOptions { max_connections: Some(1), secret_key: SecretKeySource::None }).unwrap();
    let err = keyless.write(|c| connections::put_refresh_token(&keyless, c, user.id, "x", t0())).unwrap_err();
    assert!(matches!(err, StoreError::MissingSecretKey));
    let msg = err.to_string();
    assert!(msg.contains("CRMSYNC_SECRET_KEY") && msg.contains("secret-key generate"), "{msg}");
});

db_test!(async fn admin_tokens_verify_until_revoked(db) {
    let store = db.store();
    let (record, token) = store.write(|c| admin_tokens::create_admin_token(c, "ci", t0())).unwrap();
    assert!(token.starts_with("crm_") && token.len() > 40);
    assert_eq!(store.read(|c| admin_tokens::verify_admin_token(c, &token)).unwrap().map(|t| t.id), Some(record.id));
    assert!(store.read(|c| admin_tokens::verify_admin_token(c, "crm_wrong")).unwrap().is_none());
    assert!(store.read(|c| admin_tokens::verify_admin_token(c, &token[..token.len() - 1])).unwrap().is_none());
    store.write(|c| admin_tokens::revoke_admin_token(c, record.id, t0())).unwrap();
    assert!(store.read(|c| admin_tokens::verify_admin_token(c, &token)).unwrap().is_none());
    // Only the hash is stored.
    let hashes: Vec<String> = {
        use crmsync_schema::schema::admin_tokens::dsl::*;
        let mut conn = store.conn().unwrap();
        admin_tokens.select(token_hash).load(&mut *conn).unwrap()
    };
    assert!(hashes.iter().all(|h| !h.contains(&token[4..])));
});

db_test!(async fn lookups_by_email_tag_and_organizer(db) {
    let store = db.store();
    let user = store
        .write(|c| users::create_user(c, &NewUser { external_id: None, email: " Ann@Example.COM ".into(), display_name: "Ann".into(), google_alias: None, time_zone: Some("Europe/Paris".into()) }, t0()))
        .unwrap();
    assert_eq!(user.email, "ann@example.com");
    assert_eq!(user.google_alias, "ann@example.com");
    assert_eq!(store.read(|c| users::user_by_email(c, "ANN@example.com")).unwrap().map(|u| u.id), Some(user.id));
    let dup = store.write(|c| users::create_user(c, &NewUser { external_id: None, email: "ann@EXAMPLE.com".into(), display_name: "Dup".into(), google_alias: None, time_zone: None }, t0()));
    assert!(matches!(dup, Err(StoreError::Conflict(_))));

    let tag = store
        .write(|c| tags::create_tag(c, &NewTag { external_id: None, name: "t".into(), visibility: TagVisibility::Private, owner_user_id: Some(user.id) }, t0()))
        .unwrap();
    let mut tagged: Vec<ContactId> = Vec::new();
    for i in 0..7 {
        let data = ContactData {
            given_name: format!("c{i}"),
            emails: vec![Email { address: format!("Person{i}@Mail.example"), kind: EmailKind::Home, primary: false }],
            ..Default::default()
        };
        let tags_for = if i % 2 == 0 { vec![tag.id] } else { vec![] };
        let c = store.write(|c| contacts::create_contact(c, &data, &tags_for, None, crmsync_schema::changes::Origin::Api, t0())).unwrap();
        if i % 2 == 0 {
            tagged.push(c.id);
        }
    }
    tagged.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.read(|c| contacts::contacts_with_tag(c, tag.id, after, 2)).unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(|c| c.id);
        seen.extend(page.iter().map(|c| c.id));
    }
    assert_eq!(seen, tagged);
    let found = store.read(|c| contacts::contacts_by_email(c, "person3@mail.EXAMPLE")).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].data.given_name, "c3");
    store.write(|c| contacts::delete_contact(c, found[0].id, crmsync_schema::changes::Origin::Api, t0())).unwrap();
    assert!(store.read(|c| contacts::contacts_by_email(c, "person3@mail.example")).unwrap().is_empty());

    let mut ids = Vec::new();
    for i in [3, 1, 2, 1] {
        let data = ActivityData {
            title: format!("a{i}"),
            time: ActivityTime::Timed { start: t0() + Duration::hours(i), end: t0() + Duration::hours(i + 1) },
            time_zone: "UTC".into(),
            location: None,
            notes: None,
            status: ActivityStatus::Planned,
            display_in_calendar: false,
            organizer_user_id: user.id,
            participants: vec![],
        };
        ids.push(store.write(|c| activities::create_activity(c, &data, None, crmsync_schema::changes::Origin::Api, t0())).unwrap());
    }
    let mut order = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.read(|c| activities::activities_by_organizer(c, user.id, cursor, 1)).unwrap();
        let Some(a) = page.last() else { break };
        let ActivityTime::Timed { start, .. } = a.data.time else { unreachable!() };
        cursor = Some(activities::ActivityCursor { start, id: a.id });
        order.push(a.data.title.clone());
    }
    assert_eq!(order, vec!["a1", "a1", "a2", "a3"]);
});

#[test]
fn database_urls_are_parsed() {
    assert_eq!(
        DatabaseUrl::parse("sqlite://crmsync.db").unwrap(),
        DatabaseUrl::Sqlite("crmsync.db".into())
    );
    assert_eq!(
        DatabaseUrl::parse("sqlite:///tmp/x.db").unwrap(),
        DatabaseUrl::Sqlite("/tmp/x.db".into())
    );
    assert!(matches!(
        DatabaseUrl::parse("postgresql://u@h/db").unwrap(),
        DatabaseUrl::Postgres(_)
    ));
    assert!(matches!(
        DatabaseUrl::parse("postgres://u@h/db").unwrap(),
        DatabaseUrl::Postgres(_)
    ));
    let err = DatabaseUrl::parse("mysql://x").unwrap_err().to_string();
    assert!(
        err.contains("sqlite://") && err.contains("postgres://"),
        "{err}"
    );
}
