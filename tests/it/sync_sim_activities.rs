//! Seeded simulation of the whole activities engine (sync-testing-plan B7.3 L2, small scale): two
//! users who both sync activities, random edits on both sides (CRM creates, edits, un-display and
//! deletes, with the other user, a contact or a bare address as participants; Google inserts,
//! patches and deletes by the organizer, some with the other user as attendee so a mirrored copy
//! appears in their calendar), injected Calendar faults (5xx, rate-limit 403, 429, inserts applied
//! but answered with a dropped connection, writes Google refuses until the faults stop, which
//! get parked), expired sync tokens, small listing pages and crashes at
//! random named points, for many seeds. After the faults stop and the runs settle: every activity
//! the test did not delete is still in the CRM; each user's live organized events and the CRM
//! activities they organize and show in the calendar are in one-to-one correspondence with equal
//! mapped fields; no key appears twice on either side (no duplicate); and one more run of each user
//! writes nothing. A failing seed is printed; its random choices replay identically, but Calendar
//! writes run concurrently, so the interleaving of one run may differ between replays.

use crate::sync_support::*;
use chrono::{Duration, TimeZone, Utc};
use chrono_tz::Tz;
use crmsync::sync::crash::{CrashAt, CrashPoint};
use crmsync::sync::{RunOptions, SyncConfig, Trigger};
use crmsync_connectors::Event;
use crmsync_emulator::{Api, FaultRule};
use crmsync_engine::activity_map::{self, CalendarContext, PersonRef};
use crmsync_engine::ids::{ActivityId, SyncKind};
use crmsync_engine::model::User;
use crmsync_engine::model::{Activity, ActivityTime, Participant};
use crmsync_engine::planner::LinkState;
use crmsync_schema::test_support::TestDb;
use crmsync_schema::{activities, sync_state};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const WORDS: [&str; 5] = ["review", "demo", "pricing", "kick-off", "renewal"];
/// "Refused room": Google refuses writes carrying it until the faults stop (parked records).
const PLACES: [&str; 4] = ["Room 1", "Room 2", "Lobby", "Refused room"];
const ZONES: [&str; 4] = [
    "Europe/Paris",
    "America/New_York",
    "Asia/Tokyo",
    "Pacific/Auckland",
];

/// The key of an item is the first word of its title; edits change only the rest.
fn key_of(title: &str) -> String {
    title.split_whitespace().next().unwrap_or_default().into()
}

fn rename(title: &str, word: &str) -> String {
    format!("{} {word}", key_of(title))
}

/// A random future slot: timed (whole quarter hours, local 8:00-18:00 in a random zone) or
/// all-day.
fn random_time(rng: &mut StdRng) -> (ActivityTime, String) {
    let zone = ZONES[rng.gen_range(0..ZONES.len())];
    let tz: Tz = zone.parse().expect("zone");
    let day = (Utc::now() + Duration::days(rng.gen_range(2..60))).date_naive();
    if rng.gen_bool(0.2) {
        let days = rng.gen_range(1..3);
        return (
            ActivityTime::AllDay {
                start: day,
                end: day + Duration::days(days),
            },
            zone.into(),
        );
    }
    let local = day
        .and_hms_opt(rng.gen_range(8..18), 15 * rng.gen_range(0..4), 0)
        .expect("time");
    let start = tz
        .from_local_datetime(&local)
        .earliest()
        .expect("local time exists")
        .with_timezone(&Utc);
    let end = start + Duration::minutes(15 * rng.gen_range(1..9));
    (ActivityTime::Timed { start, end }, zone.into())
}

fn event_times(time: &ActivityTime, zone: &str) -> (Value, Value) {
    match time {
        ActivityTime::AllDay { start, end } => (
            json!({"date": start.format("%Y-%m-%d").to_string()}),
            json!({"date": end.format("%Y-%m-%d").to_string()}),
        ),
        ActivityTime::Timed { start, end } => (
            json!({"dateTime": start.to_rfc3339(), "timeZone": zone}),
            json!({"dateTime": end.to_rfc3339(), "timeZone": zone}),
        ),
    }
}

