//! Seeded simulation of both kinds for three users together, on PostgreSQL, with two workers
//! (sync-testing-plan B7.3 L2): Alice, Bob and Erin each sync contacts (their own private tag and
//! Google group, acts of `sync_simulation.rs`: the user's contacts are those whose address starts
//! with their name) and activities (the acts of `sync_sim_activities.rs`, for three users: an
//! organizer invites the next user or everyone, so events are shared between calendars). Each
//! round: the users' acts on both sides, then People and Calendar faults, expired sync tokens,
//! and a run of every (user, kind) requested as "Start synchronization" does, carried out by two
//! schedulers claiming runs concurrently from the one database (as two `crmsync worker`
//! processes do), each with its own crash plan for the round. A run that crashes keeps its lease
//! until the lease expires (the schedulers' clock is moved past it) and is then taken over by
//! whichever worker claims it first (the same run id). After the faults stop and the runs
//! settle, every user's contacts and the activities of all three are checked with the checks of
//! the two simulations (nothing lost, duplicated, orphaned or wrongly deleted, pairs converged,
//! a second run writes nothing), counted in the seed's [`Tally`].
//!
//! Replays (`CRMSYNC_SIM_SEED`) make the same acts, faults and crash plans; which worker claims
//! which run, and so which run meets a crash point, depends on timing.

use crate::sched_support::{config as scheduler_config, engine_with_clock};
use crate::sync_sim_activities::{self as activities, calendar_faults, Script, Sim};
use crate::sync_simulation::{self as contacts, people_faults, Party};
use crate::sync_support::*;
use chrono::Utc;
use crmsync::clock::{Clock, SystemClock, TestClock};
use crmsync::scheduler::schedule::JitterPolicy;
use crmsync::scheduler::{request_run, Outcome, Scheduler};
use crmsync::sync::crash::{CrashAt, CrashPoint};
use crmsync::sync::{MassUntag, RunOptions, RunState, SyncConfig, SyncEngine};
use crmsync_emulator::Api;
use crmsync_engine::ids::{RunId, SyncKind, UserId};
use crmsync_schema::runs;
use crmsync_schema::test_support::TestDb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

const NAMES: [&str; 3] = ["alice", "bob", "erin"];
const ROUNDS: usize = 5;
/// The workers' lease; a crashed run is taken over once the clock has passed it.
const LEASE_SECS: i64 = 10;

/// The world, the two kinds' drivers and the engine the workers share.
struct Combined {
    sim: Sim,
    parties: Vec<Party>,
    engine: SyncEngine,
    clock: TestClock,
    tally: Tally,
    /// Runs one worker carried out after the other's crash (its lease expired).
    takeovers: u64,
}

impl Combined {
    /// A worker (its own scheduler over the shared engine) that crashes as `crash` says.
    fn worker(&self, name: &str, crash: Option<(usize, u32)>) -> Scheduler {
        let engine = match crash {
            Some((point, nth)) => self
                .engine
                .with_crash_plan(Arc::new(CrashAt::new(CrashPoint::ALL[point], nth))),
            None => self.engine.clone(),
        };
        let mut config = scheduler_config(name, JitterPolicy::none());
        config.lease = chrono::Duration::seconds(LEASE_SECS);
        config.concurrency = 3;
        Scheduler::new(engine, config)
    }

