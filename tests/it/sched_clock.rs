//! The scheduler with a controllable clock against the emulator, on both backends: interval and
//! cron runs fire when due and not before (stepping the `TestClock`, never sleeping through real
//! minutes); auto-sync off means no scheduled run; manual starts are coalesced — a start during
//! a run queues exactly one follow-up. On shutdown a run in progress finishes within the grace
//! period, and one that does not is stopped and its lease given back, so the next worker carries
//! the same run out at once.

use crate::sched_support::{
    clocked, config, engine_with_clock, eventually, job, runs_of, set_schedule,
};
use crate::sync_support::SyncWorld;
use chrono::{Duration, DurationRound, Utc};
use crmsync::clock::{Clock, SystemClock};
use crmsync::scheduler::schedule::JitterPolicy;
use crmsync::scheduler::{Outcome, Scheduler};
use crmsync::sync::{RunOptions, RunState};
use crmsync_emulator::FaultRule;
use crmsync_engine::ids::SyncKind::Contacts;
use crmsync_engine::model::SyncSchedule;
use crmsync_schema::db_test;
use std::sync::Arc;

fn ms(n: i64) -> Duration {
    Duration::milliseconds(n)
}

fn assert_all_succeeded(done: &[crmsync::scheduler::Finished]) {
    for f in done {
        match &f.outcome {
            Outcome::Completed(r) => assert_eq!(r.state, RunState::Succeeded, "{r:?}"),
            other => panic!("run did not complete: {other:?}"),
        }
    }
}

db_test!(async fn interval_runs_fire_when_due_and_not_before(db) {
    let world = SyncWorld::new(db).await;
    world.crm_contact("Ann", "Able", "ann@clients.test");
    let start = Utc::now();
    let (sched, clock) = clocked(&world, start, JitterPolicy::default());
    set_schedule(&world, &world.alice, Contacts, true, SyncSchedule::IntervalMinutes(15), start);
    let bound = Duration::seconds(90); // 10% of 15 minutes (under the 5-minute cap)

    // Never synced: due within the forward jitter of now.
    let mut done = sched.run_pending().await.unwrap();
    let d0 = job(&world.store, world.alice.id, Contacts).next_due_at.expect("scheduled");
    assert!(d0 >= start && d0 <= start + bound, "first due {d0} not in [{start}, +90s]");
    if d0 > start {
        assert!(done.is_empty(), "ran before its due time");
        clock.set(d0 - ms(1));
        assert!(sched.run_pending().await.unwrap().is_empty(), "ran 1 ms early");
        clock.set(d0);
        done = sched.run_pending().await.unwrap();
    }
    assert_eq!(done.len(), 1);
    assert_all_succeeded(&done);
    assert_eq!(done[0].claim.trigger, "schedule");

    // Next: 15 minutes after that run started, ± the jitter bound.
    let j = job(&world.store, world.alice.id, Contacts);
    assert_eq!(j.last_run_at, Some(d0));
    assert!(j.last_success_at.is_some() && j.last_error.is_none());
    assert!(j.lease_owner.is_none() && j.running_run_id.is_none());
    let d1 = j.next_due_at.expect("rescheduled");
    let base = d0 + Duration::minutes(15);
    assert!(d1 >= base - bound && d1 <= base + bound, "{d1} not within 90 s of {base}");
    clock.set(d1 - ms(1));
    assert!(sched.run_pending().await.unwrap().is_empty(), "ran 1 ms early");
    clock.set(d1);
    let done = sched.run_pending().await.unwrap();
    assert_eq!(done.len(), 1);
    assert_all_succeeded(&done);
    // Nothing more until the next due time, however often the scheduler looks.
    for _ in 0..3 {
        assert!(sched.run_pending().await.unwrap().is_empty());
    }
    let runs = runs_of(&world.store, world.alice.id, Contacts);
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.trigger == "schedule" && r.state == "succeeded"));
    assert_eq!(world.google_contacts().len(), 1, "the contact went to Google once");
});

