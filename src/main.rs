//! The `crmsync` binary: parses the command line and runs the command.

use anyhow::Context;
use clap::Parser;
use crmsync::api::AppState;
use crmsync::cli::{
    redact_url, AdminTokenCommand, Cli, Command, DemoArgs, EmulatorArgs, SecretKeyCommand,
    ServeArgs, SyncArgs,
};
use crmsync::clock::{SharedClock, SystemClock};
use crmsync_schema::{admin_tokens, key_check, users, SecretKeySource, Store, StoreOptions};
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(run(cli))
}

/// Opens the database with the key for secrets at rest from `CRMSYNC_SECRET_KEY` (a malformed
/// key is refused here, with its own message, before the database is touched).
fn open_store(url: &str) -> anyhow::Result<Store> {
    let secret_key = match crmsync_schema::secrets::SecretBox::from_env() {
        Ok(Some(key)) => SecretKeySource::Key(key),
        Ok(None) => SecretKeySource::None,
        Err(e) => anyhow::bail!("{e}"),
    };
    let options = StoreOptions {
        secret_key,
        ..StoreOptions::default()
    };
    Store::open_with(url, options)
        .with_context(|| format!("cannot open the database {}", redact_url(url)))
}

/// Opens and migrates the database for a long-running command (`serve`, `worker`, `sync`), and
/// refuses to go on when the secret key cannot read the secrets stored in it: found at startup,
/// not at the first sync or the first OAuth callback.
fn open_checked_store(url: &str, now: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Store> {
    let store = open_store(url)?;
    store.run_migrations()?;
    match key_check::verify_secret_key(&store, now) {
        Ok(key_check::KeyStatus::Verified) => {
            tracing::info!("CRMSYNC_SECRET_KEY reads this database's secrets")
        }
        Ok(key_check::KeyStatus::NoKeyNoSecrets) => tracing::warn!(
            "CRMSYNC_SECRET_KEY is not set: a service-account key, an OAuth client or a per-user \
             connection cannot be stored until it is (generate one with `crmsync secret-key generate`, \
             set it, restart)"
        ),
        Err(e) => anyhow::bail!("refusing to start: {e}"),
    }
    Ok(store)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let clock: SharedClock = Arc::new(SystemClock);
    match cli.command {
        Command::Serve(ref args) => serve(&cli, args, clock).await,
        Command::Worker(ref args) => worker(&cli, args, clock).await,
        Command::Migrate => {
            let store = open_store(&cli.database_url)?;
            let applied = store.run_migrations()?;
            if applied.is_empty() {
                println!("the database is up to date");
            } else {
                println!(
                    "applied {} migration(s): {}",
                    applied.len(),
                    applied.join(", ")
                );
            }
            Ok(())
        }
        Command::Status(ref args) => status(&cli.database_url, args, clock.now()),
        Command::AdminToken(AdminTokenCommand::Create { label }) => {
            let store = open_store(&cli.database_url)?;
            store.run_migrations()?;
            let now = clock.now();
            let (record, token) =
                store.write(|c| admin_tokens::create_admin_token(c, &label, now))?;
            eprintln!(
                "created admin token {} ({}); it is shown only once:",
                record.id, record.label
            );
            println!("{token}");
            Ok(())
        }
        Command::AdminToken(AdminTokenCommand::List) => {
            let store = open_store(&cli.database_url)?;
            store.run_migrations()?;
            for t in store.read(admin_tokens::list_admin_tokens)? {
                let state = match t.revoked_at {
                    Some(at) => format!("revoked {at}"),
                    None => "active".to_string(),
                };
                let used = t
                    .last_used_at
                    .map_or("never used".to_string(), |u| format!("last used {u}"));
                println!(
                    "{}  {}  created {}  {used}  {state}",
                    t.id, t.label, t.created_at
                );
            }
            Ok(())
        }
        Command::AdminToken(AdminTokenCommand::Revoke { id }) => {
            let store = open_store(&cli.database_url)?;
            store.run_migrations()?;
            let now = clock.now();
            store.write(|c| admin_tokens::revoke_admin_token(c, id, now))?;
            println!("revoked admin token {id}");
            Ok(())
        }
        Command::Sync(ref args) => sync(&cli, args, clock).await,
        Command::Emulator(args) => emulator(args).await,
        Command::Demo(args) => demo(args, clock).await,
        Command::Bench(crmsync::cli::BenchCommand::Contacts { contacts, database }) => {
            crmsync::bench::contacts(contacts, database.as_deref()).await
        }
        Command::Bench(crmsync::cli::BenchCommand::Activities {
            activities,
            quota,
            database,
        }) => crmsync::bench::activities(activities, quota, database.as_deref()).await,
        Command::Bench(crmsync::cli::BenchCommand::Push {
            edits,
            debounce_ms,
            database,
        }) => crmsync::bench_push::run(edits, debounce_ms, database.as_deref()).await,
        Command::Bench(crmsync::cli::BenchCommand::Integration { contacts, database }) => {
            crmsync::bench_integration::run(contacts, database.as_deref()).await
        }
        Command::Bench(crmsync::cli::BenchCommand::Soak {
            minutes,
            clients,
            users,
            seed,
            no_faults,
        }) => {
            let ok = crmsync::bench_soak::run(crmsync::bench_soak::SoakOptions {
                minutes,
                clients,
                users,
                seed,
                faults: !no_faults,
            })
            .await?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Bench(crmsync::cli::BenchCommand::Webhooks { changes, database }) => {
            crmsync::bench::webhooks(changes, database.as_deref()).await
        }
        Command::SecretKey(SecretKeyCommand::Generate) => {
            println!("{}", crmsync_schema::secrets::generate_key());
            eprintln!("set it as CRMSYNC_SECRET_KEY; keep it safe: stored secrets cannot be read without it");
            Ok(())
        }
    }
}

async fn serve(cli: &Cli, args: &ServeArgs, clock: SharedClock) -> anyhow::Result<()> {
    let database_url = &cli.database_url;
    let store = open_checked_store(database_url, clock.now())?;
    store_push_settings(&store, &args.scheduler, clock.now()).await?;
    let tokens = store.read(admin_tokens::list_admin_tokens)?;
    if tokens.iter().all(|t| t.revoked_at.is_some()) {
        tracing::warn!("no admin token exists yet: create one with `crmsync admin-token create`");
    }
    let listener = crmsync::server::bind(args.listen).await?;
    tracing::info!(
        listen = %args.listen,
        database = %redact_url(database_url),
        "serving the API at http://{}/api/v1",
        args.listen
    );
    let google = google_settings(cli);
    // The metrics recorder, before the scheduler carries out (and counts) anything.
    crmsync::telemetry::handle();
    let mut state = AppState::new(store.clone(), clock.clone()).with_google(google.endpoints());
    let clock_for_webhooks = clock.clone();
    let scheduler = if args.no_scheduler {
        tracing::info!(
            "no scheduler in this process (--no-scheduler): run `crmsync worker` to carry runs out"
        );
        None
    } else {
        let engine = crmsync::app::engine(&store, clock, &google, Default::default());
        state = state.with_engine(engine.clone());
        let scheduler = args
            .scheduler
            .with_push_channels(crmsync::scheduler::Scheduler::new(
                engine,
                args.scheduler.config(),
            ));
        state = state.with_scheduler(scheduler.handle());
        Some((scheduler.handle(), tokio::spawn(scheduler.run())))
    };
    // Webhook delivery (also with --no-scheduler; off with --no-webhook-delivery).
    let deliveries = crmsync::webhooks::spawn(
        &store,
        clock_for_webhooks,
        &args.webhooks,
        &args.scheduler.config().worker_id,
    )?;
    let handle = scheduler.as_ref().map(|(h, _)| h.clone());
    let delivery_handle = deliveries.as_ref().map(|(h, _)| h.clone());
    let shutdown = async move {
        crmsync::server::shutdown_signal().await;
        if let Some(h) = handle {
            h.shutdown();
        }
        if let Some(h) = delivery_handle {
            h.shutdown();
        }
    };
    let served = crmsync::server::serve(state, listener, shutdown).await;
    if let Some((handle, task)) = scheduler {
        handle.shutdown();
        task.await.context("the scheduler task failed")??;
    }
    if let Some((handle, task)) = deliveries {
        handle.shutdown();
        task.await.context("the webhook delivery task failed")??;
    }
    served.context("the server failed")?;
    Ok(())
}

/// Awaits `run` and, on a terminal, shows the progress of (user, kind)'s running run on stderr
/// (records handled of those read so far), as the admin page does.
async fn with_progress<T>(
    store: &crmsync_schema::Store,
    user: crmsync_engine::ids::UserId,
    kind: crmsync_engine::ids::SyncKind,
    run: impl std::future::Future<Output = T>,
) -> T {
    use std::io::{IsTerminal, Write};
    if !std::io::stderr().is_terminal() {
        return run.await;
    }
    tokio::pin!(run);
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    let mut shown = false;
    loop {
        tokio::select! {
            out = &mut run => {
                if shown {
                    eprint!("\r\x1b[K");
                }
                return out;
            }
            _ = tick.tick() => {
                let latest = store
                    .read_async(move |c| crmsync_schema::runs::recent_runs(c, user, kind, 1))
                    .await;
                if let Ok(Some(r)) = latest.map(|v| v.into_iter().next()) {
                    if r.state == "running" {
                        if let Some(known) = r.items_known {
                            eprint!("\r{kind}: {} of {known} records…", r.items_done.unwrap_or(0));
                            let _ = std::io::stderr().flush();
                            shown = true;
                        }
                    }
                }
            }
        }
    }
}

/// Stores this process's push settings (`CRMSYNC_PUSH`, `--push-debounce-ms`) for every process
/// of the database, and says when push is off.
async fn store_push_settings(
    store: &crmsync_schema::Store,
    args: &crmsync::cli::SchedulerArgs,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let push = args.push_settings();
    // Workers starting together may race to make the row: the loser writes again.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match store.write(|c| crmsync_schema::jobs::put_push_settings(c, &push, now)) {
            Ok(()) => break,
            Err(
                e @ (crmsync_schema::StoreError::Conflict(_)
                | crmsync_schema::StoreError::Database(_)),
            ) if attempt < 5 => {
                tracing::debug!(error = %e, "storing the push settings raced another process; again");
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(e).context("store the push settings"),
        }
    }
    if push.enabled {
        tracing::info!(
            debounce_ms = push.debounce_ms,
            "push on: CRM writes start the runs they concern"
        );
    } else {
        tracing::info!("push off (CRMSYNC_PUSH=off): CRM writes wait for scheduled runs");
    }
    Ok(())
}

/// `crmsync worker`: the scheduler alone, until Ctrl-C or SIGTERM.
async fn worker(
    cli: &Cli,
    args: &crmsync::cli::WorkerArgs,
    clock: SharedClock,
) -> anyhow::Result<()> {
    let store = open_checked_store(&cli.database_url, clock.now())?;
    store_push_settings(&store, &args.scheduler, clock.now()).await?;
    if store.kind() == crmsync_schema::DbKind::Sqlite {
        tracing::info!(
            "SQLite: one process does all the work; use PostgreSQL to run several workers"
        );
    }
    let google = google_settings(cli);
    // Health, readiness and metrics on their own address, when asked for.
    let ops = match args.metrics_listen {
        Some(addr) => {
            crmsync::telemetry::handle();
            let listener = crmsync::server::bind(addr).await?;
            tracing::info!(listen = %addr, "serving /healthz, /readyz and /metrics at http://{addr}");
            let state = AppState::new(store.clone(), clock.clone()).with_google(google.endpoints());
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(crmsync::server::serve_ops(state, listener, async move {
                let _ = stopped.await;
            }));
            Some((stop, task))
        }
        None => None,
    };
    let config = args.scheduler.config();
    let deliveries =
        crmsync::webhooks::spawn(&store, clock.clone(), &args.webhooks, &config.worker_id)?;
    let engine = crmsync::app::engine(&store, clock, &google, Default::default());
    let scheduler = args
        .scheduler
        .with_push_channels(crmsync::scheduler::Scheduler::new(engine, config));
    let handle = scheduler.handle();
    let delivery_handle = deliveries.as_ref().map(|(h, _)| h.clone());
    tokio::spawn(async move {
        crmsync::server::shutdown_signal().await;
        handle.shutdown();
        if let Some(h) = delivery_handle {
            h.shutdown();
        }
    });
    scheduler.run().await?;
    if let Some((handle, task)) = deliveries {
        handle.shutdown();
        task.await.context("the webhook delivery task failed")??;
    }
    if let Some((stop, task)) = ops {
        let _ = stop.send(());
        task.await.context("the metrics server task failed")??;
    }
    Ok(())
}

fn status(
    database_url: &str,
    args: &crmsync::cli::StatusArgs,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    use crmsync::scheduler::status;
    let store = open_store(database_url)?;
    // With --json, stdout carries only the JSON; the database summary goes to stderr.
    macro_rules! say {
        ($($t:tt)*) => {
            if args.json {
                eprintln!($($t)*)
            } else {
                println!($($t)*)
            }
        };
    }
    say!(
        "database:   {} ({})",
        redact_url(database_url),
        store.kind().as_str()
    );
    let migrations = store.migration_status()?;
    say!(
        "migrations: {} applied, {} pending",
        migrations.applied.len(),
        migrations.pending.len()
    );
    for name in &migrations.pending {
        say!("  pending: {name} (run `crmsync migrate`)");
    }
    if !migrations.pending.is_empty() {
        say!("the sync status needs every migration applied: run `crmsync migrate`");
        return Ok(());
    }
    let counts = store.read(crmsync_schema::counts)?;
    say!(
        "records:    {} users, {} tags, {} contacts, {} activities (change sequence {})",
        counts.users,
        counts.tags,
        counts.contacts,
        counts.activities,
        counts.change_seq
    );
    print_webhooks(&store, args.json)?;
    let statuses = match &args.user {
        Some(email) => {
            let user = store
                .read(|c| users::user_by_email(c, email))?
                .with_context(|| {
                    format!("no CRM user has the e-mail {email}; list them with `crmsync status`")
                })?;
            vec![store.read(|c| status::user_status(c, &user, now))?]
        }
        None => store.read(|c| status::all_status(c, now))?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
        return Ok(());
    }
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("-".to_string(), |t| {
            t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        })
    };
    for u in &statuses {
        println!(
            "user {}  <{}>  google: {}  connection: {} ({})",
            u.user_id, u.email, u.google_alias, u.connection.state, u.connection.method
        );
        for k in u.kinds.values() {
            println!(
                "  {:<10} {:<14} last success: {:<23}  next due: {:<23}  {}",
                k.kind.as_str(),
                k.state.as_str(),
                when(k.last_success_at),
                when(k.next_due_at),
                k.schedule.as_deref().unwrap_or("no settings"),
            );
            if let Some(e) = &k.last_error {
                println!("             last error: {e}");
            }
            if let Some(m) = &k.message {
                println!("             {m}");
            }
            if k.push.crm_changes {
                let google = match k.push.channel_expires_at {
                    Some(t) if k.push.google_changes => {
                        format!("; Google edits too (watch channel until {})", when(Some(t)))
                    }
                    _ => String::new(),
                };
                println!("             push: CRM edits start a run within seconds{google}");
            }
            if let Some(m) = &k.push.message {
                println!("             push: {m}");
            }
            if let Some(a) = &k.awaiting_confirmation {
                println!(
                    "             awaiting confirmation: {} record(s) sent to Google and not yet seen back; retried at {}",
                    a.count,
                    when(a.retry_at)
                );
            }
            for f in &k.failing {
                println!(
                    "             failing {} {} ({} run(s){}): {}",
                    f.side,
                    f.item_id,
                    f.attempts,
                    if f.parked_at.is_some() {
                        ", parked"
                    } else {
                        ""
                    },
                    f.last_error
                );
            }
        }
    }
    Ok(())
}

