//! `--ops soak`: mixed load for a long time (10 minutes unless `--seconds`), with figures every
//! tenth of the run (at most every minute): the server's resident memory, the connections mnemo
//! holds on Postgres, p50/p99 per kind of request in that window, and errors by kind.
//!
//! The clients are split between four kinds of work, each client doing one request at a time:
//! - store: puts (over a bounded set of keys), gets and filtered searches of the seeded items;
//! - checkpoints: raw checkpoint puts, latest state and history of the last 10;
//! - runs: conversations of 10 turns with the builtin model ("add task …", then "get tasks"),
//!   each turn a streamed run read to its end (`run_stream`);
//! - rejoins: the same, but resumable, and the client drops the stream after its first event and
//!   rejoins it with `Last-Event-ID` (`run_rejoin`, timed from the rejoin to the stream's end);
//!   a rejoined stream must carry every event after the one given, in order.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::pg::Watcher;
use super::sse;
use super::{THREADS, checkpoint_body, pct, store_value};

/// The kinds of request, in the order they are printed.
const KINDS: [&str; 8] = [
    "store_put",
    "store_get",
    "store_search",
    "ckpt_put",
    "state_get",
    "history10",
    "run_stream",
    "run_rejoin",
];

/// The longest any one request may take; a soak's loops end at its deadline plus this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Turns per conversation before a client moves to a new thread (and a new user).
const TURNS: u64 = 10;

#[derive(Default)]
struct KindStats {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
}

type Stats = HashMap<&'static str, KindStats>;

fn merge(into: &mut Stats, from: Stats) {
    for (kind, s) in from {
        let t = into.entry(kind).or_default();
        t.latencies.extend(s.latencies);
        for (e, n) in s.errors {
            *t.errors.entry(e).or_default() += n;
        }
    }
}

struct Ctx {
    c: reqwest::Client,
    base: String,
    tag: String,
    blob: String,
    items: u64,
    deadline: Instant,
    window: Mutex<Stats>,
}

impl Ctx {
    fn record(&self, kind: &'static str, took: Duration, result: Result<(), String>) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let s = w.entry(kind).or_default();
        match result {
            Ok(()) => s.latencies.push(took),
            Err(e) => *s.errors.entry(e).or_default() += 1,
        }
    }

    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }
}

/// An error's kind, as the table shows it.
fn kind_of(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else if e.is_body() || e.is_decode() {
        "body".into()
    } else {
        "request".into()
    }
}

/// Sends a request and reads its whole body: `Err(kind)` unless it answered 2xx.
async fn plain(r: reqwest::RequestBuilder) -> Result<(), String> {
    let resp = r.send().await.map_err(|e| kind_of(&e))?;
    let status = resp.status();
    resp.bytes().await.map_err(|e| kind_of(&e))?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("http {}", status.as_u16()))
    }
}

async fn store_client(ctx: Arc<Ctx>, i: usize) {
    let (b, c) = (&ctx.base, &ctx.c);
    let mut n = i as u64 * 7919;
    while ctx.running() {
        n += 1;
        let k = (n * 7919) % ctx.items;
        let t = Instant::now();
        let (kind, r) = match n % 3 {
            0 => {
                // a bounded set of keys: the store does not grow with the soak's length
                let body = json!({"namespace": ["soak", ctx.tag.as_str(), format!("u{}", k % 100)], "key": format!("k{k}"), "value": store_value(n as usize)});
                ("store_put", c.put(format!("{b}/store/items")).json(&body))
            }
            1 => (
                "store_get",
                c.get(format!(
                    "{b}/store/items?namespace=users.u{}.memories&key=mem-{k}",
                    k % 100
                )),
            ),
            _ => {
                let body = json!({"namespace_prefix": ["users", format!("u{}", k % 100), "memories"], "filter": {"category": format!("cat{}", n % 10)}, "limit": 10});
                (
                    "store_search",
                    c.post(format!("{b}/store/items/search")).json(&body),
                )
            }
        };
        let result = plain(r).await;
        ctx.record(kind, t.elapsed(), result);
    }
}

