"""A real mnemo for the tests: the built binary on port 0, on a fresh SQLite file and on a fresh
Postgres database (`MNEMO_TEST_PG_URL`). Postgres is skipped, loudly, when it cannot be reached,
unless `MNEMO_TEST_REQUIRE_POSTGRES=1`.

Authentication is on (`MNEMO_AUTH=api_key`): the suite makes its keys with `mnemo keys create`
against the server's database, a service key for the conformance suite and the graph (which act
for no user in particular), and user keys where a test is about what a user may reach."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[3]
PG_URL = os.environ.get("MNEMO_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")


@dataclass
class Mnemo:
    url: str
    backend: str
    database_url: str
    log: Path
    service_key: str = ""

    def key(self, user: str | None = None, name: str = "test") -> str:
        """A new API key on this mnemo's database: `user`'s, or a service key."""
        return create_key(self.database_url, user=user, name=name)


def _binary() -> str:
    path = Path(os.environ.get("MNEMO_BIN", ROOT / "target" / "debug" / "mnemo"))
    if not path.exists():
        pytest.exit(f"no mnemo binary at {path}: run `cargo build` or set MNEMO_BIN", 2)
    return str(path)


def _psql(url: str, sql: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql],
        capture_output=True,
        text=True,
        check=False,
    )


def _pg_reachable() -> bool:
    try:
        return _psql(PG_URL, "select 1").returncode == 0
    except FileNotFoundError:
        return False


def _with_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def create_key(database_url: str, *, user: str | None = None, name: str = "test") -> str:
    """`mnemo keys create`: prints only the key."""
    who = ["--user", user] if user is not None else ["--service"]
    done = subprocess.run(
        [_binary(), "keys", "create", *who, "--name", name],
        env={**os.environ, "DATABASE_URL": database_url, "RUST_LOG": "warn"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    key = done.stdout.strip()
    if done.returncode != 0 or not re.fullmatch(r"mnemo_\S+", key):
        pytest.fail(f"mnemo keys create failed ({done.returncode}): {done.stderr.strip()}")
    return key


def start_mnemo(database_url: str, log: Path, **env: str) -> tuple[subprocess.Popen, str]:
    """Starts mnemo and returns it with its base URL (from its start-up line)."""
    proc = subprocess.Popen(
        [_binary(), "serve"],
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "MNEMO_HOST": "127.0.0.1",
            "MNEMO_PORT": "0",
            "RUST_LOG": "info",
            "MNEMO_AUTH": "api_key",
            **env,
        },
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    sink = log.open("w")
    assert proc.stderr is not None
    for line in proc.stderr:
        sink.write(line)
        if m := re.search(r"mnemo listening on ([\d.]+):(\d+)", line):
            url = f"http://{m.group(1)}:{m.group(2)}"
            break
    else:
        sink.close()
        proc.wait()
        pytest.fail(f"mnemo exited before listening; its log: {log.read_text()}")

    def drain() -> None:
        for rest in proc.stderr:
            sink.write(rest)
        sink.close()

    threading.Thread(target=drain, daemon=True).start()
    return proc, url


def stop_mnemo(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def mnemo(request, tmp_path_factory) -> Iterator[Mnemo]:
    """One mnemo per backend for the whole session."""
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "sqlite":
        database_url = f"sqlite://{tmp}/mnemo.db"
        dropper = None
    else:
        if not _pg_reachable():
            if os.environ.get("MNEMO_TEST_REQUIRE_POSTGRES") == "1":
                pytest.exit(f"cannot log in to Postgres at {PG_URL}", 2)
            pytest.skip(f"POSTGRES UNREACHABLE at {PG_URL}: the Postgres half did not run")
        name = f"mnemo_py_{uuid.uuid4().hex[:12]}"
        created = _psql(PG_URL, f"CREATE DATABASE {name}")
        assert created.returncode == 0, created.stderr
        database_url = _with_database(PG_URL, name)
        dropper = name
    proc, url = start_mnemo(database_url, tmp / "mnemo.log")
    try:
        server = Mnemo(url=url, backend=request.param, database_url=database_url, log=tmp / "mnemo.log")
        server.service_key = server.key(name="conformance")
        yield server
    finally:
        stop_mnemo(proc)
        if dropper:
            _psql(PG_URL, f"DROP DATABASE IF EXISTS {dropper} WITH (FORCE)")
