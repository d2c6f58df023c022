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
"""

from __future__ import annotations

import json
import os
import re
import secrets
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
LOGS: list[Path] = []


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


class Mnemo:
    """One mnemo process on a database of its own."""

    def __init__(self, label: str, env: dict[str, str]):
        self.admin_url = os.environ.get(
            "MNEMO_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"
        )
        self.db = f"mnemo_pyclient_{label}_{secrets.token_hex(4)}"
        admin = _pg_connect(self.admin_url)
        try:
            admin.run(f'CREATE DATABASE "{self.db}"')
        finally:
            admin.close()
        binary = os.environ.get("MNEMO_BIN") or str(ROOT / "target/debug/mnemo")
        self.binary = binary
        self.database_url = _db_url(self.admin_url, self.db)
        self.log = Path(tempfile.mkstemp(prefix=f"mnemo-{label}-", suffix=".log")[1])
        LOGS.append(self.log)
        self.log_file = self.log.open("wb")
        full_env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "MNEMO_HOST": "127.0.0.1",
            "MNEMO_PORT": "0",
            "RUST_LOG": os.environ.get("RUST_LOG", "info,actix_web=warn,actix_server=warn"),
            "MNEMO_AUTH": "api_key",
            **env,
        }
        self.proc = subprocess.Popen(
            [binary, "serve"],
            env=full_env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            self.url = f"http://127.0.0.1:{self._port()}"
        except BaseException:
            self.stop()
            raise

    def key(self, user: str | None = None, name: str = "pytest") -> str:
        """A new API key on this mnemo's database (`mnemo keys create`): `user`'s, or a
        service key."""
        who = ["--user", user] if user is not None else ["--service"]
        done = subprocess.run(
            [self.binary, "keys", "create", *who, "--name", name],
            env={**os.environ, "DATABASE_URL": self.database_url, "RUST_LOG": "warn"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        key = done.stdout.strip()
        if done.returncode != 0 or not re.fullmatch(r"mnemo_\S+", key):
            raise RuntimeError(f"mnemo keys create failed ({done.returncode}): {done.stderr}")
        return key

    def _port(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = LISTENING.search(self.log.read_text(errors="replace"))
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"mnemo exited with {self.proc.returncode}:\n{self.log.read_text(errors='replace')}"
                )
            time.sleep(0.05)
        raise RuntimeError(f"mnemo did not start listening; log: {self.log}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
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
def mnemo():
    server = Mnemo("builtin", {"MNEMO_LLM": "builtin"})
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
def slow_mnemo():
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
