//! crmsync library
