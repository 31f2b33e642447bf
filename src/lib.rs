//! The `crmsync` binary's library: the REST API ([`api`]), the command line ([`cli`]), the HTTP
//! server ([`server`]), the [`clock`], the sync executor ([`sync`]) and the [`scheduler`] that
//! runs it on its own (intervals, cron, manual starts, leases for scale-out workers), the
//! webhook delivery worker ([`webhooks`]), and the process's metrics ([`telemetry`]).

pub mod api;
pub mod app;
pub mod bench;
pub mod bench_integration;
pub mod bench_push;
pub mod bench_soak;
pub mod cli;
pub mod clock;
pub mod demo;
pub mod push;
pub mod scheduler;
pub mod server;
pub mod sync;
pub mod telemetry;
pub mod web;
pub mod webhooks;
