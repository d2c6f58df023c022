//! `mnemo bench`: drives a mnemo over HTTP with N concurrent clients and prints ops/s, p50 and
//! p99 per operation. Without `--url` it starts a mnemo in-process on `DATABASE_URL` (port 0).
//! The workload follows `shared/bench` (the baseline): store values of ~500 bytes under
//! `("users", <id>, "memories")`, a search filter on one field over 10,000 items, and a chat
//! checkpoint whose `messages` channel holds 10 messages of ~200 characters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::config::Config;
use crate::startup::Application;

/// Reads first, on the data the setup wrote; writes last, as the baseline orders them.
const ALL_OPS: &str =
    "store_get,store_search_ns,store_search,state_get,history10,ckpt_put,ckpt_writes,store_put";

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// A running mnemo to drive (default: start one in-process on DATABASE_URL).
    #[arg(long)]
    url: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Seconds per operation.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Comma-separated operations to run.
    #[arg(long, default_value = ALL_OPS)]
    ops: String,
    /// Store items to search over.
    #[arg(long, default_value_t = 10_000)]
    items: usize,
}

/// Threads the checkpoint operations use.
const THREADS: usize = 100;

fn store_value(n: usize) -> Value {
    json!({
        "category": format!("cat{}", n % 10),
        "text": format!("memory {n}: {}", "the user prefers short answers and tea over coffee; ".repeat(8)),
        "n": n,
    })
}

fn messages() -> Value {
    let msgs: Vec<Value> = (0..10)
        .map(|i| {
            json!({
                "type": if i % 2 == 0 { "human" } else { "ai" },
                "id": format!("msg-{i}"),
                "content": format!("message {i}: {}", "lorem ipsum dolor sit amet ".repeat(7)),
            })
        })
        .collect();
    json!(msgs)
}

fn checkpoint_body(id: &str, parent: &str, blob: &str, version: u64) -> Value {
    json!({
        "checkpoint_id": id,
        "parent_checkpoint_id": parent,
        "checkpoint": {
            "v": 4, "id": id, "ts": "2026-11-26T15:04:51.758120+00:00", "channel_values": {},
            "channel_versions": {"__start__": "00000000000000000000000000000001.0.2529102076298183",
                                  "messages": format!("{version:032}.0.6138080010457686")},
            "versions_seen": {"__input__": {}}, "updated_channels": ["messages"],
        },
        "metadata": {"source": "loop", "step": version, "parents": {}},
        "blobs": [{"channel": "messages", "version": format!("{version:032}.0.6138080010457686"), "type": "json", "data": blob}],
    })
}

struct Run {
    latencies: Vec<Duration>,
    errors: u64,
    elapsed: Duration,
}

