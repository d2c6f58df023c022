//! `--ops actor_hop`: what the persistence actor costs against calling the pool directly.
//! `--clients` tasks for `--seconds` (default 5) each, in this process, on `DATABASE_URL`:
//! - `hop`: a message to the actor answered without the database (the pool's figures): the
//!   mailbox and the reply alone;
//! - `select1_actor`: `SELECT 1` through the actor, as every request handler's query goes;
//! - `select1_direct`: `SELECT 1` on a pool of the same size used directly by the tasks.
//!
//! The last line compares the two `SELECT 1` p50s.

use std::future::Future;
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;

use super::{pct, report};
use crate::config::Config;
use crate::persistence::{DbError, DbPool};
use crate::startup::open_persistence;

/// Runs `op` from `clients` tasks until `seconds` pass; prints its line; answers its p50 (ms).
async fn measure<F, Fut>(name: &str, clients: usize, seconds: u64, op: F) -> f64
where
    F: Fn() -> Fut + Clone + 'static,
    Fut: Future<Output = Result<(), DbError>>,
{
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks = (0..clients).map(|_| {
        let op = op.clone();
        async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                match op().await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }
    });
    let (mut all, mut errors) = (Vec::new(), 0);
    for (lat, e) in futures_util::future::join_all(tasks).await {
        all.extend(lat);
        errors += e;
    }
    all.sort();
    let p50 = pct(&all, 0.5);
    report(name, all, errors, started.elapsed());
    p50
}

pub async fn actor_hop(config: &Config, clients: usize, seconds: u64) -> Result<(), String> {
    // the actor needs an actix System: one of its own, on a thread of its own, as `serve` has
    let config = config.clone();
    let system = std::thread::spawn(move || {
        actix_rt::System::new().block_on(measure_all(&config, clients, seconds))
    });
    tokio::task::spawn_blocking(move || system.join())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|_| "actor_hop panicked".to_string())?
}

async fn measure_all(config: &Config, clients: usize, seconds: u64) -> Result<(), String> {
    let (db, arbiter) = open_persistence(config).await?;
    let direct = DbPool::build(config)?;
    println!("# actor_hop: {clients} tasks, {seconds} s per line, in process on DATABASE_URL");
    println!(
        "{:<18} {:>10} {:>9} {:>9} {:>8}",
        "operation", "ops/s", "p50 ms", "p99 ms", "errors"
    );
    let d = db.clone();
    measure("hop", clients, seconds, move || {
        let d = d.clone();
        async move { d.pool_stats().await.map(|_| ()) }
    })
    .await;
    let d = db.clone();
    let through = measure("select1_actor", clients, seconds, move || {
        let d = d.clone();
        async move { d.ping().await.map(|_| ()) }
    })
    .await;
    let p = direct.clone();
    let alone = measure("select1_direct", clients, seconds, move || {
        let p = p.clone();
        async move {
            let select1 = diesel::sql_query("SELECT 1");
            match &p {
                DbPool::Pg(pool) => select1.execute(&mut pool.get().await?).await?,
                DbPool::Sqlite(pool) => select1.execute(&mut pool.get().await?).await?,
            };
            Ok(())
        }
    })
    .await;
    if alone > 0.0 {
        println!(
            "# SELECT 1 through the actor: p50 {:+.0} % against the pool used directly",
            (through / alone - 1.0) * 100.0
        );
    }
    direct.close();
    let _ = db.shutdown(Duration::from_secs(5)).await;
    arbiter.stop();
    Ok(())
}
