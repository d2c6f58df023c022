//! The real `mnemo` binary: signals, healthcheck, and what Postgres sees after exit.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::fake_llm::{FakeLlm, Reply};
use crate::helpers::{Kind, TestDb};

both_backends!(
    sigterm_stops_gracefully_and_leaves_no_connection,
    sigint_stops_gracefully_too,
    healthcheck_follows_readiness,
    sigkill_mid_run_resumes_the_run_in_the_next_process,
    sigkill_mid_run_out_of_attempts_frees_the_thread_within_the_lease,
);

/// The binary, running on the port it logged; `stopped` yields its shutdown log line.
struct Running {
    child: Child,
    port: u16,
    stopped: mpsc::Receiver<String>,
}

fn start(db: &TestDb) -> Running {
    start_with(db, &[])
}

fn start_with(db: &TestDb, env: &[(&str, &str)]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mnemo"))
        .envs(env.iter().copied())
        .env("DATABASE_URL", &db.url)
        .env("MNEMO_PORT", "0")
        .env("MNEMO_POOL_MAX", "4")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn mnemo");
    let stderr = child.stderr.take().expect("stderr");
    let (port_tx, port_rx) = mpsc::channel();
    let (stop_tx, stopped) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("mnemo listening on ").nth(1) {
                let addr = rest.split(' ').next().unwrap_or_default();
                let _ = port_tx.send(addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()));
            }
            if line.contains("mnemo stopped: pool closed") {
                let _ = stop_tx.send(line);
            }
        }
    });
    let port = port_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("mnemo logs its address");
    Running {
        child,
        port: port.expect("a port in the start-up line"),
        stopped,
    }
}