/// Live events in `email`'s calendar that `email` organizes.
fn organized_events(w: &SyncWorld, email: &str) -> Vec<Value> {
    w.live_events(email)
        .into_iter()
        .filter(|e| e["organizer"]["self"] == json!(true))
        .collect()
}

struct Sim {
    w: SyncWorld,
    bob: User,
    carol: crmsync_engine::model::Contact,
    rng: StdRng,
    next_key: u32,
    /// Activities the test created or saw imported and never deleted itself.
    kept: BTreeSet<ActivityId>,
    /// Runs that stopped early (a crash point fired or an error ended the run).
    interrupted: u32,
    /// Record failures that ended parked.
    parked: usize,
}

impl Sim {
    fn users(&self) -> [&User; 2] {
        [&self.w.alice, &self.bob]
    }

    fn pick_user(&mut self) -> User {
        if self.rng.gen_bool(0.5) {
            self.w.alice.clone()
        } else {
            self.bob.clone()
        }
    }

    fn other(&self, u: &User) -> User {
        if u.id == self.w.alice.id {
            self.bob.clone()
        } else {
            self.w.alice.clone()
        }
    }

    fn key(&mut self, side: &str) -> String {
        self.next_key += 1;
        format!("{side}{}", self.next_key)
    }

    fn participants(&mut self, organizer: &User) -> Vec<Participant> {
        let mut list = Vec::new();
        if self.rng.gen_bool(0.4) {
            list.push(participant_user(&self.other(organizer)));
        }
        if self.rng.gen_bool(0.3) {
            list.push(participant_contact(&self.carol));
        }
        if self.rng.gen_bool(0.2) {
            list.push(Participant {
                user_id: None,
                contact_id: None,
                email: "guest@elsewhere.test".into(),
                response_status: Default::default(),
            });
        }
        list
    }

    async fn crm_edit(&mut self) {
        let all = self.w.crm_activities();
        let choice = self.rng.gen_range(0..10);
        if all.is_empty() || choice < 3 {
            let organizer = self.pick_user();
            let key = self.key("A");
            let word = WORDS[self.rng.gen_range(0..WORDS.len())];
            let (time, zone) = random_time(&mut self.rng);
            let mut data = meeting(
                &format!("{key} {word}"),
                &organizer,
                Utc::now(),
                30,
                &zone,
                vec![],
            );
            data.time = time;
            data.participants = self.participants(&organizer);
            if self.rng.gen_bool(0.3) {
                data.location = Some(PLACES[self.rng.gen_range(0..PLACES.len())].into());
            }
            let a = self.w.crm_activity(&data);
            self.kept.insert(a.id);
            return;
        }
        let a = all[self.rng.gen_range(0..all.len())].clone();
        match choice {
            3 | 4 => {
                let word = WORDS[self.rng.gen_range(0..WORDS.len())];
                self.w
                    .crm_activity_update(a.id, |d| d.title = rename(&d.title, word));
            }
            5 => {
                let place = PLACES[self.rng.gen_range(0..PLACES.len())];
                self.w
                    .crm_activity_update(a.id, |d| d.location = Some(place.into()));
            }
            6 => {
                let (time, zone) = random_time(&mut self.rng);
                self.w.crm_activity_update(a.id, |d| {
                    d.time = time;
                    d.time_zone = zone;
                });
            }
            7 | 8 => {
                self.w
                    .crm_activity_update(a.id, |d| d.display_in_calendar = !d.display_in_calendar);
            }
            _ => {
                self.w
                    .store
                    .write(|c| activities::delete_activity(c, a.id, now()))
                    .expect("delete activity");
                self.kept.remove(&a.id);
            }
        }
    }

