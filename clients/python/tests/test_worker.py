"""The graph worker (`mnemo_langgraph.worker`).

Three layers:
- its pieces without a server: loading graphs (`langgraph.json`, `--graph`, factories), the
  registration (schemas, drawing), the stream mapping;
- a run served against a scripted worker protocol (`Scripted`: claims, heartbeats, events and
  finishes recorded in memory) while checkpoints and the store go to a real mnemo;
- end to end against a real mnemo that serves the worker protocol: a client waits on a run,
  streams one, reads the thread's state, is interrupted and resumes, cancels a run; and the
  `python -m mnemo_langgraph worker` command, stopped by SIGTERM.

Every wait is bounded; every worker and process a test starts is stopped by it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mnemo_langgraph._events import StreamMapper, requested_modes, to_json
from mnemo_langgraph._graphs import GraphSpec, import_attr, load_config, parse_graph_arg, to_compiled
from mnemo_langgraph._http import MnemoConflict
from mnemo_langgraph.worker import Worker, finish_body, run_config

HERE = Path(__file__).resolve().parent
GRAPHS = HERE / "worker_graphs.py"
PYTHON_ROOT = HERE.parent


# -- pieces ------------------------------------------------------------------------------------


def test_langgraph_json_names_graphs_and_env(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("WORKER_T_A", raising=False)
    monkeypatch.delenv("WORKER_T_B", raising=False)
    (tmp_path / "graphs.py").write_text(GRAPHS.read_text())
    (tmp_path / ".env").write_text("# comment\nexport WORKER_T_B='two'\n")
    config = tmp_path / "langgraph.json"
    config.write_text(
        json.dumps(
            {
                "graphs": {
                    "plain": "./graphs.py:graph",
                    "built": {"path": "./graphs.py:make_graph", "description": "from a factory"},
                },
                "env": ".env",
            }
        )
    )
    specs = load_config(config)
    assert [(s.graph_id, s.description) for s in specs] == [("plain", None), ("built", "from a factory")]
    assert os.environ["WORKER_T_B"] == "two"
    graphs = {s.graph_id: to_compiled(import_attr(s), s.graph_id) for s in specs}
    assert all(hasattr(g, "astream") for g in graphs.values())

    config.write_text(json.dumps({"graphs": {"plain": "./graphs.py:graph"}, "env": {"WORKER_T_A": "1"}}))
    load_config(config)
    assert os.environ["WORKER_T_A"] == "1"

    spec = parse_graph_arg(f"g={GRAPHS}:builder")
    assert spec == GraphSpec("g", f"{GRAPHS}:builder", base_dir=Path.cwd())
    with pytest.raises(ValueError):
        parse_graph_arg("no-equals-sign")


def test_registration_describes_each_graph() -> None:
    worker = Worker({"demo": import_attr(GraphSpec("demo", f"{GRAPHS}:graph"))}, url="http://127.0.0.1:9")
    body = worker.registration()
    assert body["worker_id"] == worker.worker_id and body["ttl_s"] >= 60
    [graph] = body["graphs"]
    assert graph["graph_id"] == "demo"
    assert set(graph["schemas"]) == {"input_schema", "output_schema", "state_schema", "config_schema", "context_schema"}
    assert "items" in graph["schemas"]["input_schema"]["properties"]
    assert "items" in graph["schemas"]["state_schema"]["properties"]
    assert {n["id"] for n in graph["drawing"]["nodes"]} == {"__start__", "append", "report", "__end__"}
    assert {"source": "append", "target": "report"} in graph["drawing"]["edges"]
    assert graph["drawing_xray"]["nodes"] and graph["subgraphs"] == {}
    # what its list channels hold before any write, shown in its states
    assert graph["state_defaults"] == {"items": [], "messages": []}
    json.dumps(body)  # all of it is JSON
    # the graph got mnemo's persistence; the user's module keeps its own object as it was
    assert type(worker.graphs["demo"].checkpointer).__name__ == "MnemoSaver"
    assert type(worker.graphs["demo"].store).__name__ == "MnemoStore"


def test_stream_mapping() -> None:
    from langchain_core.messages import AIMessageChunk
    from langgraph.types import Interrupt

    assert requested_modes(None) == ["values"]
    assert requested_modes("updates") == ["updates"]
    assert requested_modes(["values", "values", "bogus"]) == ["values"]

    mapper = StreamMapper(["values", "messages"], subgraphs=True)
    first = AIMessageChunk("hel", id="m1")
    events = list(mapper.chunk(((), "messages", (first, {"langgraph_node": "n"}))))
    events += list(mapper.chunk((("sub:1",), "messages", (AIMessageChunk("lo", id="m1"), {}))))
    events += list(mapper.chunk((("sub:1",), "values", {"x": Interrupt(value=1, id="i")})))
    events += list(mapper.chunk(((), "updates", {"not": "requested"})))
    assert [e for e, _ in events] == [
        "messages/metadata",
        "messages/partial",
        "messages/partial|sub:1",
        "values|sub:1",
    ]
    assert events[0][1] == {"m1": {"metadata": {"langgraph_node": "n"}}}
    assert events[2][1][0]["content"] == "hello" and events[2][1][0]["type"] == "ai"
    assert events[3][1] == {"x": {"value": 1, "id": "i", "response_schema": None}}

    tuples = StreamMapper(["messages-tuple"], subgraphs=False)
    [(name, data)] = list(tuples.chunk(("messages", (first, {"k": 1}))))
    assert name == "messages" and data[0]["content"] == "hel" and data[1] == {"k": 1}
    assert to_json({"s": {1}, "b": b"\x00", "o": object()})["s"] == [1]


def test_run_config_carries_the_thread_run_and_checkpoint() -> None:
    run = {
        "run_id": "r1",
        "thread_id": "t1",
        "assistant_id": "a1",
        "metadata": {"from": "client"},
        "kwargs": {"config": {"configurable": {"model": "x"}, "recursion_limit": 5}, "checkpoint_id": "c1"},
    }
    config = run_config(run, "g")
    assert config["configurable"] == {
        "model": "x",
        "thread_id": "t1",
        "run_id": "r1",
        "assistant_id": "a1",
        "graph_id": "g",
        "checkpoint_id": "c1",
    }
    assert config["recursion_limit"] == 5
    assert config["metadata"]["from"] == "client" and config["metadata"]["run_id"] == "r1"


# -- a run, against a scripted protocol --------------------------------------------------------


class Scripted:
    """The worker-protocol half of mnemo, in memory: hands out `claims`, answers heartbeats
    with `held`, records events (or refuses them: 409) and finishes. Everything else is not its business."""

    def __init__(self, held: bool = True, refuse_events: bool = False) -> None:
        self.refuse_events = refuse_events
        self.claims: list[dict[str, Any]] = []
        self.held = held
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.finished: dict[str, dict[str, Any]] = {}
        self.heartbeats = 0
        self.registered: list[dict[str, Any]] = []
        self.released_all = 0
        self.batch_seqs: dict[str, list[tuple[int | None, int]]] = {}  # (first_seq, size) per post

    async def arequest(self, method: str, path: str, *, json: Any = None, **_: Any) -> Any:
        parts = path.strip("/").split("/")
        if path == "/workers/graphs":
            self.registered.append(json)
            return {"assistants": [{"graph_id": g["graph_id"], "assistant_id": f"asst-{g['graph_id']}"} for g in json["graphs"]]}
        if path == "/workers/release":
            self.released_all += 1
            return {"released": 0}
        if path == "/workers/claim":
            if self.claims:
                taken, self.claims = self.claims[: json["limit"]], self.claims[json["limit"] :]
                return taken
            await asyncio.sleep(0.05)
            return []
        run_id, what = parts[2], parts[3]
        if what == "events":
            if self.refuse_events:
                raise MnemoConflict(409, "not held", method, path)
            self.events.setdefault(run_id, []).extend(json["events"])
            self.batch_seqs.setdefault(run_id, []).append((json.get("first_seq"), len(json["events"])))
            return None
        if what == "heartbeat":
            self.heartbeats += 1
            return {"held": self.held}
        if what == "finish":
            assert run_id not in self.finished, "finished twice"
            self.finished[run_id] = json
            return {"run_id": run_id, "status": json["status"]}
        raise AssertionError(f"unexpected {method} {path}")

    async def aclose(self) -> None:
        pass


def claim(thread_id: str, *, run_id: str | None = None, attempt: int = 1, **kwargs: Any) -> dict[str, Any]:
    base = {"input": None, "command": None, "config": {}, "context": {}, "stream_mode": ["values", "updates", "custom"]}
    return {
        "run": {
            "run_id": run_id or str(uuid.uuid4()),
            "thread_id": thread_id,
            "assistant_id": "asst-demo",
            "status": "running",
            "metadata": {},
            "kwargs": {**base, **kwargs},
            "multitask_strategy": "reject",
        },
        "attempt": attempt,
        "thread_metadata": {},
        "first_seq": 2,
    }


async def serve_scripted(mnemo, script: Scripted, *claims: dict[str, Any], lease_s: int = 30) -> Worker:
    """Serves `claims` with a worker whose protocol calls go to `script` (its checkpoints to
    `mnemo`); answers when every claimed run has ended (at most 30 s)."""
    worker = Worker(
        {"demo": import_attr(GraphSpec("demo", f"{GRAPHS}:graph"))},
        url=mnemo.url,
        api_key=mnemo.service_key,
        lease_s=lease_s,
        claim_wait_s=0,
    )
    worker.http = script  # type: ignore[assignment]
    script.claims.extend(claims)
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + 30
        while (script.claims or worker.running) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not script.claims and not worker.running, "the runs did not end in 30 s"
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)
    return worker


async def test_scripted_run_streams_then_finishes(mnemo) -> None:
    script = Scripted()
    thread = str(uuid.uuid4())
    c = claim(thread, input={"items": ["x"]})
    await serve_scripted(mnemo, script, c)
    run_id = c["run"]["run_id"]
    names = [e["event"] for e in script.events[run_id]]
    assert names[0] == "values" and names[-1] == "values", names
    # each batch numbered from the claim's first_seq on: a batch sent again is stored once
    seqs = script.batch_seqs[run_id]
    assert [first for first, _ in seqs] == [2 + sum(n for _, n in seqs[:i]) for i in range(len(seqs))], seqs
    # the stopping worker handed back whatever it still held
    assert script.released_all == 1
    assert {"updates", "custom"} <= set(names) and "metadata" not in names
    custom = next(e["data"] for e in script.events[run_id] if e["event"] == "custom")
    assert custom == {"progress": 2}
    done = script.finished[run_id]
    assert (done["status"], done["thread_status"], done["error"]) == ("success", "idle", None)
    assert done["values"]["items"] == ["x", "a", "b"]
    assert done["values"]["messages"][0]["type"] == "ai"
    assert script.registered and script.registered[0]["graphs"][0]["graph_id"] == "demo"


async def test_scripted_interrupt_resume_and_retried_attempt(mnemo) -> None:
    script = Scripted()
    thread = str(uuid.uuid4())
    asked = claim(thread, input={"items": ["x"], "ask": True})
    await serve_scripted(mnemo, script, asked)
    paused = script.finished[asked["run"]["run_id"]]
    # the run succeeded (as the LangGraph API ends one); its thread waits on the interrupt
    assert (paused["status"], paused["thread_status"]) == ("success", "interrupted")
    reader = Worker({"g": import_attr(GraphSpec("g", f"{GRAPHS}:graph"))}, url=mnemo.url, api_key=mnemo.service_key)
    try:
        waiting = await reader.graphs["g"].aget_state({"configurable": {"thread_id": thread}})
    finally:
        await reader.aclose()
    assert [i.value for i in waiting.interrupts] == [{"question": "continue?"}]

    # the same run again (its worker died): it goes on from its own checkpoint, input unused
    retried = claim(thread, run_id=asked["run"]["run_id"], attempt=2, input={"items": ["never"], "ask": True})
    script.finished.clear()
    await serve_scripted(mnemo, script, retried)
    again = script.finished[asked["run"]["run_id"]]
    assert again["thread_status"] == "interrupted" and "never" not in again["values"]["items"]

    resumed = claim(thread, command={"resume": "yes"})
    await serve_scripted(mnemo, script, resumed)
    done = script.finished[resumed["run"]["run_id"]]
    assert (done["status"], done["thread_status"]) == ("success", "idle")
    assert done["values"]["items"] == ["x", "a", "answer:yes"]


async def test_scripted_error_and_interrupt_before(mnemo) -> None:
    script = Scripted()
    failing = claim(str(uuid.uuid4()), input={"items": [], "fail": True})
    stopping = claim(str(uuid.uuid4()), input={"items": []}, interrupt_before=["report"])
    await serve_scripted(mnemo, script, failing, stopping)
    failed = script.finished[failing["run"]["run_id"]]
    assert (failed["status"], failed["thread_status"]) == ("error", "error")
    assert failed["error"] == {"error": "ValueError", "message": "asked to fail"}
    paused = script.finished[stopping["run"]["run_id"]]
    assert (paused["status"], paused["thread_status"]) == ("success", "interrupted")
    assert paused["values"]["items"] == ["a"]


@pytest.mark.parametrize("told_by", ["heartbeat", "events"])
async def test_scripted_run_not_held_stops_unfinished(mnemo, told_by) -> None:
    script = Scripted(held=told_by != "heartbeat", refuse_events=told_by == "events")
    slow = claim(str(uuid.uuid4()), input={"items": [], "sleep_s": 20})
    started = time.monotonic()
    await serve_scripted(mnemo, script, slow, lease_s=3)
    assert time.monotonic() - started < 10, f"the run was not stopped by its {told_by}"
    if told_by == "heartbeat":
        assert script.heartbeats == 1
        assert [e["event"] for e in script.events[slow["run"]["run_id"]]] == ["values"]
    else:
        assert script.heartbeats == 0 and script.events == {}
    assert script.finished == {}


def test_finish_body_of_a_missing_state() -> None:
    assert finish_body(None)["thread_status"] == "idle"


# -- end to end, against mnemo's worker protocol ----------------------------------------------


@pytest.fixture
async def client(mnemo) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=mnemo.url, headers={"x-api-key": mnemo.service_key}, timeout=60) as http:
        yield http


def _has_worker_protocol(mnemo) -> bool:
    with httpx.Client(base_url=mnemo.url, headers={"x-api-key": mnemo.service_key}, timeout=10) as http:
        probe = http.post("/workers/claim", json={"worker_id": "probe", "graphs": [], "limit": 1, "wait_s": 0, "lease_s": 3})
    return probe.status_code not in (404, 405)


@pytest.fixture
async def served(mnemo, client) -> AsyncIterator[Worker]:
    """A worker serving `pyworker` (this module's graph) in this event loop."""
    if not _has_worker_protocol(mnemo):
        pytest.skip("WORKER PROTOCOL MISSING: this mnemo has no /workers routes")
    worker = Worker(
        {"pyworker": import_attr(GraphSpec("pyworker", f"{GRAPHS}:graph"))},
        url=mnemo.url,
        api_key=mnemo.service_key,
        lease_s=3,
        claim_wait_s=2,
        grace_s=2,
    )
    await worker.register()
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def new_thread(client: httpx.AsyncClient) -> str:
    resp = await client.post("/threads", json={})
    assert resp.status_code == 200, resp.text
    return resp.json()["thread_id"]


async def sse(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """The (event, data) pairs of a streamed run, to its end (at most 30 s)."""

    async def read() -> list[tuple[str, Any]]:
        events: list[tuple[str, Any]] = []
        name = None
        async with client.stream("POST", path, json=body) as resp:
            assert resp.status_code == 200, await resp.aread()
            async for line in resp.aiter_lines():
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    events.append((name, json.loads(line[5:].strip())))
        return events

    return await asyncio.wait_for(read(), 30)


async def until(check, timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := await check():
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s")


async def test_wait_stream_and_state(served, client) -> None:
    thread = await new_thread(client)
    waited = await client.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "pyworker", "input": {"items": ["x"]}})
    assert waited.status_code == 200, waited.text
    assert waited.json()["items"] == ["x", "a", "b"]

    events = await sse(
        client,
        f"/threads/{thread}/runs/stream",
        {"assistant_id": "pyworker", "input": {"items": ["y"]}, "stream_mode": ["values", "updates", "custom"]},
    )
    names = [name for name, _ in events]
    assert names[0] == "metadata", names
    assert {"values", "updates", "custom"} <= set(names), names
    assert ("custom", {"progress": 5}) in events
    assert [d for n, d in events if n == "values"][-1]["items"] == ["x", "a", "b", "y", "a", "b"]
    assert any(n == "updates" and "append" in d for n, d in events)

    other = await new_thread(client)
    tuples = await sse(
        client,
        f"/threads/{other}/runs/stream",
        {"assistant_id": "pyworker", "input": {"items": []}, "stream_mode": "messages-tuple"},
    )
    [(message, meta)] = [d for n, d in tuples if n == "messages"]
    assert message["type"] == "ai" and message["content"] == "hello"
    assert meta["langgraph_node"] == "append"
    assert "values" not in {n for n, _ in tuples}

    state = (await client.get(f"/threads/{thread}/state")).json()
    assert state["values"]["items"] == ["x", "a", "b", "y", "a", "b"]
    assert state["values"]["messages"][0]["type"] == "ai"
    assert state["next"] == []
    thread_row = (await client.get(f"/threads/{thread}")).json()
    assert thread_row["status"] == "idle"


async def test_interrupt_then_resume(served, client) -> None:
    thread = await new_thread(client)
    asked = await client.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "pyworker", "input": {"items": [], "ask": True}})
    assert asked.status_code == 200, asked.text
    assert asked.json()["items"] == ["a"]
    thread_row = (await client.get(f"/threads/{thread}")).json()
    assert thread_row["status"] == "interrupted"
    state = (await client.get(f"/threads/{thread}/state")).json()
    assert state["next"] == ["report"]

    resumed = await client.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "pyworker", "command": {"resume": "yes"}})
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["items"] == ["a", "answer:yes"]
    assert (await client.get(f"/threads/{thread}")).json()["status"] == "idle"