async fn checkpoint_client(ctx: Arc<Ctx>, i: usize) {
    let (b, c) = (&ctx.base, &ctx.c);
    let mut n = 0u64;
    while ctx.running() {
        n += 1;
        let thread = format!("bench-{}-{}", ctx.tag, (n * 31 + i as u64) % THREADS as u64);
        let t = Instant::now();
        let (kind, r) = match n % 3 {
            0 => {
                // ids after the seeded ones, unique per client and request
                let id = format!("1f1e9aab-{:04x}-6000-9000-{n:012}", i % 0xffff);
                let body = checkpoint_body(
                    &id,
                    "1f1e9aab-0000-6000-8000-000000000011",
                    &ctx.blob,
                    100 + n,
                );
                (
                    "ckpt_put",
                    c.put(format!("{b}/threads/{thread}/checkpoints"))
                        .json(&body),
                )
            }
            1 => ("state_get", c.get(format!("{b}/threads/{thread}/state"))),
            _ => (
                "history10",
                c.post(format!("{b}/threads/{thread}/history"))
                    .json(&json!({"limit": 10})),
            ),
        };
        let result = plain(r).await;
        ctx.record(kind, t.elapsed(), result);
    }
}

/// Client `i`'s conversations: the thread and user of turn `turn`, and the turn's message.
fn conversation(ctx: &Ctx, what: &str, i: usize, turn: u64) -> (String, String, String) {
    let conv = turn / TURNS;
    let name = format!("soak-{}-{what}-{i}-{conv}", ctx.tag);
    let thread = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, name.as_bytes()).to_string();
    let message = if turn.is_multiple_of(2) {
        format!("add task soak item {turn}")
    } else {
        "get tasks".to_string()
    };
    (thread, name, message)
}

/// The body of a streamed run on `thread` for `user`.
fn run_body(user: &str, message: &str, first: bool, resumable: bool) -> Value {
    json!({
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": message}]},
        "if_not_exists": if first { "create" } else { "reject" },
        "config": {"configurable": {"user_id": user}},
        "stream_mode": ["values", "updates", "messages-tuple"],
        "stream_resumable": resumable,
    })
}

/// Opens a stream: its reader, or the kind of error.
async fn open(r: reqwest::RequestBuilder) -> Result<sse::Reader, String> {
    let resp = r.send().await.map_err(|e| kind_of(&e))?;
    let status = resp.status();
    if !status.is_success() {
        let _ = resp.bytes().await;
        return Err(format!("http {}", status.as_u16()));
    }
    Ok(sse::Reader::new(resp))
}

/// Reads a stream to its end: its event ids, or the kind of error (an `error` event is one).
async fn to_end(mut reader: sse::Reader) -> Result<Vec<Option<i64>>, String> {
    let mut ids = Vec::new();
    while let Some(e) = reader.next().await.map_err(|e| kind_of(&e))? {
        if e.event == "error" {
            return Err("error event".into());
        }
        ids.push(e.id);
    }
    if ids.is_empty() {
        return Err("empty stream".into());
    }
    Ok(ids)
}

async fn run_client(ctx: Arc<Ctx>, i: usize) {
    let (b, c) = (&ctx.base, &ctx.c);
    let mut turn = 0u64;
    while ctx.running() {
        let (thread, user, message) = conversation(&ctx, "run", i, turn);
        let body = run_body(&user, &message, turn.is_multiple_of(TURNS), false);
        turn += 1;
        let t = Instant::now();
        let result = match open(
            c.post(format!("{b}/threads/{thread}/runs/stream"))
                .json(&body),
        )
        .await
        {
            Ok(reader) => to_end(reader).await.map(|_| ()),
            Err(e) => Err(e),
        };
        ctx.record("run_stream", t.elapsed(), result);
    }
}

