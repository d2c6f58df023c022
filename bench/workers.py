"""A trivial graph (bench/trivial_graph.py) served two ways on this machine, measured the same way:

- mnemo (release build, a SQLite file of its own) with one graph worker
  (`python -m mnemo_langgraph.worker`, checkpoints through MnemoSaver to that mnemo);
- `langgraph dev` (the reference server, in-memory), when `--langgraph-dev` names its CLI.

For each: runs/s and latency of stateless `POST /runs/wait` from `--clients` clients for
`--seconds`, then the first-event latency of `POST /runs/stream` (the time until the first event
after `metadata`), one run at a time, `--samples` times. Every process started here is stopped at
the end.

Run with bench/workers (it picks the pinned virtualenv).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
GRAPH = ROOT / "bench" / "trivial_graph.py"
LISTENING = re.compile(r"mnemo listening on [0-9.]+:(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, ok, proc: subprocess.Popen, log: Path, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = ok()
        if got:
            return got
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}):\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up in {timeout} s; log {log}")


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_mnemo(tmp: Path, concurrency: int) -> tuple[str, list[subprocess.Popen]]:
    """A release mnemo on a SQLite file of its own, and one worker serving `trivial`."""
    log = tmp / "mnemo.log"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite://{tmp / 'mnemo.db'}",
        "MNEMO_HOST": "127.0.0.1",
        "MNEMO_PORT": "0",
        "MNEMO_RATE_LIMIT_PER_S": "1000000",
        "MNEMO_RATE_LIMIT_BURST": "1000000",
        "RUST_LOG": "warn,mnemo=info",
    }
    mnemo = subprocess.Popen(
        [str(ROOT / "target" / "release" / "mnemo"), "serve"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    procs = [mnemo]
    port = wait_until("mnemo", lambda: (m := LISTENING.search(log.read_text(errors="replace"))) and m.group(1), mnemo, log)
    url = f"http://127.0.0.1:{port}"
    wlog = tmp / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "mnemo_langgraph.worker", "--url", url, "--graph", f"trivial={GRAPH}:graph",
         "--concurrency", str(concurrency)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "clients" / "python")},
        stdout=wlog.open("wb"),
        stderr=subprocess.STDOUT,
    )
    procs.append(worker)

    def registered() -> bool:
        try:
            r = httpx.post(f"{url}/assistants/search", json={"graph_id": "trivial"}, timeout=2)
            return r.status_code == 200 and len(r.json()) == 1
        except httpx.HTTPError:
            return False

    wait_until("the worker's registration", registered, worker, wlog)
    return url, procs


def start_langgraph_dev(cli: str, tmp: Path) -> tuple[str, list[subprocess.Popen]]:
    config = tmp / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"trivial": f"{GRAPH}:graph"}, "dependencies": ["."]}))
    port = free_port()
    log = tmp / "langgraph-dev.log"
    proc = subprocess.Popen(
        [cli, "dev", "--no-browser", "--no-reload", "--port", str(port), "--config", str(config)],
        cwd=tmp,
        env={**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1"},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until("langgraph dev", lambda: answers(f"{url}/ok"), proc, log)
    return url, [proc]


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def throughput(url: str, clients: int, seconds: float) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:

        async def one_client() -> None:
            nonlocal errors
            while time.monotonic() < end:
                t = time.monotonic()
                r = await c.post("/runs/wait", json={"assistant_id": "trivial", "input": {"n": 0}})
                if r.status_code == 200 and r.json().get("n") == 1:
                    latencies.append((time.monotonic() - t) * 1000)
                else:
                    errors += 1

        began = time.monotonic()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.monotonic() - began
    return len(latencies) / elapsed, latencies, errors


async def first_events(url: str, samples: int) -> list[float]:
    out: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        for _ in range(samples):
            t = time.monotonic()
            body = {"assistant_id": "trivial", "input": {"n": 0}, "stream_mode": ["values"]}
            async with c.stream("POST", "/runs/stream", json=body) as r:
                first = None
                # read to the end: the run is over when the stream is
                async for line in r.aiter_lines():
                    if first is None and line.startswith("event:") and line.split(":", 1)[1].strip() != "metadata":
                        first = (time.monotonic() - t) * 1000
                if first is not None:
                    out.append(first)
    return out


async def measure(name: str, url: str, args) -> None:
    # warm up: a few runs before anything counts
    await throughput(url, 2, 1.0)
    rate, lat, errors = await throughput(url, args.clients, args.seconds)
    firsts = await first_events(url, args.samples)
    print(
        f"{name:<22} {rate:>8.1f} {pct(lat, 0.5):>9.1f} {pct(lat, 0.99):>9.1f} {errors:>7} "
        f"{pct(firsts, 0.5):>11.1f} {pct(firsts, 0.99):>11.1f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--samples", type=int, default=30)
    p.add_argument("--langgraph-dev", help="the `langgraph` CLI (with the inmem extra) to bench too")
    args = p.parse_args()
    print(f"# a trivial graph, stateless runs/wait from {args.clients} clients for {args.seconds:g} s, "
          f"then runs/stream one at a time ({args.samples} runs)")
    print(f"{'':<22} {'runs/s':>8} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7} {'1st ev p50':>11} {'1st ev p99':>11}")
    with tempfile.TemporaryDirectory(prefix="mnemo-bench-workers-") as d:
        tmp = Path(d)
        procs: list[subprocess.Popen] = []
        try:
            url, started = start_mnemo(tmp, args.clients)
            procs += started
            asyncio.run(measure("mnemo + 1 worker", url, args))
            for proc in reversed(started):
                stop(proc)
            if args.langgraph_dev:
                url, started = start_langgraph_dev(args.langgraph_dev, tmp)
                procs += started
                asyncio.run(measure("langgraph dev", url, args))
        finally:
            for proc in procs:
                stop(proc)


if __name__ == "__main__":
    main()