async def test_wait_answers_the_interrupt(served, client) -> None:
    thread = await new_thread(client)
    asked = await client.post(
        f"/threads/{thread}/runs/wait",
        json={"assistant_id": "pyworker", "input": {"items": [], "ask": True}},
    )
    assert asked.status_code == 200, asked.text
    assert asked.json()["__interrupt__"][0]["value"] == {"question": "continue?"}


async def test_error_ends_the_run(served, client) -> None:
    thread = await new_thread(client)
    events = await sse(
        client, f"/threads/{thread}/runs/stream", {"assistant_id": "pyworker", "input": {"items": [], "fail": True}}
    )
    assert events[-1][0] == "error", events
    assert "asked to fail" in json.dumps(events[-1][1])
    assert (await client.get(f"/threads/{thread}")).json()["status"] == "error"


async def test_cancel_stops_a_running_run(served, client) -> None:
    thread = await new_thread(client)
    created = await client.post(f"/threads/{thread}/runs", json={"assistant_id": "pyworker", "input": {"items": [], "sleep_s": 30}})
    assert created.status_code == 200, created.text
    run_id = created.json()["run_id"]

    async def held() -> bool:
        return run_id in served.running

    await until(held, what="the worker took the run")
    cancelled = await client.post(f"/threads/{thread}/runs/{run_id}/cancel")
    assert cancelled.status_code in (200, 202, 204), cancelled.text

    async def stopped() -> bool:
        return run_id not in served.running

    await until(stopped, timeout=10, what="the worker stopped the cancelled run")
    run = (await client.get(f"/threads/{thread}/runs/{run_id}")).json()
    assert run["status"] == "interrupted", run
    state = (await client.get(f"/threads/{thread}/state")).json()
    assert "a" not in (state.get("values") or {}).get("items", []), state