db_test!(async fn cron_runs_fire_at_their_time_and_not_before(db) {
    let world = SyncWorld::new(db).await;
    // 20 minutes past an hour (Alice's zone, Europe/London, has whole-hour offsets).
    let start = Utc::now().duration_trunc(Duration::hours(1)).unwrap() + Duration::minutes(20);
    let (sched, clock) = clocked(&world, start, JitterPolicy::default());
    set_schedule(&world, &world.alice, Contacts, true, SyncSchedule::Cron("0 0 * * * *".into()), start);
    let hour = start.duration_trunc(Duration::hours(1)).unwrap();

    assert!(sched.run_pending().await.unwrap().is_empty(), "nothing due at :20");
    let d0 = job(&world.store, world.alice.id, Contacts).next_due_at.expect("scheduled");
    // The next full hour, delayed by at most 5 minutes (10% of the hour, capped), never early.
    assert!(d0 >= hour + Duration::hours(1) && d0 <= hour + Duration::hours(1) + Duration::minutes(5), "{d0}");
    clock.set(hour + Duration::minutes(59));
    assert!(sched.run_pending().await.unwrap().is_empty(), "fired before the hour");
    clock.set(d0 - ms(1));
    assert!(sched.run_pending().await.unwrap().is_empty(), "fired before its jittered time");
    clock.set(d0);
    let done = sched.run_pending().await.unwrap();
    assert_eq!(done.len(), 1);
    assert_all_succeeded(&done);
    let d1 = job(&world.store, world.alice.id, Contacts).next_due_at.expect("rescheduled");
    assert!(d1 >= hour + Duration::hours(2) && d1 <= hour + Duration::hours(2) + Duration::minutes(5), "{d1}");

    // A worker that was away for a day runs the missed schedule once, not 24 times.
    clock.set(hour + Duration::hours(26) + Duration::minutes(30));
    let done = sched.run_pending().await.unwrap();
    assert_eq!(done.len(), 1);
    assert!(sched.run_pending().await.unwrap().is_empty());
    let d2 = job(&world.store, world.alice.id, Contacts).next_due_at.expect("rescheduled");
    assert!(d2 >= hour + Duration::hours(27), "{d2}");
    assert_eq!(runs_of(&world.store, world.alice.id, Contacts).len(), 2);
});

db_test!(async fn auto_sync_off_means_no_scheduled_runs(db) {
    let world = SyncWorld::new(db).await;
    let start = Utc::now();
    let (sched, clock) = clocked(&world, start, JitterPolicy::default());
    set_schedule(&world, &world.alice, Contacts, false, SyncSchedule::IntervalMinutes(1), start);
    assert!(sched.run_pending().await.unwrap().is_empty());
    assert_eq!(job(&world.store, world.alice.id, Contacts).next_due_at, None);
    for hours in [1, 5, 24, 24 * 30] {
        clock.set(start + Duration::hours(hours));
        assert!(sched.run_pending().await.unwrap().is_empty(), "a scheduled run with auto-sync off");
    }
    // A manual start still runs.
    let req = sched.request(world.alice.id, Contacts, RunOptions::default()).await.unwrap();
    let done = sched.run_pending().await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].claim.run_id, req.run_id);
    assert_eq!(done[0].claim.trigger, "manual");
    assert_all_succeeded(&done);
    assert_eq!(job(&world.store, world.alice.id, Contacts).next_due_at, None);
    clock.set(start + Duration::days(60));
    assert!(sched.run_pending().await.unwrap().is_empty());

    // Turning auto-sync on schedules from the last run: one minute after it (± 6 s), so due now.
    let now = clock.now();
    set_schedule(&world, &world.alice, Contacts, true, SyncSchedule::IntervalMinutes(1), now);
    let done = sched.run_pending().await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].claim.trigger, "schedule");
    let next = job(&world.store, world.alice.id, Contacts).next_due_at.expect("scheduled");
    assert!(next >= now + Duration::seconds(54) && next <= now + Duration::seconds(66), "{next}");
    // ...and turning it off again stops them.
    clock.set(now + Duration::seconds(10));
    set_schedule(&world, &world.alice, Contacts, false, SyncSchedule::IntervalMinutes(1), clock.now());
    clock.set(now + Duration::hours(2));
    assert!(sched.run_pending().await.unwrap().is_empty());
    assert_eq!(runs_of(&world.store, world.alice.id, Contacts).len(), 2);
});

