"""The session's servers: mnemo processes on fresh Postgres databases, started once per run.

- `mnemo_url`: mnemo with its built-in deterministic model (the offline default).
- `slow_mnemo`: a second mnemo whose model is `openai`, pointed at `FakeModel` below, an
  OpenAI-compatible endpoint in this process that answers as slowly as a test asks (runs that
  are still going when a test cancels, rejoins or queues behind them).

Both run with `MNEMO_AUTH=api_key`. Each test talks to them as a user of its own: `user_key` (and
`slow_key`) is a fresh user's key, made with `mnemo keys create --user` against the server's
database, passed the SDK's way (`get_client(url=..., api_key=...)`); the agent acts as the
thread's owner, so every test starts with an empty task list. `service_key` is for what only a
service may do.

Each mnemo gets a database of its own, created here and dropped at the end; every process started
here is stopped at the end, also when tests fail.

`MNEMO_TEST_TOPOLOGY` picks how each of those mnemos is deployed (the suite is the same):
- `plain` (default): one process on a direct Postgres connection;
- `pgbouncer`: one process whose `DATABASE_URL` goes through a private PgBouncer in transaction
  mode (`pgbouncer=true`), with `MNEMO_PG_DIRECT_URL` the direct URL (LISTEN, migrations);
- `replicas`: three processes on one fresh database, started at the same moment (their
  migrations race: checked to have run once), behind a private nginx with deploy/nginx.conf's
  proxy settings, round robin; `url` is nginx's, `replicas` the three direct ones.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pg8000.native
import pytest

ROOT = Path(__file__).resolve().parents[3]
LISTENING = re.compile(r"mnemo listening on [0-9.]+:(\d+)")
APPLIED = re.compile(r"applied (\d+) migration\(s\)")
LOGS: list[Path] = []
TOPOLOGY = os.environ.get("MNEMO_TEST_TOPOLOGY", "plain")
TOPOLOGIES = ("plain", "pgbouncer", "replicas")
if TOPOLOGY not in TOPOLOGIES:
    raise RuntimeError(f"MNEMO_TEST_TOPOLOGY={TOPOLOGY!r}: expected one of {TOPOLOGIES}")
REPLICAS = 3


def _pg_connect(url: str, database: str | None = None) -> pg8000.native.Connection:
    u = urllib.parse.urlparse(url)
    return pg8000.native.Connection(
        user=urllib.parse.unquote(u.username or "postgres"),
        password=urllib.parse.unquote(u.password) if u.password else None,
        host=u.hostname or "127.0.0.1",
        port=u.port or 5432,
        database=database or (u.path.lstrip("/") or "postgres"),
    )


def _db_url(admin_url: str, name: str) -> str:
    u = urllib.parse.urlparse(admin_url)
    return urllib.parse.urlunparse(u._replace(path=f"/{name}", query=""))


def _admin_url() -> str:
    return os.environ.get("MNEMO_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def _free_port() -> int:
    """A loopback port free now (for a process that cannot listen on port 0 and tell us)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ready, proc: subprocess.Popen, log: Path, timeout: float = 30):
    """Polls `ready()` until it is truthy (at most `timeout` s); fails early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = ready()
        if got:
            return got
        if proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')}"
            )
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start within {timeout} s; log: {log}")


def _stop(proc: subprocess.Popen, grace: float = 15) -> None:
    """Stops one process this suite started (by its own handle), SIGTERM then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)


def _daemon(var: str, name: str) -> str:
    """The binary of a server the suite starts: `$var`, or on PATH, or Debian's /usr/sbin."""
    found = os.environ.get(var) or shutil.which(name) or f"/usr/sbin/{name}"
    if not os.access(found, os.X_OK):
        raise RuntimeError(f"MNEMO_TEST_TOPOLOGY={TOPOLOGY} needs {name} (apt-get install {name})")
    return found


