//! The real `mnemo` binary: signals, healthcheck, and what Postgres sees after exit.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::both_backends;
use crate::helpers::{Kind, TestDb};

both_backends!(
    sigterm_stops_gracefully_and_leaves_no_connection,
    sigint_stops_gracefully_too,
    healthcheck_follows_readiness
);

/// The binary, running on the port it logged; `stopped` yields its shutdown log line.
struct Running {
    child: Child,
    port: u16,
    stopped: mpsc::Receiver<String>,
}

fn start(db: &TestDb) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mnemo"))
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
