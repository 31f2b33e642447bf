//! Fixtures for end-to-end sync tests: a test database (SQLite or PostgreSQL), the Google
//! emulator on a loopback port, a Workspace domain `example.com` whose service account is
//! authorized by domain-wide delegation, CRM users with a private sync tag, and a `SyncEngine`
//! pointed at the emulator. Google-side edits go through the real People client crate acting as
//! the user (an access token minted by the emulator).

use chrono::Utc;
use crmsync::clock::SystemClock;
use crmsync::sync::google::{AccountOptions, AccountProvider};
use crmsync::sync::{RunOptions, RunReport, RunState, SyncConfig, SyncEngine, Trigger};
use crmsync_connectors::people1::api::{EmailAddress, Name, PhoneNumber};
use crmsync_connectors::{
    ClientOptions, Credentials, GoogleAccount, GoogleEndpoints, Person, RetryPolicy, SendUpdates,
};
use crmsync_emulator::{EmulatorServer, FaultRule};
use crmsync_engine::ids::{SyncKind, TagId};
use crmsync_engine::model::{
    Contact, ContactData, Email, EmailKind, SyncSchedule, Tag, TagVisibility, User,
};
use crmsync_schema::settings::NewSyncSettings;
use crmsync_schema::tags::NewTag;
use crmsync_schema::test_support::TestDb;
use crmsync_schema::users::NewUser;
use crmsync_schema::{connections, contacts, settings, tags, users, Store};
use serde_json::Value;
use std::sync::Arc;

pub const DOMAIN: &str = "example.com";
pub const SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/contacts",
    "https://www.googleapis.com/auth/calendar.events",
];

/// A CRM + emulated Google world for one test.
pub struct SyncWorld {
    /// Keeps the database alive as long as the world.
    pub _db: TestDb,
    pub store: Store,
    pub emu: EmulatorServer,
    pub engine: SyncEngine,
    pub alice: User,
    pub tag: Tag,
}

pub fn now() -> chrono::DateTime<Utc> {
    Utc::now()
}

impl SyncWorld {
    /// Alice (alice@example.com) with a private tag "Clients" as her contacts sync tag.
    pub async fn new(db: TestDb) -> SyncWorld {
        Self::with_config(db, SyncConfig::default()).await
    }

    pub async fn with_config(db: TestDb, config: SyncConfig) -> SyncWorld {
        let store = db.store();
        let emu = EmulatorServer::start_local()
            .await
            .expect("start the emulator");
        let key = emu
            .emulator()
            .create_service_account(DOMAIN, emu.base_url());
        let client_id = key["client_id"].as_str().expect("client_id").to_string();
        emu.emulator()
            .authorize_delegation(&client_id, &SCOPES.map(String::from));
        let key_json = key.to_string();
        let s2 = store.clone();
        store
            .write(|c| {
                connections::put_service_account(&s2, c, DOMAIN, &key_json, now()).map(|_| ())
            })
            .expect("store the service account");
        let accounts = AccountProvider::new(
            store.clone(),
            AccountOptions {
                endpoints: GoogleEndpoints::emulator(emu.base_url()),
                // Fast backoff, and no waiting for People's next quota minute in tests.
                retry: RetryPolicy {
                    people_minute_windows: false,
                    ..RetryPolicy::fast(5)
                },
                calendar_rate_per_minute: Some(0),
                people_rate_per_minute: None,
                send_updates: SendUpdates::None,
            },
        );
        let engine = SyncEngine::new(store.clone(), accounts, config, Arc::new(SystemClock));
        let mut world = SyncWorld {
            _db: db,
            store,
            emu,
            engine,
            alice: placeholder_user(),
            tag: placeholder_tag(),
        };
        world.alice = world.user("alice@example.com").await;
        world.tag = world.private_tag(&world.alice.clone(), "Clients");
        world.set_contact_tag(&world.alice.clone(), world.tag.id);
        world
    }