def _private_dir(prefix: str) -> Path:
    """A temporary directory for a private server; readable by the unprivileged user PgBouncer
    and nginx's workers switch to when the suite runs as root."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class PgBouncer:
    """A private PgBouncer in transaction mode in front of the suite's Postgres: its own config,
    auth file and pid file in a temporary directory, on a free loopback port. Its pool is smaller
    than what its clients hold, so transactions of one client do move between server
    connections."""

    def __init__(self, admin_url: str):
        u = urllib.parse.urlparse(admin_url)
        self.user = urllib.parse.unquote(u.username or "postgres")
        self.password = urllib.parse.unquote(u.password) if u.password else ""
        self.dir = _private_dir("mnemo-pgbouncer-")
        self.port = _free_port()
        (self.dir / "users.txt").write_text(f'"{self.user}" "{self.password}"\n')
        lines = [
            "[databases]",
            f"* = host={u.hostname or '127.0.0.1'} port={u.port or 5432}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            f"auth_type = {'plain' if self.password else 'trust'}",
            f"auth_file = {self.dir / 'users.txt'}",
            f"pidfile = {self.dir / 'pgbouncer.pid'}",
            "pool_mode = transaction",
            "default_pool_size = 6",
            "max_client_conn = 500",
        ]
        if os.geteuid() == 0:
            # PgBouncer refuses to run as root; it switches to this user after start-up
            lines.append("user = nobody")
            (self.dir).chmod(0o777)  # the pid file is written as that user
        (self.dir / "pgbouncer.ini").write_text("\n".join(lines) + "\n")
        for f in ("pgbouncer.ini", "users.txt"):
            (self.dir / f).chmod(0o644)
        self.log = self.dir / "pgbouncer.log"
        LOGS.append(self.log)
        self.log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [_daemon("PGBOUNCER", "pgbouncer"), str(self.dir / "pgbouncer.ini")],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            _wait("pgbouncer", self._answers, self.proc, self.log)
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        try:
            conn = pg8000.native.Connection(
                user=self.user, password=self.password or None, host="127.0.0.1",
                port=self.port, database="postgres",
            )
        except Exception:
            return False
        conn.close()
        return True

    def url(self, direct_url: str) -> str:
        """`direct_url`'s database through this PgBouncer, flagged as Prisma users flag it."""
        u = urllib.parse.urlparse(direct_url)
        netloc = u.netloc.rsplit("@", 1)[0] + "@" if "@" in u.netloc else ""
        return urllib.parse.urlunparse(
            u._replace(netloc=f"{netloc}127.0.0.1:{self.port}", query="pgbouncer=true")
        )

    def stop(self) -> None:
        _stop(self.proc)
        self.log_file.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def nginx_config(port: int, upstreams: list[str], prefix: Path) -> str:
    """A private nginx's whole config: deploy/nginx.conf (the proxy settings mnemo's replicas are
    deployed with) with the suite's listen address and upstream servers, inside the main
    context a private process needs (pid, logs and temporary files under `prefix`)."""
    site = (ROOT / "deploy/nginx.conf").read_text()
    servers = "".join(f"    server {u};\n" for u in upstreams)
    site, n = re.subn(r"(?m)^\s*server\s+mnemo-\d+:\d+[^;]*;\n", "", site)
    assert n == REPLICAS, "deploy/nginx.conf names three replicas, one `server` line each"
    site, n = re.subn(r"(upstream\s+mnemo\s*\{\n)", lambda m: m.group(1) + servers, site)
    assert n == 1, "deploy/nginx.conf has one `upstream mnemo` block"
    site, n = re.subn(r"(?m)^(\s*)listen\s+[^;]+;", rf"\1listen 127.0.0.1:{port};", site)
    assert n == 1, "deploy/nginx.conf has one `listen`"
    return f"""worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{site}
}}
"""


