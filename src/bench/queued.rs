//! `--ops queued`: what runs waiting on a busy thread cost everybody else. A mnemo of its own
//! (its model an endpoint that never answers, so a run on it stays busy) gets one thread busy
//! with a run, and is measured twice: with no run queued behind it, then with `--queued` runs
//! enqueued on that thread (`multitask_strategy: "enqueue"`). Each measurement is two windows of
//! `--seconds`: the server left alone (its CPU use, and the transactions its database commits),
//! then one client putting store items one after another (their p50/p99, and the CPU again).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::pg::Watcher;
use super::server::{self, Server};
use crate::config::Config;

/// One measurement's figures.
struct Figures {
    idle: Cost,
    puts: usize,
    errors: usize,
    p50: f64,
    p99: f64,
    put: Cost,
}

/// CPU seconds of each of mnemo's Postgres backends.
async fn backend_cpu(pg: Option<&Watcher>) -> HashMap<u32, f64> {
    let pids = match pg {
        Some(w) => w.mnemo_backends().await.unwrap_or_default(),
        None => Vec::new(),
    };
    pids.into_iter()
        .filter_map(|p| server::cpu_s(p).ok().map(|s| (p, s)))
        .collect()
}

/// What a window cost: mnemo's CPU and its Postgres backends' (in % of one core), and the
/// database's transactions per second.
struct Cost {
    cpu: f64,
    pg_cpu: Option<f64>,
    tx: Option<f64>,
}

/// The cost of `f`. The backends' CPU counts those alive at the end (a backend that started
/// during `f` counts whole; one that ended during it is missed).
async fn watched<F: std::future::Future<Output = T>, T>(
    pid: u32,
    pg: Option<&Watcher>,
    f: F,
) -> Result<(T, Cost), String> {
    let (cpu0, backends0, t0) = (server::cpu_s(pid)?, backend_cpu(pg).await, Instant::now());
    let tx0 = match pg {
        Some(w) => Some(w.transactions().await?),
        None => None,
    };
    let out = f.await;
    let (cpu1, secs) = (server::cpu_s(pid)?, t0.elapsed().as_secs_f64());
    let backends1 = backend_cpu(pg).await;
    let tx = match (pg, tx0) {
        (Some(w), Some(tx0)) => Some((w.transactions().await? - tx0) as f64 / secs),
        _ => None,
    };
    let pg_cpu = pg.map(|_| {
        backends1
            .iter()
            .map(|(p, s)| s - backends0.get(p).copied().unwrap_or(0.0))
            .sum::<f64>()
            / secs
            * 100.0
    });
    Ok((
        out,
        Cost {
            cpu: (cpu1 - cpu0) / secs * 100.0,
            pg_cpu,
            tx,
        },
    ))
}

async fn measure(
    c: &reqwest::Client,
    srv: &Server,
    pg: Option<&Watcher>,
    seconds: u64,
) -> Result<Figures, String> {
    let window = Duration::from_secs(seconds);
    let pid = srv.pid();
    let ((), idle) = watched(pid, pg, tokio::time::sleep(window)).await?;
    let base = srv.base.clone();
    let puts = async {
        let (mut lat, mut errors) = (Vec::new(), 0usize);
        let end = Instant::now() + window;
        let mut n = 0u64;
        while Instant::now() < end {
            n += 1;
            let body = json!({"namespace": ["bench", "queued"], "key": format!("k{}", n % 1000), "value": super::store_value(n as usize)});
            let t = Instant::now();
            match super::status(c.put(format!("{base}/store/items")).json(&body)).await {
                Ok(s) if s.is_success() => lat.push(t.elapsed()),
                _ => errors += 1,
            }
        }
        lat.sort();
        (lat, errors)
    };
    let ((lat, errors), put) = watched(pid, pg, puts).await?;
    Ok(Figures {
        idle,
        puts: lat.len(),
        errors,
        p50: super::pct(&lat, 0.50),
        p99: super::pct(&lat, 0.99),
        put,
    })
}

fn print(name: &str, f: &Figures) {
    let opt = |t: Option<f64>| t.map_or_else(|| "-".into(), |t| format!("{t:.1}"));
    println!(
        "{name:<16} {:>6.1} {:>6} {:>7} {:>6} {:>8.2} {:>8.2} {:>6.1} {:>6} {:>7} {:>6}",
        f.idle.cpu,
        opt(f.idle.pg_cpu),
        opt(f.idle.tx),
        f.puts,
        f.p50,
        f.p99,
        f.put.cpu,
        opt(f.put.pg_cpu),
        opt(f.put.tx),
        f.errors
    );
}

