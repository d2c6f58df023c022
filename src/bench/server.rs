//! The mnemo a bench operation measures as a process of its own (a child of the bench, so its
//! memory and CPU time are its own), and what `/proc` says about a process.

use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use crate::config::Config;

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux whatever the kernel's
/// own tick).
const TICKS_PER_S: f64 = 100.0;

/// A `Vm…` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in MB.
pub fn vm_mb(pid: u32, field: &str) -> Result<f64, String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    status
        .lines()
        .find_map(|l| {
            let kb = l.strip_prefix(field)?.strip_prefix(':')?.trim();
            kb.strip_suffix("kB")?.trim().parse::<f64>().ok()
        })
        .map(|kb| kb / 1024.0)
        .ok_or_else(|| format!("no {field} in {path}"))
}

/// The CPU time (user + system) the process has used so far, in seconds.
pub fn cpu_s(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // the command name (field 2) is in parentheses and may hold spaces; utime and stime are
    // fields 14 and 15, the 12th and 13th after it
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("{path}: unexpected format"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| format!("{path}: unexpected format"))
    };
    Ok((tick(11)? + tick(12)?) as f64 / TICKS_PER_S)
}

/// A mnemo child process serving on a loopback port, killed if still running when dropped.
pub struct Server {
    child: std::process::Child,
    pub base: String,
    shutdown_timeout_s: u64,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    /// Starts `mnemo serve` (this very binary) on `config`'s database and pool size, on a free
    /// loopback port, with `env` on top of the bench's own environment; answers once its
    /// `/ready` answers 200.
    pub async fn start(config: &Config, env: &[(&str, String)]) -> Result<Server, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let exe = std::env::current_exe().map_err(|e| format!("mnemo's own path: {e}"))?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("serve")
            .env("DATABASE_URL", &config.database_url)
            .env("MNEMO_POOL_MAX", config.pool_max.to_string())
            .env("MNEMO_HOST", "127.0.0.1")
            .env("MNEMO_PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting the mnemo under test: {e}"))?;
        let mut server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            shutdown_timeout_s: config.shutdown_timeout_s,
        };
        let ready = format!("{}/ready", server.base);
        let c = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server.exited(Duration::ZERO).await? {
                return Err(format!("the mnemo under test exited at start ({status})"));
            }
            if matches!(c.get(&ready).send().await, Ok(r) if r.status().is_success()) {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!("{ready} did not answer 200 within 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.base
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_default()
    }

    /// A `Vm…` line of its `/proc/<pid>/status`, in MB.
    pub fn vm_mb(&self, field: &str) -> Result<f64, String> {
        vm_mb(self.pid(), field)
    }

    /// Waits until it has exited, at most `within`.
    async fn exited(
        &mut self,
        within: Duration,
    ) -> Result<Option<std::process::ExitStatus>, String> {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                done => return done.map_err(|e| format!("the mnemo under test: {e}")),
            }
        }
    }

    /// SIGTERM, then waits for a clean exit (at most its shutdown timeout and 10 s more).
    pub async fn stop(mut self) -> Result<(), String> {
        std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .map_err(|e| format!("kill -TERM: {e}"))?;
        let wait = Duration::from_secs(self.shutdown_timeout_s + 10);
        match self.exited(wait).await? {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!("the mnemo under test ended with {status}")),
            None => Err(format!(
                "the mnemo under test was still running {}s after SIGTERM",
                wait.as_secs()
            )),
        }
    }
}

/// A listener for a fake model endpoint on a free loopback port, and that port.
pub async fn model_listener() -> Result<(tokio::net::TcpListener, u16), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("fake model endpoint: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("fake model endpoint: {e}"))?
        .port();
    Ok((listener, port))
}

/// A model endpoint that reads every request and never answers; its sockets close when the
/// returned task is aborted.
pub async fn silent_model() -> Result<(u16, tokio::task::JoinHandle<()>), String> {
    let (listener, port) = model_listener().await?;
    let task = tokio::spawn(async move {
        let mut held = tokio::task::JoinSet::new();
        loop {
            match listener.accept().await {
                Ok((mut s, _)) => {
                    held.spawn(async move {
                        let mut buf = [0u8; 4096];
                        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
    Ok((port, task))
}

/// The environment that points a mnemo's `openai` model at a fake endpoint on `port`: a run's
/// model call waits up to ten minutes for its answer (the silent endpoint's never comes).
pub fn fake_model_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("MNEMO_LLM", "openai".into()),
        ("MNEMO_LLM_BASE_URL", format!("http://127.0.0.1:{port}/v1")),
        ("MNEMO_LLM_API_KEY", "unused".into()),
        ("MNEMO_LLM_READ_TIMEOUT_MS", "600000".into()),
        ("MNEMO_LLM_MAX_RETRIES", "0".into()),
    ]
}
