//! `--ops growth`: how mnemo's reads and writes hold up as data grows. A mnemo of its own on
//! `DATABASE_URL` gets, size after size:
//! - a thread of 10, 1,000 and 10,000 checkpoints (one thread per size, each checkpoint the
//!   bench's 10-message chat state): the thread's latest state, its history of 10, and a
//!   checkpoint put on it;
//! - a store grown in place to a hundredth, a tenth and all of `--max-items` items (default
//!   1,000,000; values as the main bench's, under `("growth", "u<n % 1000>", "memories")`): an
//!   item get, a search of one user's namespace filtered on `category` (a tenth of its items
//!   match), and whole-store searches: on `category` (a tenth match), on `n` (one item matches)
//!   and on `text` (one item matches). The bench's mnemo indexes `n` and `category`
//!   (`MNEMO_STORE_INDEXED_FIELDS`), not `text`.
//!
//! Each line is `--clients` clients for `--seconds` (default 5), with p50/p99; the last column
//! is the p50 over the smallest size's. On Postgres the planner's statistics are refreshed
//! (`ANALYZE`) after each size is written, as autovacuum would have by then: the figures are
//! those of a database in its steady state, not of rows the planner has never seen. A filter on
//! a field no index holds that matches few items reads the whole store: that line grows with
//! it, and the operation's deadline (`MNEMO_POOL_TIMEOUT_MS`) bounds it.

use std::time::Instant;

use serde_json::json;

use super::server::Server;
use super::{checkpoint_body, drive, http_client, ok, pct, setup, store_value};
use crate::config::Config;

/// Checkpoints per measured thread.
const THREAD_SIZES: [u64; 3] = [10, 1_000, 10_000];
/// A search filter for request `n` over a store of `size` items.
type Filter = fn(u64, u64) -> serde_json::Value;

/// Namespaces the store's items are spread over.
const USERS: u64 = 1_000;

/// The namespace of item `n`: runs of ten consecutive items, so each namespace holds every
/// `category` (`n % 10`) alike and a filter on one matches a tenth of its items.
fn user(n: u64) -> u64 {
    (n / 10) % USERS
}

fn checkpoint_id(n: u64) -> String {
    format!("1f1e9aab-0000-6000-a000-{n:012}")
}

/// One measurement: the operation, the data size, and its figures.
struct Line {
    op: &'static str,
    size: u64,
    ops: f64,
    p50: f64,
    p99: f64,
    errors: u64,
}

