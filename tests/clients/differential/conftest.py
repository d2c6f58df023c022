"""The two servers the differential tests compare, started once for the session:
- the reference: `langgraph dev` (langgraph-cli[inmem]) serving `project/`, in memory;
- mnemo on a fresh Postgres database (`MNEMO_TEST_PG_URL`), with a graph worker
  (`python -m mnemo_langgraph.worker --config project/langgraph.json`) serving the same project.
Both run on loopback without credentials, and from the same virtualenv, so the same LangGraph
runs the graph on both sides."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
PROJECT = HERE / "project"
PG_URL = os.environ.get("MNEMO_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def _psql(url: str, sql: str) -> subprocess.CompletedProcess:
    return subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql], capture_output=True, text=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(what: str, ready, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited ({proc.returncode}); its log:\n{log.read_text(errors='replace')[-4000:]}")
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} was not ready in {timeout:.0f} s; its log:\n{log.read_text(errors='replace')[-4000:]}")


def _start(args: list[str], log: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(args, stdout=log.open("wb"), stderr=subprocess.STDOUT, **kw)


@pytest.fixture(scope="session")
def servers(tmp_path_factory) -> Iterator[dict[str, str]]:
    if _psql(PG_URL, "select 1").returncode != 0:
        pytest.exit(f"the differential tests run mnemo on Postgres: cannot log in at {PG_URL}", 2)
    binary = Path(os.environ.get("MNEMO_BIN", ROOT / "target" / "debug" / "mnemo"))
    if not binary.exists():
        pytest.exit(f"no mnemo binary at {binary}: run `cargo build` or set MNEMO_BIN", 2)
    tmp = tmp_path_factory.mktemp("servers")
    procs: list[subprocess.Popen] = []
    database = f"mnemo_diff_{uuid.uuid4().hex[:12]}"
    assert _psql(PG_URL, f"CREATE DATABASE {database}").returncode == 0
    try:
        # the reference server, on a copy of the project (it keeps its state in the directory
        # it runs in, and graph paths are taken from there)
        ref_project = tmp / "project"
        shutil.copytree(PROJECT, ref_project)
        port = _free_port()
        ref_log = tmp / "langgraph-dev.log"
        ref = _start(
            [str(Path(sys.executable).parent / "langgraph"), "dev", "--no-browser", "--no-reload",
             "--host", "127.0.0.1", "--port", str(port), "--config", str(ref_project / "langgraph.json")],
            ref_log,
            cwd=ref_project,
            env={**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGSMITH_TRACING": "false"},
        )
        procs.append(ref)
        ref_url = f"http://127.0.0.1:{port}"

        # mnemo, then its worker
        mnemo_log = tmp / "mnemo.log"
        mnemo = _start(
            [str(binary), "serve"],
            mnemo_log,
            env={**os.environ, "DATABASE_URL": urlsplit(PG_URL)._replace(path=f"/{database}").geturl(),
                 "MNEMO_HOST": "127.0.0.1", "MNEMO_PORT": "0", "MNEMO_AUTH": "none", "RUST_LOG": "info"},
        )
        procs.append(mnemo)
        found: list[str] = []

        def listening() -> bool:
            found[:] = re.findall(r"mnemo listening on ([\d.]+:\d+)", mnemo_log.read_text(errors="replace"))
            return bool(found)

        _wait("mnemo", listening, mnemo, mnemo_log)
        mnemo_url = f"http://{found[0]}"
        worker_log = tmp / "worker.log"
        worker = _start(
            [sys.executable, "-m", "mnemo_langgraph.worker", "--url", mnemo_url,
             "--config", str(PROJECT / "langgraph.json"), "--lease-s", "10"],
            worker_log,
            env={**os.environ, "PYTHONPATH": str(ROOT / "clients" / "python")},
        )
        procs.append(worker)

        def registered() -> bool:
            r = httpx.post(f"{mnemo_url}/assistants/search", json={"graph_id": "project"}, timeout=5)
            return r.status_code == 200 and len(r.json()) == 1

        _wait("the graph worker's registration", registered, worker, worker_log)
        _wait("langgraph dev", lambda: httpx.get(f"{ref_url}/ok", timeout=5).status_code == 200, ref, ref_log)
        yield {"mnemo": mnemo_url, "langgraph dev": ref_url}
    finally:
        for proc in reversed(procs):
            _stop(proc)
        _psql(PG_URL, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
