//! Seeded simulation of the whole activities engine (sync-testing-plan B7.3 L2, small scale): two
//! users who both sync activities, random edits on both sides (CRM creates, edits, un-display and
//! deletes, with the other user, a contact or a bare address as participants; Google inserts,
//! patches and deletes by the organizer, some with the other user as attendee so a mirrored copy
//! appears in their calendar; recurring series, daily or weekly, at most five occurrences, and
//! whole-series changes: the master moved or re-timed, another COUNT or an UNTIL, a "this and
//! following" split, the master deleted, one instance edited or deleted), injected Calendar
//! faults (5xx, rate-limit 403, 429, inserts applied but answered with a dropped connection, writes
//! Google refuses until the faults stop, which get parked), expired sync tokens, small listing
//! pages and crashes at random named points, for many seeds. After the faults stop and the runs
//! settle: every activity the test did not delete is still in the CRM; each user's live
//! organized events and the CRM activities they organize and show in the calendar are in
//! one-to-one correspondence with equal mapped fields, each live instance of a series counted as
//! an event of its own (so the instances a series change removed are no longer shown); no key
//! appears twice on either side (no duplicate; a series' instances share its key and are covered
//! by the one-to-one check); and one more run of each user writes nothing. Runs the mass-untag
//! guard stops (a series change can end many links at once) are confirmed and run again.
//!
//! The acts and checks work on a [`Sim`] of any number of users: the combined simulation
//! (`sync_sim_combined.rs`) drives three.
//!
//! Replays: every random choice of a seed is drawn up front into a [`Script`] that depends on the
//! seed alone, never on the day it runs: the dates of the generated activities and events are a
//! fixed base date plus offsets drawn from the seed, and both users sync from that base
//! (`synchronize_from`), so the listing window [base, today + 365 days] holds every generated
//! date on any day from mid-2026 on (the script checks it). Acts pick the records they touch by
//! their stable keys, not by the random ids the CRM and Google give them. A failing seed prints
//! how to replay it alone (`CRMSYNC_SIM_SEED`); Calendar writes run concurrently, so the
//! interleaving inside one run may still differ between replays.

use crate::sync_support::*;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use crmsync::clock::{Clock, TestClock};
use crmsync::sync::crash::{CrashAt, CrashPoint};
use crmsync::sync::error::SyncError;
use crmsync::sync::{MassUntag, RunOptions, RunReport, RunState, SyncConfig, SyncEngine, Trigger};
use crmsync_connectors::event_wire;
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
use std::hash::{Hash, Hasher};
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
/// The first base date of the generated data; a seed moves it by up to [`BASE_SPREAD_DAYS`] so
/// that seeds cross daylight-saving changes in different zones.
const BASE: (i32, u32, u32) = (2027, 1, 4);
const BASE_SPREAD_DAYS: u64 = 120;
/// Generated dates lie this many days after the seed's base.
const FIRST_DAY: i64 = 2;
const LAST_DAY: i64 = 60;
/// A recurring series spans at most this many days after its first occurrence (weekly, at most
/// five times).
const SERIES_SPAN_DAYS: i64 = 28;
/// The engine lists events up to now + this many days (`SyncConfig::horizon_days`).
pub const HORIZON_DAYS: i64 = 365;

/// The key of an item is the first word of its title; edits change only the rest.
fn key_of(title: &str) -> String {
    title.split_whitespace().next().unwrap_or_default().into()
}

fn rename(title: &str, word: &str) -> String {
    format!("{} {word}", key_of(title))
}

/// The seed's base date: every generated date is a few days to two months after it, and both
/// users sync from it.
fn base_of(seed: u64) -> NaiveDate {
    let (y, m, d) = BASE;
    NaiveDate::from_ymd_opt(y, m, d).expect("base date")
        + Duration::days((seed.wrapping_mul(37) % BASE_SPREAD_DAYS) as i64)
}