    /// A CRM user who is also a Workspace user of the emulated domain.
    pub async fn user(&self, email: &str) -> User {
        self.emu
            .emulator()
            .create_user(email)
            .expect("emulated Workspace user");
        self.store
            .write(|c| {
                users::create_user(
                    c,
                    &NewUser {
                        external_id: None,
                        email: email.into(),
                        display_name: email.into(),
                        google_alias: None,
                        time_zone: Some("Europe/London".into()),
                    },
                    now(),
                )
            })
            .expect("create a CRM user")
    }

    pub fn private_tag(&self, owner: &User, name: &str) -> Tag {
        self.store
            .write(|c| {
                tags::create_tag(
                    c,
                    &NewTag {
                        external_id: None,
                        name: name.into(),
                        visibility: TagVisibility::Private,
                        owner_user_id: Some(owner.id),
                    },
                    now(),
                )
            })
            .expect("create a tag")
    }

    pub fn set_contact_tag(&self, user: &User, tag: TagId) {
        self.store
            .write(|c| {
                settings::put_sync_settings(
                    c,
                    &NewSyncSettings {
                        user_id: user.id,
                        kind: SyncKind::Contacts,
                        auto_sync: false,
                        schedule: SyncSchedule::IntervalMinutes(15),
                        tag_id: Some(tag),
                        synchronize_from: None,
                        trigger_words: vec![],
                    },
                    now(),
                )
            })
            .expect("contacts sync settings");
    }

    /// Runs a contacts sync for Alice and returns the report (failing the test on a failed run).
    pub async fn sync_contacts(&self) -> RunReport {
        self.sync_contacts_with(RunOptions::default()).await
    }

    pub async fn sync_contacts_with(&self, options: RunOptions) -> RunReport {
        let r = self
            .engine
            .sync(self.alice.id, SyncKind::Contacts, Trigger::Manual, options)
            .await
            .expect("run completes");
        assert_ne!(r.state, RunState::Failed, "run failed: {:?}", r);
        r
    }

    /// A tagged CRM contact.
    pub fn crm_contact(&self, given: &str, family: &str, email: &str) -> Contact {
        let data = contact_data(given, family, email);
        self.store
            .write(|c| {
                contacts::create_contact(
                    c,
                    &data,
                    &[self.tag.id],
                    None,
                    crmsync_schema::changes::Origin::Api,
                    now(),
                )
            })
            .expect("create a contact")
    }

    pub fn crm_get(&self, id: crmsync_engine::ids::ContactId) -> Contact {
        self.store
            .read(|c| contacts::get_contact(c, id))
            .expect("contact exists")
    }

    pub fn crm_update(
        &self,
        id: crmsync_engine::ids::ContactId,
        f: impl FnOnce(&mut ContactData),
    ) -> Contact {
        let mut data = self.crm_get(id).data;
        f(&mut data);
        self.store
            .write(|c| {
                contacts::update_contact(c, id, &data, crmsync_schema::changes::Origin::Api, now())
            })
            .expect("update")
    }

    /// Every live CRM contact.
    pub fn crm_all(&self) -> Vec<Contact> {
        self.store
            .read(|c| contacts::list_contacts(c, None, 1000))
            .expect("list contacts")
    }

    /// A People client acting as `email` (edits "by the user" in Google).
    pub async fn google_as(&self, email: &str) -> GoogleAccount {
        let token = self
            .emu
            .emulator()
            .mint_access_token(email, &SCOPES.map(String::from))
            .expect("token");
        GoogleAccount::connect(
            &GoogleEndpoints::emulator(self.emu.base_url()),
            Credentials::AccessToken(token),
            ClientOptions {
                retry: RetryPolicy::fast(2),
                ..Default::default()
            },
        )
        .await
        .expect("connect as the user")
    }

    /// Alice's Google contacts (emulator's view).
    pub fn google_contacts(&self) -> Vec<Value> {
        self.google_contacts_of("alice@example.com")
    }

    /// A user's Google contacts (emulator's view).
    pub fn google_contacts_of(&self, email: &str) -> Vec<Value> {
        self.emu.emulator().contacts(email)
    }

    /// The resource name of Alice's sync group, if it exists.
    pub fn group(&self) -> Option<String> {
        self.group_of("alice@example.com")
    }