class Nginx:
    """A private nginx (`nginx -c <dir>/nginx.conf -p <dir> -g 'daemon off;'`) on a free
    loopback port, round robin to `upstreams` (host:port)."""

    def __init__(self, upstreams: list[str]):
        self.dir = _private_dir("mnemo-nginx-")
        self.port = _free_port()
        (self.dir / "nginx.conf").write_text(nginx_config(self.port, upstreams, self.dir))
        self.log = self.dir / "error.log"
        self.out = self.dir / "stdout.log"
        self.out_file = self.out.open("wb")
        self.proc = subprocess.Popen(
            [_daemon("NGINX", "nginx"), "-c", str(self.dir / "nginx.conf"),
             "-p", str(self.dir), "-g", "daemon off;"],
            stdout=self.out_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        LOGS.append(self.log)
        self.url = f"http://127.0.0.1:{self.port}"
        try:
            _wait("nginx", self._answers, self.proc, self.out)
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ok", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        _stop(self.proc)
        self.out_file.close()
        if self.log.exists():
            # kept for the failure report; the rest goes
            kept = Path(tempfile.mkstemp(prefix="mnemo-nginx-", suffix=".log")[1])
            shutil.copyfile(self.log, kept)
            LOGS.append(kept)
        shutil.rmtree(self.dir, ignore_errors=True)


class Process:
    """One mnemo process."""

    def __init__(self, label: str, binary: str, env: dict[str, str]):
        self.log = Path(tempfile.mkstemp(prefix=f"mnemo-{label}-", suffix=".log")[1])
        LOGS.append(self.log)
        self.log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            [binary, "serve"],
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.url: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_listening(self) -> str:
        def port():
            m = LISTENING.search(self.log.read_text(errors="replace"))
            return m and int(m.group(1))

        self.url = f"http://127.0.0.1:{_wait('mnemo', port, self.proc, self.log, 60)}"
        return self.url

    def migrations_applied(self) -> int:
        return sum(int(n) for n in APPLIED.findall(self.log.read_text(errors="replace")))

    def stop(self) -> None:
        _stop(self.proc)
        self.log_file.close()


class Mnemo:
    """One mnemo service on a database of its own, deployed as `MNEMO_TEST_TOPOLOGY` says:
    `url` is where clients talk to it, `replicas` its processes (three behind nginx, or one)."""

    def __init__(self, label: str, env: dict[str, str], pgbouncer: PgBouncer | None = None):
        self.admin_url = _admin_url()
        self.db = f"mnemo_pyclient_{label}_{secrets.token_hex(4)}"
        admin = _pg_connect(self.admin_url)
        try:
            admin.run(f'CREATE DATABASE "{self.db}"')
        finally:
            admin.close()
        binary = os.environ.get("MNEMO_BIN") or str(ROOT / "target/debug/mnemo")
        self.binary = binary
        self.direct_url = _db_url(self.admin_url, self.db)
        # what mnemo (and `mnemo keys`) connect with
        self.db_env = {"DATABASE_URL": self.direct_url}
        if pgbouncer is not None:
            self.db_env = {
                "DATABASE_URL": pgbouncer.url(self.direct_url),
                "MNEMO_PG_DIRECT_URL": self.direct_url,
            }
        self.database_url = self.db_env["DATABASE_URL"]
        full_env = {
            **os.environ,
            **self.db_env,
            "MNEMO_HOST": "127.0.0.1",
            "MNEMO_PORT": "0",
            "RUST_LOG": os.environ.get("RUST_LOG", "info,actix_web=warn,actix_server=warn"),
            "MNEMO_AUTH": "api_key",
            **env,
        }
        self.replicas: list[Process] = []
        self.extra: list[Process] = []
        self.env = full_env
        self.nginx: Nginx | None = None
        try:
            count = REPLICAS if TOPOLOGY == "replicas" else 1
            # all started before any is waited for: their migrations race on the empty database
            for i in range(count):
                self.replicas.append(Process(f"{label}-{i}", binary, full_env))
            for p in self.replicas:
                p.wait_listening()
            if TOPOLOGY == "replicas":
                self._check_migrated_once()
                self.nginx = Nginx([p.url.removeprefix("http://") for p in self.replicas])
                self.url = self.nginx.url
            else:
                self.url = self.replicas[0].url
        except BaseException:
            self.stop()
            raise

    def start_another(self, label: str, env: dict[str, str]) -> Process:
        """One more process of this service on its database, outside the proxy, with `env` on
        top of the service's own; stopped with the service (if still running)."""
        p = Process(f"{label}", self.binary, {**self.env, **env})
        self.extra.append(p)
        p.wait_listening()
        return p

    def _check_migrated_once(self) -> None:
        """The replicas started together on an empty database: one applied every migration,
        the others found none pending, and none is recorded twice."""
        expected = len([d for d in (ROOT / "migrations/postgres").iterdir() if d.is_dir()])
        applied = [p.migrations_applied() for p in self.replicas]
        assert sorted(applied) == [0] * (len(applied) - 1) + [expected], applied
        conn = _pg_connect(self.admin_url, self.db)
        try:
            rows = conn.run("SELECT count(*), count(DISTINCT version) FROM __diesel_schema_migrations")
        finally:
            conn.close()
        assert rows[0] == [expected, expected], rows

    def key(self, user: str | None = None, name: str = "pytest") -> str:
        """A new API key on this mnemo's database (`mnemo keys create`): `user`'s, or a
        service key."""
        who = ["--user", user] if user is not None else ["--service"]
        done = subprocess.run(
            [self.binary, "keys", "create", *who, "--name", name],
            env={**os.environ, **self.db_env, "RUST_LOG": "warn"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        key = done.stdout.strip()
        if done.returncode != 0 or not re.fullmatch(r"mnemo_\S+", key):
            raise RuntimeError(f"mnemo keys create failed ({done.returncode}): {done.stderr}")
        return key

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for p in self.replicas + self.extra:
            p.stop()
        admin = _pg_connect(self.admin_url)
        try:
            admin.run(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        finally:
            admin.close()


@dataclass
class Request:
    """A chat-completions request the fake model received."""

    body: dict

    @property
    def last_user_text(self) -> str:
        users = [m for m in self.body.get("messages", []) if m.get("role") == "user"]
        content = users[-1].get("content", "") if users else ""
        if isinstance(content, list):
            content = "".join(c.get("text", "") for c in content if isinstance(c, dict))
        return content


class FakeModel:
    """An OpenAI-compatible chat-completions endpoint whose answer the last user message picks:

    - `slow <n> <ms>`: the words `w1 … wn`, one every `ms` milliseconds;
    - `hang`: headers, then nothing until the run gives up the connection;
    - anything else: `echo: <message>` at once.
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                req = Request(body)
                with fake.lock:
                    fake.requests.append(req)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                text = req.last_user_text.strip()
                try:
                    if text == "hang":
                        self.wfile.flush()
                        while not fake.closing.wait(0.1):
                            pass
                        return
                    if m := re.fullmatch(r"slow (\d+) (\d+)", text):
                        n, pause = int(m.group(1)), int(m.group(2)) / 1000
                        words = [f"w{i} " for i in range(1, n + 1)]
                    else:
                        words, pause = [f"echo: {text}"], 0.0
                    for word in words:
                        time.sleep(pause)
                        chunk = {
                            "id": "chatcmpl-fake",
                            "object": "chat.completion.chunk",
                            "choices": [
                                {"index": 0, "delta": {"role": "assistant", "content": word},
                                 "finish_reason": None}
                            ],
                        }
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                    self.wfile.write(b"data: [DONE]\n\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def stop(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


SDK_KEY_VARS = ("LANGGRAPH_API_KEY", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY")


@pytest.fixture(autouse=True, scope="session")
def no_sdk_key_in_the_environment():
    """The SDK falls back on these when no key is passed: the tests pass theirs explicitly."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k in SDK_KEY_VARS}
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session")
def pgbouncer():
    """The private PgBouncer of the `pgbouncer` topology (None in the others)."""
    if TOPOLOGY != "pgbouncer":
        yield None
        return
    bouncer = PgBouncer(_admin_url())
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="session")
def mnemo(pgbouncer):
    server = Mnemo("builtin", {"MNEMO_LLM": "builtin"}, pgbouncer)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mnemo_url(mnemo):
    return mnemo.url


@dataclass
class User:
    """A user of one mnemo and its API key."""

    user_id: str
    key: str


def new_user(server: Mnemo, prefix: str = "user") -> User:
    user_id = f"{prefix}-{secrets.token_hex(4)}"
    return User(user_id, server.key(user_id, name=user_id))


@pytest.fixture
def user(mnemo) -> User:
    """A user of its own for each test: its threads, tasks and memories start empty."""
    return new_user(mnemo)


@pytest.fixture
def make_user(mnemo):
    """More users for a test that needs several: `make_user("alice")`."""
    return lambda prefix="user": new_user(mnemo, prefix)


@pytest.fixture
def user_key(user) -> str:
    return user.key


@pytest.fixture(scope="session")
def service_key(mnemo) -> str:
    return mnemo.key(name="pytest-service")


@dataclass
class SlowMnemo:
    url: str
    model: FakeModel
    server: Mnemo


@pytest.fixture(scope="session")
def slow_mnemo(pgbouncer):
    model = FakeModel()
    try:
        server = Mnemo(
            "fakemodel",
            {
                "MNEMO_LLM": "openai",
                "MNEMO_LLM_BASE_URL": model.base_url,
                "MNEMO_LLM_API_KEY": "test-key",
                "MNEMO_LLM_MODEL": "fake",
                "MNEMO_LLM_MAX_RETRIES": "0",
            },
            pgbouncer,
        )
        try:
            yield SlowMnemo(server.url, model, server)
        finally:
            model.closing.set()
            server.stop()
    finally:
        model.stop()


@pytest.fixture
def slow_key(slow_mnemo) -> str:
    """A fresh user's key on the slow mnemo."""
    return new_user(slow_mnemo.server, "slow").key


@pytest.fixture
def make_slow_user(slow_mnemo):
    """More users of the slow mnemo: `make_slow_user("alice")`."""
    return lambda prefix="slow": new_user(slow_mnemo.server, prefix)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """On failure, the end of each mnemo's log (kept for reading); on success the logs go."""
    for log in LOGS:
        if not log.exists():
            continue
        if exitstatus == 0:
            log.unlink()
            continue
        tail = log.read_text(errors="replace").splitlines()[-40:]
        terminalreporter.write_sep("-", f"last lines of {log}")
        terminalreporter.write_line("\n".join(tail))


@pytest.fixture(scope="session")
def slow_replicas(slow_mnemo) -> list[str]:
    """The direct URLs of the slow mnemo's processes: A, B and C in the `replicas` topology
    (one in the others)."""
    return [p.url for p in slow_mnemo.server.replicas]