db_test!(async fn a_manual_start_during_a_run_queues_exactly_one_follow_up(db) {
    let world = SyncWorld::new(db).await;
    world.crm_contact("Ann", "Able", "ann@clients.test");
    let (sched, _clock) = clocked(&world, Utc::now(), JitterPolicy::none());
    let alice = world.alice.id;

    // Two starts while nothing runs: one queued run.
    let first = sched.request(alice, Contacts, RunOptions::default()).await.unwrap();
    assert!(!first.coalesced);
    let again = sched.request(alice, Contacts, RunOptions::default()).await.unwrap();
    assert!(again.coalesced);
    assert_eq!(again.run_id, first.run_id);

    // The run is claimed (it is "running" under this worker's lease)...
    let claims = sched.claim(4).await.unwrap();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0].run_id, first.run_id);
    // ...a second worker finds nothing to claim: runs of one (user, kind) never overlap...
    let other = Scheduler::new(
        engine_with_clock(&world, sched.engine().clock().clone()),
        config("other-worker", JitterPolicy::none()),
    );
    assert!(other.claim(4).await.unwrap().is_empty());
    // ...and starts during the run queue one follow-up, not two, not zero.
    let during = sched.request(alice, Contacts, RunOptions::default()).await.unwrap();
    assert!(!during.coalesced);
    assert_eq!(during.running_run_id, Some(first.run_id));
    assert_ne!(during.run_id, first.run_id);
    for _ in 0..3 {
        let r = sched.request(alice, Contacts, RunOptions::default()).await.unwrap();
        assert!(r.coalesced);
        assert_eq!(r.run_id, during.run_id);
    }
    assert!(other.claim(4).await.unwrap().is_empty(), "the follow-up waits for the running run");

    let done = sched.carry_out(claims.into_iter().next().unwrap()).await;
    assert_all_succeeded(std::slice::from_ref(&done));
    let follow = other.run_pending().await.unwrap();
    assert_eq!(follow.len(), 1);
    assert_eq!(follow[0].claim.run_id, during.run_id);
    assert_all_succeeded(&follow);
    assert!(sched.run_pending().await.unwrap().is_empty());
    assert!(other.run_pending().await.unwrap().is_empty());

    let runs = runs_of(&world.store, alice, Contacts);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    assert!(runs.iter().all(|r| r.trigger == "manual" && r.state == "succeeded"));
    assert_eq!(world.google_contacts().len(), 1);
});