    /// The resource name of a user's sync group, if it exists.
    pub fn group_of(&self, email: &str) -> Option<String> {
        self.emu
            .emulator()
            .contact_groups(email)
            .into_iter()
            .find(|g| g["name"] == "CRM")
            .and_then(|g| g["resourceName"].as_str().map(String::from))
    }

    /// Alice's Google contacts that are members of the sync group.
    pub fn group_members(&self) -> Vec<Value> {
        self.group_members_of("alice@example.com")
    }

    /// A user's Google contacts that are members of their sync group.
    pub fn group_members_of(&self, email: &str) -> Vec<Value> {
        let Some(group) = self.group_of(email) else {
            return vec![];
        };
        self.google_contacts_of(email)
            .into_iter()
            .filter(|p| {
                p["memberships"]
                    .as_array()
                    .map(|m| {
                        m.iter().any(|x| {
                            x["contactGroupMembership"]["contactGroupResourceName"]
                                == group.as_str()
                        })
                    })
                    .unwrap_or(false)
            })
            .collect()
    }

    /// People write calls (create, update, delete, group changes) so far.
    pub fn people_writes(&self) -> u64 {
        let s = self.emu.emulator().stats();
        [
            "people.people.createContact",
            "people.people.updateContact",
            "people.people.deleteContact",
            "people.people.batchCreateContacts",
            "people.people.batchUpdateContacts",
            "people.people.batchDeleteContacts",
            "people.contactGroups.members.modify",
            "people.contactGroups.create",
        ]
        .iter()
        .map(|m| s.count(m))
        .sum()
    }
}

pub fn contact_data(given: &str, family: &str, email: &str) -> ContactData {
    ContactData {
        given_name: given.into(),
        family_name: family.into(),
        emails: vec![Email {
            address: email.into(),
            kind: EmailKind::Work,
            primary: true,
        }],
        ..Default::default()
    }
}