    async fn google_edit(&mut self) {
        let user = self.pick_user();
        let events = organized_events(&self.w, &user.email);
        let choice = self.rng.gen_range(0..10);
        if events.is_empty() || choice < 4 {
            let key = self.key("G");
            let word = WORDS[self.rng.gen_range(0..WORDS.len())];
            let (time, zone) = random_time(&mut self.rng);
            let (start, end) = event_times(&time, &zone);
            let mut event = json!({"summary": format!("{key} {word}"), "start": start, "end": end});
            if self.rng.gen_bool(0.4) {
                event["attendees"] = json!([{"email": self.other(&user).email}]);
            }
            self.w.google_insert_event(&user.email, event).await;
            return;
        }
        let e = &events[self.rng.gen_range(0..events.len())];
        let id = e["id"].as_str().unwrap_or_default().to_string();
        let summary = e["summary"].as_str().unwrap_or_default().to_string();
        match choice {
            4..=6 => {
                let word = WORDS[self.rng.gen_range(0..WORDS.len())];
                let patch = json!({"summary": rename(&summary, word)});
                self.w.google_patch_event(&user.email, &id, patch).await;
            }
            7 => {
                let place = PLACES[self.rng.gen_range(0..PLACES.len())];
                let patch = json!({"location": place});
                self.w.google_patch_event(&user.email, &id, patch).await;
            }
            8 => {
                let (time, zone) = random_time(&mut self.rng);
                let (mut start, mut end) = event_times(&time, &zone);
                // A raw patch can clear the other form with null (the Rust crate cannot).
                for v in [&mut start, &mut end] {
                    let other = if v.get("date").is_some() {
                        "dateTime"
                    } else {
                        "date"
                    };
                    v[other] = Value::Null;
                }
                let patch = json!({"start": start, "end": end});
                self.w.google_patch_event(&user.email, &id, patch).await;
            }
            _ => self.w.google_delete_event(&user.email, &id).await,
        }
    }

    fn faults(&mut self) {
        let mut faults = vec![
            FaultRule::error("calendar.events.insert", 400, 1_000_000)
                .body_contains("Refused room"),
            FaultRule::error("calendar.events.patch", 400, 1_000_000).body_contains("Refused room"),
            FaultRule::error("calendar.events.update", 400, 1_000_000)
                .body_contains("Refused room"),
        ];
        let rng = &mut self.rng;
        if rng.gen_bool(0.3) {
            faults.push(FaultRule::error("calendar.events.list", 503, 1));
        }
        if rng.gen_bool(0.3) {
            faults.push(FaultRule::error("calendar.events.insert", 0, 1).applied());
        }
        if rng.gen_bool(0.2) {
            faults.push(
                FaultRule::error("calendar.events.patch", 403, 1).reason("rateLimitExceeded"),
            );
        }
        if rng.gen_bool(0.2) {
            faults.push(FaultRule::error("calendar.events.delete", 429, 1));
        }
        if rng.gen_bool(0.2) {
            faults.push(FaultRule::error("calendar.events.patch", 0, 1).applied());
        }
        self.w.emu.emulator().set_faults(faults);
    }

    async fn run(&mut self, user: &User, crash: bool) {
        let engine = if crash {
            let point = CrashPoint::ALL[self.rng.gen_range(0..CrashPoint::ALL.len())];
            self.w
                .engine
                .with_crash_plan(Arc::new(CrashAt::new(point, self.rng.gen_range(1..3))))
        } else {
            self.w.engine.clone()
        };
        let r = engine
            .sync(
                user.id,
                SyncKind::Activities,
                Trigger::Manual,
                RunOptions::default(),
            )
            .await;
        match r {
            Ok(r) => {
                self.parked += r
                    .errors
                    .iter()
                    .filter(|e| e.message.contains("parked"))
                    .count();
            }
            Err(_) => self.interrupted += 1,
        }
    }
}

