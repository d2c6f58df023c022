//! mnemo: a server for AI chat agents' state (threads, checkpoints, a long-term store) that
//! speaks the LangGraph Platform HTTP API. See the README for the tour.

pub mod agent;
pub mod auth;
pub mod bench;
pub mod body_budget;
pub mod browser;
pub mod config;
pub mod error;
pub mod graphs;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod persistence;
pub mod routes;
pub mod runs;
pub mod startup;

/// Picks rustls' crypto provider (ring) for every HTTP client of the process; reqwest is built
/// without a default one. Idempotent; `main` and [`startup::Application::build`] call it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