def test_worker_command_serves_then_stops_on_sigterm(mnemo, tmp_path) -> None:
    if not _has_worker_protocol(mnemo):
        pytest.skip("WORKER PROTOCOL MISSING: this mnemo has no /workers routes")
    name = f"cli_{uuid.uuid4().hex[:8]}"
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {name: f"{GRAPHS}:graph"}}))
    log = tmp_path / "worker.log"
    env = {**os.environ, "MNEMO_API_KEY": mnemo.service_key, "PYTHONPATH": str(PYTHON_ROOT)}
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mnemo_langgraph", "worker", "--url", mnemo.url, "--config", str(config),
             "--lease-s", "30", "--grace-s", "0"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while "serves" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "serves" in log.read_text(), log.read_text()
        with httpx.Client(base_url=mnemo.url, headers={"x-api-key": mnemo.service_key}, timeout=60) as http:
            thread = http.post("/threads", json={}).json()["thread_id"]
            waited = http.post(f"/threads/{thread}/runs/wait", json={"assistant_id": name, "input": {"items": ["cli"]}})
            assert waited.status_code == 200, waited.text
            assert waited.json()["items"] == ["cli", "a", "b"]
            # a run still going when the worker stops is handed back at once, not after its
            # 30 s lease
            slow = http.post(f"/threads/{thread}/runs", json={"assistant_id": name, "input": {"items": [], "sleep_s": 30}})
            run_id = slow.json()["run_id"]
            # started by the worker, not only claimed: its claim's answer has reached it
            deadline = time.monotonic() + 15
            while f"run {run_id} of {name}" not in log.read_text():
                assert time.monotonic() < deadline, "the worker did not start the run"
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, log.read_text()
            run = http.get(f"/threads/{thread}/runs/{run_id}").json()
            assert run["status"] == "pending", run
            assert "handed back" in log.read_text(), log.read_text()
            http.post(f"/threads/{thread}/runs/{run_id}/cancel")
        assert mnemo.service_key not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