/// A resumable streamed run, dropped after its first event and rejoined with `Last-Event-ID`:
/// the rejoined stream must carry every later event, in order, to the run's end.
async fn rejoin_once(ctx: &Ctx, thread: &str, body: &Value) -> Result<Instant, String> {
    let (b, c) = (&ctx.base, &ctx.c);
    let mut reader = open(
        c.post(format!("{b}/threads/{thread}/runs/stream"))
            .json(body),
    )
    .await?;
    let first = reader
        .next()
        .await
        .map_err(|e| kind_of(&e))?
        .ok_or("empty stream")?;
    let (Some(last), "metadata") = (first.id, first.event.as_str()) else {
        return Err("no metadata event with an id".into());
    };
    let run_id = serde_json::from_str::<Value>(&first.data)
        .ok()
        .and_then(|m| m["run_id"].as_str().map(str::to_string))
        .ok_or("no run_id in the metadata event")?;
    // the client goes away mid-run (its connection closes with the reader)
    drop(reader);
    let t = Instant::now();
    let rejoined = open(
        c.get(format!("{b}/threads/{thread}/runs/{run_id}/stream"))
            .header("Last-Event-ID", last.to_string()),
    )
    .await?;
    let ids = to_end(rejoined).await?;
    let expected = (last + 1..).take(ids.len()).map(Some);
    if !ids.iter().copied().eq(expected) {
        return Err("gap in rejoined events".into());
    }
    Ok(t)
}

async fn rejoin_client(ctx: Arc<Ctx>, i: usize) {
    let mut turn = 0u64;
    while ctx.running() {
        let (thread, user, message) = conversation(&ctx, "rejoin", i, turn);
        let body = run_body(&user, &message, turn.is_multiple_of(TURNS), true);
        turn += 1;
        let t = Instant::now();
        match rejoin_once(&ctx, &thread, &body).await {
            Ok(rejoined) => ctx.record("run_rejoin", rejoined.elapsed(), Ok(())),
            Err(e) => ctx.record("run_rejoin", t.elapsed(), Err(e)),
        }
    }
}

/// What the soak watches besides the requests.
pub struct Watch {
    /// The server's process, for its memory.
    pub pid: Option<u32>,
    /// mnemo's database, when on Postgres.
    pub pg: Option<Watcher>,
    pub pool_max: Option<usize>,
}

