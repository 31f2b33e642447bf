//! `crmsync demo`: the whole product on one machine with nothing to set up. It starts the Google
//! Workspace emulator in-process, opens a SQLite database (in a temporary folder unless
//! `--data-dir` is given), seeds a small CRM and a small Google side, authorizes a domain service
//! account by domain-wide delegation exactly as an admin would, runs real contacts and activities
//! syncs through the production code paths, prints what happened on each side, and keeps serving
//! the API until interrupted.

use crate::app::{self, GoogleSettings};
use crate::clock::SharedClock;
use crate::sync::{RunOptions, RunReport, SyncConfig, Trigger};
use anyhow::Context;
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use crmsync_emulator::EmulatorServer;
use crmsync_engine::ids::SyncKind;
use crmsync_engine::model::{
    ActivityData, ActivityStatus, ActivityTime, ContactData, Email, EmailKind, Participant, Phone,
    PhoneKind, ResponseStatus, SyncSchedule, TagVisibility, User,
};
use crmsync_schema::db::{SecretKeySource, StoreOptions};
use crmsync_schema::secrets::{generate_key, SecretBox};
use crmsync_schema::settings::NewSyncSettings;
use crmsync_schema::tags::NewTag;
use crmsync_schema::users::NewUser;
use crmsync_schema::{
    activities, admin_tokens, connections, contacts, settings, tags, users, Store,
};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Options of `crmsync demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Keep the database here (default: a temporary folder removed on exit).
    pub data_dir: Option<PathBuf>,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// Where the emulator listens.
    pub emulator_listen: SocketAddr,
}

const DOMAIN: &str = "example.com";

/// What the demo set up, for printing and for the server.
pub struct Demo {
    pub store: Store,
    pub emulator: EmulatorServer,
    pub token: String,
    /// Alice, the demo's main user.
    pub alice: crmsync_engine::ids::UserId,
    pub reports: Vec<(String, RunReport)>,
    _temp: Option<tempfile::TempDir>,
}

fn contact(
    given: &str,
    family: &str,
    email: &str,
    org: &str,
    title: &str,
    phone: Option<&str>,
) -> ContactData {
    ContactData {
        given_name: given.into(),
        family_name: family.into(),
        emails: vec![Email {
            address: email.into(),
            kind: EmailKind::Work,
            primary: true,
        }],
        phones: phone
            .map(|p| {
                vec![Phone {
                    number: p.into(),
                    kind: PhoneKind::Work,
                }]
            })
            .unwrap_or_default(),
        organization: Some(org.into()),
        job_title: Some(title.into()),
        ..Default::default()
    }
}

fn local(
    tz: &str,
    y: i32,
    m: u32,
    d: u32,
    h: u32,
    min: u32,
) -> anyhow::Result<chrono::DateTime<Utc>> {
    let zone: Tz = tz
        .parse()
        .map_err(|_| anyhow::anyhow!("unknown zone {tz}"))?;
    zone.with_ymd_and_hms(y, m, d, h, min, 0)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .with_context(|| format!("{y}-{m}-{d} {h}:{min} does not exist in {tz}"))
}

/// Opens the store, starts the emulator, seeds both sides and syncs.
pub async fn prepare(options: &DemoOptions, clock: SharedClock) -> anyhow::Result<Demo> {
    let (dir, temp) = match &options.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::tempdir()
                .context("cannot create a temporary folder for the demo database")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let db_path = dir.join("crmsync-demo.db");
    if db_path.exists() {
        anyhow::bail!("{} already exists: the demo starts from an empty database; remove it or choose another --data-dir", db_path.display());
    }
    // A fresh key for this demo only (kept in memory; the database is a throwaway).
    let key = SecretBox::from_base64(&generate_key()).context("generate a secret key")?;
    let store = Store::open_with(
        &format!("sqlite://{}", db_path.display()),
        StoreOptions {
            max_connections: None,
            secret_key: SecretKeySource::Key(key),
        },
    )?;
    store.run_migrations()?;
    let emulator = EmulatorServer::start(options.emulator_listen)
        .await
        .context("cannot start the Google emulator")?;
    let emu = emulator.emulator();
    let now = clock.now();

    // Google Workspace side: two users, a service account authorized by domain-wide delegation.
    for u in ["alice@example.com", "bob@example.com"] {
        emu.create_user(u)
            .context("create an emulated Workspace user")?;
    }
    let sa_key = emu.create_service_account(DOMAIN, emulator.base_url());
    let client_id = sa_key["client_id"].as_str().unwrap_or_default().to_string();
    emu.authorize_delegation(
        &client_id,
        &crmsync_connectors::ALL_SCOPES.map(String::from),
    );
    let sa_json = sa_key.to_string();
    let s2 = store.clone();
    store.write(|c| connections::put_service_account(&s2, c, DOMAIN, &sa_json, now).map(|_| ()))?;

    // CRM side.
    let mk_user = |email: &str, name: &str, tz: &str| -> anyhow::Result<User> {
        Ok(store.write(|c| {
            users::create_user(
                c,
                &NewUser {
                    external_id: None,
                    email: email.into(),
                    display_name: name.into(),
                    google_alias: None,
                    time_zone: Some(tz.into()),
                },
                now,
            )
        })?)
    };
    let alice = mk_user("alice@example.com", "Alice Archer", "Europe/London")?;
    let bob = mk_user("bob@example.com", "Bob Baker", "America/New_York")?;
    let tag = store.write(|c| {
        tags::create_tag(
            c,
            &NewTag {
                external_id: None,
                name: "Alice's clients".into(),
                visibility: TagVisibility::Private,
                owner_user_id: Some(alice.id),
            },
            now,
        )
    })?;
    store.write(|c| {
        tags::create_tag(
            c,
            &NewTag {
                external_id: None,
                name: "Newsletter".into(),
                visibility: TagVisibility::Public,
                owner_user_id: None,
            },
            now,
        )
    })?;
    let put = |user: &User, kind: SyncKind, tag_id| {
        store.write(|c| {
            settings::put_sync_settings(
                c,
                &NewSyncSettings {
                    user_id: user.id,
                    kind,
                    auto_sync: true,
                    schedule: SyncSchedule::IntervalMinutes(15),
                    tag_id,
                    synchronize_from: None,
                    trigger_words: vec![],
                },
                now,
            )
        })
    };
    put(&alice, SyncKind::Contacts, Some(tag.id))?;
    put(&alice, SyncKind::Activities, None)?;
    put(&bob, SyncKind::Activities, None)?;
    let seeded = [
        contact(
            "Ada",
            "Lovelace",
            "ada@analytical.example",
            "Analytical Engines",
            "CTO",
            Some("+44 20 7946 0001"),
        ),
        contact(
            "Grace",
            "Hopper",
            "grace@navy.example",
            "US Navy",
            "Rear Admiral",
            None,
        ),
        contact(
            "Linus",
            "Pauling",
            "linus@caltech.example",
            "Caltech",
            "Professor",
            None,
        ),
    ];
    let mut first = None;
    for data in &seeded {
        let c = store.write(|c| {
            contacts::create_contact(
                c,
                data,
                &[tag.id],
                None,
                crmsync_schema::changes::Origin::Api,
                now,
            )
        })?;
        first.get_or_insert(c);
    }
    store.write(|c| {
        contacts::create_contact(
            c,
            &contact(
                "Una",
                "Tagged",
                "una@example.org",
                "Elsewhere",
                "Buyer",
                None,
            ),
            &[],
            None,
            crmsync_schema::changes::Origin::Api,
            now,
        )
    })?;
    let ada = first.context("seeded contacts")?;

    // A few meetings across time zones.
    let y = now.date_naive().year_ce().1 as i32 + 1;
    let meeting = |title: &str,
                   organizer: &User,
                   time: ActivityTime,
                   tz: &str,
                   participants: Vec<Participant>,
                   location: Option<&str>| ActivityData {
        title: title.into(),
        time,
        time_zone: tz.into(),
        location: location.map(String::from),
        notes: Some("Created in the CRM demo".into()),
        status: ActivityStatus::Planned,
        display_in_calendar: true,
        organizer_user_id: organizer.id,
        participants,
    };
    let p_user = |u: &User| Participant {
        user_id: Some(u.id),
        contact_id: None,
        email: u.email.clone(),
        response_status: ResponseStatus::NeedsAction,
    };
    let p_ada = Participant {
        user_id: None,
        contact_id: Some(ada.id),
        email: ada.data.emails[0].address.clone(),
        response_status: ResponseStatus::Accepted,
    };
    let london = local("Europe/London", y, 3, 24, 9, 30)?;
    let ny = local("America/New_York", y, 3, 10, 9, 0)?;
    let demos = [
        meeting(
            "Quarterly review with Ada",
            &alice,
            ActivityTime::Timed {
                start: london,
                end: london + Duration::hours(1),
            },
            "Europe/London",
            vec![p_user(&bob), p_ada.clone()],
            Some("London office"),
        ),
        meeting(
            "Pipeline call",
            &bob,
            ActivityTime::Timed {
                start: ny,
                end: ny + Duration::minutes(30),
            },
            "America/New_York",
            vec![p_user(&alice)],
            None,
        ),
        meeting(
            "Waitangi Day (office closed in Auckland)",
            &alice,
            ActivityTime::AllDay {
                start: NaiveDate::from_ymd_opt(y, 2, 6).context("date")?,
                end: NaiveDate::from_ymd_opt(y, 2, 7).context("date")?,
            },
            "Pacific/Auckland",
            vec![],
            None,
        ),
    ];
    for d in &demos {
        store.write(|c| {
            activities::create_activity(c, d, None, crmsync_schema::changes::Origin::Api, now)
        })?;
    }

    // Google side, as Alice would have it: the "CRM" group with a contact matching Ada and a new
    // one, and an event she organized in Los Angeles with an external guest.
    seed_google(&emulator, y).await?;

    // Real syncs, through the production engine.
    let engine = app::engine(
        &store,
        clock.clone(),
        &GoogleSettings {
            endpoint: Some(emulator.base_url().to_string()),
            send_updates: None,
        },
        SyncConfig::default(),
    );
    let mut reports = Vec::new();
    for (user, kind) in [
        (&alice, SyncKind::Contacts),
        (&alice, SyncKind::Activities),
        (&bob, SyncKind::Activities),
    ] {
        let r = engine
            .sync(user.id, kind, Trigger::Manual, RunOptions::default())
            .await?;
        reports.push((format!("{} {}", user.email, kind), r));
    }
    let (_, token) = store.write(|c| admin_tokens::create_admin_token(c, "demo", now))?;
    Ok(Demo {
        store,
        emulator,
        token,
        alice: alice.id,
        reports,
        _temp: temp,
    })
}

/// Alice's Google side before the first sync, created through the emulator's own API as Alice.
async fn seed_google(emulator: &EmulatorServer, year: i32) -> anyhow::Result<()> {
    let emu = emulator.emulator();
    let token = emu
        .mint_access_token(
            "alice@example.com",
            &crmsync_connectors::ALL_SCOPES.map(String::from),
        )
        .context("mint a token for Alice")?;
    let http = Seeder {
        base: emulator.base_url().to_string(),
        token,
        http: reqwest::Client::new(),
    };
    let group = http
        .post(
            "/v1/contactGroups",
            json!({"contactGroup": {"name": "CRM"}}),
        )
        .await?;
    let group_rn = group["resourceName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut members = Vec::new();
    for (given, family, email, phone) in [
        (
            "Ada",
            "Lovelace",
            "ADA@analytical.example",
            "+44 7700 900123",
        ),
        (
            "Katherine",
            "Johnson",
            "katherine@nasa.example",
            "+1 757 555 0100",
        ),
    ] {
        let p = http
            .post(
                "/v1/people:createContact",
                json!({
                    "names": [{"givenName": given, "familyName": family}],
                    "emailAddresses": [{"value": email, "type": "work"}],
                    "phoneNumbers": [{"value": phone, "type": "mobile"}]
                }),
            )
            .await?;
        members.push(p["resourceName"].as_str().unwrap_or_default().to_string());
    }
    http.post(
        &format!("/v1/{group_rn}/members:modify"),
        json!({"resourceNamesToAdd": members}),
    )
    .await?;
    http.post(
        "/calendar/v3/calendars/primary/events?sendUpdates=none",
        json!({
            "summary": "Site visit, Santa Monica",
            "start": {"dateTime": format!("{year}-04-14T10:00:00-07:00"), "timeZone": "America/Los_Angeles"},
            "end": {"dateTime": format!("{year}-04-14T12:00:00-07:00"), "timeZone": "America/Los_Angeles"},
            "attendees": [{"email": "katherine@nasa.example"}, {"email": "guest@partner.example"}]
        }),
    )
    .await?;
    Ok(())
}

/// Seeds the emulator through its own HTTP API, as Alice's Google client would.
struct Seeder {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Seeder {
    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path} to the emulator"))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            anyhow::bail!("the emulator refused POST {path}: {status} {v}");
        }
        Ok(v)
    }
}

fn print_side(title: &str, lines: Vec<String>) {
    println!("  {title}:");
    if lines.is_empty() {
        println!("    (none)");
    }
    for l in lines {
        println!("    {l}");
    }
}

/// Prints what the demo did on each side.
pub fn print_summary(demo: &Demo) -> anyhow::Result<()> {
    println!("\n== crmsync demo: what the first sync did ==");
    for (name, r) in &demo.reports {
        let fmt = |m: &std::collections::BTreeMap<String, u64>| {
            if m.is_empty() {
                "no changes".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        println!(
            "{name}: {} | CRM: {} | Google: {} | links made {} | conflicts {} | {} API calls",
            r.state.as_str(),
            fmt(&r.counts.crm),
            fmt(&r.counts.google),
            r.counts.linked,
            r.counts.conflicts,
            r.api_calls
        );
        if let Some(m) = &r.message {
            println!("  {m}");
        }
    }
    let emu = demo.emulator.emulator();
    let group = emu
        .contact_groups("alice@example.com")
        .into_iter()
        .find(|g| g["name"] == "CRM")
        .and_then(|g| g["resourceName"].as_str().map(String::from))
        .unwrap_or_default();
    let people: Vec<String> = emu
        .contacts("alice@example.com")
        .iter()
        .filter(|p| {
            p["memberships"]
                .as_array()
                .map(|m| {
                    m.iter().any(|x| {
                        x["contactGroupMembership"]["contactGroupResourceName"] == group.as_str()
                    })
                })
                .unwrap_or(false)
        })
        .map(|p| {
            format!(
                "{} {} <{}>",
                p["names"][0]["givenName"].as_str().unwrap_or(""),
                p["names"][0]["familyName"].as_str().unwrap_or(""),
                p["emailAddresses"][0]["value"].as_str().unwrap_or("")
            )
        })
        .collect();
    println!();
    print_side(
        "Google Contacts of alice@example.com, group \"CRM\"",
        people,
    );
    let crm: Vec<String> = demo
        .store
        .read(|c| contacts::list_contacts(c, None, 100))?
        .iter()
        .map(|c| {
            format!(
                "{} {} <{}>{}",
                c.data.given_name,
                c.data.family_name,
                c.data
                    .emails
                    .first()
                    .map(|e| e.address.as_str())
                    .unwrap_or(""),
                if c.tags.is_empty() { "" } else { "  [tagged]" }
            )
        })
        .collect();
    print_side("CRM contacts", crm);
    for user in ["alice@example.com", "bob@example.com"] {
        let events: Vec<String> = emu
            .calendar_events(user)
            .iter()
            .filter(|e| e["status"] != "cancelled")
            .map(describe_event)
            .collect();
        print_side(&format!("Google Calendar of {user}"), events);
    }
    let acts: Vec<String> = demo
        .store
        .read(|c| activities::list_activities(c, None, 100))?
        .iter()
        .map(|a| {
            format!(
                "{} ({}, shown in calendar: {})",
                a.data.title, a.data.time_zone, a.data.display_in_calendar
            )
        })
        .collect();
    print_side("CRM activities", acts);
    Ok(())
}

fn describe_event(e: &Value) -> String {
    let when = e["start"]["dateTime"]
        .as_str()
        .or(e["start"]["date"].as_str())
        .unwrap_or("?");
    let tz = e["start"]["timeZone"].as_str().unwrap_or("all day");
    let org = e["organizer"]["email"].as_str().unwrap_or("?");
    format!(
        "{} at {when} ({tz}), organizer {org}",
        e["summary"].as_str().unwrap_or("")
    )
}

use chrono::Datelike;