/// The webhook subscriptions with the state of their deliveries, failing endpoints first (on
/// stderr with `--json`, whose stdout carries only the sync status).
fn print_webhooks(store: &Store, json: bool) -> anyhow::Result<()> {
    let mut hooks = Vec::new();
    let mut after = None;
    loop {
        let page = store.read(|c| crmsync_schema::webhooks::list_webhooks(c, after, 1000))?;
        let done = page.len() < 1000;
        after = page.last().map(|h| h.webhook.id);
        hooks.extend(page);
        if done {
            break;
        }
    }
    if hooks.is_empty() {
        return Ok(());
    }
    let failing = hooks.iter().filter(|h| h.failed > 0).count();
    let mut lines = vec![format!(
        "webhooks:   {} endpoint(s), {failing} failing",
        hooks.len()
    )];
    hooks.sort_by_key(|h| std::cmp::Reverse((h.failed, h.last_failure.is_some())));
    for h in &hooks {
        lines.push(format!(
            "  {:<8} {}  {}  pending {}, failed {}",
            h.health().to_uppercase(),
            h.webhook.id,
            h.webhook.url,
            h.pending,
            h.failed
        ));
        if let Some(f) = &h.last_failure {
            lines.push(format!(
                "           last failure {} ({} {}): {}",
                f.at.format("%Y-%m-%d %H:%M:%S UTC"),
                f.event_type,
                f.delivery_id,
                f.error
            ));
        }
        if h.failed > 0 {
            lines.push(format!(
                "           fix the endpoint, then retry the failed deliveries: GET /api/v1/webhooks/{}/deliveries, POST …/deliveries/{{delivery_id}}/retry",
                h.webhook.id
            ));
        }
    }
    for line in lines {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    Ok(())
}

fn google_settings(cli: &Cli) -> crmsync::app::GoogleSettings {
    crmsync::app::GoogleSettings {
        endpoint: cli.google_endpoint.clone(),
        send_updates: None,
    }
}

/// `crmsync sync`: runs each kind now and prints counts per side and action.
async fn sync(cli: &Cli, args: &SyncArgs, clock: SharedClock) -> anyhow::Result<()> {
    use crmsync::sync::{MassUntag, RunOptions, RunState};
    let store = open_checked_store(&cli.database_url, clock.now())?;
    let email = args.user.clone();
    let user = store
        .read(|c| users::user_by_email(c, &email))?
        .with_context(|| {
            format!(
                "no CRM user has the e-mail {}; create it first (POST /api/v1/users)",
                args.user
            )
        })?;
    let engine = crmsync::app::engine(&store, clock, &google_settings(cli), Default::default());
    // Through the job table: never overlaps a scheduled run or another worker's run.
    let scheduler = crmsync::scheduler::Scheduler::new(
        engine,
        crmsync::scheduler::SchedulerConfig {
            tick: std::time::Duration::from_millis(250),
            ..Default::default()
        },
    );
    let mass_untag = if args.confirm_untag {
        MassUntag::Confirm
    } else if args.restore_untagged {
        MassUntag::Restore
    } else {
        MassUntag::Guard
    };
    let mut failed = false;
    for kind in args.kind.kinds() {
        let uid = user.id;
        if store
            .read(|c| crmsync_schema::settings::get_sync_settings(c, uid, kind))?
            .is_none()
        {
            if args.kind == crmsync::cli::KindArg::All {
                println!(
                    "{kind} sync for {}: skipped (no {kind} sync settings)",
                    user.email
                );
                continue;
            }
            anyhow::bail!(
                "{} has no {kind} sync settings; set them first (PUT /api/v1/users/{}/sync-settings/{kind})",
                user.email,
                user.id
            );
        }
        let report = with_progress(
            &store,
            user.id,
            kind,
            scheduler.run_now(user.id, kind, RunOptions { mass_untag }),
        )
        .await?;
        failed |= report.state == RunState::Failed;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
            continue;
        }
        println!(
            "{} sync for {}: {} (run {})",
            kind,
            user.email,
            report.state.as_str(),
            report.run_id
        );
        if let Some(m) = &report.message {
            println!("  {m}");
        }
        let side = |name: &str, m: &std::collections::BTreeMap<String, u64>| {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
            println!(
                "  {name:<7} {}",
                if parts.is_empty() {
                    "no changes".to_string()
                } else {
                    parts.join(", ")
                }
            );
        };
        side("crm", &report.counts.crm);
        side("google", &report.counts.google);
        let c = &report.counts;
        println!(
            "  links   {} made, {} ended; {} conflicts (later writer won, loser kept in the journal); {} unchanged; {} awaiting Google's confirmation",
            c.linked, c.unlinked, c.conflicts, c.unchanged, c.awaiting_confirmation
        );
        println!(
            "  api     {} calls, {} retries, {} rate-limited",
            report.api_calls, report.api_retries, report.api_rate_limited
        );
        for e in &report.errors {
            println!(
                "  error   {} {}: {}",
                e.crm_id.as_deref().unwrap_or("-"),
                e.google_id.as_deref().unwrap_or("-"),
                e.message
            );
        }
    }
    if failed {
        anyhow::bail!("synchronization failed; see the messages above");
    }
    Ok(())
}