async fn stops_on(kind: Kind, signal: &str) {
    let Some(db) = TestDb::new(kind).await else {
        return;
    };
    let Running {
        mut child,
        port,
        stopped,
    } = start(&db);
    mnemo::install_crypto_provider();
    let client = reqwest::Client::new();
    for i in 0..20 {
        let body = serde_json::json!({"namespace": ["p"], "key": format!("k{i}"), "value": {}});
        let r = client
            .put(format!("http://127.0.0.1:{port}/store/items"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    if kind == Kind::Postgres {
        assert!(db.pg_connections().await >= 1);
    }
    assert!(
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "mnemo exits 0 on {signal}: {exit:?}");
    let line = stopped
        .recv_timeout(Duration::from_secs(10))
        .expect("a shutdown line with the pool figures");
    assert!(line.contains("after 0"), "{line}");
    if kind == Kind::Postgres {
        assert_eq!(
            db.pg_connections_after_stop().await,
            0,
            "no connection from mnemo after exit"
        );
    }
}

async fn sigterm_stops_gracefully_and_leaves_no_connection(kind: Kind) {
    stops_on(kind, "-TERM").await
}

async fn sigint_stops_gracefully_too(kind: Kind) {
    stops_on(kind, "-INT").await
}

async fn healthcheck_follows_readiness(kind: Kind) {
    let Some(db) = TestDb::new(kind).await else {
        return;
    };
    let Running {
        mut child, port, ..
    } = start(&db);
    let check = |port: u16| {
        Command::new(env!("CARGO_BIN_EXE_mnemo"))
            .arg("healthcheck")
            .env("MNEMO_PORT", port.to_string())
            .env("RUST_LOG", "off")
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    assert!(check(port).success(), "healthy while serving");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(!check(port).success(), "unhealthy once stopped");
}

async fn post_json(client: &reqwest::Client, url: String, body: &Value) -> Value {
    let resp = client.post(url).json(body).send().await.unwrap();
    resp.json().await.unwrap()
}

async fn get_json(client: &reqwest::Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// A run stalled in its model call and a run queued behind it, then `kill -9`: after a restart
/// the lost run is resumed within the lease (plus the keeper's tick): its committed input step
/// is not run again, the model call it was in is made again, `join` answers the resumed run's
/// values and a rejoined stream replays both attempts to the end; the queued run goes next.
async fn sigkill_mid_run_resumes_the_run_in_the_next_process(kind: Kind) {
    let Some(killed) = sigkill_mid_run(kind, "3").await else {
        return;
    };
    let Killed {
        _db,
        client,
        port,
        tid,
        run_id,
        queued_id,
        written,
        second,
        llm,
        bound,
    } = killed;
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let joined = tokio::time::timeout(
        bound,
        client
            .get(url(&format!("/threads/{tid}/runs/{run_id}/join")))
            .send(),
    )
    .await
    .expect("join ends within the lease")
    .unwrap();
    assert_eq!(joined.status().as_u16(), 200);
    let values: Value = joined.json().await.unwrap();
    let messages = values["messages"].as_array().unwrap();
    assert_eq!(
        messages.len(),
        2,
        "the input once, then the answer: {values}"
    );
    assert_eq!(messages[1]["content"], "resumed answer", "{values}");
    let stream = client
        .get(url(&format!("/threads/{tid}/runs/{run_id}/stream")))
        .header("last-event-id", "0")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let attempt = |n: u32| format!("\"attempt\":{n}");
    assert!(
        stream.contains(&attempt(1)) && stream.contains(&attempt(2)),
        "the stream has both attempts: {stream}"
    );
    assert!(stream.contains("resumed answer"), "{stream}");
    assert!(!stream.contains("RunLost"), "{stream}");
    let run: Value = get_json(&client, url(&format!("/threads/{tid}/runs/{run_id}"))).await;
    assert_eq!(run["status"], "success", "{run}");
    // the model call in flight was made again; the queued run then had its turn
    llm.received(3).await;
    let wait_for = |id: String| {
        let client = client.clone();
        let path = url(&format!("/threads/{tid}/runs/{id}/join"));
        async move { client.get(path).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(wait_for(queued_id.clone()).await, 200);
    let queued: Value = get_json(&client, url(&format!("/threads/{tid}/runs/{queued_id}"))).await;
    assert_eq!(queued["status"], "success", "{queued}");
    let history: Value = get_json(&client, url(&format!("/threads/{tid}/history?limit=100"))).await;
    let inputs_of_run = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["metadata"]["run_id"] == run_id.as_str() && s["metadata"]["source"] == "input"
        })
        .count();
    assert_eq!(
        inputs_of_run, 1,
        "the committed input step ran once: {history}"
    );
    survived_then_stop(&written, &history, second).await;
}

/// The same, with `MNEMO_RUN_MAX_ATTEMPTS=1`: the lost run ends `error` (`RunLost`) instead,
/// the run queued behind it too, and the thread takes a new run within the lease.
async fn sigkill_mid_run_out_of_attempts_frees_the_thread_within_the_lease(kind: Kind) {
    let Some(killed) = sigkill_mid_run(kind, "1").await else {
        return;
    };
    let Killed {
        client,
        port,
        tid,
        run_id,
        queued_id,
        written,
        second,
        bound,
        _db,
        ..
    } = killed;
    let restarted = std::time::Instant::now();
    let url = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
    // join and a rejoined stream of the lost run end, with the run ended as error
    let joined = tokio::time::timeout(
        bound,
        client
            .get(url(port, &format!("/threads/{tid}/runs/{run_id}/join")))
            .send(),
    )
    .await
    .expect("join ends within the lease")
    .unwrap();
    assert_eq!(joined.status().as_u16(), 200);
    let stream = tokio::time::timeout(bound, async {
        client
            .get(url(port, &format!("/threads/{tid}/runs/{run_id}/stream")))
            .header("last-event-id", "0")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
    .await
    .expect("the rejoined stream ends");
    assert!(
        stream.contains("RunLost"),
        "the stream says the run was lost: {stream}"
    );
    let lost: Value = get_json(&client, url(port, &format!("/threads/{tid}/runs/{run_id}"))).await;
    assert_eq!(lost["status"], "error", "{lost}");
    // the run queued behind it was held by no process: the next one executes it
    let joined = client
        .get(url(port, &format!("/threads/{tid}/runs/{queued_id}/join")))
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status().as_u16(), 200);
    let queued: Value = get_json(
        &client,
        url(port, &format!("/threads/{tid}/runs/{queued_id}")),
    )
    .await;
    assert_eq!(queued["status"], "success", "{queued}");

    // the thread takes a new run (the builtin answers once the script is spent)
    let started = loop {
        let r = client
            .post(url(port, &format!("/threads/{tid}/runs/wait")))
            .json(&json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "again"}]}}))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() != 409 {
            break r;
        }
        assert!(
            restarted.elapsed() < bound,
            "the thread is still busy after {:?}",
            restarted.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(started.status().as_u16(), 200);
    assert!(restarted.elapsed() < bound);

    let after: Value = get_json(
        &client,
        url(port, &format!("/threads/{tid}/history?limit=100")),
    )
    .await;
    survived_then_stop(&written, &after, second).await;
}

/// Asserts that the checkpoints `written` before the kill are in `history`, then stops the
/// process started after it.
async fn survived_then_stop(written: &[Value], history: &Value, mut second: Child) {
    let ids: Vec<Value> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["checkpoint"]["checkpoint_id"].clone())
        .collect();
    for id in written {
        assert!(ids.contains(id), "checkpoint {id} survived the kill");
    }
    let _ = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    let _ = tokio::task::spawn_blocking(move || second.wait()).await;
}

/// What [`sigkill_mid_run`] leaves: a thread whose run was lost with its process, and the
/// process started next on the same database.
struct Killed {
    /// Dropped (removed) with the test's other state, after the second process stopped.
    _db: TestDb,
    client: reqwest::Client,
    port: u16,
    tid: String,
    run_id: String,
    queued_id: String,
    /// The checkpoints committed before the kill.
    written: Vec<Value>,
    second: Child,
    llm: FakeLlm,
    /// How long the next process may take to take the lost run back.
    bound: Duration,
}

/// A resumable run stalled in its model call (its input step committed) and a run queued behind
/// it, then `kill -9` of their process and a new one started, with `max_attempts` attempts per
/// run. The model stalls once, then answers `resumed answer`.
async fn sigkill_mid_run(kind: Kind, max_attempts: &str) -> Option<Killed> {
    let db = TestDb::new(kind).await?;
    mnemo::install_crypto_provider();
    let llm = FakeLlm::start(vec![
        Reply::Stall(vec![json!({"role": "assistant", "content": "thinking "})]),
        crate::fake_llm::answer("resumed answer"),
    ])
    .await;
    const LEASE_S: u64 = 3;
    let lease = LEASE_S.to_string();
    let env = [
        ("MNEMO_LLM", "openai"),
        ("MNEMO_LLM_BASE_URL", llm.base_url.as_str()),
        ("MNEMO_RUN_LEASE_S", lease.as_str()),
        ("MNEMO_RUN_MAX_ATTEMPTS", max_attempts),
    ];
    let Running {
        mut child, port, ..
    } = start_with(&db, &env);
    let client = reqwest::Client::new();
    let url = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");
    let thread: Value = post_json(&client, url(port, "/threads"), &json!({})).await;
    let tid = thread["thread_id"].as_str().unwrap().to_string();
    let run: Value = post_json(&client, url(port, &format!("/threads/{tid}/runs")), &json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hi"}]}, "stream_resumable": true})).await;
    let run_id = run["run_id"].as_str().unwrap().to_string();
    let queued: Value = post_json(&client, url(port, &format!("/threads/{tid}/runs")), &json!({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "next"}]}, "multitask_strategy": "enqueue"})).await;
    assert_eq!(queued["status"], "pending", "{queued}");
    llm.received(1).await;
    // the input step is written in the background (durability "async"): wait until it shows
    let mut written: Vec<Value> = Vec::new();
    for _ in 0..100 {
        let before: Value = get_json(&client, url(port, &format!("/threads/{tid}/history"))).await;
        written = before
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["checkpoint"]["checkpoint_id"].clone())
            .collect();
        if !written.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!written.is_empty(), "the input step was written");

    assert!(
        Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    let Running {
        child: second,
        port,
        ..
    } = start_with(&db, &env);
    Some(Killed {
        _db: db,
        client,
        port,
        tid,
        run_id,
        queued_id: queued["run_id"].as_str().unwrap().to_string(),
        written,
        second,
        llm,
        bound: Duration::from_secs(LEASE_S + 5),
    })
}