/// Measures `op` and keeps its line.
async fn measure<F, Fut>(
    lines: &mut Vec<Line>,
    name: &'static str,
    size: u64,
    clients: usize,
    seconds: u64,
    op: F,
) where
    F: Fn(reqwest::Client, u64, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<super::Sample, reqwest::Error>> + Send,
{
    let mut run = drive(clients, seconds, op).await;
    run.latencies.sort();
    let line = Line {
        op: name,
        size,
        ops: run.latencies.len() as f64 / run.elapsed.as_secs_f64(),
        p50: pct(&run.latencies, 0.50),
        p99: pct(&run.latencies, 0.99),
        errors: run.errors,
    };
    let first = lines
        .iter()
        .find(|l| l.op == name)
        .map_or(line.p50, |l| l.p50);
    println!(
        "{:<22} {:>10} {:>10.0} {:>9.2} {:>9.2} {:>8} {:>9.2}x",
        line.op,
        line.size,
        line.ops,
        line.p50,
        line.p99,
        line.errors,
        if first > 0.0 { line.p50 / first } else { 0.0 }
    );
    lines.push(line);
}

/// Sends `count` requests made by `make` with `clients` in flight, in chunks (so a million
/// requests are never all built at once); fails on the first non-2xx.
async fn fill<F>(clients: usize, range: std::ops::Range<u64>, make: F) -> Result<(), String>
where
    F: Fn(u64) -> reqwest::RequestBuilder,
{
    const CHUNK: u64 = 20_000;
    let mut start = range.start;
    while start < range.end {
        let end = (start + CHUNK).min(range.end);
        setup(clients, (start..end).map(&make).collect()).await?;
        start = end;
    }
    Ok(())
}

pub async fn growth(
    config: &Config,
    clients: usize,
    seconds: u64,
    max_items: u64,
) -> Result<(), String> {
    // `n` and `category` are indexed for filters, `text` is not
    let indexed = ("MNEMO_STORE_INDEXED_FIELDS", "n,category".to_string());
    let srv = Server::start(config, &[indexed]).await?;
    let pg = super::pg::Watcher::connect(&config.database_url).await?;
    let analyze = async || match &pg {
        Some(w) => w.analyze().await,
        None => Ok(()),
    };
    let base = srv.base.clone();
    let c = http_client(reqwest::Client::builder());
    let blob = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        super::messages().to_string(),
    );
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    println!("# growth: {clients} clients, {seconds} s per line, against a mnemo on DATABASE_URL");
    println!(
        "{:<22} {:>10} {:>10} {:>9} {:>9} {:>8} {:>10}",
        "operation", "size", "ops/s", "p50 ms", "p99 ms", "errors", "p50 / 1st"
    );
    let mut lines = Vec::new();

    // threads of growing histories
    for size in THREAD_SIZES {
        let thread = format!("growth-{tag}-{size}");
        let t = Instant::now();
        let url = format!("{base}/threads/{thread}/checkpoints");
        fill(clients, 0..size, |n| {
            let parent = if n == 0 {
                String::new()
            } else {
                checkpoint_id(n - 1)
            };
            c.put(&url)
                .json(&checkpoint_body(&checkpoint_id(n), &parent, &blob, n + 1))
        })
        .await?;
        analyze().await?;
        println!(
            "# a thread of {size} checkpoints written (and analyzed) in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        let b = base.clone();
        let th = thread.clone();
        measure(
            &mut lines,
            "state_get",
            size,
            clients,
            seconds,
            move |c, _, _| ok(c.get(format!("{b}/threads/{th}/state"))),
        )
        .await;
        let (b, th) = (base.clone(), thread.clone());
        measure(
            &mut lines,
            "history10",
            size,
            clients,
            seconds,
            move |c, _, _| {
                ok(c.post(format!("{b}/threads/{th}/history"))
                    .json(&json!({"limit": 10})))
            },
        )
        .await;
        let (b, th, bl) = (base.clone(), thread.clone(), blob.clone());
        measure(
            &mut lines,
            "ckpt_put",
            size,
            clients,
            seconds,
            move |c, n, _| {
                // new checkpoints on top of the thread's last, each its own id
                let id = format!("1f1e9aab-0001-6000-a000-{n:012}");
                let body = checkpoint_body(&id, &checkpoint_id(size - 1), &bl, size + n + 1);
                ok(c.put(format!("{b}/threads/{th}/checkpoints")).json(&body))
            },
        )
        .await;
    }

    // a store grown in place
    let mut filled = 0;
    for size in [max_items / 100, max_items / 10, max_items] {
        let t = Instant::now();
        let store = format!("{base}/store/items");
        fill(clients, filled..size, |n| {
            let body = json!({"namespace": ["growth", format!("u{}", user(n)), "memories"],
                              "key": format!("mem-{n}"), "value": store_value(n as usize)});
            c.put(&store).json(&body)
        })
        .await?;
        analyze().await?;
        println!(
            "# the store grown to {size} items (and analyzed) in {:.1}s",
            t.elapsed().as_secs_f64()
        );
        filled = size;
        let b = base.clone();
        measure(
            &mut lines,
            "store_get",
            size,
            clients,
            seconds,
            move |c, n, _| {
                let k = (n * 7919) % size;
                ok(c.get(format!(
                    "{b}/store/items?namespace=growth.u{}.memories&key=mem-{k}",
                    user(k)
                )))
            },
        )
        .await;
        let b = base.clone();
        measure(&mut lines, "store_search_ns", size, clients, seconds, move |c, n, _| {
            let body = json!({"namespace_prefix": ["growth", format!("u{}", n % USERS), "memories"],
                              "filter": {"category": format!("cat{}", (n / USERS) % 10)}, "limit": 10});
            ok(c.post(format!("{b}/store/items/search")).json(&body))
        })
        .await;
        // whole-store searches: a common value, a unique one of an indexed field, a unique one
        // of an unindexed field
        let whole_store: [(&str, Filter); 3] = [
            (
                "store_search_common",
                |n, _| json!({"category": format!("cat{}", n % 10)}),
            ),
            (
                "store_search_one",
                |n, size| json!({"n": (n * 7919) % size}),
            ),
            (
                "store_search_unindexed",
                |n, size| json!({"text": store_value(((n * 7919) % size) as usize)["text"]}),
            ),
        ];
        for (name, filter) in whole_store {
            let b = base.clone();
            measure(&mut lines, name, size, clients, seconds, move |c, n, _| {
                let body =
                    json!({"namespace_prefix": ["growth"], "filter": filter(n, size), "limit": 10});
                ok(c.post(format!("{b}/store/items/search")).json(&body))
            })
            .await;
        }
    }

    let worst = lines
        .iter()
        // an unindexed filter past the deadline is answered 503: that is its bound, not a fault
        .filter(|l| l.errors > 0 && l.op != "store_search_unindexed")
        .map(|l| format!("{} at {}: {} errors", l.op, l.size, l.errors))
        .collect::<Vec<_>>();
    srv.stop().await?;
    if worst.is_empty() {
        Ok(())
    } else {
        Err(worst.join("; "))
    }
}