/// Runs `op(client, n)` from `clients` tasks for `seconds`; `n` is a global request counter.
async fn drive<F, Fut>(clients: usize, seconds: u64, op: F) -> Run
where
    F: Fn(reqwest::Client, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<reqwest::StatusCode, reqwest::Error>> + Send,
{
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap_or_default();
    let op = Arc::new(op);
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, op, counter) = (client.clone(), op.clone(), counter.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    match op(client.clone(), n).await {
                        Ok(s) if s.is_success() => lat.push(t.elapsed()),
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut run = Run {
        latencies: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for t in tasks {
        if let Ok((lat, errors)) = t.await {
            run.latencies.extend(lat);
            run.errors += errors;
        }
    }
    run.elapsed = started.elapsed();
    run
}

fn report(name: &str, mut run: Run) {
    run.latencies.sort();
    let pct = |p: f64| {
        let i = ((run.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        run.latencies
            .get(i)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let ops = run.latencies.len() as f64 / run.elapsed.as_secs_f64();
    println!(
        "{name:<18} {ops:>10.0} {:>9.2} {:>9.2} {:>8}",
        pct(0.50),
        pct(0.99),
        run.errors
    );
}

async fn ok(r: reqwest::RequestBuilder) -> Result<reqwest::StatusCode, reqwest::Error> {
    let resp = r.send().await?;
    let status = resp.status();
    resp.bytes().await?;
    Ok(status)
}

/// Sends every request of `reqs` with `clients` in flight; fails on the first non-2xx.
async fn setup(clients: usize, reqs: Vec<reqwest::RequestBuilder>) -> Result<(), String> {
    use futures_util::StreamExt;
    let results: Vec<_> = futures_util::stream::iter(reqs.into_iter().map(ok))
        .buffer_unordered(clients)
        .collect()
        .await;
    for r in results {
        match r {
            Ok(s) if s.is_success() => {}
            Ok(s) => return Err(format!("setup request answered {s}")),
            Err(e) => return Err(format!("setup request failed: {e}")),
        }
    }
    Ok(())
}

async fn load(base: String, args: BenchArgs) -> Result<(), String> {
    let ops: Vec<String> = args
        .ops
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let blob = base64::engine::general_purpose::STANDARD.encode(messages().to_string());
    let c = reqwest::Client::new();

    let t = Instant::now();
    let mut reqs = Vec::new();
    for n in 0..args.items {
        let body = json!({"namespace": ["users", format!("u{}", n % 100), "memories"], "key": format!("mem-{n}"), "value": store_value(n)});
        reqs.push(c.put(format!("{base}/store/items")).json(&body));
    }
    for thread in 0..THREADS {
        for step in 0..12u64 {
            let id = format!("1f1e9aab-0000-6000-8000-{step:012}");
            let parent = if step == 0 {
                String::new()
            } else {
                format!("1f1e9aab-0000-6000-8000-{:012}", step - 1)
            };
            let url = format!("{base}/threads/bench-{tag}-{thread}/checkpoints");
            reqs.push(
                c.put(url)
                    .json(&checkpoint_body(&id, &parent, &blob, step + 1)),
            );
        }
    }
    setup(args.clients, reqs).await?;
    println!(
        "# setup: {} store items, {THREADS} threads x 12 checkpoints in {:.1}s",
        args.items,
        t.elapsed().as_secs_f64()
    );
    println!(
        "# {} clients, {} s per operation, against {base}",
        args.clients, args.seconds
    );
    println!(
        "{:<18} {:>10} {:>9} {:>9} {:>8}",
        "operation", "ops/s", "p50 ms", "p99 ms", "errors"
    );

    let base = Arc::new(base);
    let tag = Arc::new(tag);
    let blob = Arc::new(blob);
    for op in ops {
        let (b, tag, blob) = (base.clone(), tag.clone(), blob.clone());
        let items = args.items as u64;
        let run = match op.as_str() {
            "store_put" => drive(args.clients, args.seconds, move |c, n| {
                let body = json!({"namespace": ["bench", format!("u{}", n % 100), "memories"], "key": format!("{tag}-{n}"), "value": store_value(n as usize)});
                let r = c.put(format!("{b}/store/items")).json(&body);
                ok(r)
            }).await,
            "store_get" => drive(args.clients, args.seconds, move |c, n| {
                let k = (n * 7919) % items;
                ok(c.get(format!("{b}/store/items?namespace=users.u{}.memories&key=mem-{k}", k % 100)))
            }).await,
            "store_search" => drive(args.clients, args.seconds, move |c, n| {
                let body = json!({"namespace_prefix": ["users"], "filter": {"category": format!("cat{}", n % 10)}, "limit": 10, "offset": (n * 31) % 100});
                ok(c.post(format!("{b}/store/items/search")).json(&body))
            }).await,
            "store_search_ns" => drive(args.clients, args.seconds, move |c, n| {
                let body = json!({"namespace_prefix": ["users", format!("u{}", n % 100), "memories"], "filter": {"category": format!("cat{}", (n / 100) % 10)}, "limit": 10});
                ok(c.post(format!("{b}/store/items/search")).json(&body))
            }).await,
            "ckpt_put" => drive(args.clients, args.seconds, move |c, n| {
                let id = format!("1f1e9aab-{:04x}-6000-9000-{n:012}", (n / 1_000_000) % 0xffff);
                let body = checkpoint_body(&id, "1f1e9aab-0000-6000-8000-000000000011", &blob, 100 + n);
                ok(c.put(format!("{b}/threads/bench-{tag}-{}/checkpoints", n % THREADS as u64)).json(&body))
            }).await,
            "ckpt_writes" => drive(args.clients, args.seconds, move |c, n| {
                let body = json!({"task_id": format!("task-{n}"), "task_path": "~__pregel_pull, agent", "writes": [
                    {"channel": "messages", "type": "json", "data": blob.as_str()},
                    {"channel": "branch:to:agent", "type": "null", "data": ""}]});
                let url = format!("{b}/threads/bench-{tag}-{}/checkpoints/1f1e9aab-0000-6000-8000-000000000011/writes", n % THREADS as u64);
                ok(c.put(url).json(&body))
            }).await,
            "state_get" => drive(args.clients, args.seconds, move |c, n| {
                ok(c.get(format!("{b}/threads/bench-{tag}-{}/state", n % THREADS as u64)))
            }).await,
            "history10" => drive(args.clients, args.seconds, move |c, n| {
                ok(c.post(format!("{b}/threads/bench-{tag}-{}/history", n % THREADS as u64)).json(&json!({"limit": 10})))
            }).await,
            other => return Err(format!("unknown operation {other:?}; known: {ALL_OPS}")),
        };
        report(&op, run);
    }
    Ok(())
}

pub async fn run(config: Config, args: BenchArgs) -> Result<(), String> {
    let (base, app) = match &args.url {
        Some(url) => (url.trim_end_matches('/').to_string(), None),
        None => {
            let mut config = config;
            config.port = 0;
            let app = Application::build(config).await?;
            let base = format!("http://127.0.0.1:{}", app.port());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let server = actix_web::rt::spawn(app.run_until(async move {
                let _ = rx.await;
            }));
            (base, Some((tx, server)))
        }
    };
    // the load generator gets its own runtime, off the server's threads
    let generator = std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| rt.block_on(load(base, args)))
    });
    let result = loop {
        if generator.is_finished() {
            break generator
                .join()
                .map_err(|_| "load generator panicked".to_string())
                .and_then(|r| r);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if let Some((tx, server)) = app {
        let _ = tx.send(());
        let _ = server.await;
    }
    result
}