/// `crmsync emulator`: the Google Workspace emulator alone, until Ctrl-C.
async fn emulator(args: EmulatorArgs) -> anyhow::Result<()> {
    let server = crmsync_emulator::EmulatorServer::start(args.listen)
        .await
        .with_context(|| format!("cannot start the emulator on {}", args.listen))?;
    println!("Google Workspace emulator at {} (Calendar {0}/calendar/v3/, People {0}/v1/, OAuth {0}/token, control {0}/_emulator/)", server.base_url());
    crmsync::server::shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}

/// `crmsync demo`: seeds, syncs, prints, then serves the API until Ctrl-C.
async fn demo(args: DemoArgs, clock: SharedClock) -> anyhow::Result<()> {
    let options = crmsync::demo::DemoOptions {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        emulator_listen: args.emulator_listen,
    };
    let demo = crmsync::demo::prepare(&options, clock.clone()).await?;
    crmsync::demo::print_summary(&demo)?;
    if args.no_serve {
        demo.emulator.shutdown().await;
        return Ok(());
    }
    let listener = crmsync::server::bind(args.listen).await?;
    println!("\n== serving ==");
    println!("  admin page: http://{}/#token={}", args.listen, demo.token);
    println!(
        "  API:        http://{}/api/v1   (admin token: {})",
        args.listen, demo.token
    );
    println!(
        "  try:        curl -H 'Authorization: Bearer {}' http://{}/api/v1/users/{}/sync-status",
        demo.token, args.listen, demo.alice
    );
    println!(
        "  emulator:   {}   (Google for this demo; GET {}/_emulator/stats)",
        demo.emulator.base_url(),
        demo.emulator.base_url()
    );
    println!("  the scheduler runs here too: syncs every 15 minutes, or at once from the page");
    println!("  stop with Ctrl-C");
    let google = crmsync::app::GoogleSettings {
        endpoint: Some(demo.emulator.base_url().to_string()),
        send_updates: None,
    };
    let engine = crmsync::app::engine(&demo.store, clock.clone(), &google, Default::default());
    crmsync::telemetry::handle();
    let scheduler = crmsync::scheduler::Scheduler::new(engine.clone(), Default::default());
    let handle = scheduler.handle();
    let task = tokio::spawn(scheduler.run());
    let state = AppState::new(demo.store.clone(), clock)
        .with_google(google.endpoints())
        .with_engine(engine)
        .with_scheduler(handle.clone());
    let h2 = handle.clone();
    let shutdown = async move {
        crmsync::server::shutdown_signal().await;
        h2.shutdown();
    };
    let served = crmsync::server::serve(state, listener, shutdown).await;
    handle.shutdown();
    task.await.context("the scheduler task failed")??;
    served.context("the server failed")?;
    demo.emulator.shutdown().await;
    Ok(())
}