db_test!(async fn the_running_scheduler_picks_a_start_up_at_once_and_coalesces_starts_during_a_run(db) {
    let world = SyncWorld::new(db).await;
    for i in 0..3 {
        world.crm_contact("Client", &format!("N{i}"), &format!("c{i}@clients.test"));
    }
    // Every People call of Alice takes a while, so the run is still going when we start again.
    world.emu.emulator().set_faults(vec![FaultRule {
        status: None,
        times: None,
        ..FaultRule::error("people.*", 500, 0).for_user("alice@example.com").delay_ms(150)
    }]);
    let mut cfg = config("live-worker", JitterPolicy::none());
    cfg.tick = std::time::Duration::from_secs(3600); // only a wake can start the run quickly
    let sched = Scheduler::new(engine_with_clock(&world, Arc::new(SystemClock)), cfg);
    let handle = sched.handle();
    let store = world.store.clone();
    let alice = world.alice.id;
    let task = tokio::spawn(sched.run());
    // The loop has looked once at start; now only a wake makes it claim.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;

    let first = crmsync::scheduler::request_run(&store, Utc::now(), alice, Contacts, RunOptions::default()).await.unwrap();
    handle.wake();
    eventually(20, "the first run to start", || {
        let j = job(&store, alice, Contacts);
        (j.running_run_id == Some(first.run_id)).then_some(())
    })
    .await;
    let mut follow_ups = Vec::new();
    for _ in 0..4 {
        follow_ups.push(crmsync::scheduler::request_run(&store, Utc::now(), alice, Contacts, RunOptions::default()).await.unwrap());
        handle.wake();
    }
    assert!(!follow_ups[0].coalesced);
    assert!(follow_ups[1..].iter().all(|r| r.coalesced && r.run_id == follow_ups[0].run_id));
    let second = follow_ups[0].run_id;
    eventually(30, "the follow-up run to finish", || {
        let runs = runs_of(&store, alice, Contacts);
        runs.iter().find(|r| r.id == second && r.finished_at.is_some()).map(|_| ())
    })
    .await;
    handle.shutdown();
    task.await.unwrap().unwrap();
    world.emu.emulator().clear_faults();

    let runs = runs_of(&store, alice, Contacts);
    assert_eq!(runs.len(), 2, "{runs:#?}");
    let (r2, r1) = (&runs[0], &runs[1]);
    assert_eq!((r1.id, r2.id), (first.run_id, second));
    assert!(runs.iter().all(|r| r.state == "succeeded"), "{runs:#?}");
    assert!(r2.started_at >= r1.finished_at, "the follow-up overlapped the first run");
    assert_eq!(world.google_contacts().len(), 3);
});

db_test!(async fn a_run_whose_lease_is_taken_over_stops_between_steps(db) {
    let world = SyncWorld::new(db).await;
    for i in 0..3 {
        world.crm_contact("Client", &format!("N{i}"), &format!("c{i}@clients.test"));
    }
    world.emu.emulator().set_faults(vec![FaultRule {
        status: None,
        times: None,
        ..FaultRule::error("people.*", 500, 0)
            .for_user("alice@example.com")
            .delay_ms(300)
    }]);
    let mut cfg = config("slow-worker", JitterPolicy::none());
    cfg.lease = Duration::milliseconds(600); // renewed every 200 ms
    let sched = Scheduler::new(engine_with_clock(&world, Arc::new(SystemClock)), cfg);
    let req = sched
        .request(world.alice.id, Contacts, RunOptions::default())
        .await
        .unwrap();
    let claim = sched.claim(1).await.unwrap().pop().expect("claimed");
    assert_eq!(claim.run_id, req.run_id);
    let store = world.store.clone();
    let alice = world.alice.id;
    let running = tokio::spawn(async move { sched.carry_out(claim).await });
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    // Another worker holds the lease now (as after an expiry and a takeover).
    store
        .write(|c| {
            use crmsync_schema::diesel::prelude::*;
            use crmsync_schema::schema::sync_jobs;
            crmsync_schema::diesel::update(
                sync_jobs::table
                    .filter(sync_jobs::user_id.eq(alice.to_string()))
                    .filter(sync_jobs::kind.eq("contacts")),
            )
            .set(sync_jobs::lease_owner.eq("thief"))
            .execute(c)?;
            Ok(())
        })
        .unwrap();
    let done = running.await.unwrap();
    assert!(matches!(done.outcome, Outcome::LeaseLost), "{:?}", done.outcome);
    world.emu.emulator().clear_faults();
    // The stopped worker did not give the job back: it is the thief's.
    let j = job(&store, alice, Contacts);
    assert_eq!(j.lease_owner.as_deref(), Some("thief"));
    assert_eq!(j.running_run_id, Some(req.run_id));
});

