//! mnemo's test suite: one binary, real HTTP against a real server on port 0, on real SQLite
//! and real Postgres databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod assistants;
mod checkpoints;
mod helpers;
mod lifecycle;
mod ops;
mod process;
mod runs;
mod store;
mod tasks;
mod threads;
