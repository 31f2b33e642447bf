//! The pure sync core of crmsync: canonical models, the mappings between CRM records and Google's
//! shapes, the three-way field-level planner and the sync policies. Nothing here does I/O, reads
//! a clock or touches a database: time and state come in as arguments, a plan comes out.

pub mod ids;
pub mod model;