/// A Google contact with a name and an e-mail.
pub fn person(given: &str, family: &str, email: &str) -> Person {
    Person {
        names: Some(vec![Name {
            given_name: Some(given.into()),
            family_name: Some(family.into()),
            ..Default::default()
        }]),
        email_addresses: Some(vec![EmailAddress {
            value: Some(email.into()),
            type_: Some("work".into()),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

pub fn with_phone(mut p: Person, phone: &str) -> Person {
    p.phone_numbers = Some(vec![PhoneNumber {
        value: Some(phone.into()),
        type_: Some("mobile".into()),
        ..Default::default()
    }]);
    p
}

/// The e-mail addresses of Google contacts (JSON from the emulator).
pub fn emails_of(people: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = people
        .iter()
        .flat_map(|p| p["emailAddresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["value"].as_str().map(str::to_lowercase))
        .collect();
    v.sort();
    v
}

fn placeholder_user() -> User {
    User {
        id: crmsync_engine::ids::UserId(uuid::Uuid::nil()),
        email: String::new(),
        display_name: String::new(),
        google_alias: String::new(),
        time_zone: "UTC".into(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
        external_id: None,
    }
}

fn placeholder_tag() -> Tag {
    Tag {
        id: TagId(uuid::Uuid::nil()),
        name: String::new(),
        visibility: TagVisibility::Private,
        owner_user_id: None,
        created_at: Utc::now(),
        external_id: None,
    }
}

impl SyncWorld {
    /// Deletes a Google contact as Alice (`people.deleteContact` over HTTP).
    pub async fn google_delete_contact(&self, resource_name: &str) {
        self.google_delete_contact_as("alice@example.com", resource_name)
            .await
    }

    /// Deletes a Google contact as `email`.
    pub async fn google_delete_contact_as(&self, email: &str, resource_name: &str) {
        let token = self
            .emu
            .emulator()
            .mint_access_token(email, &SCOPES.map(String::from))
            .expect("token");
        let resp = reqwest::Client::new()
            .delete(format!(
                "{}/v1/{}:deleteContact",
                self.emu.base_url(),
                resource_name
            ))
            .bearer_auth(token)
            .send()
            .await
            .expect("delete sent");
        assert!(
            resp.status().is_success(),
            "delete failed: {}",
            resp.status()
        );
    }
}

/// Activity fixtures.
impl SyncWorld {
    pub fn set_activity_settings(
        &self,
        user: &User,
        synchronize_from: Option<chrono::NaiveDate>,
        trigger_words: &[&str],
    ) {
        self.store
            .write(|c| {
                settings::put_sync_settings(
                    c,
                    &NewSyncSettings {
                        user_id: user.id,
                        kind: SyncKind::Activities,
                        auto_sync: false,
                        schedule: SyncSchedule::IntervalMinutes(15),
                        tag_id: None,
                        synchronize_from,
                        trigger_words: trigger_words.iter().map(|s| s.to_string()).collect(),
                    },
                    now(),
                )
            })
            .expect("activities sync settings");
    }

    pub async fn sync_activities(&self, user: &User) -> RunReport {
        let r = self
            .engine
            .sync(
                user.id,
                SyncKind::Activities,
                Trigger::Manual,
                RunOptions::default(),
            )
            .await
            .expect("run completes");
        assert_ne!(r.state, RunState::Failed, "run failed: {:?}", r);
        r
    }

    pub fn crm_activity(
        &self,
        data: &crmsync_engine::model::ActivityData,
    ) -> crmsync_engine::model::Activity {
        self.store
            .write(|c| {
                crmsync_schema::activities::create_activity(
                    c,
                    data,
                    None,
                    crmsync_schema::changes::Origin::Api,
                    now(),
                )
            })
            .expect("create an activity")
    }

    pub fn crm_activity_get(
        &self,
        id: crmsync_engine::ids::ActivityId,
    ) -> crmsync_engine::model::Activity {
        self.store
            .read(|c| crmsync_schema::activities::get_activity(c, id))
            .expect("activity exists")
    }

    pub fn crm_activity_update(
        &self,
        id: crmsync_engine::ids::ActivityId,
        f: impl FnOnce(&mut crmsync_engine::model::ActivityData),
    ) {
        let mut data = self.crm_activity_get(id).data;
        f(&mut data);
        self.store
            .write(|c| {
                crmsync_schema::activities::update_activity(
                    c,
                    id,
                    &data,
                    crmsync_schema::changes::Origin::Api,
                    now(),
                )
            })
            .expect("update activity");
    }

    pub fn crm_activities(&self) -> Vec<crmsync_engine::model::Activity> {
        self.store
            .read(|c| crmsync_schema::activities::list_activities(c, None, 1000))
            .expect("list activities")
    }

    /// A user's calendar events (emulator's view, cancelled ones included).
    pub fn events(&self, email: &str) -> Vec<Value> {
        self.emu.emulator().calendar_events(email)
    }

    pub fn live_events(&self, email: &str) -> Vec<Value> {
        self.events(email)
            .into_iter()
            .filter(|e| e["status"] != "cancelled")
            .collect()
    }

    /// Calendar write calls so far.
    pub fn calendar_writes(&self) -> u64 {
        let s = self.emu.emulator().stats();
        [
            "calendar.events.insert",
            "calendar.events.patch",
            "calendar.events.update",
            "calendar.events.delete",
        ]
        .iter()
        .map(|m| s.count(m))
        .sum()
    }

    /// A contact (untagged) for matching attendees.
    pub fn plain_contact(&self, given: &str, email: &str) -> Contact {
        self.store
            .write(|c| {
                contacts::create_contact(
                    c,
                    &contact_data(given, "Contact", email),
                    &[],
                    None,
                    crmsync_schema::changes::Origin::Api,
                    now(),
                )
            })
            .expect("create a contact")
    }
}

/// A timed activity organized by `organizer`.
pub fn meeting(
    title: &str,
    organizer: &User,
    start: chrono::DateTime<Utc>,
    minutes: i64,
    tz: &str,
    participants: Vec<crmsync_engine::model::Participant>,
) -> crmsync_engine::model::ActivityData {
    crmsync_engine::model::ActivityData {
        title: title.into(),
        time: crmsync_engine::model::ActivityTime::Timed {
            start,
            end: start + chrono::Duration::minutes(minutes),
        },
        time_zone: tz.into(),
        location: None,
        notes: None,
        status: crmsync_engine::model::ActivityStatus::Planned,
        display_in_calendar: true,
        organizer_user_id: organizer.id,
        participants,
    }
}

pub fn participant_user(u: &User) -> crmsync_engine::model::Participant {
    crmsync_engine::model::Participant {
        user_id: Some(u.id),
        contact_id: None,
        email: u.email.clone(),
        response_status: Default::default(),
    }
}

pub fn participant_contact(c: &Contact) -> crmsync_engine::model::Participant {
    crmsync_engine::model::Participant {
        user_id: None,
        contact_id: Some(c.id),
        email: c.data.emails[0].address.clone(),
        response_status: Default::default(),
    }
}

/// Calendar edits "by the user" over HTTP, with arbitrary JSON (recurrences, conference data...).
impl SyncWorld {
    async fn calendar_call(
        &self,
        email: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let token = self
            .emu
            .emulator()
            .mint_access_token(email, &SCOPES.map(String::from))
            .expect("token");
        let mut req = reqwest::Client::new()
            .request(
                method,
                format!(
                    "{}/calendar/v3/calendars/primary/{}",
                    self.emu.base_url(),
                    path
                ),
            )
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("sent");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "calendar call {path} failed: {status} {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn google_insert_event(&self, email: &str, event: Value) -> Value {
        self.calendar_call(
            email,
            reqwest::Method::POST,
            "events?sendUpdates=none",
            Some(event),
        )
        .await
    }

    pub async fn google_patch_event(&self, email: &str, id: &str, patch: Value) -> Value {
        self.calendar_call(
            email,
            reqwest::Method::PATCH,
            &format!("events/{id}"),
            Some(patch),
        )
        .await
    }

    pub async fn google_delete_event(&self, email: &str, id: &str) {
        self.calendar_call(
            email,
            reqwest::Method::DELETE,
            &format!("events/{id}"),
            None,
        )
        .await;
    }

    pub async fn google_instances(&self, email: &str, id: &str) -> Vec<Value> {
        let v = self
            .calendar_call(
                email,
                reqwest::Method::GET,
                &format!("events/{id}/instances"),
                None,
            )
            .await;
        v["items"].as_array().cloned().unwrap_or_default()
    }
}

/// How many seeds a simulation runs: `CRMSYNC_SIM_SEEDS`, else `default`.
pub fn seeds(default: u64) -> u64 {
    std::env::var("CRMSYNC_SIM_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(default)
}

/// The seeds of shard `shard` of `shards` test functions that share one simulation's `count`
/// seeds from `first` (so that the test runner can run them on several cores): every
/// `shards`-th seed, starting with the `shard`-th. `CRMSYNC_SIM_FIRST` moves the start
/// (`scripts/soak --start`). A replay (`CRMSYNC_SIM_SEED`) runs that seed only, in whichever
/// shard its command names.
///
/// `known_failing` seeds (engine bugs found and not fixed yet, each named where the list is) are
/// left out of the default list only: `CRMSYNC_SIM_SEED`, `CRMSYNC_SIM_FIRST` or
/// `CRMSYNC_SIM_SEEDS` run them.
pub fn shard_seeds(
    first: u64,
    count: u64,
    shard: u64,
    shards: u64,
    known_failing: &[u64],
) -> Vec<u64> {
    if let Some(seed) = replayed_seed() {
        return vec![seed];
    }
    let chosen = ["CRMSYNC_SIM_FIRST", "CRMSYNC_SIM_SEEDS"]
        .iter()
        .any(|v| std::env::var(v).is_ok());
    let first = std::env::var("CRMSYNC_SIM_FIRST")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(first);
    (first..first + count)
        .filter(|s| (s - first) % shards.max(1) == shard)
        .filter(|s| chosen || !known_failing.contains(s))
        .collect()
}

/// The seed named by `CRMSYNC_SIM_SEED`, if any (a replay of one seed). A replay also prints the
/// engine's log as `RUST_LOG` selects (e.g. `RUST_LOG=crmsync=debug`).
pub fn replayed_seed() -> Option<u64> {
    let seed = std::env::var("CRMSYNC_SIM_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    if seed.is_some() && std::env::var("RUST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    seed
}

/// A test's name as nextest prints it (`sync_simulation::simulation_sqlite_0`), from the
/// `module_path!()` of its module and its function name.
pub fn test_name(module: &str, function: &str) -> String {
    let module = module.split_once("::").map_or(module, |(_, m)| m);
    format!("{module}::{function}")
}

/// The command that replays `seed` of `test` alone (a PostgreSQL test needs the server that
/// `scripts/test` starts).
pub fn replay_command(seed: u64, test: &str) -> String {
    if test.contains("postgres") {
        format!("CRMSYNC_SIM_SEED={seed} bash scripts/test -p crmsync --test it -E 'test(={test})'")
    } else {
        format!("CRMSYNC_SIM_SEED={seed} cargo nextest run -p crmsync --test it -E 'test(={test})'")
    }
}

/// A broken invariant, by the count it adds to (the counts that must stay zero).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// An edit the test made is neither a record's value nor in the journal as overwritten.
    LostEdit,
    /// Two records for one key on a side, or one record linked to two on the other.
    Duplicate,
    /// A record that should be paired is not: tagged or in the group without a link, an event
    /// without a link or linked to an activity that is not shown, a shown activity without an
    /// event.
    Orphan,
    /// The sync deleted or brought back a record, or did not carry a user's delete over (the
    /// CRM contact still tagged, the Google contact still in the group).
    WrongDelete,
    /// A linked pair that did not converge, or a value nobody wrote.
    WrongValue,
    /// A run after the settled state wrote something.
    NoisySecondRun,
}

/// What one seed of a simulation did and the invariants it broke: acts of the user, faults
/// injected (answers the emulator falsified, expired sync tokens), runs that crashed at a crash
/// point, runs carried out, and the counts that must be zero. The invariant checks count a
/// violation instead of panicking, so the seed's record is complete; [`for_each_seed`] then
/// fails the seed.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub acts: u64,
    pub faults: u64,
    pub crashes: u64,
    pub runs: u64,
    pub lost_edits: u64,
    pub duplicates: u64,
    pub orphans: u64,
    pub wrong_deletes: u64,
    pub wrong_values: u64,
    pub noisy_second_runs: u64,
    /// What each violation was.
    pub messages: Vec<String>,
    /// Fault counts armed since the last look (see [`Tally::set_faults`]).
    armed: u64,
}

impl Tally {
    /// Counts a violation unless `ok`; returns `ok`.
    pub fn check(&mut self, ok: bool, v: Violation, message: impl FnOnce() -> String) -> bool {
        if !ok {
            *match v {
                Violation::LostEdit => &mut self.lost_edits,
                Violation::Duplicate => &mut self.duplicates,
                Violation::Orphan => &mut self.orphans,
                Violation::WrongDelete => &mut self.wrong_deletes,
                Violation::WrongValue => &mut self.wrong_values,
                Violation::NoisySecondRun => &mut self.noisy_second_runs,
            } += 1;
            let m = format!("{v:?}: {}", message());
            eprintln!("VIOLATION {m}");
            self.messages.push(m);
        }
        ok
    }

    /// Every violation counted.
    pub fn violations(&self) -> u64 {
        self.lost_edits
            + self.duplicates
            + self.orphans
            + self.wrong_deletes
            + self.wrong_values
            + self.noisy_second_runs
    }

    /// Arms `rules` in the emulator (replacing the rules in force, whose fired faults are
    /// counted first).
    pub fn set_faults(&mut self, emu: &crmsync_emulator::Emulator, rules: Vec<FaultRule>) {
        self.count_fired(emu);
        self.armed = rules.iter().filter_map(|r| r.times).sum();
        emu.set_faults(rules);
    }

    /// Clears the fault rules, counting those that fired.
    pub fn clear_faults(&mut self, emu: &crmsync_emulator::Emulator) {
        self.count_fired(emu);
        emu.clear_faults();
    }

    fn count_fired(&mut self, emu: &crmsync_emulator::Emulator) {
        let left: u64 = emu.faults().iter().filter_map(|r| r.times).sum();
        self.faults += self.armed.saturating_sub(left);
        self.armed = 0;
    }

    /// The seed's record, one JSON line of `CRMSYNC_SIM_REPORT`.
    fn record(&self, sim: &str, test: &str, seed: u64, error: Option<String>) -> Value {
        let db = if test.contains("postgres") {
            "postgres"
        } else {
            "sqlite"
        };
        serde_json::json!({
            "sim": sim, "db": db, "test": test, "seed": seed,
            "acts": self.acts, "faults": self.faults, "crashes": self.crashes, "runs": self.runs,
            "lost_edits": self.lost_edits, "duplicates": self.duplicates, "orphans": self.orphans,
            "wrong_deletes": self.wrong_deletes, "wrong_values": self.wrong_values,
            "noisy_second_runs": self.noisy_second_runs,
            "failed": error.is_some() || self.violations() > 0,
            "error": error.or_else(|| self.messages.first().cloned()),
            "replay": replay_command(seed, test),
        })
    }
}

/// Appends a seed's record to the file `CRMSYNC_SIM_REPORT` names, if any (one JSON object per
/// line; `scripts/soak` sums them).
fn report(record: &Value) {
    let Ok(path) = std::env::var("CRMSYNC_SIM_REPORT") else {
        return;
    };
    use std::io::Write;
    let line = format!("{record}\n");
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!("cannot append to CRMSYNC_SIM_REPORT={path}: {e}");
    }
}

/// Runs `one` for each seed, each in its own task so that a failing seed does not hide the ones
/// after it, and fails at the end naming every failing seed: one that panicked or whose [`Tally`]
/// counted a violation (each prints its panic or violations and the command that replays it).
/// Each seed's record goes to `CRMSYNC_SIM_REPORT`. Returns what the passing seeds returned.
pub async fn for_each_seed<F, Fut, T>(
    sim: &'static str,
    seeds: Vec<u64>,
    test: &str,
    one: F,
) -> Vec<T>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = (T, Tally)> + Send + 'static,
    T: Send + 'static,
{
    let mut out = Vec::new();
    let mut failed = Vec::new();
    for seed in seeds {
        let run = one(seed);
        let replay = SeedReplay {
            seed,
            test: test.to_string(),
        };
        match tokio::spawn(async move {
            let _replay = replay;
            run.await
        })
        .await
        {
            Ok((v, tally)) => {
                report(&tally.record(sim, test, seed, None));
                if tally.violations() > 0 {
                    eprintln!(
                        "simulation seed {seed} broke {} invariants:\n  {}\nreplay it with:\n  {}",
                        tally.violations(),
                        tally.messages.join("\n  "),
                        replay_command(seed, test)
                    );
                    failed.push(seed);
                } else {
                    out.push(v);
                }
            }
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                report(&Tally::default().record(sim, test, seed, Some(message)));
                failed.push(seed);
            }
            Err(e) => panic!("seed {seed}: {e}"),
        }
    }
    assert!(
        failed.is_empty(),
        "{test}: seeds {failed:?} failed; replay one with\n  {}",
        replay_command(failed[0], test)
    );
    out
}

/// Prints how to replay a seed when the thread panics while this is alive (an assertion of the
/// simulation or a panic anywhere under it).
pub struct SeedReplay {
    pub seed: u64,
    /// The test's name for nextest, e.g. `sync_simulation::simulation_sqlite_0`.
    pub test: String,
}

impl Drop for SeedReplay {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "simulation seed {} failed; replay it with:\n  {}",
                self.seed,
                replay_command(self.seed, &self.test)
            );
        }
    }
}

/// Test functions that share one simulation's seeds (see [`shard_seeds`]): each calls
/// `$run(shard, shards, test name)`.
#[macro_export]
macro_rules! sim_shards {
    ($run:path, $shards:expr, [$($name:ident = $shard:expr),+ $(,)?]) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                $run(
                    $shard,
                    $shards,
                    $crate::sync_support::test_name(module_path!(), stringify!($name)),
                )
                .await;
            }
        )+
    };
}