    /// Requests a run of every (user, kind) and has the two workers carry them out; runs the
    /// mass-untag guard stops are confirmed (as the admin would) and carried out again.
    async fn run_all(&mut self, crashes: [Option<(usize, u32)>; 2]) {
        let workers = [
            self.worker("worker-a", crashes[0]),
            self.worker("worker-b", crashes[1]),
        ];
        let mut wanted: Vec<(UserId, SyncKind, RunOptions)> = Vec::new();
        for u in self.sim.users() {
            for kind in [SyncKind::Contacts, SyncKind::Activities] {
                wanted.push((u.id, kind, RunOptions::default()));
            }
        }
        for _ in 0..3 {
            if wanted.is_empty() {
                break;
            }
            let mut pending: Vec<RunId> = Vec::new();
            for (user, kind, options) in wanted.drain(..) {
                let req = request_run(&self.sim.w.store, self.clock.now(), user, kind, options)
                    .await
                    .expect("request a run");
                pending.push(req.run_id);
            }
            let mut passes = 0;
            loop {
                passes += 1;
                assert!(
                    passes < 100,
                    "requested runs still unfinished after {passes} passes"
                );
                let (a, b) = tokio::join!(workers[0].run_pending(), workers[1].run_pending());
                let done: Vec<_> = a
                    .expect("worker a")
                    .into_iter()
                    .chain(b.expect("worker b"))
                    .collect();
                for f in &done {
                    self.tally.runs += 1;
                    if f.claim.taken_over_from.is_some() {
                        self.takeovers += 1;
                    }
                    if replayed_seed().is_some() {
                        let who = self
                            .sim
                            .users()
                            .iter()
                            .find(|u| u.id == f.claim.user_id)
                            .map_or("?", |u| u.email.as_str());
                        eprintln!(
                            "run of {who} {:?} {} (taken over from {:?}): {:?}",
                            f.claim.kind, f.claim.run_id, f.claim.taken_over_from, f.outcome
                        );
                    }
                    match &f.outcome {
                        Outcome::Completed(r) => {
                            if r.kind == SyncKind::Activities {
                                self.sim.note(r);
                            }
                            if r.state == RunState::Blocked {
                                wanted.push((
                                    r.user_id,
                                    r.kind,
                                    RunOptions {
                                        mass_untag: MassUntag::Confirm,
                                    },
                                ));
                            }
                        }
                        Outcome::Stopped(m) if m.contains("simulated crash") => {
                            self.tally.crashes += 1
                        }
                        Outcome::Stopped(_) | Outcome::LeaseLost => {}
                    }
                }
                if !done.is_empty() {
                    continue;
                }
                let store = self.sim.w.store.clone();
                let unfinished = pending.iter().any(|id| {
                    store
                        .read(|c| runs::get_run(c, *id))
                        .expect("read a run")
                        .is_none_or(|r| r.finished_at.is_none())
                });
                if !unfinished {
                    break;
                }
                // A crashed run holds its lease until it expires: let it.
                self.clock
                    .advance(chrono::Duration::seconds(LEASE_SECS + 1));
            }
        }
    }

    fn observe(&mut self) {
        for p in &mut self.parties {
            p.observe(&self.sim.w);
        }
        self.sim.keep_imported();
    }
}