/// Runs one seed; returns how many runs were interrupted and how many failures ended parked
/// (so the caller can tell the crash points and the parking path were reached at all).
async fn simulate(db: TestDb, seed: u64, rounds: usize) -> (u32, usize) {
    let config = SyncConfig {
        calendar_page_size: 2,
        ..Default::default()
    };
    let w = SyncWorld::with_config(db, config).await;
    let bob = w.user("bob@example.com").await;
    let carol = w.plain_contact("Carol", "carol@client.test");
    w.set_activity_settings(&w.alice, None, &[]);
    w.set_activity_settings(&bob, None, &[]);
    let mut sim = Sim {
        w,
        bob,
        carol,
        rng: StdRng::seed_from_u64(seed),
        next_key: 0,
        kept: BTreeSet::new(),
        interrupted: 0,
        parked: 0,
    };
    for _ in 0..rounds {
        // The user's own edits are not subject to the faults meant for the engine.
        sim.w.emu.emulator().clear_faults();
        for _ in 0..sim.rng.gen_range(1..6) {
            if sim.rng.gen_bool(0.5) {
                sim.crm_edit().await;
            } else {
                sim.google_edit().await;
            }
        }
        sim.faults();
        if sim.rng.gen_bool(0.1) {
            let who = sim.pick_user();
            sim.w
                .emu
                .emulator()
                .expire_sync_tokens(&who.email, Api::Calendar);
        }
        let mut order = vec![sim.w.alice.clone(), sim.bob.clone()];
        if sim.rng.gen_bool(0.5) {
            order.reverse();
        }
        for u in order {
            let crash = sim.rng.gen_bool(0.3);
            sim.run(&u, crash).await;
        }
        // Imported activities count as kept from here on.
        for a in sim.w.crm_activities() {
            sim.kept.insert(a.id);
        }
    }
    // Quiescence: faults off, runs until nothing is left to do.
    sim.w.emu.emulator().clear_faults();
    for _ in 0..3 {
        for u in sim.users().map(|u| u.clone()) {
            sim.w.sync_activities(&u).await;
        }
    }
    check_invariants(&sim, seed).await;
    (sim.interrupted, sim.parked)
}

fn directory(sim: &Sim, a: &Activity) -> activity_map::Directory {
    let mut entries: Vec<(String, PersonRef)> = vec![
        (sim.w.alice.email.clone(), PersonRef::User(sim.w.alice.id)),
        (sim.bob.email.clone(), PersonRef::User(sim.bob.id)),
        (
            sim.carol.data.emails[0].address.clone(),
            PersonRef::Contact(sim.carol.id),
        ),
    ];
    for p in &a.data.participants {
        entries.push((p.email.clone(), PersonRef::Email));
    }
    activity_map::directory_from(entries)
}

