//! The `crmsync` binary's library: the REST API ([`api`]), the command line ([`cli`]), the HTTP
//! server ([`server`]) and the [`clock`]. The sync executor (`sync/`) and the scheduler
//! (`scheduler/`) live here too once they land.

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod demo;
pub mod server;
pub mod sync;
