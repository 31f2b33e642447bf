//! The command line (clap derive): global `--database-url`/`DATABASE_URL` and
//! `--google-endpoint`, and the commands (`serve`, `worker`, `migrate`, `status`, `admin-token`,
//! `secret-key`, `sync`, `emulator`, `demo`, ...), each a variant of [`Command`] dispatched in
//! `main.rs`. [`SchedulerArgs`] are the scheduler flags shared by `serve` and `worker`.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;

/// Two-way sync between a CRM's contacts and activities and Google Workspace.
#[derive(Debug, Parser)]
#[command(name = "crmsync", version, about)]
pub struct Cli {
    /// The database: sqlite://PATH (default sqlite://crmsync.db) or postgres://USER@HOST/DB.
    #[arg(long, global = true, env = "DATABASE_URL", default_value = crmsync_schema::DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Point every Google API and the token endpoint at this base URL (an emulator, e.g.
    /// http://127.0.0.1:8089); Google itself when absent.
    #[arg(long, global = true, env = "CRMSYNC_GOOGLE_ENDPOINT")]
    pub google_endpoint: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the REST API and run the scheduler (applies pending migrations first).
    Serve(ServeArgs),
    /// Run the scheduler alone (no API): scale-out worker; many share one PostgreSQL.
    Worker(WorkerArgs),
    /// Apply pending database migrations.
    Migrate,
    /// Show the database, its migrations, record counts, and per user and kind the sync state,
    /// last successful sync, next due time and last error.
    Status(StatusArgs),
    /// Manage admin API tokens.
    #[command(subcommand)]
    AdminToken(AdminTokenCommand),
    /// Manage the key that encrypts secrets at rest (CRMSYNC_SECRET_KEY).
    #[command(subcommand)]
    SecretKey(SecretKeyCommand),
    /// Start synchronization now for one user ("Start synchronization") and print what it did.
    Sync(SyncArgs),
    /// Run the Google Workspace emulator (Calendar v3, People v1, OAuth) alone.
    Emulator(EmulatorArgs),
    /// The whole product on this machine: built-in emulator, demo data, a real sync, the API.
    Demo(DemoArgs),
    /// Measure the sync engine against SPEC section 8 and print the figures.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Initial sync of N tagged contacts, then runs with nothing changed.
    Contacts {
        #[arg(long, default_value_t = 10_000)]
        contacts: usize,
        /// A database to use instead of a temporary SQLite file (e.g. postgres://...).
        #[arg(long)]
        database: Option<String>,
    },
    /// Pushing N new activities at the per-user Calendar quota.
    Activities {
        #[arg(long, default_value_t = 5_000)]
        activities: usize,
        /// Calendar requests per minute per user the emulator enforces.
        #[arg(long, default_value_t = 600)]
        quota: u64,
        #[arg(long)]
        database: Option<String>,
    },
    /// Push latency: N CRM edits to Google and N Google Calendar edits to the CRM, one at a time.
    Push {
        #[arg(long, default_value_t = 200)]
        edits: usize,
        #[arg(long, default_value_t = 2000)]
        debounce_ms: u64,
        #[arg(long)]
        database: Option<String>,
    },
    /// The CRM integration API: N contacts through `POST /contacts/batch`, then the change feed.
    Integration {
        #[arg(long, default_value_t = 10_000)]
        contacts: usize,
        #[arg(long)]
        database: Option<String>,
    },
    /// The soak (SPEC 7): `crmsync serve` on SQLite against the emulator for a while, API
    /// clients writing, Google edits and faults; then the checks. Exits 1 when one fails.
    Soak {
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// API clients writing at once.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// CRM users (each a Workspace user with both kinds on auto-sync).
        #[arg(long, default_value_t = 4)]
        users: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Without injected faults.
        #[arg(long)]
        no_faults: bool,
    },
    /// Webhook delivery to a healthy local endpoint: a backlog of N sync-made changes, then 100
    /// changes per second.
    Webhooks {
        #[arg(long, default_value_t = 2_000)]
        changes: usize,
        #[arg(long)]
        database: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo database in this folder (default: a temporary folder, removed on exit).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Where the API and admin page listen.
    #[arg(long, env = "CRMSYNC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Where the built-in Google emulator listens.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub emulator_listen: SocketAddr,
    /// Seed, sync and print, then exit instead of serving.
    #[arg(long)]
    pub no_serve: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The CRM user's e-mail address.
    #[arg(long)]
    pub user: String,
    /// What to sync.
    #[arg(long, value_enum, default_value = "all")]
    pub kind: KindArg,
    /// The admin confirms a run the mass-untag guard stopped: carry the untags out.
    #[arg(long, conflicts_with = "restore_untagged")]
    pub confirm_untag: bool,
    /// The admin cancels a run the mass-untag guard stopped: put everything back.
    #[arg(long)]
    pub restore_untagged: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--kind` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    Contacts,
    Activities,
    All,
}

impl KindArg {
    pub fn kinds(self) -> Vec<crmsync_engine::ids::SyncKind> {
        use crmsync_engine::ids::SyncKind;
        match self {
            KindArg::Contacts => vec![SyncKind::Contacts],
            KindArg::Activities => vec![SyncKind::Activities],
            KindArg::All => SyncKind::ALL.to_vec(),
        }
    }
}

#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Address to listen on (loopback by default).
    #[arg(
        long,
        env = "CRMSYNC_EMULATOR_LISTEN",
        default_value = "127.0.0.1:8089"
    )]
    pub listen: SocketAddr,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default).
    #[arg(long, env = "CRMSYNC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve the API only; runs are carried out by `crmsync worker` processes.
    #[arg(long, env = "CRMSYNC_NO_SCHEDULER")]
    pub no_scheduler: bool,
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
    #[command(flatten)]
    pub webhooks: crate::webhooks::WebhookArgs,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Serve `/healthz`, `/readyz` and `/metrics` (Prometheus) on this address (none by default;
    /// `serve` has them on its own address).
    #[arg(long, env = "CRMSYNC_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
    #[command(flatten)]
    pub webhooks: crate::webhooks::WebhookArgs,
}

/// How the scheduler of `serve` and `worker` runs.
#[derive(Debug, Clone, Args)]
pub struct SchedulerArgs {
    /// How many (user, kind) runs this process carries out at the same time.
    #[arg(long, env = "CRMSYNC_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// This worker's name in leases and runs (default: HOSTNAME-PID).
    #[arg(long, env = "CRMSYNC_WORKER_ID")]
    pub worker_id: Option<String>,
    /// Seconds a claimed run stays this worker's without renewal; the runs of a worker that
    /// died are taken over after this.
    #[arg(long, env = "CRMSYNC_LEASE_SECS", default_value_t = 60.0)]
    pub lease_secs: f64,
    /// Milliseconds between looks for due runs (manual starts in this process wake it at once).
    #[arg(long, env = "CRMSYNC_TICK_MS", default_value_t = 1000)]
    pub tick_ms: u64,
    /// Jitter of scheduled runs as a share of the interval (0.1 = up to 10%).
    #[arg(long, env = "CRMSYNC_JITTER_FRACTION", default_value_t = 0.1)]
    pub jitter_fraction: f64,
    /// Upper bound of the jitter, in seconds.
    #[arg(long, env = "CRMSYNC_MAX_JITTER_SECS", default_value_t = 300)]
    pub max_jitter_secs: u64,
    /// On shutdown, seconds runs in progress may take to finish before they are stopped
    /// between steps (their leases then expire at once for another worker).
    #[arg(long, env = "CRMSYNC_SHUTDOWN_GRACE_SECS", default_value_t = 120)]
    pub shutdown_grace_secs: u64,
    /// `off`: CRM writes no longer start runs of the users they concern (SPEC 5 "Push");
    /// scheduled runs and manual starts go on. Stored for every process of this database.
    #[arg(long, env = "CRMSYNC_PUSH", default_value = "on", value_parser = ["on", "off"])]
    pub push: String,
    /// How long a push request waits for more edits before its run, in milliseconds.
    #[arg(long, env = "CRMSYNC_PUSH_DEBOUNCE_MS", default_value_t = 2000)]
    pub push_debounce_ms: u64,
    /// The https:// address Google can reach crmsync at: with it, every user with activity
    /// auto-sync gets a Calendar watch channel notifying `{URL}/google/notifications`.
    #[arg(long, env = "CRMSYNC_PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl SchedulerArgs {
    /// Adds the Calendar watch channels to `scheduler` when a public URL is set (and says why
    /// not when it cannot be used).
    pub fn with_push_channels(
        &self,
        scheduler: crate::scheduler::Scheduler,
    ) -> crate::scheduler::Scheduler {
        let Some(url) = self.public_url.as_deref().filter(|u| !u.trim().is_empty()) else {
            tracing::info!("no CRMSYNC_PUBLIC_URL: Google Calendar edits reach the CRM at the next scheduled run");
            return scheduler;
        };
        match crate::push::ChannelKeeper::new(url) {
            Ok(keeper) => {
                tracing::info!(address = keeper.address(), "Calendar watch channels on");
                scheduler.with_channels(keeper)
            }
            Err(message) => {
                tracing::warn!("{message}");
                scheduler
            }
        }
    }

    /// The push settings these flags describe.
    pub fn push_settings(&self) -> crmsync_schema::jobs::PushSettings {
        let debounce_ms = self.push_debounce_ms.min(600_000) as i64;
        crmsync_schema::jobs::PushSettings {
            enabled: self.push != "off",
            debounce_ms,
            max_wait_ms: (debounce_ms * 5).max(10_000),
        }
    }

    /// The scheduler configuration these flags describe.
    pub fn config(&self) -> crate::scheduler::SchedulerConfig {
        let lease_ms = if self.lease_secs.is_finite() {
            (self.lease_secs * 1000.0).clamp(300.0, 86_400_000.0) as i64
        } else {
            60_000
        };
        crate::scheduler::SchedulerConfig {
            worker_id: self
                .worker_id
                .clone()
                .filter(|w| !w.trim().is_empty())
                .unwrap_or_else(crate::scheduler::default_worker_id),
            concurrency: self.concurrency.max(1),
            tick: std::time::Duration::from_millis(self.tick_ms.max(10)),
            lease: chrono::Duration::milliseconds(lease_ms),
            jitter: crate::scheduler::schedule::JitterPolicy {
                fraction: self.jitter_fraction,
                max: chrono::Duration::seconds(self.max_jitter_secs.min(86_400) as i64),
            },
            shutdown_grace: std::time::Duration::from_secs(self.shutdown_grace_secs),
        }
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this CRM user (e-mail address).
    #[arg(long)]
    pub user: Option<String>,
    /// Print the sync status as JSON (the API's `GET /users/{id}/sync-status` for each user).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AdminTokenCommand {
    /// Create a token and print it once (only its hash is stored).
    Create {
        /// A label to recognize the token by.
        #[arg(long, default_value = "admin")]
        label: String,
    },
    /// List tokens (ids, labels, last use; never the tokens).
    List,
    /// Revoke a token by id: it stops working at once.
    Revoke {
        /// The token's id (from `admin-token list`).
        id: crmsync_engine::ids::AdminTokenId,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretKeyCommand {
    /// Print a new random key for CRMSYNC_SECRET_KEY.
    Generate,
}

/// `url` with any password replaced by `***` (for printing).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