/// Runs one seed; returns how many runs crashed and how many were taken over, and its tally.
async fn simulate(seed: u64) -> ((u64, u64), Tally) {
    let script = Script::new(seed, ROUNDS, NAMES.len(), &SystemClock);
    // The contacts acts, People faults and crash plans draw from their own stream.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x00c0_ffee);
    let mut config = SyncConfig {
        people_page_size: 3,
        calendar_page_size: 2,
        horizon_days: activities::HORIZON_DAYS,
        ..Default::default()
    };
    config.contacts_policy.pending_confirm_after = chrono::Duration::zero();
    let w = SyncWorld::with_config(TestDb::postgres(), config).await;
    let mut users = vec![w.alice.clone()];
    let mut tags = vec![w.tag.id];
    for name in &NAMES[1..] {
        let u = w.user(&format!("{name}@example.com")).await;
        let tag = w.private_tag(&u, "Clients");
        w.set_contact_tag(&u, tag.id);
        tags.push(tag.id);
        users.push(u);
    }
    let mut parties = Vec::new();
    for ((u, tag), name) in users.iter().zip(&tags).zip(NAMES) {
        parties.push(Party::new(&w, u.clone(), *tag, &format!("{name}.")).await);
    }
    let clock = TestClock::new(Utc::now());
    let engine = engine_with_clock(&w, Arc::new(clock.clone()));
    let mut c = Combined {
        sim: Sim::new(w, users, script.base),
        parties,
        engine,
        clock,
        tally: Tally::default(),
        takeovers: 0,
    };
    for round in script.rounds() {
        // The users' own acts are not subject to the faults meant for the engine.
        c.tally.clear_faults(c.sim.w.emu.emulator());
        c.sim.acts(round).await;
        for p in &mut c.parties {
            for _ in 0..rng.gen_range(0..4) {
                contacts::act(&c.sim.w, p, &mut rng).await;
            }
        }
        let mut faults = calendar_faults(round);
        faults.extend(people_faults(&mut rng));
        c.tally.set_faults(c.sim.w.emu.emulator(), faults);
        if let Some(who) = round.expire {
            c.tally.faults += 1;
            let email = &c.sim.users()[who % NAMES.len()].email;
            c.sim
                .w
                .emu
                .emulator()
                .expire_sync_tokens(email, Api::Calendar);
        }
        if rng.gen_bool(0.1) {
            c.tally.faults += 1;
            let email = &c.sim.users()[rng.gen_range(0..NAMES.len())].email;
            c.sim
                .w
                .emu
                .emulator()
                .expire_sync_tokens(email, Api::People);
        }
        let mut crashes = [None, None];
        for crash in &mut crashes {
            if rng.gen_bool(0.4) {
                *crash = Some((rng.gen_range(0..CrashPoint::ALL.len()), rng.gen_range(1..3)));
            }
        }
        if replayed_seed().is_some() {
            eprintln!("crash plans of the workers: {crashes:?}");
        }
        c.run_all(crashes).await;
        c.observe();
    }
    // Quiescence: faults off, runs until nothing is left to do.
    c.tally.clear_faults(c.sim.w.emu.emulator());
    for _ in 0..3 {
        c.run_all([None, None]).await;
    }
    c.observe();
    let mut tally = std::mem::take(&mut c.tally);
    let mut deleted = 0;
    for p in &c.parties {
        contacts::check_invariants(&c.sim.w, &c.engine, p, &mut tally).await;
        tally.acts += p.h.step as u64;
        deleted += p.h.google_deleted.len();
    }
    contacts::check_people_deletes(&c.sim.w, deleted, &mut tally);
    activities::check_invariants(&c.sim, &c.engine, &mut tally).await;
    tally.acts += c.sim.tally.acts;
    ((tally.crashes, c.takeovers), tally)
}

/// Runs shard `shard` of `shards` of the seeds.
async fn postgres_shard(shard: u64, shards: u64, test: String) {
    let seeds = shard_seeds(2000, seeds(SEEDS), shard, shards, KNOWN_FAILING);
    let n = seeds.len();
    let passed = for_each_seed("combined", seeds, &test, simulate).await;
    let (crashes, takeovers) = passed
        .iter()
        .fold((0, 0), |(c, t), (c2, t2)| (c + c2, t + t2));
    eprintln!(
        "combined simulation ({test}): {n} seeds, {crashes} runs crashed, {takeovers} taken over"
    );
    // The shard's seeds crash runs and have them taken over by a worker (a soak's table shows
    // what its seeds reached instead).
    if replayed_seed().is_none() && std::env::var("CRMSYNC_SIM_REPORT").is_err() && n >= 8 {
        assert!(
            crashes > 0 && takeovers > 0,
            "no run crashed and was taken over: {crashes} crashes, {takeovers} takeovers"
        );
    }
}

/// Seeds per CI run (`bash scripts/test`), over all shards.
const SEEDS: u64 = 120;

/// Seeds that fail on engine bugs not fixed yet, left out of the default list (a replay or a soak
/// runs them):
/// - 2105: a crash after a People update reached Google and before the local commit loses the
///   journal entry of the Google value the update overwrote (Bob edits a contact's job title in
///   Google and the CRM in one round; the CRM wins; the run crashes at
///   `AfterRemoteWriteBeforeLocalCommit`; the run that takes over finds both sides equal and
///   journals nothing, so the Google edit is neither a value nor in the journal: N3);
/// - 2052: after a "this and following" split from the only live instance of Erin's series, the
///   CRM activity of that instance keeps its active link and stays shown, with no live event
///   (fails in about two replays of three, depending on which worker carries which run out).
const KNOWN_FAILING: &[u64] = &[2052, 2105];

crate::sim_shards!(
    postgres_shard,
    6,
    [
        combined_simulation_postgres_0 = 0,
        combined_simulation_postgres_1 = 1,
        combined_simulation_postgres_2 = 2,
        combined_simulation_postgres_3 = 3,
        combined_simulation_postgres_4 = 4,
        combined_simulation_postgres_5 = 5,
    ]
);
