//! The CRM store: diesel schema, row models and every query crmsync makes, for SQLite (embedded,
//! the default) and PostgreSQL through one `MultiConnection`.

pub mod schema;
