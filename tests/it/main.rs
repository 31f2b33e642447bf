//! crmsync's integration tests: one binary, every database test on SQLite and on PostgreSQL
//! (`db_test!` makes `<name>_sqlite` and `<name>_postgres`). Run them with `bash scripts/test`.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod api_activities;
mod api_auth;
mod api_contacts;
mod api_integration;
mod api_openapi;
mod api_settings;
mod api_users_tags;
mod api_validation;
mod cli;
mod migrations;
mod ops_metrics;
mod push;
mod sched_api;
mod sched_cli;
mod sched_clock;
mod sched_connections;
mod sched_schedule;
mod sched_support;
mod sched_workers;
mod security;
mod sim_integration;
mod store_feed;
mod store_misc;
mod sync_activities;
mod sync_conditional;
mod sync_contacts;
mod sync_contacts_floor;
mod sync_merges;
mod sync_reset;
mod sync_series;
mod sync_sim_activities;
mod sync_sim_combined;
mod sync_simulation;
mod sync_support;
mod web;
mod web_admin;
mod webhooks;
