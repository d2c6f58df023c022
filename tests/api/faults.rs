//! Outages: the database goes away, freezes or is locked under load, and every request still
//! gets an answer, 2xx or `503` with `Retry-After`, within the pool timeout plus a margin (never
//! a multiple of it, never a hang, never a 500); `/ready` says 503 meanwhile; and within 5 s of
//! the database's return mnemo serves again, with no restart and no connection left behind.
//!
//! Postgres: each test starts a private cluster (initdb into a temp directory, its own port on
//! 127.0.0.1, run as the `postgres` user when the tests run as root) so that it can stop it
//! (`pg_ctl stop -m immediate`) and freeze it (SIGSTOP of the postmaster and its children);
//! the cluster is removed at the end, whatever happens. Without Postgres binaries these tests
//! return early, unless `MNEMO_TEST_REQUIRE_POSTGRES=1`.
//! SQLite: another connection holds the write lock (`BEGIN IMMEDIATE`) under 40 writers.
//!
//! The bounds are correctness bounds with a generous margin, not speed measurements.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Kind, TestApp, TestDb};
use mnemo::config::Config;

/// The pool timeout the tests give mnemo: short, so the outages (8–20 s) last many times over.
const POOL_TIMEOUT_MS: u64 = 1000;
const POOL_MAX: usize = 8;
/// What an answer may take beyond the pool timeout: the actor's mailbox, the HTTP round trip,
/// a busy 2-core machine. A failed batch retried one write at a time, or a query waiting on a
/// frozen server, takes several times the pool timeout, or forever.
const MARGIN: Duration = Duration::from_millis(1500);
/// Within this long of the database's return, every request succeeds again.
const RECOVERY: Duration = Duration::from_secs(5);

/// The fault tests run one at a time: each loads a 2-core machine on its own, and their
/// bounds are about mnemo, not about how busy the other tests keep the CPU.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn bound() -> Duration {
    Duration::from_millis(POOL_TIMEOUT_MS) + MARGIN
}

fn config(url: &str) -> Config {
    let mut c = Config::from_env().expect("config");
    c.database_url = url.to_string();
    c.host = "127.0.0.1".into();
    c.port = 0;
    c.workers = Some(2);
    c.shutdown_timeout_s = 5;
    c.pool_max = POOL_MAX;
    c.pool_timeout_ms = POOL_TIMEOUT_MS;
    c
}

// ---------------------------------------------------------------------------------------------
// A private Postgres cluster

/// Where a private cluster lives and how to run its programs.
#[derive(Clone)]
struct PgSpec {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// run initdb/pg_ctl as `postgres` (Postgres refuses to run as root)
    as_postgres: bool,
}

/// A Postgres cluster of the test's own, removed (thawed and stopped first) on drop.
struct Cluster(PgSpec);

impl std::ops::Deref for Cluster {
    type Target = PgSpec;
    fn deref(&self) -> &PgSpec {
        &self.0
    }
}

impl Cluster {
    /// `None` when this machine has no Postgres binaries (and they are not required).
    async fn start() -> Option<Cluster> {
        let Some(bin) = postgres_bin() else {
            if std::env::var("MNEMO_TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!(
                    "Postgres binaries are required (MNEMO_TEST_REQUIRE_POSTGRES=1) but none is under /usr/lib/postgresql"
                );
            }
            eprintln!("\n*** NO POSTGRES BINARIES: the Postgres fault tests did NOT run ***\n");
            return None;
        };
        let as_postgres = std::fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0);
        let cluster = tokio::task::spawn_blocking(move || {
            let dir = if as_postgres {
                let out = Command::new("runuser")
                    .args(["-u", "postgres", "--", "mktemp", "-d"])
                    .arg(std::env::temp_dir().join("mnemo-faults-pg.XXXXXX"))
                    .output()
                    .expect("mktemp as postgres");
                assert!(out.status.success(), "mktemp: {out:?}");
                PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
            } else {
                let dir = std::env::temp_dir()
                    .join(format!("mnemo-faults-pg.{}", uuid::Uuid::new_v4().simple()));
                std::fs::create_dir(&dir).unwrap();
                dir
            };
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            // the guard exists before initdb, so a failure still removes the directory
            let cluster = Cluster(PgSpec {
                bin,
                dir,
                port,
                as_postgres,
            });
            let data = cluster.data();
            cluster.run(
                "initdb",
                &[
                    "-D",
                    &data,
                    "-A",
                    "trust",
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                ],
            );
            cluster.pg_ctl_start();
            cluster
        })
        .await
        .expect("the private cluster starts");
        Some(cluster)
    }

    async fn stop_immediate(&self) {
        let spec = self.0.clone();
        tokio::task::spawn_blocking(move || {
            spec.run(
                "pg_ctl",
                &["-D", &spec.data(), "-m", "immediate", "-w", "stop"],
            )
        })
        .await
        .unwrap();
    }

    async fn start_again(&self) {
        let spec = self.0.clone();
        tokio::task::spawn_blocking(move || spec.pg_ctl_start())
            .await
            .unwrap();
    }
}