db_test!(async fn shutdown_lets_a_run_in_progress_finish_within_the_grace_period(db) {
    let world = SyncWorld::new(db).await;
    for i in 0..3 {
        world.crm_contact("Client", &format!("N{i}"), &format!("c{i}@clients.test"));
    }
    world.emu.emulator().set_faults(vec![FaultRule {
        status: None,
        times: None,
        ..FaultRule::error("people.*", 500, 0).for_user("alice@example.com").delay_ms(150)
    }]);
    let sched = Scheduler::new(
        engine_with_clock(&world, Arc::new(SystemClock)),
        config("graceful-worker", JitterPolicy::none()),
    );
    let handle = sched.handle();
    let store = world.store.clone();
    let alice = world.alice.id;
    let task = tokio::spawn(sched.run());
    let req = crmsync::scheduler::request_run(&store, Utc::now(), alice, Contacts, RunOptions::default()).await.unwrap();
    handle.wake();
    eventually(20, "the run to start", || {
        (job(&store, alice, Contacts).running_run_id == Some(req.run_id)).then_some(())
    })
    .await;
    // Stop while the run is under way: no new claims, but this run is carried to its end.
    handle.shutdown();
    task.await.unwrap().unwrap();
    world.emu.emulator().clear_faults();
    let runs = runs_of(&store, alice, Contacts);
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].state, "succeeded", "{runs:#?}");
    let j = job(&store, alice, Contacts);
    assert_eq!(j.lease_owner, None, "the lease is released: {j:?}");
    assert_eq!(j.running_run_id, None);
    assert_eq!(world.google_contacts().len(), 3);
});

db_test!(async fn shutdown_past_the_grace_period_gives_the_run_back_for_another_worker_at_once(db) {
    let world = SyncWorld::new(db).await;
    for i in 0..3 {
        world.crm_contact("Client", &format!("N{i}"), &format!("c{i}@clients.test"));
    }
    // Every People call of Alice is slow: the run cannot finish within a 100 ms grace period.
    world.emu.emulator().set_faults(vec![FaultRule {
        status: None,
        times: None,
        ..FaultRule::error("people.*", 500, 0).for_user("alice@example.com").delay_ms(400)
    }]);
    let mut cfg = config("leaving-worker", JitterPolicy::none());
    cfg.shutdown_grace = std::time::Duration::from_millis(100);
    // A long lease: only giving it back lets the next worker in before a minute has passed.
    cfg.lease = Duration::seconds(60);
    let sched = Scheduler::new(engine_with_clock(&world, Arc::new(SystemClock)), cfg);
    let handle = sched.handle();
    let store = world.store.clone();
    let alice = world.alice.id;
    let task = tokio::spawn(sched.run());
    let req = crmsync::scheduler::request_run(&store, Utc::now(), alice, Contacts, RunOptions::default()).await.unwrap();
    handle.wake();
    eventually(20, "the run to start", || {
        (job(&store, alice, Contacts).running_run_id == Some(req.run_id)).then_some(())
    })
    .await;
    handle.shutdown();
    task.await.unwrap().unwrap();
    let stopped_at = Utc::now();
    world.emu.emulator().clear_faults();
    let j = job(&store, alice, Contacts);
    assert_eq!(j.running_run_id, Some(req.run_id), "the unfinished run stays on the job: {j:?}");
    assert!(
        j.lease_expires_at.is_some_and(|t| t <= stopped_at),
        "the lease was given back, not left to run out: {j:?}"
    );
    let unfinished = runs_of(&store, alice, Contacts);
    assert_eq!(unfinished.len(), 1);
    assert!(unfinished[0].finished_at.is_none(), "{unfinished:#?}");

    // The next worker claims it at once and carries the same run out, without duplicates.
    let next = Scheduler::new(
        engine_with_clock(&world, Arc::new(SystemClock)),
        config("next-worker", JitterPolicy::none()),
    );
    let claim = next.claim(1).await.unwrap().pop().expect("the given-back run is claimed at once");
    assert_eq!(claim.run_id, req.run_id);
    let done = next.carry_out(claim).await;
    assert_all_succeeded(std::slice::from_ref(&done));
    let runs = runs_of(&store, alice, Contacts);
    assert_eq!(runs.len(), 1, "{runs:#?}");
    assert_eq!(runs[0].state, "succeeded");
    assert_eq!(runs[0].worker.as_deref(), Some("next-worker"));
    let mut emails = crate::sync_support::emails_of(&world.google_contacts());
    emails.sort();
    assert_eq!(emails, ["c0@clients.test", "c1@clients.test", "c2@clients.test"]);
});
