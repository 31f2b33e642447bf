//! Integration tests of the connectors against the in-process emulator.
