//! Scale-out benchmark (SPEC section 8, last bullet): scheduled runs per minute with 1, 2 and 4
//! `crmsync worker` processes sharing one PostgreSQL, for 500 users (contacts and activities, so
//! 1,000 runs per round) with small changes, against the in-process Google emulator.
//!
//! Each round: one contact and one activity per user change in the CRM, every job is made due,
//! then N workers (concurrency 4 each) drain them; the round ends when every job has run.
//! Prints runs per minute, the speed-up over one worker, and where scaling stops.
//!
//! Run: `bash scripts/bench-scheduler` (starts a throwaway PostgreSQL), or with a server of your
//! own: `CRMSYNC_BENCH_POSTGRES_URL=postgres://... cargo bench -p crmsync --bench scheduler`.
//! `CRMSYNC_BENCH_USERS` and `CRMSYNC_BENCH_WORKERS` (e.g. `1,2,4`) change the shape;
//! `CRMSYNC_BENCH_CHANGES=none` measures runs with nothing to do. It also prints the CPU each
//! component (workers, PostgreSQL, emulator) spends per run, to show what limits scaling.

// A measurement program run by hand: a failed setup step stops it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration, Utc};
use crmsync_emulator::EmulatorServer;
use crmsync_engine::ids::SyncKind;
use crmsync_engine::model::{
    ActivityData, ActivityStatus, ActivityTime, ContactData, Email, EmailKind, SyncSchedule,
    TagVisibility,
};
use crmsync_schema::diesel::connection::SimpleConnection;
use crmsync_schema::diesel::prelude::*;
use crmsync_schema::secrets::{generate_key, SecretBox};
use crmsync_schema::settings::NewSyncSettings;
use crmsync_schema::tags::NewTag;
use crmsync_schema::users::NewUser;
use crmsync_schema::{
    activities, connections, contacts, jobs, settings, tags, users, SecretKeySource, Store,
    StoreOptions,
};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_crmsync");
const SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/contacts",
    "https://www.googleapis.com/auth/calendar.events",
];
const CONCURRENCY: &str = "4";

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> BenchResult<()> {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let admin_url = std::env::var("CRMSYNC_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("CRMSYNC_TEST_POSTGRES_URL"))
        .map_err(|_| {
            "set CRMSYNC_BENCH_POSTGRES_URL to a PostgreSQL server (postgres://USER@HOST:PORT/postgres), \
             or run `bash scripts/bench-scheduler`, which starts a throwaway one"
        })?;
    let users_n: usize = env_or("CRMSYNC_BENCH_USERS", 500);
    let worker_counts: Vec<usize> = std::env::var("CRMSYNC_BENCH_WORKERS")
        .unwrap_or_else(|_| "1,2,4".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(bench(&admin_url, users_n, &worker_counts))
}

async fn bench(admin_url: &str, users_n: usize, worker_counts: &[usize]) -> BenchResult<()> {
    let database = format!("crmsync_bench_{}", uuid::Uuid::new_v4().simple());
    {
        let mut admin = PgConnection::establish(admin_url)?;
        admin.batch_execute(&format!("CREATE DATABASE {database}"))?;
    }
    let mut url = url::Url::parse(admin_url)?;
    url.set_path(&format!("/{database}"));
    let db_url = url.to_string();
    let result = run_rounds(&db_url, users_n, worker_counts).await;
    if let Ok(mut admin) = PgConnection::establish(admin_url) {
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"));
    }
    result
}

async fn run_rounds(db_url: &str, users_n: usize, worker_counts: &[usize]) -> BenchResult<()> {
    let key = generate_key();
    let store = Store::open_with(
        db_url,
        StoreOptions {
            max_connections: Some(4),
            secret_key: SecretKeySource::Key(SecretBox::from_base64(&key)?),
        },
    )?;
    store.run_migrations()?;
    let emu = EmulatorServer::start_local().await?;
    let sa = emu
        .emulator()
        .create_service_account("example.com", emu.base_url());
    let client_id = sa["client_id"].as_str().unwrap_or_default().to_string();
    emu.emulator()
        .authorize_delegation(&client_id, &SCOPES.map(String::from));
    let sa_json = sa.to_string();
    store.write(|c| {
        connections::put_service_account(&store, c, "example.com", &sa_json, Utc::now()).map(|_| ())
    })?;

    eprintln!("seeding {users_n} users (3 tagged contacts and 1 activity each)...");
    let mut seeded = Vec::new();
    for i in 0..users_n {
        let email = format!("user{i:04}@example.com");
        emu.emulator().create_user(&email)?;
        seeded.push(seed(&store, &email)?);
    }
    let logs = tempfile::tempdir()?;
    let google = emu.base_url().to_string();
    let runs_per_round = users_n * 2;

    eprintln!("initial sync (not measured)...");
    round(
        &store,
        db_url,
        &key,
        &google,
        logs.path(),
        4,
        runs_per_round,
        "warmup",
    )
    .await?;

    println!();
    // CRMSYNC_BENCH_CHANGES=none: runs with nothing to do (the scheduler's and an idle run's cost).
    let changes = std::env::var("CRMSYNC_BENCH_CHANGES").unwrap_or_default() != "none";
    println!(
        "scheduled runs per minute, {users_n} users x 2 kinds = {runs_per_round} runs per round, {}",
        if changes {
            "small changes (one contact and one activity per user)"
        } else {
            "nothing changed"
        }
    );
    println!("(each worker: a separate `crmsync worker` process, concurrency {CONCURRENCY}; one PostgreSQL; emulator in the bench process)");
    println!(
        "{:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>12} {:>10}",
        "workers", "runs", "failed", "seconds", "runs/min", "speed-up", "ms per run", "in flight"
    );
    println!("(runs/min counts succeeded runs only; a failed run is not throughput)");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut cpu_lines = Vec::new();
    let mut cpu_rounds: Vec<(f64, f64)> = Vec::new();
    let mut results: Vec<(usize, f64)> = Vec::new();
    for (r, &w) in worker_counts.iter().enumerate() {
        if changes {
            change_a_little(&store, &seeded, r)?;
        }
        let m = round(
            &store,
            db_url,
            &key,
            &google,
            logs.path(),
            w,
            runs_per_round,
            &format!("w{w}"),
        )
        .await?;
        let per_min = m.succeeded as f64 / m.secs * 60.0;
        let base = results.first().map(|(_, b)| *b).unwrap_or(per_min);
        println!(
            "{w:>8} {:>8} {:>8} {:>10.2} {per_min:>10.0} {:>8.2}x {:>12.0} {:>10.1}",
            m.succeeded,
            m.failed,
            m.secs,
            per_min / base,
            m.avg_run_ms,
            m.in_flight
        );
        let per_run = |x: f64| x * 1000.0 / runs_per_round as f64;
        let ours = m.cpu.workers + m.cpu.postgres + m.cpu.emulator;
        cpu_lines.push(format!(
            "{w:>8} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {:>11.0}% {:>11.0}%",
            per_run(m.cpu.workers),
            per_run(m.cpu.postgres),
            per_run(m.cpu.emulator),
            per_run(ours),
            100.0 * m.cpu.machine / m.secs / cores as f64,
            100.0 * (m.cpu.machine - ours).max(0.0) / m.secs / cores as f64,
        ));
        results.push((w, per_min));
        cpu_rounds.push((per_run(ours), m.cpu.machine / m.secs / cores as f64));
    }
    println!();
    println!("CPU milliseconds per run by component, and how busy the machine's {cores} cores were during the");
    println!("round (\"others\": processes outside this benchmark, e.g. a compiler, skewing the figures):");
    println!(
        "{:>8} {:>12} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "workers", "workers", "postgres", "emulator", "total", "machine", "others"
    );
    for l in &cpu_lines {
        println!("{l}");
    }
    let mut stop = None;
    for pair in results.windows(2) {
        let (w0, r0) = pair[0];
        let (w1, r1) = pair[1];
        let ideal = r0 * w1 as f64 / w0 as f64;
        if r1 < 0.75 * ideal {
            stop = Some((w0, w1, r1 / r0));
            break;
        }
    }
    match stop {
        Some((w0, w1, gain)) => println!(
            "scaling stops between {w0} and {w1} workers ({gain:.2}x for {:.1}x the workers) on this machine ({cores} CPU cores shared by the workers, PostgreSQL and the emulator)",
            w1 as f64 / w0 as f64
        ),
        None => println!("scaling held up to {} workers on this machine ({cores} CPU cores)", worker_counts.last().copied().unwrap_or(1)),
    }
    if let (Some((cpu_ms, _)), Some((_, busy))) = (cpu_rounds.first(), cpu_rounds.last()) {
        if *cpu_ms > 0.0 {
            println!(
                "a run costs about {cpu_ms:.0} CPU-ms in total (worker + PostgreSQL + emulator), so {cores} cores allow \
                 at most ~{:.0} runs/min here; the machine was {:.0}% busy in the last round{}",
                cores as f64 * 60_000.0 / cpu_ms,
                busy * 100.0,
                if *busy > 0.85 { ": the CPU is the bottleneck, not the database's locking" } else { "" }
            );
        }
    }
    emu.shutdown().await;
    Ok(())
}

struct Seeded {
    contact: crmsync_engine::ids::ContactId,
    activity: crmsync_engine::ids::ActivityId,
}

fn seed(store: &Store, email: &str) -> BenchResult<Seeded> {
    let now = Utc::now();
    Ok(store.write(|c| {
        let user = users::create_user(
            c,
            &NewUser {
                external_id: None,
                email: email.into(),
                display_name: email.into(),
                google_alias: None,
                time_zone: Some("UTC".into()),
            },
            now,
        )?;
        let tag = tags::create_tag(
            c,
            &NewTag {
                external_id: None,
                name: format!("Clients of {email}"),
                visibility: TagVisibility::Private,
                owner_user_id: Some(user.id),
            },
            now,
        )?;
        for kind in SyncKind::ALL {
            settings::put_sync_settings(
                c,
                &NewSyncSettings {
                    user_id: user.id,
                    kind,
                    auto_sync: true,
                    schedule: SyncSchedule::IntervalMinutes(60),
                    tag_id: (kind == SyncKind::Contacts).then_some(tag.id),
                    synchronize_from: None,
                    trigger_words: vec![],
                },
                now,
            )?;
        }
        let mut first = None;
        for n in 0..3 {
            let data = ContactData {
                given_name: format!("Client{n}"),
                family_name: email.into(),
                emails: vec![Email {
                    address: format!("c{n}.{email}"),
                    kind: EmailKind::Work,
                    primary: true,
                }],
                ..Default::default()
            };
            let c0 = contacts::create_contact(
                c,
                &data,
                &[tag.id],
                None,
                crmsync_schema::changes::Origin::Api,
                now,
            )?;
            first.get_or_insert(c0.id);
        }
        let start = now + Duration::days(1);
        let activity = activities::create_activity(
            c,
            &ActivityData {
                title: format!("Meeting of {email}"),
                time: ActivityTime::Timed {
                    start,
                    end: start + Duration::minutes(30),
                },
                time_zone: "UTC".into(),
                location: None,
                notes: None,
                status: ActivityStatus::Planned,
                display_in_calendar: true,
                organizer_user_id: user.id,
                participants: vec![],
            },
            None,
            crmsync_schema::changes::Origin::Api,
            now,
        )?;
        Ok(Seeded {
            contact: first.unwrap_or_else(|| crmsync_engine::ids::ContactId(uuid::Uuid::nil())),
            activity: activity.id,
        })
    })?)
}

/// One contact and one activity per user change (a small change for each run to carry).
fn change_a_little(store: &Store, seeded: &[Seeded], round: usize) -> BenchResult<()> {
    let now = Utc::now();
    for s in seeded {
        store.write(|c| {
            let mut data = contacts::get_contact(c, s.contact)?.data;
            data.job_title = Some(format!("Buyer {round}"));
            contacts::update_contact(
                c,
                s.contact,
                &data,
                crmsync_schema::changes::Origin::Api,
                now,
            )?;
            let mut a = activities::get_activity(c, s.activity)?.data;
            a.location = Some(format!("Room {round}"));
            activities::update_activity(
                c,
                s.activity,
                &a,
                crmsync_schema::changes::Origin::Api,
                now,
            )?;
            Ok(())
        })?;
    }
    Ok(())
}

fn park_all_jobs(store: &Store) -> BenchResult<()> {
    let now = Utc::now();
    let far = now + Duration::days(365);
    store.write(|c| {
        for u in jobs::unscheduled(c, 10_000)? {
            jobs::set_schedule(
                c,
                u.settings.user_id,
                u.settings.kind,
                Some(far),
                u.settings.updated_at,
                u.last_run_at,
                now,
            )?;
        }
        use crmsync_schema::schema::sync_jobs;
        crmsync_schema::diesel::update(sync_jobs::table)
            .set(sync_jobs::next_due_at.eq(Some(far.naive_utc())))
            .execute(c)?;
        Ok(())
    })?;
    Ok(())
}

/// Starts `workers` processes, makes every job due, and returns the seconds until all ran.
#[allow(clippy::too_many_arguments)]
async fn round(
    store: &Store,
    db_url: &str,
    key: &str,
    google: &str,
    logs: &std::path::Path,
    workers: usize,
    expected: usize,
    label: &str,
) -> BenchResult<Round> {
    // Nothing is due while the workers start: every job (created now if new) waits far ahead,
    // scheduled from its current settings so the workers' reconciliation leaves it alone.
    park_all_jobs(store)?;
    let mut procs = Vec::new();
    for n in 0..workers {
        let log = std::fs::File::create(logs.join(format!("{label}-{n}.log")))?;
        procs.push(Worker(
            Command::new(BIN)
                .args([
                    "worker",
                    "--worker-id",
                    &format!("{label}-{n}"),
                    "--concurrency",
                    CONCURRENCY,
                    "--tick-ms",
                    "200",
                    "--max-jitter-secs",
                    "0",
                    "--google-endpoint",
                    google,
                ])
                .env("DATABASE_URL", db_url)
                .env("CRMSYNC_SECRET_KEY", key)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()?,
        ));
    }
    // Let the workers start (connect, check migrations) before the clock starts.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let start_at = Utc::now();
    store.write(|c| {
        use crmsync_schema::schema::sync_jobs;
        crmsync_schema::diesel::update(sync_jobs::table)
            .set(sync_jobs::next_due_at.eq(Some(start_at.naive_utc())))
            .execute(c)?;
        Ok(())
    })?;
    let t0 = Instant::now();
    let cpu0 = CpuSample::take(&procs);
    let since = crmsync_schema::util::to_db_time(start_at);
    loop {
        let done = store.read(|c| {
            Ok(jobs::all_jobs(c)?
                .iter()
                .filter(|j| {
                    j.lease_owner.is_none() && j.last_run_at.is_some_and(|t| t.naive_utc() >= since)
                })
                .count())
        })?;
        if done >= expected {
            break;
        }
        if t0.elapsed() > std::time::Duration::from_secs(900) {
            return Err(
                format!("round {label}: only {done} of {expected} runs after 15 minutes").into(),
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = CpuSample::take(&procs).since(&cpu0);
    drop(procs);
    let rows: Vec<(
        String,
        Option<chrono::NaiveDateTime>,
        Option<chrono::NaiveDateTime>,
    )> = store.read(|c| {
        use crmsync_schema::schema::sync_runs;
        Ok(sync_runs::table
            .filter(sync_runs::started_at.ge(since))
            .select((
                sync_runs::state,
                sync_runs::started_at,
                sync_runs::finished_at,
            ))
            .load(c)?)
    })?;
    let succeeded = rows.iter().filter(|(st, _, _)| st == "succeeded").count();
    let durations: Vec<f64> = rows
        .into_iter()
        .filter_map(|(_, a, b)| Some((b? - a?).num_microseconds()? as f64 / 1000.0))
        .collect();
    let avg_run_ms = durations.iter().sum::<f64>() / durations.len().max(1) as f64;
    let in_flight = durations.iter().sum::<f64>() / 1000.0 / secs;
    let failed = store.read(|c| {
        Ok(jobs::all_jobs(c)?
            .iter()
            .filter(|j| j.last_error.is_some())
            .count())
    })?;
    if failed > 0 {
        eprintln!("warning: {failed} jobs report an error after round {label}");
    }
    Ok(Round {
        succeeded,
        failed: expected.saturating_sub(succeeded),
        secs,
        avg_run_ms,
        in_flight,
        cpu,
    })
}

/// What one round measured.
struct Round {
    /// Runs of this round that succeeded (the throughput counts only these).
    succeeded: usize,
    /// Runs of this round that did not succeed.
    failed: usize,
    secs: f64,
    /// Mean duration of one run (start to finish).
    avg_run_ms: f64,
    /// Runs in progress on average (total run time / elapsed).
    in_flight: f64,
    /// CPU seconds used during the round.
    cpu: Cpu,
}

/// CPU seconds by component (from /proc; Linux only, zeros elsewhere).
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    workers: f64,
    postgres: f64,
    /// This process: the emulator (and the bench's own polling).
    emulator: f64,
    /// The whole machine (every process), busy CPU seconds.
    machine: f64,
}

struct CpuSample {
    workers: f64,
    postgres: std::collections::HashMap<u32, f64>,
    this: f64,
    machine: f64,
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a process, and its command name.
fn proc_cpu(pid: &str) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / clock_ticks()))
}

fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return 0.0;
    };
    let v: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...: busy = all but idle and iowait.
    let busy: f64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, x)| x)
        .sum();
    busy / clock_ticks()
}

impl CpuSample {
    fn take(workers: &[Worker]) -> CpuSample {
        let workers_cpu = workers
            .iter()
            .filter_map(|w| proc_cpu(&w.0.id().to_string()).map(|(_, c)| c))
            .sum();
        let mut postgres = std::collections::HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if let (Ok(pid), Some((comm, c))) = (name.parse::<u32>(), proc_cpu(&name)) {
                    if comm.starts_with("postgres") {
                        postgres.insert(pid, c);
                    }
                }
            }
        }
        CpuSample {
            workers: workers_cpu,
            postgres,
            this: proc_cpu("self").map(|(_, c)| c).unwrap_or(0.0),
            machine: machine_busy(),
        }
    }

    fn since(&self, start: &CpuSample) -> Cpu {
        let postgres = self
            .postgres
            .iter()
            .map(|(pid, c)| c - start.postgres.get(pid).copied().unwrap_or(0.0))
            .sum();
        Cpu {
            workers: self.workers - start.workers,
            postgres,
            emulator: self.this - start.this,
            machine: self.machine - start.machine,
        }
    }
}
