"""MnemoSaver against LangGraph's own AsyncPostgresSaver, on the same Postgres server.

The same small graph runs N times per configuration: 10 steps, each adding one message to a
growing list, with `durability="sync"` so every step waits until its checkpoint is stored.
MnemoSaver talks HTTP to a mnemo whose pool is MNEMO_POOL_MAX. The direct saver runs twice: on
an AsyncConnectionPool as large as the concurrency (the way an app scales it), and opened per
graph run with `from_conn_string` (the pattern of the app that leaked, here properly exited). A
sampler counts each side's Postgres connections (pg_stat_activity) every 10 ms.

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


def start_mnemo(binary: str, database_url: str, pool_max: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [binary, "serve"],
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "MNEMO_PORT": "0",
            "MNEMO_POOL_MAX": str(pool_max),
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
    args = ap.parse_args()

    tag = uuid.uuid4().hex[:8]
    mnemo_db, direct_db = f"bench_mnemo_{tag}", f"bench_langgraph_{tag}"
    with psycopg.connect(args.pg_url, autocommit=True) as admin:
        for db in (mnemo_db, direct_db):
            admin.execute(f"CREATE DATABASE {db}")
    proc, url = start_mnemo(args.mnemo_bin, with_database(args.pg_url, mnemo_db), args.pool_max)
    try:
        rows, failures = [], []
        for c in (int(x) for x in args.concurrency.split(",")):
            runs = max(20, c * args.runs)
            async with MnemoSaver(url, max_connections=max(c, 16)) as saver:
                g = graph(saver)
                await measure(g, min(runs, 2 * c), c)  # warm up connections and caches
                with Sampler(args.pg_url, mnemo_db) as s:
                    rate, p50, p99 = await measure(g, runs, c)
                rows.append(("MnemoSaver -> mnemo", c, rate, p50, p99, s.peak))
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
        print(f"\n{STEPS}-step graph, one message added per step, durability=sync; "
              f"mnemo pool max {args.pool_max}\n")
        print(f"{'saver':<30}{'threads':>8}{'steps/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'peak PG conns':>15}")
        for name, c, rate, p50, p99, peak in rows:
            print(f"{name:<30}{c:>8}{rate:>10.0f}{p50:>9.1f}{p99:>9.1f}{peak:>15}")
        for failure in failures:
            print(f"FAILED {failure}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            for db in (mnemo_db, direct_db):
                admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    asyncio.run(main())
