//! mnemo's test suite: one binary, real HTTP against a real server on port 0, on real SQLite
//! and real Postgres databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent;
mod assistants;
mod auth;
mod checkpoints;
mod durability;
mod fake_llm;
mod faults;
mod helpers;
mod interrupts;
mod jwt;
mod leases;
mod lifecycle;
mod limits;
mod memory;
mod models;
mod openapi;
mod ops;
mod process;
mod run_control;
mod runs;
mod sse;
mod store;
mod tasks;
mod threads;
mod tls;
mod workers;
