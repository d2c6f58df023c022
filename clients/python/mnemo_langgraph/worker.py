"""A graph worker: serves your own LangGraph graphs behind mnemo.

mnemo keeps the threads, runs, queue and streams; the worker registers the graphs it serves,
claims their runs, runs each with LangGraph (checkpoints through `MnemoSaver`, the store through
`MnemoStore`), streams the run's events back to mnemo and finishes the run. Clients talk to
mnemo exactly as to a LangGraph server, with the graph's name as the assistant id.

    mnemo-langgraph worker --config langgraph.json --url http://127.0.0.1:2024
    python -m mnemo_langgraph.worker --graph chat=./chat.py:graph

The protocol (a service principal's calls): `POST /workers/graphs` (register, kept alive by
re-registering and claiming), `POST /workers/claim` (long poll; each run leased for `lease_s`),
`POST /workers/runs/{id}/events`, `.../heartbeat` (renews the lease; `held: false` means the run
was cancelled or taken back) and `.../finish`.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from ._events import StreamMapper, langgraph_modes, requested_modes, to_json
from ._graphs import (
    GraphSpec,
    graph_drawing,
    graph_schemas,
    state_defaults,
    subgraph_schemas,
    import_attr,
    load_config,
    parse_graph_arg,
    to_compiled,
    with_persistence,
)
from ._http import (
    API_KEY_ENV,
    MnemoConflict,
    MnemoError,
    MnemoForbidden,
    MnemoNotFound,
    MnemoUnauthorized,
    Transport,
)
from .saver import MnemoSaver
from .store import MnemoStore

log = logging.getLogger("mnemo_langgraph.worker")

DEFAULT_URL = "http://127.0.0.1:2024"
CLAIM_WAIT_S = 10
MAX_CLAIM = 32  # mnemo's largest claim
BATCH_EVENTS = 64
BATCH_INTERVAL_S = 0.05
MAX_BACKOFF_S = 30.0
# the claim long-polls: the HTTP timeout must outlast it
_HTTP_TIMEOUT_S = 60.0
# what a failed call to mnemo can raise
_CALL_ERRORS = (MnemoError, httpx.HTTPError, OSError, asyncio.TimeoutError, ValueError)


class RunLost(Exception):
    """mnemo says this worker no longer holds the run (cancelled, or taken back)."""


def _seg(part: str) -> str:
    return quote(part, safe="")


# -- events, in batches -----------------------------------------------------------------------


class EventSender:
    """Buffers a run's events and posts them in order, at most `BATCH_INTERVAL_S` after the
    first of a batch is put, or as soon as `BATCH_EVENTS` are waiting. A 409 means the run is
    no longer this worker's: `run()` calls `on_lost` and ends. Each batch says the number of
    its first event (from the claim's `first_seq`), so a batch posted again after its answer
    was lost is stored once."""

    def __init__(self, http: Transport, run_id: str, worker_id: str, first_seq: int | None = None) -> None:
        self.http, self.run_id, self.worker_id = http, run_id, worker_id
        self.next_seq = first_seq
        self._buffer: list[dict[str, Any]] = []
        self._ready = asyncio.Event()  # something is buffered
        self._full = asyncio.Event()  # a whole batch is buffered
        self._lock = asyncio.Lock()  # one post at a time, so events stay in order

    def put(self, event: str, data: Any) -> None:
        self._buffer.append({"event": event, "data": data})
        self._ready.set()
        if len(self._buffer) >= BATCH_EVENTS:
            self._full.set()

    async def run(self, on_lost: Callable[[], None]) -> None:
        """Posts batches until cancelled (or the run is lost)."""
        loop = asyncio.get_running_loop()
        backoff = 0.2
        while True:
            await self._ready.wait()
            deadline = loop.time() + BATCH_INTERVAL_S
            while len(self._buffer) < BATCH_EVENTS and (left := deadline - loop.time()) > 0:
                self._full.clear()
                try:
                    await asyncio.wait_for(self._full.wait(), left)
                except asyncio.TimeoutError:
                    break
            try:
                await self.flush()
                backoff = 0.2
            except RunLost:
                on_lost()
                return
            except _CALL_ERRORS as e:  # kept buffered: the next flush sends them
                log.warning("run %s: posting events failed (%s); retrying", self.run_id, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def flush(self) -> None:
        """Posts everything buffered. Raises `RunLost` on 409; on another error the events not
        sent stay buffered."""
        async with self._lock:
            while self._buffer:
                batch = self._buffer[:BATCH_EVENTS]
                body: dict[str, Any] = {"worker_id": self.worker_id, "events": batch}
                if self.next_seq is not None:
                    body["first_seq"] = self.next_seq
                try:
                    await self.http.arequest("POST", f"/workers/runs/{_seg(self.run_id)}/events", json=body)
                except (MnemoConflict, MnemoNotFound) as e:
                    raise RunLost(str(e)) from e
                del self._buffer[: len(batch)]
                if self.next_seq is not None:
                    self.next_seq += len(batch)
            self._ready.clear()
            self._full.clear()

    async def drain(self, tries: int = 5) -> None:
        """`flush`, retried a few times: the run's last events before it finishes."""
        for attempt in range(tries):
            try:
                await self.flush()
                return
            except RunLost:
                raise
            except _CALL_ERRORS as e:
                if attempt == tries - 1:
                    log.error("run %s: %d events not sent: %s", self.run_id, len(self._buffer), e)
                    return
                await asyncio.sleep(0.2 * 2**attempt)


# -- one run ----------------------------------------------------------------------------------


def run_config(run: Mapping[str, Any], graph_id: str, attempt: int = 1) -> dict[str, Any]:
    """The config a run's graph runs with: the request's (over its assistant's), with the
    thread, the run and the checkpoint to start from in `configurable`, and in `metadata`
    (which LangGraph writes into each checkpoint's metadata) the run's own (its assistant's
    and its thread's under it), its ids, its attempt and the LangGraph version that runs it."""
    from langgraph.version import __version__ as langgraph_version

    kwargs = run.get("kwargs") or {}
    config = copy.deepcopy(kwargs.get("config") or {})
    configurable = dict(config.get("configurable") or {})
    configurable.update(
        thread_id=run["thread_id"],
        run_id=run["run_id"],
        assistant_id=run.get("assistant_id"),
        graph_id=graph_id,
    )
    if kwargs.get("checkpoint_id"):
        configurable["checkpoint_id"] = kwargs["checkpoint_id"]
    config["configurable"] = configurable
    # the root run is the API's run, named after its graph (as `events` show it)
    if attempt == 1:
        try:
            config["run_id"] = uuid.UUID(str(run["run_id"]))
        except ValueError:
            pass
    config["run_name"] = graph_id
    config["metadata"] = {
        **(run.get("metadata") or {}),
        **(config.get("metadata") or {}),
        "run_id": run["run_id"],
        "thread_id": run["thread_id"],
        "assistant_id": run.get("assistant_id"),
        "graph_id": graph_id,
        "run_attempt": attempt,
        "langgraph_version": langgraph_version,
    }
    return config


def run_input(kwargs: Mapping[str, Any]) -> Any:
    """The graph's input: `Command(resume=...)` for a command, else the request's input."""
    command = kwargs.get("command")
    if isinstance(command, dict) and command:
        from langgraph.types import Command

        fields = {k: command[k] for k in ("resume", "goto", "update") if k in command}
        return Command(**fields)
    return kwargs.get("input")


def stream_options(kwargs: Mapping[str, Any], requested: Sequence[str]) -> dict[str, Any]:
    """`astream`'s keyword arguments for a run request."""
    opts: dict[str, Any] = {
        "stream_mode": langgraph_modes(requested),
        "subgraphs": bool(kwargs.get("stream_subgraphs")),
        "interrupt_before": kwargs.get("interrupt_before") or None,
        "interrupt_after": kwargs.get("interrupt_after") or None,
    }
    if kwargs.get("context"):
        opts["context"] = kwargs["context"]
    if kwargs.get("durability") in ("sync", "async", "exit"):
        opts["durability"] = kwargs["durability"]
    return opts


def finish_body(state: Any) -> dict[str, Any]:
    """How a run that returned ends, from its thread's state: the run `success`, as the
    LangGraph API ends it, and the thread `interrupted` when a node asked with `interrupt()`
    or a node is still to run (`interrupt_before`/`interrupt_after`), else `idle`."""
    values = to_json(state.values) if state is not None else None
    interrupts = _interrupts(state)
    waiting = bool(interrupts) or (state is not None and bool(state.next))
    return {
        "status": "success",
        "thread_status": "interrupted" if waiting else "idle",
        "values": values,
        "error": None,
    }


def _interrupts(state: Any) -> list[Any]:
    if state is None:
        return []
    found = list(getattr(state, "interrupts", ()) or ())
    if not found:
        for task in getattr(state, "tasks", ()) or ():
            found.extend(getattr(task, "interrupts", ()) or ())
    return found


def error_body(error: BaseException, values: Any) -> dict[str, Any]:
    return {
        "status": "error",
        "thread_status": "error",
        "values": values,
        "error": {"error": type(error).__name__, "message": str(error)},
    }


# -- the worker -------------------------------------------------------------------------------


class Worker:
    """Serves `graphs` (graph id → compiled graph, builder, or a callable returning one) behind
    the mnemo at `url`: registers them, claims their runs (at most `concurrency` at once), runs
    each as an asyncio task and reports its events and end. `await run()` until `stop()`."""

    def __init__(
        self,
        graphs: Mapping[str, Any],
        *,
        url: str | None = None,
        api_key: str | None = None,
        concurrency: int = 8,
        lease_s: int = 30,
        worker_id: str | None = None,
        descriptions: Mapping[str, str | None] | None = None,
        claim_wait_s: int = CLAIM_WAIT_S,
        ttl_s: int | None = None,
        grace_s: float = 5.0,
    ) -> None:
        if not graphs:
            raise ValueError("a worker needs at least one graph")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.url = (url or os.environ.get("MNEMO_URL") or DEFAULT_URL).rstrip("/")
        self.worker_id = worker_id or str(uuid.uuid4())
        self.concurrency = concurrency
        self.lease_s = max(3, min(int(lease_s), 600))
        self.claim_wait_s = max(0, min(int(claim_wait_s), 30))
        self.ttl_s = ttl_s or max(60, 3 * self.lease_s)
        self.grace_s = grace_s
        # a connection for the claim's long poll, and one or two per running run (events, lease)
        self.http = Transport(
            self.url,
            api_key=api_key,
            timeout=_HTTP_TIMEOUT_S,
            max_connections=2 * concurrency + 2,
        )
        self.saver = MnemoSaver(self.url, api_key=api_key)
        self.store = MnemoStore(self.url, api_key=api_key)
        self.descriptions = dict(descriptions or {})
        self.graphs = {
            name: with_persistence(to_compiled(obj, name), self.saver, self.store)
            for name, obj in graphs.items()
        }
        self.assistants: dict[str, str] = {}  # assistant id → graph id
        self.running: dict[str, asyncio.Task] = {}  # run id → its task
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()

    def __repr__(self) -> str:
        return f"Worker({self.url!r}, id={self.worker_id!r}, graphs={sorted(self.graphs)})"

    @classmethod
    def from_specs(cls, specs: Sequence[GraphSpec], **kwargs: Any) -> Worker:
        """A worker of graphs named by `langgraph.json` entries or `--graph` arguments."""
        graphs = {s.graph_id: import_attr(s) for s in specs}
        descriptions = {s.graph_id: s.description for s in specs}
        return cls(graphs, descriptions=descriptions, **kwargs)

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Registers, then claims and runs runs until `stop()`; then lets the running runs end
        for `grace_s` seconds, hands the rest back to mnemo's queue (and any run a claim cut
        short by the stop gave it), and closes its connections."""
        try:
            await self.register()
            keeper = asyncio.create_task(self._keep_registered())
            try:
                await self._claim_loop()
            finally:
                keeper.cancel()
                await asyncio.gather(keeper, return_exceptions=True)
                await self._drain()
                await self._release_all()
        finally:
            await self.aclose()

    def stop(self) -> None:
        """Stop claiming; `run()` then drains and returns. A second call cancels running runs
        at once."""
        if self._stopping.is_set():
            self.grace_s = 0
            for task in list(self.running.values()):
                task.cancel()
        self._stopping.set()

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.saver.aclose()
        await self.store.aclose()

    async def _drain(self) -> None:
        tasks = list(self.running.values())
        if not tasks:
            return
        log.info("waiting up to %.0fs for %d running run(s)", self.grace_s, len(tasks))
        _, pending = await asyncio.wait(tasks, timeout=max(self.grace_s, 0.0))
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- registering ------------------------------------------------------------------------

    def registration(self) -> dict[str, Any]:
        """The body of `POST /workers/graphs`: every graph with its schemas and drawing."""
        return {
            "worker_id": self.worker_id,
            "graphs": [
                {
                    "graph_id": name,
                    "description": self.descriptions.get(name),
                    "schemas": graph_schemas(graph),
                    "drawing": graph_drawing(graph),
                    "drawing_xray": graph_drawing(graph, xray=True),
                    "subgraphs": subgraph_schemas(graph),
                    "state_defaults": state_defaults(graph),
                }
                for name, graph in self.graphs.items()
            ],
            "ttl_s": self.ttl_s,
        }

    async def register(self) -> dict[str, str]:
        """Registers the graphs; answers graph id → its assistant id."""
        answer = await self.http.arequest("POST", "/workers/graphs", json=self.registration())
        pairs = {a["graph_id"]: a["assistant_id"] for a in (answer or {}).get("assistants", [])}
        self.assistants.update({assistant: graph for graph, assistant in pairs.items()})
        log.info("worker %s serves %s", self.worker_id, ", ".join(sorted(pairs)) or "nothing")
        return pairs

    async def _keep_registered(self) -> None:
        """Re-registers every third of the TTL, so the graphs stay live while every slot is busy
        (claims renew the registration too, but a full worker does not claim)."""
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                await self.register()
            except _CALL_ERRORS as e:
                log.warning("re-registering failed: %s", e)

    # -- claiming ---------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            free = self.concurrency - len(self.running)
            if free <= 0:
                self._slot_freed.clear()
                await self._until(self._slot_freed)
                continue
            try:
                claims = await self._until_stopped(self._claim(min(free, MAX_CLAIM)))
            except (MnemoUnauthorized, MnemoForbidden):
                raise  # a key mnemo refuses will not start working
            except _CALL_ERRORS as e:
                log.warning("claim failed: %s; retrying in %.1fs", e, backoff)
                await self._until(asyncio.Event(), timeout=backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
                continue
            backoff = 0.5
            for claim in claims or ():
                self._start(claim)

    async def _claim(self, limit: int) -> list[dict[str, Any]]:
        body = {
            "worker_id": self.worker_id,
            "graphs": sorted(self.graphs),
            "limit": limit,
            "wait_s": self.claim_wait_s,
            "lease_s": self.lease_s,
        }
        answer = await self.http.arequest("POST", "/workers/claim", json=body, idempotent=False)
        return answer if isinstance(answer, list) else []

    async def _until_stopped(self, call: Any) -> Any:
        """`call`'s answer, or None when the worker stops first (the call is cancelled)."""
        task = asyncio.ensure_future(call)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None
        return task.result()

    async def _until(self, event: asyncio.Event, timeout: float | None = None) -> None:
        """Waits for `event`, the worker stopping, or `timeout`, whichever comes first."""
        await self._until_stopped(_wait(event, timeout))

    def _start(self, claim: dict[str, Any]) -> None:
        run_id = claim["run"]["run_id"]
        task = asyncio.create_task(self._serve(claim), name=f"run {run_id}")
        self.running[run_id] = task

        def done(_: asyncio.Task) -> None:
            self.running.pop(run_id, None)
            self._slot_freed.set()

        task.add_done_callback(done)

    # -- serving one run --------------------------------------------------------------------

    def graph_of(self, claim: Mapping[str, Any]) -> str | None:
        """The graph a claimed run is of: named in the claim, else by its assistant."""
        run = claim["run"]
        for name in (
            claim.get("graph_id"),
            run.get("graph_id"),
            (run.get("metadata") or {}).get("graph_id"),
            self.assistants.get(run.get("assistant_id", "")),
            run.get("assistant_id"),
        ):
            if name in self.graphs:
                return name
        return next(iter(self.graphs)) if len(self.graphs) == 1 else None

    async def _serve(self, claim: dict[str, Any]) -> None:
        """Runs one claimed run to its end, with its lease renewed and its events posted. A run
        this worker loses (cancelled, taken back) stops at once and is not finished."""
        run_id = claim["run"]["run_id"]
        sender = EventSender(self.http, run_id, self.worker_id, claim.get("first_seq"))
        work = asyncio.create_task(self._run_graph(claim, sender))
        lost = asyncio.Event()

        def on_lost() -> None:
            if not lost.is_set():
                log.info("run %s: no longer held by this worker; stopping it", run_id)
            lost.set()
            work.cancel()

        watchers = [
            asyncio.create_task(self._keep_lease(run_id, on_lost)),
            asyncio.create_task(sender.run(on_lost)),
        ]
        try:
            try:
                body = await work
            except asyncio.CancelledError:
                if lost.is_set() and not _cancelling():
                    return
                if not lost.is_set():
                    # stopping: the run goes back to the queue now, not when its lease ends
                    await asyncio.shield(self._release(run_id))
                raise
            await sender.drain()
            if not lost.is_set():
                await self._finish(run_id, body)
        except RunLost:
            log.info("run %s: no longer held by this worker", run_id)
        except _CALL_ERRORS as e:
            log.error("run %s: could not finish: %s", run_id, e)
        finally:
            work.cancel()
            for w in watchers:
                w.cancel()
            await asyncio.gather(work, *watchers, return_exceptions=True)

    async def _run_graph(self, claim: dict[str, Any], sender: EventSender) -> dict[str, Any]:
        """Streams the run's graph into `sender`; answers the finish body."""
        run = claim["run"]
        graph_id = self.graph_of(claim)
        if graph_id is None:
            assistant = run.get("assistant_id")
            err = LookupError(f"this worker serves no graph for assistant {assistant}")
            return error_body(err, None)
        graph = self.graphs[graph_id]
        kwargs = run.get("kwargs") or {}
        config = run_config(run, graph_id, int(claim.get("attempt") or 1))
        thread_config = {"configurable": {"thread_id": run["thread_id"]}}
        value = await self._input(claim, config)
        requested = requested_modes(kwargs.get("stream_mode"))
        mapper = StreamMapper(requested, bool(kwargs.get("stream_subgraphs")))
        opts = stream_options(kwargs, requested)
        log.info(
            "run %s of %s on thread %s (attempt %s)",
            run["run_id"],
            graph_id,
            run["thread_id"],
            claim.get("attempt", 1),
        )
        try:
            if "events" in requested:
                async for ev in graph.astream_events(value, config, version="v2", **opts):
                    for name, data in mapper.event(ev):
                        sender.put(name, data)
            else:
                async for item in graph.astream(value, config, **opts):
                    for name, data in mapper.chunk(item):
                        sender.put(name, data)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the run's error is its outcome
            log.info("run %s failed: %s: %s", run["run_id"], type(e).__name__, e)
            return error_body(e, await self._values(graph, thread_config))
        return finish_body(await graph.aget_state(thread_config))

    async def _input(self, claim: Mapping[str, Any], config: dict[str, Any]) -> Any:
        """The run's input; None (go on from the last checkpoint) for a retried run whose
        earlier attempt already checkpointed on this thread."""
        run = claim["run"]
        kwargs = run.get("kwargs") or {}
        if int(claim.get("attempt") or 1) > 1:
            latest = await self.saver.aget_tuple({"configurable": {"thread_id": run["thread_id"]}})
            if latest is not None and (latest.metadata or {}).get("run_id") == run["run_id"]:
                config["configurable"].pop("checkpoint_id", None)
                checkpoint_id = latest.checkpoint["id"]
                log.info("run %s: resuming from checkpoint %s", run["run_id"], checkpoint_id)
                return None
        return run_input(kwargs)

    @staticmethod
    async def _values(graph: Any, thread_config: dict[str, Any]) -> Any:
        try:
            state = await graph.aget_state(thread_config)
        except Exception:  # noqa: BLE001
            return None
        return to_json(state.values) if state is not None else None

    async def _keep_lease(self, run_id: str, on_lost: Callable[[], None]) -> None:
        """Renews the run's lease every third of it; `held: false` (or a 404/409) loses it."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                answer = await self.http.arequest(
                    "POST",
                    f"/workers/runs/{_seg(run_id)}/heartbeat",
                    json={"worker_id": self.worker_id, "lease_s": self.lease_s},
                )
            except (MnemoConflict, MnemoNotFound):
                on_lost()
                return
            except _CALL_ERRORS as e:
                log.warning("run %s: heartbeat failed: %s", run_id, e)
                continue
            if not (answer or {}).get("held", False):
                on_lost()
                return

    async def _release(self, run_id: str) -> None:
        """Hands a run this worker stops before its end back to mnemo's queue, for any worker
        of its graph to start again from its last checkpoint."""
        try:
            await self.http.arequest(
                "POST",
                f"/workers/runs/{_seg(run_id)}/release",
                json={"worker_id": self.worker_id},
            )
            log.info("run %s: handed back to the queue", run_id)
        except _CALL_ERRORS as e:
            log.warning("run %s: could not be handed back (its lease will end): %s", run_id, e)

    async def _release_all(self) -> None:
        """Hands back every run mnemo still counts as this worker's, which it no longer runs."""
        try:
            answer = await self.http.arequest("POST", "/workers/release", json={"worker_id": self.worker_id})
        except _CALL_ERRORS as e:
            log.warning("could not hand back what this worker holds (leases will end): %s", e)
            return
        if (answer or {}).get("released"):
            log.info("handed %s claimed run(s) back to the queue", answer["released"])

    async def _finish(self, run_id: str, body: dict[str, Any]) -> None:
        await self.http.arequest(
            "POST",
            f"/workers/runs/{_seg(run_id)}/finish",
            json={"worker_id": self.worker_id, **body},
        )
        log.info("run %s: %s (thread %s)", run_id, body["status"], body["thread_status"])


