//! `crmsync-emulator`: a local Google Workspace emulator (Calendar v3, People v1, OAuth 2.0)
//! that the real client crates (`google-calendar3`, `google-people1`, `yup-oauth2`) talk to
//! over HTTP. See `COVERAGE.md` for what is implemented and how faithfully.
//!
//! Where to look:
//! - [`server`]: the router and [`EmulatorServer`]; [`api`]: the front door for API calls
//!   (method ids, faults, auth, quotas, stats).
//! - [`calendar`], [`recurrence`]: Calendar v3; [`people`]: People v1 and contact groups.
//! - [`auth`], [`oauth`]: tokens, service accounts, delegation, the token endpoint.
//! - [`control`]: `/_emulator/…`; [`faults`], [`quotas`], [`stats`], [`clock`],
//!   [`sync_tokens`], [`discovery`], [`errors`].
//!
//! Embedding it in a test (the hubs point at the emulator with `base_url`):
//!
//! ```text
//! let server = EmulatorServer::start_local().await?;
//! let emu = server.emulator();
//! emu.create_user("alice@example.com")?;
//! let token = emu.mint_access_token("alice@example.com", &["calendar".into()])?;
//! let mut hub = CalendarHub::new(client, token);
//! hub.base_url(format!("{}/calendar/v3/", server.base_url()));
//! // … or a service account: emu.create_service_account("example.com", server.base_url())
//! // gives a key whose token_uri is {base_url}/token; authorize it with
//! // emu.authorize_delegation(client_id, &scopes) and use yup-oauth2 with .subject(user).
//! ```

pub mod api;
pub mod auth;
pub mod calendar;
pub mod clock;
pub mod control;
pub mod discovery;
pub mod errors;
pub mod faults;
pub mod oauth;
pub mod people;
pub mod quotas;
pub mod recurrence;
pub mod server;
pub mod state;
pub mod stats;
pub mod sync_tokens;

pub use errors::{Api, ApiError, EmulatorError};
pub use faults::{FaultMatch, FaultRule};
pub use quotas::Quotas;
pub use server::{router, EmulatorServer};
pub use state::Emulator;
pub use stats::{RecordedResponse, RequestRecord, Stats, WriteRecord};
