"""MnemoSaver against LangGraph's own AsyncPostgresSaver, on the same Postgres server.

The same small graph runs N times per configuration: 10 steps, each adding one message to a
growing list, with `durability="sync"` so every step waits until its checkpoint is stored.
MnemoSaver talks HTTP to a mnemo whose pool is MNEMO_POOL_MAX. The direct saver runs twice: on
an AsyncConnectionPool as large as the concurrency (the way an app scales it), and opened per
graph run with `from_conn_string` (the pattern of the app that leaked, here properly exited). A
sampler counts each side's Postgres connections (pg_stat_activity) every 10 ms.

With `--auth api_key` the mnemo started here requires API keys: the bench makes a service key
for itself (`mnemo keys create --service`) unless one is given. `--api-key` (or MNEMO_API_KEY)
is the key MnemoSaver sends; `--url` benches a mnemo that is already running instead of
starting one (its Postgres connections are counted when `--mnemo-db` names its database).

Run with bench/savers (it picks the pinned virtualenv); --help lists the options.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, TypedDict
from urllib.parse import urlsplit

import psycopg
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from psycopg_pool import AsyncConnectionPool

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "clients" / "python"))
from mnemo_langgraph import MnemoSaver  # noqa: E402

STEPS = 10


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


def graph(checkpointer):
    def step(state: State) -> dict:
        n = len(state["messages"])
        return {"messages": [AIMessage(f"step {n}: " + "lorem ipsum dolor sit amet " * 8)]}

    def more(state: State) -> str:
        return "step" if len(state["messages"]) < STEPS else END

    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", more, ["step", END])
    return builder.compile(checkpointer=checkpointer)


async def one_run(g, latencies: list[float]) -> None:
    """One graph run on a new thread; the time of each of its steps goes to `latencies`."""
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    last = time.perf_counter()
    async for _ in g.astream(
        {"messages": [HumanMessage("go")]}, config, stream_mode="updates", durability="sync"
    ):
        now = time.perf_counter()
        latencies.append(now - last)
        last = now


class Sampler:
    """Peak number of connections to one database, sampled from pg_stat_activity."""

    def __init__(self, admin_url: str, database: str) -> None:
        self.admin_url, self.database = admin_url, database
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            while not self._stop.is_set():
                (n,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    (self.database,),
                ).fetchone()
                self.peak = max(self.peak, n)
                time.sleep(0.01)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def measure(g, runs: int, concurrency: int) -> tuple[float, float, float]:
    """(steps/s, p50 ms, p99 ms) of `runs` graph runs, `concurrency` at a time. `g` is a graph,
    or an async context manager factory yielding one per run."""
    latencies: list[float] = []
    queue = asyncio.Queue()
    for _ in range(runs):
        queue.put_nowait(None)

    async def worker() -> None:
        while not queue.empty():
            queue.get_nowait()
            if callable(g):
                async with g() as per_run:
                    await one_run(per_run, latencies)
            else:
                await one_run(g, latencies)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
    return len(latencies) / elapsed, pick(0.50), pick(0.99)


def with_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def service_key(binary: str, database_url: str) -> str:
    """A service key on the bench's database (`mnemo keys create` prints only the key)."""
    done = subprocess.run(
        [binary, "keys", "create", "--service", "--name", "bench-savers"],
        env={**os.environ, "DATABASE_URL": database_url, "RUST_LOG": "warn"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"mnemo keys create failed: {done.stderr.strip()}")
    return done.stdout.strip()


def start_mnemo(binary: str, database_url: str, pool_max: int, auth: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [binary, "serve"],
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "MNEMO_PORT": "0",
            "MNEMO_POOL_MAX": str(pool_max),
            "MNEMO_AUTH": auth,
            "RUST_LOG": "warn,mnemo=info",
        },
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if m := re.search(r"mnemo listening on ([\d.]+):(\d+)", line):
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, f"http://{m.group(1)}:{m.group(2)}"
    raise SystemExit("mnemo exited before listening")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg-url", default=os.environ.get("MNEMO_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
                    help="a Postgres role that may create databases")
    ap.add_argument("--mnemo-bin", default=os.environ.get("MNEMO_BIN", str(ROOT / "target" / "release" / "mnemo")))
    ap.add_argument("--pool-max", type=int, default=16, help="mnemo's MNEMO_POOL_MAX")
    ap.add_argument("--concurrency", default="1,32", help="comma-separated concurrent threads")
    ap.add_argument("--runs", type=int, default=8, help="graph runs per concurrent thread (at least 20 in all)")
    ap.add_argument("--auth", choices=["none", "api_key"], default="none",
                    help="MNEMO_AUTH of the mnemo started here (api_key: a service key is made unless --api-key is given)")
    ap.add_argument("--api-key", default=os.environ.get("MNEMO_API_KEY"),
                    help="the key MnemoSaver sends as x-api-key (default: $MNEMO_API_KEY)")
    ap.add_argument("--url", help="bench this running mnemo instead of starting one")
    ap.add_argument("--mnemo-db", help="with --url: the name of its Postgres database, to count its connections")
    args = ap.parse_args()

    tag = uuid.uuid4().hex[:8]
    mnemo_db = args.mnemo_db if args.url else f"bench_mnemo_{tag}"
    direct_db = f"bench_langgraph_{tag}"
    made = [direct_db] if args.url else [mnemo_db, direct_db]
    with psycopg.connect(args.pg_url, autocommit=True) as admin:
        for db in made:
            admin.execute(f"CREATE DATABASE {db}")
    proc = None
    api_key = args.api_key
    if args.url:
        url = args.url.rstrip("/")
    else:
        database_url = with_database(args.pg_url, mnemo_db)
        if args.auth == "api_key" and not api_key:
            api_key = service_key(args.mnemo_bin, database_url)
        proc, url = start_mnemo(args.mnemo_bin, database_url, args.pool_max, args.auth)
    try:
        rows, failures = [], []
        for c in (int(x) for x in args.concurrency.split(",")):
            runs = max(20, c * args.runs)
            async with MnemoSaver(url, api_key=api_key, max_connections=max(c, 16)) as saver:
                g = graph(saver)
                await measure(g, min(runs, 2 * c), c)  # warm up connections and caches
                with Sampler(args.pg_url, mnemo_db) as s:
                    rate, p50, p99 = await measure(g, runs, c)
                rows.append(("MnemoSaver -> mnemo", c, rate, p50, p99, s.peak if mnemo_db else None))
            conninfo = with_database(args.pg_url, direct_db)
            async with AsyncConnectionPool(
                conninfo, min_size=1, max_size=c, kwargs={"autocommit": True, "prepare_threshold": 0}
            ) as pool:
                saver = AsyncPostgresSaver(pool)
                await saver.setup()
                g = graph(saver)
                await measure(g, min(runs, 2 * c), c)
                with Sampler(args.pg_url, direct_db) as s:
                    rate, p50, p99 = await measure(g, runs, c)
                rows.append(("AsyncPostgresSaver, pool", c, rate, p50, p99, s.peak))

            @asynccontextmanager
            async def saver_per_run():
                # the original app's pattern, with the exit it lacked: a saver per request
                async with AsyncPostgresSaver.from_conn_string(conninfo) as saver:
                    yield graph(saver)

            try:
                with Sampler(args.pg_url, direct_db) as s:
                    rate, p50, p99 = await measure(saver_per_run, runs, c)
                rows.append(("AsyncPostgresSaver, per run", c, rate, p50, p99, s.peak))
            except psycopg.OperationalError as e:  # e.g. Postgres' max_connections reached
                failures.append(f"AsyncPostgresSaver, per run, {c} threads: {e}".splitlines()[0])
        where = f"mnemo at {url}" if args.url else f"mnemo pool max {args.pool_max}, MNEMO_AUTH={args.auth}"
        key = "with an API key" if api_key else "no API key"
        print(f"\n{STEPS}-step graph, one message added per step, durability=sync; {where}; {key}\n")
        print(f"{'saver':<30}{'threads':>8}{'steps/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'peak PG conns':>15}")
        for name, c, rate, p50, p99, peak in rows:
            shown = "?" if peak is None else peak
            print(f"{name:<30}{c:>8}{rate:>10.0f}{p50:>9.1f}{p99:>9.1f}{shown:>15}")
        for failure in failures:
            print(f"FAILED {failure}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            for db in made:
                admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    asyncio.run(main())
