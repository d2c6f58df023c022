"""The scripted client sessions the differential tests run against each server: the Python SDK,
as a LangGraph app would use it. Each scenario records what the server answered, step by step."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

Record = Callable[[str, Any], None]

MODES = ["values", "updates", "messages", "messages-tuple", "custom", "debug", "tasks", "checkpoints"]
ASSISTANT_CONFIG = {"configurable": {"persona": "Ada"}}


def human(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


async def events(stream: AsyncIterator[Any], timeout: float = 60) -> list[list[Any]]:
    async def read() -> list[list[Any]]:
        return [[part.event, part.data] async for part in stream]

    return await asyncio.wait_for(read(), timeout)


async def until(predicate: Callable[[], Awaitable[Any]], what: str, timeout: float = 20) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (got := await predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return got


async def assistant(client: Any, record: Record, team: str) -> str:
    created = await client.assistants.create(
        graph_id="project", config=ASSISTANT_CONFIG, metadata={"team": team}, name="ada"
    )
    record("assistants.create", created)
    return created["assistant_id"]


async def assistants(client: Any, record: Record) -> None:
    """An assistant's life: create with config, read, a new version, its versions, back to the
    first, search and count; the graph's schemas and drawing."""
    aid = await assistant(client, record, "assistants")
    record("assistants.get", await client.assistants.get(aid))
    record(
        "assistants.update",
        await client.assistants.update(aid, config={"configurable": {"persona": "Grace"}}, metadata={"v": 2}),
    )
    record("assistants.get_versions", await client.assistants.get_versions(aid))
    record("assistants.set_latest", await client.assistants.set_latest(aid, 1))
    record("assistants.search", await client.assistants.search(metadata={"team": "assistants"}, graph_id="project"))
    record("assistants.count", await client.assistants.count(graph_id="project", metadata={"team": "assistants"}))
    record("assistants.get_graph", await client.assistants.get_graph(aid))
    record("assistants.get_graph xray", await client.assistants.get_graph(aid, xray=True))
    # schemas: which there are (their JSON Schema texts are each server's rendering)
    subgraphs = await client.assistants.get_subgraphs(aid, recurse=True)
    record("assistants.get_subgraphs", {ns: sorted(s) for ns, s in subgraphs.items()})
    record("assistants.get_subgraphs review", sorted(await client.assistants.get_subgraphs(aid, namespace="review")))
    schemas = await client.assistants.get_schemas(aid)
    record("assistants.get_schemas", sorted(k for k, v in schemas.items() if v))
    await client.assistants.delete(aid)


async def chat(client: Any, record: Record) -> None:
    """A turn with tool calls, every stream mode and subgraphs, stopped by the subgraph's
    `interrupt()`; its state; the resume; the history and the store the tool wrote."""
    aid = await assistant(client, record, "chat")
    thread = await client.threads.create(metadata={"case": "chat"})
    record("threads.create", thread)
    tid = thread["thread_id"]
    record(
        "runs.stream add",
        await events(
            client.runs.stream(tid, aid, input=human("add milk"), stream_mode=MODES, stream_subgraphs=True)
        ),
    )
    record("threads.get interrupted", await client.threads.get(tid))
    record("threads.get_state interrupted", await client.threads.get_state(tid))
    record(
        "runs.stream resume",
        await events(
            client.runs.stream(tid, aid, command={"resume": "keep them"}, stream_mode=MODES, stream_subgraphs=True)
        ),
    )
    record("threads.get", await client.threads.get(tid))
    record("threads.get_state", await client.threads.get_state(tid))
    record("threads.get_history", await client.threads.get_history(tid, limit=20))
    # the tool's calls run at once: their order is not the point
    found = (await client.store.search_items(["tasks"]))["items"]
    record("store.search_items", sorted(found, key=lambda item: item["key"]))
    record("runs.list", await client.runs.list(tid))


async def fork(client: Any, record: Record) -> None:
    """Two turns, then a run from the checkpoint before the second: the thread forks."""
    tid = (await client.threads.create())["thread_id"]
    record("runs.wait first", await client.runs.wait(tid, "project", input=human("hello")))
    record("runs.wait second", await client.runs.wait(tid, "project", input=human("how are you")))
    history = await client.threads.get_history(tid, limit=20)
    before_second = next(s for s in history if s["metadata"].get("source") == "loop" and len(s["values"]["messages"]) == 2)
    record(
        "runs.stream forked",
        await events(
            client.runs.stream(
                tid,
                "project",
                input=human("bye"),
                checkpoint_id=before_second["checkpoint"]["checkpoint_id"],
                stream_mode=["values", "updates"],
            )
        ),
    )
    record("threads.get_state", await client.threads.get_state(tid))
    record("threads.get_history", await client.threads.get_history(tid, limit=20))


async def stream_events(client: Any, record: Record) -> None:
    """The `events` stream mode (LangChain's callbacks as events)."""
    tid = (await client.threads.create())["thread_id"]
    record("runs.stream events", await events(client.runs.stream(tid, "project", input=human("hi"), stream_mode="events")))


async def cancel(client: Any, record: Record) -> None:
    """A run stopped while its node sleeps: the run is `interrupted`, the thread free again."""
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, "project", input=human("slow"))

    async def sleeping() -> bool:
        # running, with its input committed: the node sleeps (on either server a run is
        # `running` a moment before its graph has written anything)
        if (await client.runs.get(tid, run["run_id"]))["status"] != "running":
            return False
        return bool((await client.threads.get_state(tid))["values"])

    await until(sleeping, "the run's node to start")
    await client.runs.cancel(tid, run["run_id"], wait=True)
    record("runs.get cancelled", await client.runs.get(tid, run["run_id"]))
    record("threads.get", await client.threads.get(tid))
    record("runs.wait after", await client.runs.wait(tid, "project", input=human("hello again")))


async def rejoin(client: Any, record: Record) -> None:
    """A background run, then its stream joined from the start, and `join` for its values."""
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(
        tid, "project", input=human("add bread"), stream_mode=["values", "updates", "custom"], stream_resumable=True
    )
    record(
        "runs.join_stream",
        await events(client.runs.join_stream(tid, run["run_id"], last_event_id="-1")),
    )
    record("runs.join", await client.runs.join(tid, run["run_id"]))
    record("runs.get", await client.runs.get(tid, run["run_id"]))
    # the same turn waited on: the run stops at the interrupt again
    record("runs.wait", await client.runs.wait(tid, "project", command={"resume": "no"}))
    record("runs.wait interrupted", await client.runs.wait(tid, "project", input=human("add jam")))


async def stateless(client: Any, record: Record) -> None:
    """A run on no thread."""
    record("runs.wait stateless", await client.runs.wait(None, "project", input=human("hello")))


SCENARIOS = {f.__name__: f for f in (assistants, chat, fork, stream_events, cancel, rejoin, stateless)}
