//! `--ops memory`: the peak resident memory (VmHWM) of a mnemo answering large requests, each
//! case on a fresh mnemo process, so that one case's peak is not another's:
//! - one 10 MiB JSON body (an object of many small fields) as a store item's value, a thread's
//!   metadata and a checkpoint's inline channel values; then 8 such bodies at once;
//! - `GET /threads/{id}/history?limit=100` over a thread of 100 checkpoints whose state is
//!   ~1 MiB each (written through the raw checkpoint API); then 6 such requests at once.
//!
//! Each line gives the server's RSS before the request(s), its peak and its RSS after, and the
//! peak over the size of one body (or one answer).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use base64::Engine;
use futures_util::StreamExt;
use serde_json::json;

use super::server::Server;
use crate::config::Config;

const MIB: usize = 1024 * 1024;
/// Checkpoints of the history case, and the size of each one's state.
const HISTORY_CHECKPOINTS: usize = 100;
const STATE_BYTES: usize = MIB;

/// A JSON object of many small fields (`"f0000001":"…16 hex digits…"`), `bytes` long give or
/// take a field.
fn wide_object(bytes: usize, seed: u64) -> String {
    let mut s = String::with_capacity(bytes + 64);
    s.push('{');
    let mut i = 0u64;
    while s.len() + 32 < bytes {
        if i > 0 {
            s.push(',');
        }
        let v = (i ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let _ = write!(s, "\"f{i:07}\":\"{v:016x}\"");
        i += 1;
    }
    s.push('}');
    s
}

/// `envelope` with `{}` replaced by a wide object that brings it to `bytes`.
fn body_of(envelope: &str, bytes: usize, seed: u64) -> String {
    let object = wide_object(bytes.saturating_sub(envelope.len() - 2), seed);
    envelope.replacen("{}", &object, 1)
}

/// One request of a case: method, path and JSON body.
type Request = (reqwest::Method, String, String);

/// `n` requests of `kind`, each with a body of `bytes`.
fn requests(kind: &str, n: usize, bytes: usize) -> Vec<Request> {
    (0..n)
        .map(|j| {
            let id = uuid::Uuid::new_v4().to_string();
            let seed = j as u64;
            match kind {
                "store put" => {
                    let env = format!(
                        r#"{{"namespace":["bench","memory"],"key":"{id}","value":{{}}}}"#
                    );
                    (
                        reqwest::Method::PUT,
                        "/store/items".into(),
                        body_of(&env, bytes, seed),
                    )
                }
                "thread create" => {
                    let env = format!(r#"{{"thread_id":"{id}","metadata":{{}}}}"#);
                    (
                        reqwest::Method::POST,
                        "/threads".into(),
                        body_of(&env, bytes, seed),
                    )
                }
                _ => {
                    let cp = "1f1e9aab-0000-6000-8000-000000000001";
                    let env = format!(
                        r#"{{"checkpoint_id":"{cp}","checkpoint":{{"v":4,"id":"{cp}","ts":"2026-11-26T15:04:51.758120+00:00","channel_values":{{}},"channel_versions":{{}},"versions_seen":{{}}}},"metadata":{{"source":"loop","step":1}}}}"#
                    );
                    // the object to fill is channel_values, the first `{}` after "channel_values"
                    let (head, tail) = env.split_at(env.find("\"channel_values\"").unwrap_or(0));
                    let filled = body_of(tail, bytes.saturating_sub(head.len()), seed);
                    (
                        reqwest::Method::PUT,
                        format!("/threads/{id}/checkpoints"),
                        format!("{head}{filled}"),
                    )
                }
            }
        })
        .collect()
}

/// "200 x8", "200 x6, 503 x2".
fn statuses(answers: &[Result<(u16, usize), String>]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for a in answers {
        let key = match a {
            Ok((s, _)) => s.to_string(),
            Err(e) => e.clone(),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sends `reqs` at once to a fresh mnemo and prints its memory around them; `size` is what
/// the peak is compared with (one body, or `None`: one answer, measured).
async fn case(
    config: &Config,
    name: &str,
    reqs: Vec<Request>,
    size: Option<usize>,
) -> Result<(), String> {
    let server = Server::start(config, &[]).await?;
    // what start-up allocated settles before the baseline
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.vm_mb("VmRSS")?;
    let n = reqs.len();
    let c = super::http_client(reqwest::Client::builder().timeout(Duration::from_secs(300)));
    let base = server.base.clone();
    let answers: Vec<Result<(u16, usize), String>> =
        futures_util::future::join_all(reqs.into_iter().map(|(method, path, body)| {
            let req = c
                .request(method, format!("{base}{path}"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            async move {
                let resp = req.send().await.map_err(|e| format!("failed: {e}"))?;
                let status = resp.status().as_u16();
                let bytes = resp.bytes().await.map_err(|e| format!("failed: {e}"))?;
                Ok((status, bytes.len()))
            }
        }))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (peak, after) = (server.vm_mb("VmHWM")?, server.vm_mb("VmRSS")?);
    let size = size.unwrap_or_else(|| {
        answers
            .iter()
            .filter_map(|a| a.as_ref().ok().map(|(_, b)| *b))
            .max()
            .unwrap_or(0)
    });
    let size_mib = size as f64 / MIB as f64;
    println!(
        "{name:<30} {n:>2} {size_mib:>9.1} {before:>10.1} {peak:>9.1} {after:>9.1} {:>10.1} {:>12.1}  {}",
        peak / size_mib.max(f64::MIN_POSITIVE),
        (peak - before) / (n as f64 * size_mib).max(f64::MIN_POSITIVE),
        statuses(&answers)
    );
    server.stop().await
}

/// Writes a thread of `HISTORY_CHECKPOINTS` checkpoints of `STATE_BYTES` of state each,
/// through a mnemo of its own; answers the thread's id.
async fn history_thread(config: &Config) -> Result<String, String> {
    let server = Server::start(config, &[]).await?;
    let c = super::http_client(reqwest::Client::builder().timeout(Duration::from_secs(300)));
    let base = server.base.clone();
    let thread = uuid::Uuid::new_v4().to_string();
    let created = c
        .post(format!("{base}/threads"))
        .json(&json!({"thread_id": thread}))
        .send()
        .await
        .map_err(|e| format!("creating the history thread: {e}"))?;
    if !created.status().is_success() {
        return Err(format!("creating the history thread: {}", created.status()));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let puts = (0..HISTORY_CHECKPOINTS).map(|k| {
        let id = format!("1f1e9aab-0000-6000-8000-{k:012}");
        let parent = (k > 0).then(|| format!("1f1e9aab-0000-6000-8000-{:012}", k - 1));
        let version = format!("{:032}.0.1", k + 1);
        let state = b64.encode(wide_object(STATE_BYTES, k as u64));
        let body = json!({
            "checkpoint_id": id, "parent_checkpoint_id": parent,
            "checkpoint": {"v": 4, "id": id, "ts": "2026-11-26T15:04:51.758120+00:00", "channel_values": {},
                           "channel_versions": {"state": version}, "versions_seen": {}, "updated_channels": ["state"]},
            "metadata": {"source": "loop", "step": k},
            "blobs": [{"channel": "state", "version": version, "type": "json", "data": state}],
        });
        super::status(c.put(format!("{base}/threads/{thread}/checkpoints")).json(&body))
    });
    let results: Vec<_> = futures_util::stream::iter(puts)
        .buffer_unordered(4)
        .collect()
        .await;
    for r in results {
        match r {
            Ok(s) if s.is_success() => {}
            Ok(s) => return Err(format!("a history checkpoint put answered {s}")),
            Err(e) => return Err(format!("a history checkpoint put failed: {e}")),
        }
    }
    server.stop().await?;
    Ok(thread)
}

pub async fn memory(config: &Config) -> Result<(), String> {
    // as large as mnemo accepts (MNEMO_MAX_BODY_BYTES, 10 MiB by default), a little under it
    let bytes = config.max_body_bytes.min(10 * MIB) - 1024;
    println!(
        "# memory: each case on a fresh mnemo on {}; bodies of {:.2} MiB; MB are MiB",
        crate::config::redact_url(&config.database_url),
        bytes as f64 / MIB as f64
    );
    println!(
        "{:<30} {:>2} {:>9} {:>10} {:>9} {:>9} {:>10} {:>12}  answers",
        "case", "n", "size MiB", "before MB", "peak MB", "after MB", "peak/size", "growth/n.size"
    );
    for kind in ["store put", "thread create", "checkpoint put"] {
        for n in [1, 8] {
            let name = format!("{kind} 10 MiB");
            case(config, &name, requests(kind, n, bytes), Some(bytes)).await?;
        }
    }
    let thread = history_thread(config).await?;
    for n in [1, 6] {
        let reqs = (0..n)
            .map(|_| {
                (
                    reqwest::Method::GET,
                    format!("/threads/{thread}/history?limit=100"),
                    String::new(),
                )
            })
            .collect();
        case(config, "history 100 x 1 MiB states", reqs, None).await?;
    }
    println!(
        "# n: requests at once; size: one body, or one answer for history; growth: peak minus before, over the n bodies or answers"
    );
    Ok(())
}