/// A random slot after `base`: timed (whole quarter hours, local 8:00-18:00 in a random zone) or
/// all-day. Always draws the same number of values.
fn random_time(rng: &mut StdRng, base: NaiveDate) -> (ActivityTime, &'static str) {
    let zone = ZONES[rng.gen_range(0..ZONES.len())];
    let day = base + Duration::days(rng.gen_range(FIRST_DAY..LAST_DAY));
    let all_day = rng.gen_bool(0.2);
    let days = rng.gen_range(1..3);
    let (hour, quarter, quarters) = (
        rng.gen_range(8..18),
        rng.gen_range(0..4),
        rng.gen_range(1..9),
    );
    if all_day {
        return (
            ActivityTime::AllDay {
                start: day,
                end: day + Duration::days(days),
            },
            zone,
        );
    }
    let tz: Tz = zone.parse().expect("zone");
    let local = day.and_hms_opt(hour, 15 * quarter, 0).expect("time");
    let start = tz
        .from_local_datetime(&local)
        .earliest()
        .expect("local time exists")
        .with_timezone(&Utc);
    let end = start + Duration::minutes(15 * i64::from(quarters));
    (ActivityTime::Timed { start, end }, zone)
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

/// One act of the user, drawn in full whatever the state it will meet (so the random stream,
/// and with it the whole script, depends on the seed alone); [`Sim::crm_act`] and
/// [`Sim::google_act`] say what each field means.
#[derive(Clone, Debug, Hash)]
struct Act {
    crm: bool,
    /// Which kind of act, 0..10.
    choice: u8,
    /// Which user (0 Alice, 1 Bob, ...): the organizer of a CRM create, or whose calendar a
    /// Google act touches.
    who: usize,
    /// Which existing record an edit touches (modulo their number, in key order).
    pick: usize,
    /// The key of a record this act creates.
    key: u32,
    word: &'static str,
    place: &'static str,
    slot: (ActivityTime, &'static str),
    /// Participants of a CRM create (the next user, Carol, a guest); a Google insert invites
    /// the next user (with more than two users, every other user when `everyone`).
    other: bool,
    everyone: bool,
    carol: bool,
    guest: bool,
    /// A CRM create gets `place` as its location.
    located: bool,
    /// A Google insert makes a recurring series (daily, else weekly, `count` times).
    recurring: bool,
    daily: bool,
    /// The number of occurrences of an inserted series or of a series' new rule, 2..=5.
    count: u32,
    /// A whole-series act in Google instead of the act of `choice`, when the user organizes a
    /// series: 0 move or re-time the master, 1 another COUNT, 2 an UNTIL, 3 "this and
    /// following" split, 4 delete the master, 5 edit one instance (an exception, by `choice`);
    /// 6..9 none.
    series_op: u8,
    /// A split series also starts an hour later (timed series).
    shift: bool,
}

/// One round: the user's acts, then the faults armed for the engine and one run of each user.
#[derive(Clone, Debug, Hash)]
pub struct Round {
    acts: Vec<Act>,
    list_503: bool,
    insert_lost: bool,
    patch_403: bool,
    delete_429: bool,
    patch_lost: bool,
    /// Whose Calendar sync tokens expire.
    pub expire: Option<usize>,
    /// The user who runs first (the others follow in turn).
    first: usize,
    /// A crash plan per run in that order: (index in `CrashPoint::ALL`, the hit that crashes).
    crash: Vec<Option<(usize, u32)>>,
}

/// Everything random in a seed's simulation.
#[derive(Clone, Debug, Hash)]
pub struct Script {
    seed: u64,
    pub base: NaiveDate,
    rounds: Vec<Round>,
}

/// A user among `users`, drawn as the two-user simulation always drew it (so its scripts did
/// not change when a third user came).
fn draw_user(rng: &mut StdRng, users: usize) -> usize {
    if users == 2 {
        usize::from(rng.gen_bool(0.5))
    } else {
        rng.gen_range(0..users)
    }
}

impl Script {
    /// The script of `seed`. `today` is only checked: the listing window of a run on that day
    /// must hold every generated date (it does from mid-2026 on); nothing drawn depends on it.
    pub fn new(seed: u64, rounds: usize, users: usize, today: &dyn Clock) -> Script {
        let base = base_of(seed);
        let latest = base + Duration::days(LAST_DAY + 2 + SERIES_SPAN_DAYS);
        let window_end = (today.now() + Duration::days(HORIZON_DAYS)).date_naive();
        assert!(
            latest < window_end,
            "seed {seed}: generated dates reach {latest}, past the listing window's end \
             {window_end} of a run today: move BASE earlier"
        );
        let mut rng = StdRng::seed_from_u64(seed);
        let mut key = 0;
        let rounds = (0..rounds)
            .map(|_| {
                let acts = (0..rng.gen_range(1..6))
                    .map(|_| {
                        key += 1;
                        let mut act = Act {
                            crm: rng.gen_bool(0.5),
                            choice: rng.gen_range(0..10),
                            who: draw_user(&mut rng, users),
                            pick: rng.gen_range(0..1_000_000),
                            key,
                            word: WORDS[rng.gen_range(0..WORDS.len())],
                            place: PLACES[rng.gen_range(0..PLACES.len())],
                            slot: random_time(&mut rng, base),
                            other: rng.gen_bool(0.4),
                            everyone: false,
                            carol: rng.gen_bool(0.3),
                            guest: rng.gen_bool(0.2),
                            located: rng.gen_bool(0.3),
                            recurring: rng.gen_bool(0.4),
                            daily: rng.gen_bool(0.3),
                            count: rng.gen_range(2..6),
                            series_op: rng.gen_range(0..9),
                            shift: rng.gen_bool(0.5),
                        };
                        if users > 2 {
                            act.everyone = rng.gen_bool(0.3);
                        }
                        act
                    })
                    .collect();
                let list_503 = rng.gen_bool(0.3);
                let insert_lost = rng.gen_bool(0.3);
                let patch_403 = rng.gen_bool(0.2);
                let delete_429 = rng.gen_bool(0.2);
                let patch_lost = rng.gen_bool(0.2);
                let expire = rng.gen_bool(0.1).then(|| draw_user(&mut rng, users));
                let first = draw_user(&mut rng, users);
                let mut crash = vec![None; users];
                for c in &mut crash {
                    let point = rng.gen_range(0..CrashPoint::ALL.len());
                    let nth = rng.gen_range(1..3);
                    *c = rng.gen_bool(0.3).then_some((point, nth));
                }
                Round {
                    acts,
                    list_503,
                    insert_lost,
                    patch_403,
                    delete_429,
                    patch_lost,
                    expire,
                    first,
                    crash,
                }
            })
            .collect();
        Script { seed, base, rounds }
    }

    pub fn rounds(&self) -> &[Round] {
        &self.rounds
    }

    /// A fingerprint of the script (printed; equal scripts give equal fingerprints).
    fn fingerprint(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }
}

/// Live events in `email`'s calendar that `email` organizes, in key order.
fn organized_events(w: &SyncWorld, email: &str) -> Vec<Value> {
    let mut events: Vec<Value> = w
        .live_events(email)
        .into_iter()
        .filter(|e| e["organizer"]["self"] == json!(true))
        .collect();
    events.sort_by_key(|e| {
        (
            key_of(e["summary"].as_str().unwrap_or_default()),
            e["id"].as_str().unwrap_or_default().to_string(),
        )
    });
    events
}

/// A recurring series' master (it has a rule).
fn is_master(e: &Value) -> bool {
    e["recurrence"].as_array().is_some_and(|r| !r.is_empty())
}

/// The occurrences `email` organizes as the engine sees them: single events, and each live
/// instance of a live series (its exceptions included), with the series keys in `keys`.
async fn organized_occurrences(w: &SyncWorld, email: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for e in organized_events(w, email) {
        if e.get("recurringEventId").is_some_and(|r| r.is_string()) {
            // An exception: listed with its series' instances.
            continue;
        }
        if is_master(&e) {
            let id = e["id"].as_str().unwrap_or_default();
            out.extend(
                w.google_instances(email, id)
                    .await
                    .into_iter()
                    .filter(|i| i["status"] != "cancelled"),
            );
        } else {
            out.push(e);
        }
    }
    out
}

/// A start or end moved by `delta` (timed: `dateTime` in its zone; all-day: whole days).
fn shifted(v: &Value, delta: Duration) -> Value {
    match v["dateTime"].as_str() {
        Some(t) => {
            let t = DateTime::parse_from_rfc3339(t).expect("RFC 3339") + delta;
            let mut out = json!({"dateTime": t.to_rfc3339(), "date": null});
            if let Some(z) = v.get("timeZone") {
                out["timeZone"] = z.clone();
            }
            out
        }
        None => {
            let d = NaiveDate::parse_from_str(v["date"].as_str().expect("a date"), "%Y-%m-%d")
                .expect("a date")
                + Duration::days(delta.num_days().max(1));
            json!({"date": d.format("%Y-%m-%d").to_string(), "dateTime": null})
        }
    }
}

/// A start (`dateTime` or `date`) as a comparable key: the UTC instant, or the date.
fn instant_key(v: &Value) -> String {
    match v["dateTime"].as_str() {
        Some(t) => DateTime::parse_from_rfc3339(t)
            .expect("RFC 3339")
            .with_timezone(&Utc)
            .to_rfc3339(),
        None => v["date"].as_str().unwrap_or_default().to_string(),
    }
}

/// A start or end of an event as a `(start, end)` patch, the other form cleared with null.
fn time_patch(time: &ActivityTime, zone: &str) -> Value {
    let (mut start, mut end) = event_times(time, zone);
    // A raw patch can clear the other form with null (the Rust crate cannot).
    for v in [&mut start, &mut end] {
        let other = if v.get("date").is_some() {
            "dateTime"
        } else {
            "date"
        };
        v[other] = Value::Null;
    }
    json!({"start": start, "end": end})
}

/// An RRULE ending after `n` occurrences, by COUNT or (`until`) by UNTIL just after the n-th
/// occurrence of a series whose first occurrence starts at `start` (period `days`).
fn rule(days: i64, n: u32, until: bool, start: &Value) -> String {
    let freq = if days == 1 { "DAILY" } else { "WEEKLY" };
    if !until {
        return format!("RRULE:FREQ={freq};COUNT={n}");
    }
    let span = Duration::days(days * i64::from(n - 1));
    let end = match start["dateTime"].as_str() {
        Some(t) => (DateTime::parse_from_rfc3339(t)
            .expect("RFC 3339")
            .with_timezone(&Utc)
            + span
            + Duration::hours(1))
        .format("%Y%m%dT%H%M%SZ")
        .to_string(),
        None => (NaiveDate::parse_from_str(start["date"].as_str().expect("a date"), "%Y-%m-%d")
            .expect("a date")
            + span)
            .format("%Y%m%d")
            .to_string(),
    };
    format!("RRULE:FREQ={freq};UNTIL={end}")
}

/// The activities of several users as the simulation drives them (the combined simulation,
/// `sync_sim_combined.rs`, drives three users with it).
pub struct Sim {
    pub w: SyncWorld,
    /// The users who sync activities: Alice first.
    users: Vec<User>,
    carol: crmsync_engine::model::Contact,
    /// Activities the test created or saw imported and never deleted itself.
    kept: BTreeSet<ActivityId>,
    /// Runs that stopped early (a crash point fired or an error ended the run).
    interrupted: u32,
    /// Record failures that ended parked.
    parked: usize,
    /// Runs the mass-untag guard stopped (then confirmed).
    blocked: u32,
    /// Keys of the series inserted in Google (their instances share the key).
    series_keys: BTreeSet<String>,
    /// Whole-series acts done, by kind ([`Act::series_op`]).
    series_acts: [u32; 6],
    /// Acts, faults, crashes, runs and broken invariants.
    pub tally: Tally,
}

impl Sim {
    /// The simulation of `users` (Alice first), each syncing activities from `base`, with the
    /// contact Carol to invite.
    pub fn new(w: SyncWorld, users: Vec<User>, base: NaiveDate) -> Sim {
        let carol = w.plain_contact("Carol", "carol@client.test");
        for u in &users {
            w.set_activity_settings(u, Some(base), &[]);
        }
        Sim {
            w,
            users,
            carol,
            kept: BTreeSet::new(),
            interrupted: 0,
            parked: 0,
            blocked: 0,
            series_keys: BTreeSet::new(),
            series_acts: [0; 6],
            tally: Tally::default(),
        }
    }

    pub fn users(&self) -> &[User] {
        &self.users
    }

    fn user(&self, i: usize) -> User {
        self.users[i % self.users.len()].clone()
    }

    /// The users an act of `u` invites: the next one, or (`everyone`) all the others.
    fn others(&self, u: &User, act: &Act) -> Vec<User> {
        let i = self.users.iter().position(|x| x.id == u.id).unwrap_or(0);
        let n = self.users.len();
        let count = if act.everyone { n - 1 } else { 1 };
        (1..=count).map(|k| self.user(i + k)).collect()
    }

    /// Live CRM activities in key order.
    fn crm_activities(&self) -> Vec<Activity> {
        let mut all = self.w.crm_activities();
        all.sort_by_key(|a| (key_of(&a.data.title), a.id.to_string()));
        all
    }

    fn participants(&self, act: &Act, organizer: &User) -> Vec<Participant> {
        let mut list = Vec::new();
        if act.other {
            for u in self.others(organizer, act) {
                list.push(participant_user(&u));
            }
        }
        if act.carol {
            list.push(participant_contact(&self.carol));
        }
        if act.guest {
            list.push(Participant {
                user_id: None,
                contact_id: None,
                email: "guest@elsewhere.test".into(),
                response_status: Default::default(),
            });
        }
        list
    }

    /// A CRM act: 0-2 (or nothing to edit) create, 3-4 rename, 5 relocate, 6 move in time, 7-8
    /// show or hide in the calendar, 9 delete.
    async fn crm_act(&mut self, act: &Act) {
        let all = self.crm_activities();
        if all.is_empty() || act.choice < 3 {
            let organizer = self.user(act.who);
            let (time, zone) = act.slot;
            let mut data = meeting(
                &format!("A{} {}", act.key, act.word),
                &organizer,
                DateTime::<Utc>::MIN_UTC,
                30,
                zone,
                vec![],
            );
            data.time = time;
            data.participants = self.participants(act, &organizer);
            if act.located {
                data.location = Some(act.place.into());
            }
            let a = self.w.crm_activity(&data);
            self.kept.insert(a.id);
            return;
        }
        let a = all[act.pick % all.len()].clone();
        if replayed_seed().is_some() {
            eprintln!(
                "  on {} {:?} (shown: {})",
                a.id, a.data.title, a.data.display_in_calendar
            );
        }
        match act.choice {
            3 | 4 => self
                .w
                .crm_activity_update(a.id, |d| d.title = rename(&d.title, act.word)),
            5 => self
                .w
                .crm_activity_update(a.id, |d| d.location = Some(act.place.into())),
            6 => {
                let (time, zone) = act.slot;
                self.w.crm_activity_update(a.id, |d| {
                    d.time = time;
                    d.time_zone = zone.into();
                });
            }
            7 | 8 => self
                .w
                .crm_activity_update(a.id, |d| d.display_in_calendar = !d.display_in_calendar),
            _ => {
                self.w
                    .store
                    .write(|c| {
                        activities::delete_activity(
                            c,
                            a.id,
                            crmsync_schema::changes::Origin::Api,
                            now(),
                        )
                    })
                    .expect("delete activity");
                self.kept.remove(&a.id);
            }
        }
    }

    /// A Google act in the calendar of a user: 0-3 (or no event to edit) insert, 4-6
    /// rename, 7 relocate, 8 move in time, 9 delete.
    async fn google_act(&mut self, act: &Act) {
        let user = self.user(act.who);
        let events = organized_events(&self.w, &user.email);
        if events.is_empty() || act.choice < 4 {
            let (time, zone) = act.slot;
            let (start, end) = event_times(&time, zone);
            let mut event = json!({"summary": format!("G{} {}", act.key, act.word), "start": start, "end": end});
            if act.other {
                let attendees: Vec<Value> = self
                    .others(&user, act)
                    .iter()
                    .map(|u| json!({"email": u.email}))
                    .collect();
                event["attendees"] = Value::Array(attendees);
            }
            if act.recurring {
                let days = if act.daily { 1 } else { 7 };
                event["recurrence"] = json!([rule(days, act.count.max(3), false, &start)]);
                self.series_keys.insert(format!("G{}", act.key));
            }
            self.w.google_insert_event(&user.email, event).await;
            return;
        }
        let masters: Vec<&Value> = events.iter().filter(|e| is_master(e)).collect();
        if !masters.is_empty() && act.series_op < 6 {
            let master = masters[act.pick % masters.len()].clone();
            self.series_act(act, &user, &master).await;
            return;
        }
        let e = &events[act.pick % events.len()];
        let id = e["id"].as_str().unwrap_or_default().to_string();
        let summary = e["summary"].as_str().unwrap_or_default().to_string();
        if replayed_seed().is_some() {
            eprintln!("  on {}'s event {id} {summary:?}", user.email);
        }
        match act.choice {
            4..=6 => {
                let patch = json!({"summary": rename(&summary, act.word)});
                self.w.google_patch_event(&user.email, &id, patch).await;
            }
            7 => {
                let patch = json!({"location": act.place});
                self.w.google_patch_event(&user.email, &id, patch).await;
            }
            8 => {
                let (time, zone) = act.slot;
                let patch = time_patch(&time, zone);
                self.w.google_patch_event(&user.email, &id, patch).await;
            }
            _ => self.w.google_delete_event(&user.email, &id).await,
        }
    }

    /// A whole-series act of `user` on the series `master` (see [`Act::series_op`]).
    async fn series_act(&mut self, act: &Act, user: &User, master: &Value) {
        let email = &user.email;
        let id = master["id"].as_str().unwrap_or_default().to_string();
        let days = if master["recurrence"].to_string().contains("DAILY") {
            1
        } else {
            7
        };
        let instances: Vec<Value> = self
            .w
            .google_instances(email, &id)
            .await
            .into_iter()
            .filter(|i| i["status"] != "cancelled")
            .collect();
        if replayed_seed().is_some() {
            eprintln!(
                "  series op {} on {email}'s series {id} {:?} ({} live instances)",
                act.series_op,
                master["summary"],
                instances.len()
            );
        }
        // The instances a split may start from: not the first occurrence (an exception moved
        // may sort it after others).
        let first = instant_key(&master["start"]);
        let later: Vec<&Value> = instances
            .iter()
            .filter(|i| instant_key(&i["originalStartTime"]) != first)
            .collect();
        self.series_acts[usize::from(act.series_op)] += 1;
        match act.series_op {
            0 => {
                let (time, zone) = act.slot;
                let patch = time_patch(&time, zone);
                self.w.google_patch_event(email, &id, patch).await;
            }
            1 | 2 => {
                let rule = rule(days, act.count, act.series_op == 2, &master["start"]);
                let patch = json!({ "recurrence": [rule] });
                self.w.google_patch_event(email, &id, patch).await;
            }
            3 if !later.is_empty() => {
                // "This and following" from a later instance: a new series with its own key.
                let i = later[act.pick % later.len()];
                let instance_id = i["id"].as_str().unwrap_or_default();
                let mut changes = json!({"summary": format!("G{} {}", act.key, act.word)});
                if act.shift && i["start"].get("dateTime").is_some() {
                    for end in ["start", "end"] {
                        let mut v = shifted(&i[end], Duration::hours(1));
                        v.as_object_mut().expect("an object").remove("date");
                        changes[end] = v;
                    }
                }
                // Google may refuse the split (e.g. an instance moved so that the new series
                // would be invalid): the user's act fails, nothing changes.
                match self
                    .w
                    .emu
                    .emulator()
                    .split_series(email, instance_id, changes)
                {
                    Ok(_) => {
                        self.series_keys.insert(format!("G{}", act.key));
                    }
                    Err(e) => {
                        if replayed_seed().is_some() {
                            eprintln!("  the split was refused: {e:?}");
                        }
                    }
                }
            }
            3 | 4 => self.w.google_delete_event(email, &id).await,
            _ if instances.is_empty() => self.w.google_delete_event(email, &id).await,
            _ => {
                // One instance edited: an exception.
                let i = &instances[act.pick % instances.len()];
                let iid = i["id"].as_str().unwrap_or_default().to_string();
                let summary = i["summary"].as_str().unwrap_or_default();
                match act.choice {
                    0..=6 => {
                        let patch = json!({"summary": rename(summary, act.word)});
                        self.w.google_patch_event(email, &iid, patch).await;
                    }
                    7 => {
                        let patch = json!({"location": act.place});
                        self.w.google_patch_event(email, &iid, patch).await;
                    }
                    8 => {
                        let delta = Duration::hours(i64::from(act.count));
                        let patch = json!({
                            "start": shifted(&i["start"], delta),
                            "end": shifted(&i["end"], delta),
                        });
                        self.w.google_patch_event(email, &iid, patch).await;
                    }
                    _ => self.w.google_delete_event(email, &iid).await,
                }
            }
        }
    }

    /// The user's acts of a round (printed in a replay).
    pub async fn acts(&mut self, round: &Round) {
        for act in &round.acts {
            if replayed_seed().is_some() {
                eprintln!("act {act:?}");
            }
            self.tally.acts += 1;
            if act.crm {
                self.crm_act(act).await;
            } else {
                self.google_act(act).await;
            }
        }
    }

    /// Counts the record failures of a run that ended parked.
    pub fn note(&mut self, r: &RunReport) {
        self.parked += r
            .errors
            .iter()
            .filter(|e| e.message.contains("parked"))
            .count();
    }

    /// After a round's runs: imported activities count as kept from here on.
    pub fn keep_imported(&mut self) {
        for a in self.w.crm_activities() {
            self.kept.insert(a.id);
        }
    }

    /// A run of `user`; one the mass-untag guard stops (a whole-series change can end many
    /// links at once) is confirmed, as the admin would, and run again.
    async fn run(&mut self, user: &User, crash: Option<(usize, u32)>) {
        if self.run_once(user, crash, MassUntag::Guard).await {
            self.blocked += 1;
            self.run_once(user, None, MassUntag::Confirm).await;
        }
    }

    /// One run; says whether the mass-untag guard stopped it.
    async fn run_once(
        &mut self,
        user: &User,
        crash: Option<(usize, u32)>,
        mass_untag: MassUntag,
    ) -> bool {
        let engine = match crash {
            Some((point, nth)) => self
                .w
                .engine
                .with_crash_plan(Arc::new(CrashAt::new(CrashPoint::ALL[point], nth))),
            None => self.w.engine.clone(),
        };
        let r = engine
            .sync(
                user.id,
                SyncKind::Activities,
                Trigger::Manual,
                RunOptions { mass_untag },
            )
            .await;
        if replayed_seed().is_some() {
            eprintln!("run of {}: {r:?}", user.email);
            if let Ok(r) = &r {
                for j in self
                    .w
                    .store
                    .read(|c| sync_state::journal_of_run(c, r.run_id))
                    .unwrap_or_default()
                {
                    let e = j.entry;
                    eprintln!(
                        "  journal {:?} {:?} {} {} {} field={:?}",
                        e.crm_id, e.google_id, e.side, e.action, e.rule, e.field
                    );
                }
            }
        }
        self.tally.runs += 1;
        match r {
            Ok(r) => {
                self.note(&r);
                r.state == RunState::Blocked
            }
            Err(e) => {
                if matches!(e, SyncError::Crashed(_)) {
                    self.tally.crashes += 1;
                }
                self.interrupted += 1;
                false
            }
        }
    }
}

/// The Calendar faults of a round: writes carrying "Refused room" refused (always), and as
/// the round drew them a failed listing, an insert or a patch applied with its answer lost, a
/// rate-limited patch, a rate-limited delete.
pub fn calendar_faults(round: &Round) -> Vec<FaultRule> {
    let mut faults = vec![
        FaultRule::error("calendar.events.insert", 400, 1_000_000).body_contains("Refused room"),
        FaultRule::error("calendar.events.patch", 400, 1_000_000).body_contains("Refused room"),
        FaultRule::error("calendar.events.update", 400, 1_000_000).body_contains("Refused room"),
    ];
    if round.list_503 {
        faults.push(FaultRule::error("calendar.events.list", 503, 1));
    }
    if round.insert_lost {
        faults.push(FaultRule::error("calendar.events.insert", 0, 1).applied());
    }
    if round.patch_403 {
        faults.push(FaultRule::error("calendar.events.patch", 403, 1).reason("rateLimitExceeded"));
    }
    if round.delete_429 {
        faults.push(FaultRule::error("calendar.events.delete", 429, 1));
    }
    if round.patch_lost {
        faults.push(FaultRule::error("calendar.events.patch", 0, 1).applied());
    }
    faults
}

/// What a simulation reached: runs interrupted, failures that ended parked, whole-series acts by
/// kind (so the caller can tell the crash points, the parking path and each series act were
/// reached at all).
type Reached = (u32, usize, [u32; 6]);

/// Runs one seed's script; returns what it reached and its tally.
async fn simulate(db: TestDb, script: Script) -> (Reached, Tally) {
    let config = SyncConfig {
        calendar_page_size: 2,
        horizon_days: HORIZON_DAYS,
        ..Default::default()
    };
    let w = SyncWorld::with_config(db, config).await;
    let bob = w.user("bob@example.com").await;
    let users = vec![w.alice.clone(), bob];
    let mut sim = Sim::new(w, users, script.base);
    for round in &script.rounds {
        // The user's own edits are not subject to the faults meant for the engine.
        sim.tally.clear_faults(sim.w.emu.emulator());
        sim.acts(round).await;
        if replayed_seed().is_some() {
            let faults = Round {
                acts: Vec::new(),
                ..round.clone()
            };
            eprintln!("faults and runs {faults:?}");
        }
        sim.tally
            .set_faults(sim.w.emu.emulator(), calendar_faults(round));
        if let Some(who) = round.expire {
            let who = sim.user(who);
            sim.tally.faults += 1;
            sim.w
                .emu
                .emulator()
                .expire_sync_tokens(&who.email, Api::Calendar);
        }
        let n = sim.users.len();
        for (k, crash) in round.crash.iter().enumerate() {
            let u = sim.user(round.first + k);
            debug_assert!(k < n);
            sim.run(&u, *crash).await;
        }
        sim.keep_imported();
    }
    // Quiescence: faults off, runs until nothing is left to do.
    sim.tally.clear_faults(sim.w.emu.emulator());
    for _ in 0..3 {
        for u in sim.users().to_vec() {
            let r = sim.w.sync_activities(&u).await;
            sim.tally.runs += 1;
            if r.state == RunState::Blocked {
                sim.blocked += 1;
                let r = sim
                    .w
                    .engine
                    .sync(
                        u.id,
                        SyncKind::Activities,
                        Trigger::Manual,
                        RunOptions {
                            mass_untag: MassUntag::Confirm,
                        },
                    )
                    .await
                    .expect("run completes");
                sim.tally.runs += 1;
                assert_eq!(r.state, RunState::Succeeded, "seed {}: {r:?}", script.seed);
            }
        }
    }
    if sim.blocked > 0 {
        eprintln!(
            "seed {}: {} runs blocked by the mass-untag guard (confirmed)",
            script.seed, sim.blocked
        );
    }
    let mut tally = std::mem::take(&mut sim.tally);
    check_invariants(&sim, &sim.w.engine, &mut tally).await;
    if replayed_seed().is_some() {
        eprintln!("series acts by kind: {:?}", sim.series_acts);
    }
    ((sim.interrupted, sim.parked, sim.series_acts), tally)
}

fn directory(sim: &Sim, a: &Activity) -> activity_map::Directory {
    let mut entries: Vec<(String, PersonRef)> = sim
        .users
        .iter()
        .map(|u| (u.email.clone(), PersonRef::User(u.id)))
        .collect();
    entries.push((
        sim.carol.data.emails[0].address.clone(),
        PersonRef::Contact(sim.carol.id),
    ));
    for p in &a.data.participants {
        entries.push((p.email.clone(), PersonRef::Email));
    }
    activity_map::directory_from(entries)
}

/// Prints what the store knows of an activity (its record, its links for `user`, its journal),
/// to read with a failing seed.
fn dump_activity(w: &SyncWorld, user: &User, crm_id: &str) {
    let record = crm_id
        .parse::<ActivityId>()
        .ok()
        .and_then(|id| w.store.read(|c| activities::get_activity(c, id)).ok());
    eprintln!("ACTIVITY {crm_id} {record:?}");
    let links = w
        .store
        .read(|c| {
            sync_state::links_by_crm_ids(c, user.id, SyncKind::Activities, &[crm_id.to_string()])
        })
        .unwrap_or_default();
    eprintln!("LINKS {crm_id} {links:?}");
    for j in w
        .store
        .read(|c| sync_state::journal_of_record(c, crm_id))
        .unwrap_or_default()
    {
        eprintln!(
            "JOURNAL {crm_id} {} {} {} {} {:?} {:?} {:?}",
            j.entry.run_id,
            j.entry.side,
            j.entry.action,
            j.entry.rule,
            j.entry.google_id,
            j.entry.before,
            j.entry.after
        );
    }
}

/// Checks the invariants of every user's activities, counting each violation in `tally`; the
/// settled runs go through `engine`.
pub async fn check_invariants(sim: &Sim, engine: &SyncEngine, tally: &mut Tally) {
    let w = &sim.w;
    let live = w.crm_activities();
    let live_ids: BTreeSet<ActivityId> = live.iter().map(|a| a.id).collect();
    // N1: nothing the test kept disappeared (the sync never deletes an activity).
    for id in &sim.kept {
        tally.check(live_ids.contains(id), Violation::WrongDelete, || {
            format!("activity {id} vanished")
        });
    }
    // No duplicate in the CRM: each key once among live activities (but the instances of a
    // series share its key, and those that vanished stay hidden: the one-to-one check below
    // covers them).
    let mut keys: BTreeMap<String, usize> = BTreeMap::new();
    for a in &live {
        let key = key_of(&a.data.title);
        if !sim.series_keys.contains(&key) {
            *keys.entry(key).or_default() += 1;
        }
    }
    for (key, n) in &keys {
        tally.check(*n == 1, Violation::Duplicate, || {
            format!("{n} CRM activities have the key {key}")
        });
    }
    for user in sim.users() {
        // No duplicate in Google: each key once among the user's live organized events (series
        // keys aside: their instances share them).
        let mut ekeys: BTreeMap<String, usize> = BTreeMap::new();
        for e in organized_events(w, &user.email) {
            let key = key_of(e["summary"].as_str().unwrap_or_default());
            if !sim.series_keys.contains(&key) {
                *ekeys.entry(key).or_default() += 1;
            }
        }
        for (key, n) in &ekeys {
            tally.check(*n == 1, Violation::Duplicate, || {
                format!("{n} events with the key {key} in {}'s calendar", user.email)
            });
        }
        // One-to-one: shown activities the user organizes <-> live events they organize, each
        // live instance of a series counted as an event of its own.
        let events = organized_occurrences(w, &user.email).await;
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
            let Some(crm_id) = by_event.get(id) else {
                tally.check(false, Violation::Orphan, || {
                    format!(
                        "{}'s event {id} ({}) has no active link",
                        user.email, v["summary"]
                    )
                });
                continue;
            };
            let Some(a) = shown.get(crm_id) else {
                dump_activity(w, user, crm_id);
                tally.check(false, Violation::Orphan, || {
                    format!(
                        "{}'s event {id} ({}) is linked to {crm_id}, which is not a shown activity they organize",
                        user.email, v["summary"]
                    )
                });
                continue;
            };
            let e: Event = serde_json::from_value(v.clone()).expect("event");
            let dir = directory(sim, a);
            let (google, crm) = (
                activity_map::describe(&event_wire::event_fields(&e, &dir, &ctx)),
                activity_map::describe(&activity_map::activity_fields(&a.data, &ctx)),
            );
            tally.check(google == crm, Violation::WrongValue, || {
                format!("event {id} and activity {crm_id} did not converge: {google:?} vs {crm:?}")
            });
            tally.check(seen.insert(crm_id.clone()), Violation::Duplicate, || {
                format!(
                    "activity {crm_id} is linked to two of {}'s events (one is {id})",
                    user.email
                )
            });
        }
        let missing: Vec<&String> = shown.keys().filter(|k| !seen.contains(*k)).collect();
        if !missing.is_empty() {
            // On failure: the shown activities and the live occurrences, side by side.
            for a in shown.values() {
                eprintln!("SHOWN {} {:?} {:?}", a.id, a.data.title, a.data.time);
            }
            for v in &events {
                eprintln!("OCCURRENCE {} {} {}", v["id"], v["summary"], v["start"]);
            }
        }
        // On failure: the story of each missing one, to read with the seed.
        for m in &missing {
            dump_activity(w, user, m);
            if let Ok(id) = m.parse::<ActivityId>() {
                eprintln!(
                    "EVENT {:?}",
                    w.emu
                        .emulator()
                        .calendar_event(&user.email, &crmsync_engine::activity_map::event_id(id))
                );
            }
            tally.check(false, Violation::Orphan, || {
                format!("shown activity {m} of {} has no live event", user.email)
            });
        }
    }
    // N6: converged means one more run of each user writes nothing.
    let writes = w.calendar_writes();
    for user in sim.users() {
        let r = engine
            .sync(
                user.id,
                SyncKind::Activities,
                Trigger::Manual,
                RunOptions::default(),
            )
            .await
            .expect("run completes");
        tally.runs += 1;
        tally.check(
            r.state != RunState::Failed && r.counts.writes() == 0,
            Violation::NoisySecondRun,
            || format!("a settled run of {} wrote: {r:?}", user.email),
        );
    }
    let after = w.calendar_writes();
    tally.check(after == writes, Violation::NoisySecondRun, || {
        format!("settled runs made {} Calendar writes", after - writes)
    });
}

/// Runs the seeds of a test: each one's script, printed with its fingerprint.
async fn run_seeds(seeds: Vec<u64>, db: fn() -> TestDb, test: &str) -> Reached {
    let today = crmsync::clock::SystemClock;
    let results = for_each_seed("activities", seeds, test, |seed| {
        let script = Script::new(seed, 6, 2, &today);
        eprintln!(
            "seed {seed}: script {:016x} from {}",
            script.fingerprint(),
            script.base
        );
        simulate(db(), script)
    })
    .await;
    results
        .into_iter()
        .fold((0, 0, [0; 6]), |(i, p, mut s), (i2, p2, s2)| {
            for (a, b) in s.iter_mut().zip(s2) {
                *a += b;
            }
            (i + i2, p + p2, s)
        })
}

/// Runs shard `shard` of `shards` of a backend's seeds.
async fn run_shard(
    db: fn() -> TestDb,
    first: u64,
    count: u64,
    shard: u64,
    shards: u64,
    test: String,
) {
    let seeds = shard_seeds(first, seeds(count), shard, shards, &[]);
    let n = seeds.len();
    let (interrupted, parked, series_acts) = run_seeds(seeds, db, &test).await;
    eprintln!(
        "activities simulation ({test}, {n} seeds): {interrupted} runs interrupted, {parked} parked, whole-series acts by kind {series_acts:?}"
    );
    // Each shard's seeds reach the crash points, the parking path and every whole-series act
    // (a soak's table shows what its seeds reached instead).
    if replayed_seed().is_none() && std::env::var("CRMSYNC_SIM_REPORT").is_err() && n >= 8 {
        assert!(
            interrupted > 0,
            "no run was ever interrupted: the crash plan is not wired"
        );
        assert!(
            parked > 0,
            "no refused change was ever parked: the parking path was not reached"
        );
        assert!(
            series_acts.iter().all(|n| *n > 0),
            "some whole-series act was never made: {series_acts:?}"
        );
    }
}

/// Seeds from 0 on SQLite, spread over the shards.
async fn sqlite_shard(shard: u64, shards: u64, test: String) {
    run_shard(TestDb::sqlite, 0, SQLITE_SEEDS, shard, shards, test).await
}

/// Seeds from 1000 on PostgreSQL.
async fn postgres_shard(shard: u64, shards: u64, test: String) {
    run_shard(TestDb::postgres, 1000, POSTGRES_SEEDS, shard, shards, test).await
}

/// Seeds per CI run (`bash scripts/test`), over all shards of a backend.
const SQLITE_SEEDS: u64 = 200;
const POSTGRES_SEEDS: u64 = 60;

crate::sim_shards!(
    sqlite_shard,
    4,
    [
        activities_simulation_sqlite_0 = 0,
        activities_simulation_sqlite_1 = 1,
        activities_simulation_sqlite_2 = 2,
        activities_simulation_sqlite_3 = 3,
    ]
);
crate::sim_shards!(
    postgres_shard,
    2,
    [
        activities_simulation_postgres_0 = 0,
        activities_simulation_postgres_1 = 1,
    ]
);

/// A seed makes the same acts, faults, runs and crashes on any day: its script built as if run
/// today and as if run years later is the same, down to every date (and the dates do not move
/// with the day either: they follow the seed's fixed base).
#[test]
fn activities_simulation_script_is_the_same_on_any_day() {
    let day = |y, m, d| {
        TestClock::new(
            Utc.with_ymd_and_hms(y, m, d, 9, 30, 0)
                .single()
                .expect("a date"),
        )
    };
    for seed in [0, 1, 17, 1000, 1003] {
        let a = Script::new(seed, 6, 2, &day(2026, 12, 7));
        let b = Script::new(seed, 6, 2, &day(2031, 6, 30));
        let c = Script::new(seed, 6, 2, &crmsync::clock::SystemClock);
        eprintln!("seed {seed}: script {:016x}", a.fingerprint());
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "seed {seed}");
        assert_eq!(format!("{a:?}"), format!("{c:?}"), "seed {seed}");
        assert_eq!(a.fingerprint(), b.fingerprint());
        // Every generated date is after the seed's base (inside the window from
        // `synchronize_from`) and fixed by the seed.
        assert_eq!(a.base, base_of(seed));
        for act in a.rounds.iter().flat_map(|r| &r.acts) {
            let start = match act.slot.0 {
                ActivityTime::AllDay { start, .. } => start,
                ActivityTime::Timed { start, .. } => start.date_naive(),
            };
            assert!(
                start > a.base && start <= a.base + Duration::days(LAST_DAY),
                "{act:?}"
            );
        }
    }
    // Different seeds make different scripts.
    assert_ne!(
        Script::new(0, 6, 2, &day(2026, 12, 7)).fingerprint(),
        Script::new(1, 6, 2, &day(2026, 12, 7)).fingerprint()
    );
}