fn mb(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

fn errors_text(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "-".into();
    }
    errors
        .iter()
        .map(|(e, n)| format!("{e}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints one window's table: a line per kind of request.
fn print_stats(stats: &mut Stats, elapsed: Duration) {
    println!(
        "  {:<13} {:>8} {:>8} {:>9} {:>9}  errors",
        "operation", "ok", "ops/s", "p50 ms", "p99 ms"
    );
    for kind in KINDS {
        let Some(s) = stats.get_mut(kind) else {
            continue;
        };
        s.latencies.sort();
        println!(
            "  {kind:<13} {:>8} {:>8.0} {:>9.2} {:>9.2}  {}",
            s.latencies.len(),
            s.latencies.len() as f64 / elapsed.as_secs_f64().max(0.001),
            pct(&s.latencies, 0.50),
            pct(&s.latencies, 0.99),
            errors_text(&s.errors)
        );
    }
}

/// One summary row per window.
struct Row {
    at: Duration,
    rss: Option<f64>,
    rss_max: Option<f64>,
    pg_max: Option<i64>,
    ok: usize,
    errors: u64,
}

/// Runs the soak against `base` for `seconds` with `clients` clients; the store and checkpoint
/// data are seeded first (`items` store items).
pub async fn soak(
    base: String,
    seconds: u64,
    clients: usize,
    items: usize,
    watch: &Watch,
) -> Result<(), String> {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let blob = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        super::messages().to_string(),
    );
    let c = super::http_client(
        reqwest::Client::builder()
            .pool_max_idle_per_host(clients)
            .timeout(REQUEST_TIMEOUT),
    );
    super::seed(&c, &base, &tag, &blob, items, clients).await?;

    let runs = (clients / 4).max(1);
    let rejoins = (clients / 8).max(1);
    let checkpoints = (clients / 4).max(1);
    let stores = clients.saturating_sub(runs + rejoins + checkpoints).max(1);
    let interval = Duration::from_secs((seconds / 10).clamp(1, 60));
    println!(
        "# soak: {seconds} s against {base}; clients: {stores} store, {checkpoints} checkpoint, {runs} streamed runs, {rejoins} drop-and-rejoin; figures every {} s",
        interval.as_secs()
    );
    println!(
        "# server: pid {}, pool max {}",
        watch.pid.map_or_else(
            || "unknown (no --pid: no memory figures)".into(),
            |p| p.to_string()
        ),
        watch
            .pool_max
            .map_or_else(|| "unknown".into(), |p| p.to_string())
    );

    let started = Instant::now();
    let ctx = Arc::new(Ctx {
        c,
        base,
        tag,
        blob,
        items: items.max(1) as u64,
        deadline: started + Duration::from_secs(seconds),
        window: Mutex::new(Stats::new()),
    });
    let mut tasks = Vec::new();
    for i in 0..stores {
        tasks.push(tokio::spawn(store_client(ctx.clone(), i)));
    }
    for i in 0..checkpoints {
        tasks.push(tokio::spawn(checkpoint_client(ctx.clone(), i)));
    }
    for i in 0..runs {
        tasks.push(tokio::spawn(run_client(ctx.clone(), i)));
    }
    for i in 0..rejoins {
        tasks.push(tokio::spawn(rejoin_client(ctx.clone(), i)));
    }

    let mut totals = Stats::new();
    let mut rows = Vec::new();
    let mut window_start = started;
    let mut pg_over = 0u32;
    while window_start < ctx.deadline {
        let end = (window_start + interval).min(ctx.deadline);
        let (mut rss_max, mut pg_max): (Option<f64>, Option<i64>) = (None, None);
        let mut rss;
        let mut pg = None;
        // sampled each second, and at the window's end
        loop {
            let now = Instant::now();
            let next = (now + Duration::from_secs(1)).min(end);
            tokio::time::sleep_until(next.into()).await;
            rss = watch
                .pid
                .and_then(|p| super::server::vm_mb(p, "VmRSS").ok());
            rss_max = match (rss_max, rss) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if let Some(w) = &watch.pg {
                pg = w.mnemo_connections().await.ok();
                pg_max = pg_max.max(pg);
            }
            if next >= end {
                break;
            }
        }
        let mut window = std::mem::take(&mut *ctx.window.lock().unwrap_or_else(|p| p.into_inner()));
        let at = end - started;
        let pool = watch
            .pool_max
            .map_or_else(String::new, |p| format!(", pool max {p}"));
        if let (Some(max), Some(pool)) = (pg_max, watch.pool_max)
            && max > pool as i64
        {
            pg_over += 1;
        }
        println!(
            "## {:>4} s  rss {} MB (max {})  pg connections {} (max {}{pool})",
            at.as_secs(),
            mb(rss),
            mb(rss_max),
            pg.map_or_else(|| "-".into(), |n| n.to_string()),
            pg_max.map_or_else(|| "-".into(), |n| n.to_string()),
        );
        print_stats(&mut window, end - window_start);
        rows.push(Row {
            at,
            rss,
            rss_max,
            pg_max,
            ok: window.values().map(|s| s.latencies.len()).sum(),
            errors: window.values().flat_map(|s| s.errors.values()).sum(),
        });
        merge(&mut totals, window);
        window_start = end;
    }

    // requests in flight at the deadline finish (each within its timeout)
    let drain = Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(5);
    for t in tasks {
        match tokio::time::timeout_at(drain.into(), t).await {
            Ok(_) => {}
            Err(_) => return Err("a soak client was still busy past its request timeout".into()),
        }
    }
    let late = std::mem::take(&mut *ctx.window.lock().unwrap_or_else(|p| p.into_inner()));
    merge(&mut totals, late);

    println!("# soak summary, one row per window");
    println!(
        "  {:>6} {:>10} {:>10} {:>8} {:>10} {:>8}",
        "t s", "rss MB", "rss max", "pg max", "ok", "errors"
    );
    for r in &rows {
        println!(
            "  {:>6} {:>10} {:>10} {:>8} {:>10} {:>8}",
            r.at.as_secs(),
            mb(r.rss),
            mb(r.rss_max),
            r.pg_max.map_or_else(|| "-".into(), |n| n.to_string()),
            r.ok,
            r.errors
        );
    }
    println!("# whole run (requests in flight at the end included)");
    print_stats(&mut totals, started.elapsed());
    if let Some(pid) = watch.pid
        && let Ok(peak) = super::server::vm_mb(pid, "VmHWM")
    {
        println!("# server peak RSS (VmHWM): {peak:.1} MB");
    }
    if pg_over > 0 {
        return Err(format!(
            "mnemo held more Postgres connections than its pool max in {pg_over} window(s)"
        ));
    }
    Ok(())
}
