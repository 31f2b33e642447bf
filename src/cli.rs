//! The command line (clap derive): global `--database-url`/`DATABASE_URL`, and the commands
//! `serve`, `migrate`, `status`, `admin-token create`, `secret-key generate`. New commands
//! (`demo`, `worker`, `emulator`, `sync`) are added as variants of [`Command`] and dispatched in
//! `main.rs`.

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
    /// Serve the REST API (applies pending migrations first).
    Serve(ServeArgs),
    /// Apply pending database migrations.
    Migrate,
    /// Show the database, its migrations, record counts and users.
    Status,
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