async fn check_invariants(sim: &Sim, seed: u64) {
    let w = &sim.w;
    let live = w.crm_activities();
    let live_ids: BTreeSet<ActivityId> = live.iter().map(|a| a.id).collect();
    // N1: nothing the test kept disappeared (the sync never deletes an activity).
    for id in &sim.kept {
        assert!(live_ids.contains(id), "seed {seed}: activity {id} vanished");
    }
    // No duplicate in the CRM: each key once among live activities.
    let mut keys: BTreeMap<String, usize> = BTreeMap::new();
    for a in &live {
        *keys.entry(key_of(&a.data.title)).or_default() += 1;
    }
    assert!(
        keys.values().all(|n| *n == 1),
        "seed {seed}: duplicate CRM activities {keys:?}"
    );
    for user in sim.users() {
        let events = organized_events(w, &user.email);
        // No duplicate in Google: each key once among the user's live organized events.
        let mut ekeys: BTreeMap<String, usize> = BTreeMap::new();
        for e in &events {
            *ekeys
                .entry(key_of(e["summary"].as_str().unwrap_or_default()))
                .or_default() += 1;
        }
        assert!(
            ekeys.values().all(|n| *n == 1),
            "seed {seed}: duplicate events in {}'s calendar {ekeys:?}",
            user.email
        );
        // One-to-one: shown activities the user organizes <-> live events they organize.
        let shown: BTreeMap<String, &Activity> = live
            .iter()
            .filter(|a| a.data.organizer_user_id == user.id && a.data.display_in_calendar)
            .map(|a| (a.id.to_string(), a))
            .collect();
        let links = w
            .store
            .read(|c| {
                sync_state::links_in_state(
                    c,
                    user.id,
                    SyncKind::Activities,
                    LinkState::Active,
                    None,
                    10_000,
                )
            })
            .expect("links");
        let by_event: BTreeMap<String, String> = links
            .iter()
            .filter_map(|l| l.google_id.clone().map(|g| (g, l.crm_id.clone())))
            .collect();
        let mut seen = BTreeSet::new();
        let ctx = CalendarContext {
            organizer_emails: vec![user.email.to_lowercase()],
            default_time_zone: user.time_zone.clone(),
        };
        for v in &events {
            let id = v["id"].as_str().unwrap_or_default();
            let crm_id = by_event.get(id).unwrap_or_else(|| {
                panic!(
                    "seed {seed}: {}'s event {id} ({}) has no active link",
                    user.email, v["summary"]
                )
            });
            let a = shown.get(crm_id).unwrap_or_else(|| {
                panic!(
                    "seed {seed}: {}'s event {id} ({}) is linked to {crm_id}, which is not a shown activity they organize",
                    user.email, v["summary"]
                )
            });
            let e: Event = serde_json::from_value(v.clone()).expect("event");
            let dir = directory(sim, a);
            assert_eq!(
                activity_map::describe(&activity_map::event_fields(&e, &dir, &ctx)),
                activity_map::describe(&activity_map::activity_fields(&a.data, &ctx)),
                "seed {seed}: event {id} and activity {crm_id} did not converge"
            );
            seen.insert(crm_id.clone());
        }
        let missing: Vec<&String> = shown.keys().filter(|k| !seen.contains(*k)).collect();
        // On failure: the story of each missing one, to read with the seed.
        for m in &missing {
            let journal = w
                .store
                .read(|c| sync_state::journal_of_record(c, m))
                .unwrap_or_default();
            for j in journal {
                eprintln!(
                    "JOURNAL {m} {} {} {} {} {:?} {:?} {:?}",
                    j.entry.run_id,
                    j.entry.side,
                    j.entry.action,
                    j.entry.rule,
                    j.entry.google_id,
                    j.entry.before,
                    j.entry.after
                );
            }
            let id: ActivityId = m.parse().unwrap();
            let links = w
                .store
                .read(|c| {
                    sync_state::links_by_crm_ids(c, user.id, SyncKind::Activities, &[m.to_string()])
                })
                .unwrap_or_default();
            eprintln!("LINKS {m} {links:?}");
            eprintln!(
                "EVENT {:?}",
                w.emu
                    .emulator()
                    .calendar_event(&user.email, &crmsync_engine::activity_map::event_id(id))
            );
        }
        assert!(
            missing.is_empty(),
            "seed {seed}: shown activities of {} without a live event: {missing:?}",
            user.email
        );
    }
    // N6: converged means one more run of each user writes nothing.
    let writes = w.calendar_writes();
    for user in sim.users() {
        let r = w.sync_activities(user).await;
        assert_eq!(
            r.counts.writes(),
            0,
            "seed {seed}: a settled run of {} wrote: {:?}",
            user.email,
            r.counts
        );
    }
    assert_eq!(
        w.calendar_writes(),
        writes,
        "seed {seed}: settled runs wrote to Google"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activities_simulation_sqlite() {
    let (mut interrupted, mut parked) = (0, 0);
    for seed in 0..seeds(24) {
        let (i, p) = simulate(TestDb::sqlite(), seed, 6).await;
        interrupted += i;
        parked += p;
    }
    assert!(
        interrupted > 0,
        "no run was ever interrupted: the crash plan is not wired"
    );
    assert!(
        parked > 0,
        "no refused change was ever parked: the parking path was not reached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activities_simulation_postgres() {
    for seed in 1000..1000 + seeds(24) / 3 {
        simulate(TestDb::postgres(), seed, 6).await;
    }
}