def _cancelling() -> bool:
    """Whether the current task itself is being cancelled (not just a task it awaited)."""
    task = asyncio.current_task()
    return bool(task is not None and getattr(task, "cancelling", lambda: 0)())


async def _wait(event: asyncio.Event, timeout: float | None) -> None:
    """Waits for `event`, at most `timeout` seconds (None: no limit)."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except asyncio.TimeoutError:
        pass


# -- command line -----------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mnemo-langgraph worker",
        description="Serve your LangGraph graphs behind a mnemo server.",
    )
    p.add_argument(
        "--url",
        default=os.environ.get("MNEMO_URL", DEFAULT_URL),
        help="mnemo's URL (default: $MNEMO_URL or %(default)s)",
    )
    p.add_argument("--api-key", default=None, help=f"a service API key (default: ${API_KEY_ENV})")
    p.add_argument("--config", help="a langgraph.json naming the graphs (and env)")
    p.add_argument(
        "--graph",
        action="append",
        default=[],
        metavar="NAME=path.py:attr",
        help="a graph to serve (repeatable)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="runs at once (default %(default)s)")
    p.add_argument(
        "--lease-s",
        type=int,
        default=30,
        help="a claimed run's lease, renewed every third of it (default %(default)s)",
    )
    p.add_argument("--worker-id", default=None, help="this worker's id (default: a new uuid)")
    p.add_argument(
        "--grace-s",
        type=float,
        default=5.0,
        help="on SIGTERM, how long running runs may still take (default %(default)s)",
    )
    p.add_argument("--log-level", default=os.environ.get("MNEMO_WORKER_LOG", "INFO"))
    return p


def specs_of(args: argparse.Namespace) -> list[GraphSpec]:
    specs = load_config(args.config) if args.config else []
    specs += [parse_graph_arg(g) for g in args.graph]
    if not specs:
        raise SystemExit(
            "name the graphs to serve: --config langgraph.json and/or --graph NAME=path.py:attr"
        )
    return specs


async def serve(args: argparse.Namespace) -> None:
    """Runs a worker until SIGTERM or SIGINT (twice: at once)."""
    worker = Worker.from_specs(
        specs_of(args),
        url=args.url,
        api_key=args.api_key,
        concurrency=args.concurrency,
        lease_s=args.lease_s,
        worker_id=args.worker_id,
        grace_s=args.grace_s,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, worker.stop)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Windows
            pass
    await worker.run()


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m mnemo_langgraph.worker [worker] ARGS`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        argv = argv[1:]
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(serve(args))
    except (MnemoUnauthorized, MnemoForbidden) as e:
        log.error("mnemo refused this worker's key: %s", e.detail)
        return 1
    except MnemoError as e:
        log.error("%s", e)
        return 1
    return 0


def cli(argv: Sequence[str] | None = None) -> int:
    """The `mnemo-langgraph` command: `mnemo-langgraph worker ...`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["worker"]:
        print(
            "usage: mnemo-langgraph worker [--config langgraph.json] [--graph NAME=path.py:attr]",
            file=sys.stderr,
        )
        return 2
    return main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