impl PgSpec {
    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// Runs one of the cluster's programs; panics when it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let out = self
            .command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_ctl_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "30",
                "-o",
                &opts,
                "start",
            ],
        );
    }

    /// The postmaster's PID (first line of `postmaster.pid`), while it runs.
    fn postmaster(&self) -> Option<i32> {
        let pid = std::fs::read_to_string(self.dir.join("data").join("postmaster.pid")).ok()?;
        pid.lines().next()?.trim().parse().ok()
    }

    /// The postmaster's children (backends, checkpointer, WAL writer, …).
    fn children(&self, parent: i32) -> Vec<i32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid …": comm may hold spaces, so read after the last ')'
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(parent) {
                pids.push(pid);
            }
        }
        pids
    }

    /// SIGSTOP of the postmaster (so it forks no more), then of its children; returns them all.
    fn freeze(&self) -> Vec<i32> {
        let postmaster = self.postmaster().expect("postmaster running");
        signal("STOP", &[postmaster]);
        let children = self.children(postmaster);
        signal("STOP", &children);
        let mut all = children;
        all.push(postmaster);
        all
    }

    /// Counts mnemo's connections as Postgres shows them.
    async fn mnemo_connections(&self) -> i64 {
        let (client, conn) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .expect("connect to the private cluster");
        actix_web::rt::spawn(async move {
            let _ = conn.await;
        });
        client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mnemo'",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .get(0)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // thaw first: a frozen postmaster would never act on the stop
        if let Some(postmaster) = self.postmaster() {
            signal("CONT", &self.children(postmaster));
            signal("CONT", &[postmaster]);
            let data = self.data();
            let _ = self
                .command("pg_ctl")
                .args(["-D", &data, "-m", "immediate", "-w", "-t", "20", "stop"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb` and `pg_ctl`.
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// Sends `SIG<name>` to processes the test started (the private cluster's), by PID.
fn signal(name: &str, pids: &[i32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .args(pids.iter().map(|p| p.to_string()))
        .output();
}

// ---------------------------------------------------------------------------------------------
// Load and what it saw

/// One answered (or unanswered) request.
#[derive(Debug, Clone)]
struct Sample {
    what: &'static str,
    started: Instant,
    took: Duration,
    /// `None`: no answer (transport error or the client's own 30 s timeout)
    status: Option<u16>,
    retry_after: bool,
}

impl Sample {
    fn ok(&self) -> bool {
        matches!(self.status, Some(s) if (200..300).contains(&s) || s == 404)
    }
    fn unavailable(&self) -> bool {
        self.status == Some(503) && self.retry_after
    }
}

/// Sends one request and times it.
async fn timed(what: &'static str, req: reqwest::RequestBuilder) -> Sample {
    let started = Instant::now();
    let (status, retry_after) = match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp.headers().contains_key("retry-after");
            match resp.bytes().await {
                Ok(_) => (Some(status), retry_after),
                Err(_) => (None, false),
            }
        }
        Err(_) => (None, false),
    };
    Sample {
        what,
        started,
        took: started.elapsed(),
        status,
        retry_after,
    }
}

/// Writers and readers in a loop until told to stop (and at most `MAX_ROUNDS` each).
struct Load {
    stop: std::sync::Arc<AtomicBool>,
    workers: Vec<actix_web::rt::task::JoinHandle<Vec<Sample>>>,
}

const MAX_ROUNDS: usize = 100_000;

impl Load {
    /// `writers` loops of store puts, `mixed` loops of reads, thread creations and puts, and
    /// one loop of `/ready`, each pausing `pause` between requests.
    fn start(app: &TestApp, writers: usize, mixed: usize, pause: Duration) -> Load {
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut workers = Vec::new();
        for w in 0..writers + mixed + 1 {
            let (stop, client, base) = (stop.clone(), client.clone(), app.address.clone());
            workers.push(actix_web::rt::spawn(async move {
                let mut samples = Vec::new();
                for i in 0..MAX_ROUNDS {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let put = || {
                        client.put(format!("{base}/store/items")).json(&json!({
                            "namespace": ["load", format!("w{w}")],
                            "key": format!("k{}", i % 50),
                            "value": {"i": i},
                        }))
                    };
                    let sample = if w == writers + mixed {
                        timed("ready", client.get(format!("{base}/ready"))).await
                    } else if w < writers {
                        timed("put", put()).await
                    } else {
                        match i % 3 {
                            0 => timed("put", put()).await,
                            1 => {
                                let url = format!(
                                    "{base}/store/items?namespace=load.w{w}&key=k{}",
                                    (i + 49) % 50
                                );
                                timed("get", client.get(url)).await
                            }
                            _ => {
                                let req = client.post(format!("{base}/threads")).json(&json!({}));
                                timed("thread", req).await
                            }
                        }
                    };
                    samples.push(sample);
                    tokio::time::sleep(pause).await;
                }
                samples
            }));
        }
        Load { stop, workers }
    }

    async fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for w in self.workers {
            all.extend(w.await.expect("load worker"));
        }
        all.sort_by_key(|s| s.started);
        all
    }
}

/// What the load saw around one outage, checked: every answer within the bound and either a
/// success or a 503 with Retry-After; `/ready` 503 during the outage; everything succeeding
/// from `back + RECOVERY` on. Prints the figures.
fn check(name: &str, samples: &[Sample], outage_from: Instant, back: Instant) {
    assert!(!samples.is_empty());
    let slowest = samples.iter().max_by_key(|s| s.took).unwrap();
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.started >= outage_from && s.started < back)
        .collect();
    let refused = during.iter().filter(|s| s.unavailable()).count();
    let slowest_during = during.iter().map(|s| s.took).max().unwrap_or_default();
    let last_failure = samples
        .iter()
        .filter(|s| !s.ok() && s.started >= back)
        .map(|s| s.started.duration_since(back))
        .max();
    eprintln!(
        "{name}: {} requests, {} during the outage ({refused} answered 503); slowest answer {:?} \
         ({}; bound {:?}), slowest during the outage {slowest_during:?}; last failure {:?} after \
         the database was back",
        samples.len(),
        during.len(),
        slowest.took,
        slowest.what,
        bound(),
        last_failure,
    );
    // failures outside the outage, for the reader of a failed run (at most 20)
    for s in samples
        .iter()
        .filter(|s| !s.ok() && (s.started >= back || s.started < outage_from))
        .take(20)
    {
        eprintln!(
            "  outside the outage: {:?} before it, {:?} after the return: {} {:?} in {:?}",
            outage_from.checked_duration_since(s.started),
            s.started.checked_duration_since(back),
            s.what,
            s.status,
            s.took
        );
    }
    for s in samples {
        assert!(
            s.status.is_some(),
            "{name}: a {} sent {:?} after the outage began got no answer in {:?}",
            s.what,
            s.started.checked_duration_since(outage_from),
            s.took
        );
        assert!(
            s.ok() || s.unavailable(),
            "{name}: a {} answered {:?} (retry-after: {}); only success or 503 + Retry-After are \
             honest",
            s.what,
            s.status,
            s.retry_after
        );
        assert!(
            s.took <= bound(),
            "{name}: a {} took {:?}, past the pool timeout plus margin ({:?}); status {:?}",
            s.what,
            s.took,
            bound(),
            s.status
        );
    }
    assert!(
        refused > 0,
        "{name}: nothing was refused during the outage: was there one?"
    );
    // /ready: 503 once the outage has been seen (one pool timeout in), until the database is back
    let seen = outage_from + Duration::from_millis(POOL_TIMEOUT_MS) + MARGIN;
    let ready_during: Vec<&&Sample> = during
        .iter()
        .filter(|s| s.what == "ready" && s.started >= seen)
        .collect();
    assert!(
        !ready_during.is_empty(),
        "{name}: /ready was not asked during the outage"
    );
    for s in &ready_during {
        assert_eq!(
            s.status,
            Some(503),
            "{name}: /ready during the outage: {s:?}"
        );
    }
    // from RECOVERY after the return on, everything succeeds, /ready included
    let recovered = back + RECOVERY;
    let after: Vec<&Sample> = samples.iter().filter(|s| s.started >= recovered).collect();
    assert!(
        after.iter().any(|s| s.what == "ready") && after.iter().any(|s| s.what == "put"),
        "{name}: too little load after the recovery window to judge it"
    );
    for s in &after {
        assert!(
            s.ok(),
            "{name}: {:?} after the database was back, a {} answered {:?}",
            s.started.duration_since(back),
            s.what,
            s.status
        );
    }
}

/// Samples mnemo's connection count now and then for `for_`, returning the largest.
async fn most_connections(cluster: &PgSpec, for_: Duration) -> i64 {
    let until = Instant::now() + for_;
    let mut most = 0;
    while Instant::now() < until {
        most = most.max(cluster.mnemo_connections().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    most
}

/// Stops mnemo and checks that it left no connection behind (a backend leaves
/// `pg_stat_activity` a moment after its client closed the socket: up to 3 s here).
/// After a Postgres outage: every answer was within the bound, mnemo held at most the pool's
/// connections, and none is left once it stops.
async fn recovered(
    name: &str,
    app: TestApp,
    load: Load,
    cluster: &Cluster,
    outage_from: Instant,
    back: Instant,
) {
    let most = most_connections(cluster, Duration::from_secs(1)).await;
    let samples = load.finish().await;
    check(name, &samples, outage_from, back);
    assert!(
        most <= POOL_MAX as i64,
        "{most} connections from mnemo, pool max {POOL_MAX}"
    );
    stop_and_count(app, cluster).await;
}

async fn stop_and_count(app: TestApp, cluster: &PgSpec) {
    app.stop().await;
    let mut left = cluster.mnemo_connections().await;
    for _ in 0..30 {
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = cluster.mnemo_connections().await;
    }
    assert_eq!(left, 0, "connections left behind after mnemo stopped");
}

// ---------------------------------------------------------------------------------------------
// The faults

/// A private cluster, a mnemo on it, and 2 s of load already behind them (`None`: no
/// cluster can be made here).
async fn postgres_under_load() -> Option<(Cluster, TestApp, Load)> {
    let cluster = Cluster::start().await?;
    let app = TestApp::start(config(&cluster.url())).await;
    let load = Load::start(&app, 4, 4, Duration::from_millis(20));
    tokio::time::sleep(Duration::from_secs(2)).await;
    Some((cluster, app, load))
}

#[actix_web::test]
async fn postgres_stopped_mid_load_then_started() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some((cluster, app, load)) = postgres_under_load().await else {
        return;
    };

    let outage_from = Instant::now();
    cluster.stop_immediate().await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    // the outage ends when the start begins: the server takes connections before pg_ctl returns
    let back = Instant::now();
    cluster.start_again().await;
    tokio::time::sleep(RECOVERY + Duration::from_secs(3)).await;
    recovered("postgres stopped", app, load, &cluster, outage_from, back).await;
}

#[actix_web::test]
async fn postgres_frozen_for_20_s_then_thawed() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Some((cluster, app, load)) = postgres_under_load().await else {
        return;
    };

    let outage_from = Instant::now();
    let frozen = cluster.freeze();
    tokio::time::sleep(Duration::from_secs(20)).await;
    signal("CONT", &frozen);
    let back = Instant::now();
    tokio::time::sleep(RECOVERY + Duration::from_secs(3)).await;
    recovered("postgres frozen", app, load, &cluster, outage_from, back).await;
}

#[actix_web::test]
async fn sqlite_write_lock_held_for_15_s_under_40_writers() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new(Kind::Sqlite).await.unwrap();
    let app = TestApp::start(config(&db.url)).await;
    let (s, _) = app
        .put(
            "/store/items",
            json!({"namespace": ["load"], "key": "first", "value": {}}),
        )
        .await;
    assert_eq!(s, 204);
    let load = Load::start(&app, 40, 0, Duration::from_millis(50));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // another connection takes the write lock and holds it for 15 s
    let path = db.url.trim_start_matches("sqlite://").to_string();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        use diesel::connection::SimpleConnection;
        use diesel::{Connection, sqlite::SqliteConnection};
        let mut conn = SqliteConnection::establish(&path).unwrap();
        conn.batch_execute("PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE")
            .unwrap();
        locked_tx.send(Instant::now()).unwrap();
        std::thread::sleep(Duration::from_secs(15));
        conn.batch_execute("ROLLBACK").unwrap();
        Instant::now()
    });
    let outage_from = loop {
        match locked_rx.try_recv() {
            Ok(at) => break at,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("the lock holder failed: {e}"),
        }
    };
    let back = loop {
        if holder.is_finished() {
            break holder.join().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(RECOVERY + Duration::from_secs(2)).await;
    let samples = load.finish().await;

    check("sqlite locked", &samples, outage_from, back);
    app.stop().await;
}

/// A run whose checkpoint cannot be written (SQLite locked by another connection) ends `error`
/// with mnemo's own words in its stream, and once the lock is gone its thread takes a new run
/// within the lease (marking the run ended failed too: its lease expires, and it is resumed).
#[actix_web::test]
async fn a_run_whose_checkpoint_cannot_be_written_ends_error_and_frees_its_thread() {
    use crate::fake_llm::{FakeLlm, Reply};
    let _turn = ONE_AT_A_TIME.lock().await;
    let fake = FakeLlm::start(vec![Reply::Stream(
        vec![
            json!({"role": "assistant", "content": "one "}),
            json!({"role": "assistant", "content": "two "}),
            json!({"role": "assistant", "content": "three"}),
        ],
        Duration::from_millis(400),
    )])
    .await;
    let db = TestDb::new(Kind::Sqlite).await.unwrap();
    let mut c = config(&db.url);
    c.llm = "openai".into();
    c.llm_base_url = fake.base_url.clone();
    c.llm_read_timeout_ms = 30_000;
    c.run_lease_s = 3;
    let app = TestApp::start(c).await;
    let (_, thread) = app.post("/threads", json!({})).await;
    let tid = thread["thread_id"].as_str().unwrap().to_string();
    let stream = app
        .client
        .post(app.url(&format!("/threads/{tid}/runs/stream")))
        .json(&json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hi"}]}, "durability": "sync"}))
        .send();
    let stream = tokio::spawn(async move {
        let resp = stream.await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), resp.text())
            .await
            .expect("the stream ends")
            .unwrap()
    });
    // the input step is committed (sync); the model is answering: lock the database
    fake.received(1).await;
    let path = db.url.trim_start_matches("sqlite://").to_string();
    let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
    let holder = std::thread::spawn(move || {
        use diesel::connection::SimpleConnection;
        use diesel::{Connection, sqlite::SqliteConnection};
        let mut conn = SqliteConnection::establish(&path).unwrap();
        conn.batch_execute("PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE")
            .unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(6));
        conn.batch_execute("ROLLBACK").unwrap();
    });
    locked_rx.await.unwrap();
    let text = stream.await.unwrap();
    assert!(
        text.contains("a checkpoint could not be written"),
        "the stream says why in mnemo's words: {text}"
    );
    assert!(!text.contains("locked"), "no driver text: {text}");
    while !holder.is_finished() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    holder.join().unwrap();
    let back = Instant::now();
    // the thread takes a new run within the lease (plus the keeper's tick and a margin)
    let limit = Duration::from_secs(3 + 5);
    loop {
        let (s, b) = app
            .post(
                &format!("/threads/{tid}/runs/wait"),
                json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "again"}]}}),
            )
            .await;
        if s == 200 {
            break;
        }
        assert!(s == 409 || s == 503, "{s} {b}");
        assert!(
            back.elapsed() < limit,
            "still busy {:?} after the lock",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // the run could not be marked ended either: its lease expired, and it was resumed from the
    // input step it had committed (the model answers once its script is spent)
    let (_, runs) = app.get(&format!("/threads/{tid}/runs")).await;
    let first = runs.as_array().unwrap().last().unwrap();
    assert_eq!(first["status"], "success", "{runs}");
    app.stop().await;
}