/// A run's JSON, or what went wrong.
async fn run_of(r: reqwest::RequestBuilder) -> Result<Value, String> {
    let resp = r.send().await.map_err(|e| format!("a run request: {e}"))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("a run's answer: {e}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("a run request answered {status}: {body}"))
    }
}

pub async fn queued(config: &Config, queued: usize, seconds: u64) -> Result<(), String> {
    let (model_port, model) = server::silent_model().await?;
    let mut env = server::fake_model_env(model_port);
    // room for every queued run (the per-thread queue is 16 by default)
    env.push((
        "MNEMO_MAX_PENDING_RUNS_PER_THREAD",
        (queued + 16).to_string(),
    ));
    env.push(("MNEMO_MAX_ACTIVE_RUNS_PER_USER", (queued + 16).to_string()));
    let srv = Server::start(config, &env).await?;
    let pg = Watcher::connect(&config.database_url).await?;
    let c = super::http_client(reqwest::Client::builder().timeout(Duration::from_secs(60)));
    let base = srv.base.clone();

    // one thread, busy with a run waiting on the model
    let thread = uuid::Uuid::new_v4().to_string();
    super::status(
        c.post(format!("{base}/threads"))
            .json(&json!({"thread_id": thread})),
    )
    .await
    .map_err(|e| format!("creating the thread: {e}"))?;
    let run_body = |strategy: &str| json!({"assistant_id": "agent", "input": super::get_tasks(), "multitask_strategy": strategy});
    let busy = run_of(
        c.post(format!("{base}/threads/{thread}/runs"))
            .json(&run_body("reject")),
    )
    .await?;
    let busy_id = busy["run_id"].as_str().unwrap_or_default().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let run = run_of(c.get(format!("{base}/threads/{thread}/runs/{busy_id}"))).await?;
        if run["status"] == "running" {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("the busy run is not running after 10 s: {run}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "# queued: a mnemo (pid {}) on {}, one thread busy with a run waiting on the model; windows of {seconds} s",
        srv.pid(),
        crate::config::redact_url(&config.database_url),
    );
    println!(
        "{:<16} {:>6} {:>6} {:>7} {:>6} {:>8} {:>8} {:>6} {:>6} {:>7} {:>6}",
        "", "cpu%", "pg%", "tx/s", "puts", "p50 ms", "p99 ms", "cpu%", "pg%", "tx/s", "errors"
    );
    let without = measure(&c, &srv, pg.as_ref(), seconds).await?;
    print("no queued runs", &without);

    let rss_before = srv.vm_mb("VmRSS")?;
    let t = Instant::now();
    let answers: Vec<Result<Value, String>> = futures_util::stream::iter(0..queued)
        .map(|_| {
            run_of(
                c.post(format!("{base}/threads/{thread}/runs"))
                    .json(&run_body("enqueue")),
            )
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let enqueued_in = t.elapsed();
    let pending = answers
        .iter()
        .filter(|a| matches!(a, Ok(r) if r["status"] == "pending"))
        .count();
    if let Some(Err(e)) = answers.iter().find(|a| a.is_err()) {
        return Err(format!("enqueueing: {e}"));
    }
    // the queue settles before it is measured
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_queued = srv.vm_mb("VmRSS")?;
    let with = measure(&c, &srv, pg.as_ref(), seconds).await?;
    print(&format!("{pending} queued runs"), &with);
    println!(
        "# {pending} of {queued} runs were enqueued (pending) in {:.2} s, 16 at a time. First the server left alone, then one client putting store items: cpu% is mnemo's, pg% its Postgres backends', in % of one core; tx/s: transactions the database committed or rolled back per second",
        enqueued_in.as_secs_f64()
    );
    println!(
        "# memory: server RSS {rss_before:.1} MB before the queued runs, {rss_queued:.1} MB with them: {:.1} KB per queued run",
        (rss_queued - rss_before) * 1024.0 / pending.max(1) as f64
    );
    // the busy run still waits on the model: none of the queued ones has run
    let busy = run_of(c.get(format!("{base}/threads/{thread}/runs/{busy_id}"))).await?;
    if busy["status"] != "running" {
        println!(
            "# note: the busy run ended ({}) during the measurement",
            busy["status"]
        );
    }
    let stopped = srv.stop().await;
    model.abort();
    stopped
}
