"""Runs of mnemo's task agent through `client.runs`: wait, stream (every mode mnemo serves, v1
and v2), background runs and join, rejoining a resumable stream, cancel, the delete-approval
interrupt and its resume, multitask strategies, and the SDK's error types. Each test is a user
of its own (a fresh user's key): the agent acts as the thread's owner, so its task list starts
empty."""

import asyncio
import uuid
from contextlib import aclosing

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import (
    APIStatusError,
    ConflictError,
    NotFoundError,
    UnprocessableEntityError,
)

from support import collect, contents, human, tag, types, until

AGENT_ID = "fe096781-5601-53d2-b2f6-0d3403f7e9ca"
ADDED = 'Added task "buy milk".'


@pytest.fixture
async def client(mnemo_url, user_key):
    async with get_client(url=mnemo_url, api_key=user_key) as c:
        yield c


@pytest.fixture
async def slow(slow_mnemo, slow_key):
    """A client of the mnemo whose model answers as slowly as the message asks."""
    async with get_client(url=slow_mnemo.url, api_key=slow_key) as c:
        yield c


def raises_status(code: int):
    """An httpx.HTTPStatusError (the SDK's typed errors are subclasses) with this status."""
    return _StatusCheck(code)


class _StatusCheck:
    def __init__(self, code):
        self.code = code
        self.ctx = pytest.raises(httpx.HTTPStatusError)

    def __enter__(self):
        self.info = self.ctx.__enter__()
        return self.info

    def __exit__(self, *exc):
        handled = self.ctx.__exit__(*exc)
        assert self.info.value.response.status_code == self.code, self.info.value
        return handled


async def _gone(client, thread_id) -> bool:
    try:
        await client.threads.get(thread_id)
    except NotFoundError:
        return True
    return False


async def new_thread(client) -> str:
    return (await client.threads.create(metadata={"origin": f"t-{tag()}"}))["thread_id"]


# ---------------------------------------------------------------------------------------------
# wait, background, join


async def test_wait_answers_the_final_values(client):
    tid = await new_thread(client)
    created = []
    values = await client.runs.wait(
        tid, "agent", input=human("add task buy milk"), on_run_created=created.append
    )
    assert contents(values) == ["add task buy milk", "", ADDED, ADDED]
    assert types(values) == ["human", "ai", "tool", "ai"]
    assert values["messages"][1]["tool_calls"][0]["name"] == "create_task"

    # the run named in Content-Location is the run that ran
    assert created[0]["thread_id"] == tid
    run = await client.runs.get(tid, created[0]["run_id"])
    assert run["status"] == "success" and run["assistant_id"] == AGENT_ID
    assert run["thread_id"] == tid

    again = await client.runs.wait(tid, AGENT_ID, input=human("get tasks"))
    assert contents(again)[-1] == "Your tasks:\n1. buy milk (todo)"
    runs = await client.runs.list(tid)
    assert [r["run_id"] for r in runs][1] == created[0]["run_id"], "newest first"
    assert all(r["status"] == "success" for r in runs) and len(runs) == 2


async def test_stateless_wait_and_if_not_exists(client):
    created = []
    values = await client.runs.wait(
        None, "agent", input=human("what can you do"), on_run_created=created.append
    )
    assert contents(values)[-1].startswith("I can manage your tasks")
    # a stateless run's thread is deleted when it ends (on_completion defaults to delete)
    await until(lambda: _gone(client, created[0]["thread_id"]), what="the stateless thread to go")

    kept = []
    await client.runs.wait(
        None, "agent", input=human("hello"), on_completion="keep", on_run_created=kept.append
    )
    assert (await client.threads.get(kept[0]["thread_id"]))["status"] == "idle"

    # a run on a thread that does not exist yet creates it when asked to
    tid = str(uuid.uuid4())
    with raises_status(404):
        await client.runs.wait(tid, "agent", input=human("hello"))
    values = await client.runs.wait(tid, "agent", input=human("hello"), if_not_exists="create")
    assert contents(values)[0] == "hello"
    assert (await client.threads.get(tid))["metadata"]["graph_id"] == "agent"


async def test_background_run_and_join(client):
    tid = await new_thread(client)
    run = await client.runs.create(
        tid, "agent", input=human("add task buy milk"), metadata={"origin": "pytest"}
    )
    assert run["thread_id"] == tid and run["status"] in ("pending", "running", "success")
    assert run["metadata"]["origin"] == "pytest"
    assert run["multitask_strategy"] == "reject"
    values = await client.runs.join(tid, run["run_id"])
    assert contents(values)[-1] == ADDED
    done = await client.runs.get(tid, run["run_id"])
    assert done["status"] == "success"
    assert (await client.threads.get(tid))["status"] == "idle"
    # joining a run that has ended answers its values again
    assert contents(await client.runs.join(tid, run["run_id"])) == contents(values)

    # an ended run can be deleted
    await client.runs.delete(tid, run["run_id"])
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, run["run_id"])


# ---------------------------------------------------------------------------------------------
# streaming


async def written_in(client, tid) -> dict:
    """message id -> (node, step) of the checkpoint that wrote it, from the thread's history."""
    found = {}
    for h in await client.threads.get_history(tid, limit=100):
        for node, update in (h["metadata"].get("writes") or {}).items():
            for m in (update or {}).get("messages", []):
                if "id" in m:
                    found[m["id"]] = (node, h["metadata"]["step"])
    return found


async def stream(client, tid, text, **kw):
    created = []
    parts = await collect(
        client.runs.stream(tid, "agent", input=human(text), on_run_created=created.append, **kw)
    )
    assert parts[0].event == "metadata"
    assert parts[0].data["run_id"] == created[0]["run_id"]
    return parts, created[0]["run_id"]


async def test_stream_values(client):
    tid = await new_thread(client)
    parts, _ = await stream(client, tid, "add task buy milk")  # the SDK's default mode: values
    assert {p.event for p in parts} == {"metadata", "values"}
    values = [p.data for p in parts if p.event == "values"]
    # the input state first, then the state after each step
    assert contents(values[0]) == ["add task buy milk"]
    assert [types(v) for v in values] == [
        ["human"],
        ["human", "ai"],
        ["human", "ai", "tool"],
        ["human", "ai", "tool", "ai"],
    ]
    assert contents(values[-1])[-1] == ADDED
    assert all(p.id is None for p in parts), "ids only on resumable streams"


async def test_stream_updates(client):
    tid = await new_thread(client)
    parts, _ = await stream(client, tid, "add task buy milk", stream_mode="updates")
    updates = [p.data for p in parts if p.event == "updates"]
    assert [list(u) for u in updates] == [["agent"], ["tools"], ["agent"]]
    assert updates[0]["agent"]["messages"][0]["tool_calls"][0]["args"] == {"title": "buy milk"}
    assert updates[1]["tools"]["messages"][0]["content"] == ADDED
    assert updates[2]["agent"]["messages"][0]["content"] == ADDED


async def test_stream_messages_tuple(client):
    tid = await new_thread(client)
    parts, run_id = await stream(client, tid, "add task buy milk", stream_mode="messages-tuple")
    tuples = [p.data for p in parts if p.event == "messages"]
    assert {p.event for p in parts} == {"metadata", "messages"}
    by_id: dict[str, list] = {}
    for chunk, meta in tuples:
        # the model's messages stream as chunks; a tool's message comes whole, from `tools`
        node = "tools" if chunk["type"] == "tool" else "agent"
        assert chunk["type"] in ("AIMessageChunk", "tool")
        assert meta["langgraph_node"] == node
        assert meta["thread_id"] == tid and meta["run_id"] == run_id
        by_id.setdefault(chunk["id"], []).append(chunk)
    call, result, answer = by_id.values()
    assert [r["type"] for r in result] == ["tool"] and result[0]["content"] == ADDED
    # the tool call streams as tool_call_chunks, the answer token by token
    named = [c["tool_call_chunks"][0]["name"] for c in call if c["tool_call_chunks"]]
    assert named[0] == "create_task"
    assert call[-1]["chunk_position"] == "last"
    assert len(answer) > 1
    assert "".join(c["content"] for c in answer) == ADDED
    assert answer[-1]["chunk_position"] == "last"
    assert all(c.get("chunk_position") != "last" for c in answer[:-1])
    # each chunk names the step of the checkpoint its message is written in
    steps = await written_in(client, tid)
    for chunk, meta in tuples:
        assert (meta["langgraph_node"], meta["langgraph_step"]) == steps[chunk["id"]]


async def test_stream_legacy_messages(client):
    tid = await new_thread(client)
    parts, _ = await stream(client, tid, "add task buy milk", stream_mode="messages")
    events = {p.event for p in parts}
    assert events == {"metadata", "messages/metadata", "messages/partial", "messages/complete"}
    partials = [p.data[0] for p in parts if p.event == "messages/partial"]
    # each partial is the message so far; the last one is the whole answer
    answers = [m for m in partials if m["content"]]
    assert answers[-1]["content"] == ADDED
    assert all(ADDED.startswith(m["content"]) for m in answers)
    complete = [p.data[0] for p in parts if p.event == "messages/complete"]
    assert [m["type"] for m in complete] == ["tool"] and complete[0]["content"] == ADDED
    described = set()
    for p in parts:
        if p.event == "messages/metadata":
            described |= set(p.data)
    assert {m["id"] for m in partials + complete} <= described
    steps = await written_in(client, tid)
    meta = [(i, m["metadata"]) for p in parts if p.event == "messages/metadata" for i, m in p.data.items()]
    assert [m["langgraph_node"] for _, m in meta] == ["agent", "tools", "agent"]
    assert all((m["langgraph_node"], m["langgraph_step"]) == steps[i] for i, m in meta)


async def test_stream_several_modes_and_the_accepted_ones(client):
    tid = await new_thread(client)
    parts, _ = await stream(
        client,
        tid,
        "add task buy milk",
        stream_mode=["values", "updates", "messages-tuple", "custom", "debug", "tasks", "checkpoints", "events"],
    )
    events = [p.event for p in parts]
    assert set(events) == {"metadata", "values", "updates", "messages"}
    # mnemo's graphs write no custom events and emit nothing in debug, tasks, checkpoints and
    # events; the modes are accepted (as LangGraph accepts modes a graph does not use)
    assert events[-1] in ("values", "updates")
    assert contents([p.data for p in parts if p.event == "values"][-1])[-1] == ADDED

    with pytest.raises(UnprocessableEntityError) as e:
        await collect(client.runs.stream(tid, "agent", input=human("x"), stream_mode="nonsense"))
    assert "nonsense" in str(e.value)


async def test_stream_v2(client):
    tid = await new_thread(client)
    parts = await collect(
        client.runs.stream(
            tid,
            "agent",
            input=human("add task buy milk"),
            stream_mode=["values", "updates", "messages-tuple"],
            version="v2",
        )
    )
    assert all(set(p) == {"type", "ns", "data", "interrupts"} for p in parts)
    assert all(p["ns"] == [] and p["interrupts"] == [] for p in parts)
    assert [p["type"] for p in parts][0] == "metadata"
    assert {p["type"] for p in parts} == {"metadata", "values", "updates", "messages"}
    last_values = [p["data"] for p in parts if p["type"] == "values"][-1]
    assert contents(last_values)[-1] == ADDED
    chunks = [p["data"][0] for p in parts if p["type"] == "messages"]
    assert "".join(c["content"] for c in chunks if c["id"] == last_values["messages"][-1]["id"]) == ADDED

    # an interrupt arrives in the values part's `interrupts`, taken out of its data
    parts = await collect(
        client.runs.stream(
            tid, "agent", input=human("delete task buy milk"), stream_mode=["values", "updates"], version="v2"
        )
    )
    values = [p for p in parts if p["type"] == "values"]
    assert "__interrupt__" not in values[-1]["data"]
    [interrupt] = values[-1]["interrupts"]
    assert interrupt["value"]["action"] == "delete_task"
    assert interrupt["value"]["args"] == {"task": "buy milk"}
    assert all(v["interrupts"] == [] for v in values[:-1])
    updates = [p["data"] for p in parts if p["type"] == "updates"]
    assert updates[-1]["__interrupt__"][0]["id"] == interrupt["id"]

    # the v2 stream resumes the interrupt too
    parts = await collect(
        client.runs.stream(tid, "agent", command={"resume": True}, stream_mode="values", version="v2")
    )
    assert contents(parts[-1]["data"])[-1] == 'Deleted "buy milk".'
    assert parts[-1]["interrupts"] == []


# ---------------------------------------------------------------------------------------------
# interrupts


async def test_an_interrupt_and_its_resume(client):
    tid = await new_thread(client)
    await client.runs.wait(tid, "agent", input=human("add task buy milk"))
    await client.runs.wait(tid, "agent", input=human("add task walk dog"))

    asked = await client.runs.wait(tid, "agent", input=human("delete task buy milk"))
    [interrupt] = asked["__interrupt__"]
    assert interrupt["value"]["args"] == {"task": "buy milk"}
    assert "buy milk" in interrupt["value"]["description"]

    thread = await client.threads.get(tid)
    assert thread["status"] == "interrupted"
    assert [i["id"] for group in thread["interrupts"].values() for i in group] == [interrupt["id"]]
    state = await client.threads.get_state(tid)
    assert state["next"] == ["tools"]
    assert [i["id"] for i in state["interrupts"]] == [interrupt["id"]]
    assert [t["name"] for t in state["tasks"]] == ["tools"]
    assert state["tasks"][0]["interrupts"][0]["id"] == interrupt["id"]
    runs = await client.runs.list(tid, limit=1)
    assert runs[0]["status"] == "success"  # as LangGraph's: the thread waits, the run succeeded

    # approve: the task is deleted
    done = await client.runs.wait(tid, "agent", command={"resume": True})
    assert contents(done)[-1] == 'Deleted "buy milk".'
    assert "__interrupt__" not in done
    assert (await client.threads.get(tid))["status"] == "idle"
    assert (await client.threads.get_state(tid))["next"] == []
    listed = await client.runs.wait(tid, "agent", input=human("get tasks"))
    assert contents(listed)[-1] == "Your tasks:\n1. walk dog (todo)"

    # decline (through a stream this time): the task stays
    parts = await collect(client.runs.stream(tid, "agent", input=human("delete task walk dog"), stream_mode="updates"))
    assert parts[-1].data["__interrupt__"][0]["value"]["args"] == {"task": "walk dog"}
    kept = await client.runs.wait(tid, "agent", command={"resume": {"approved": False}})
    assert contents(kept)[-1] == "Kept the task: deleting it was not approved."
    listed = await client.runs.wait(tid, "agent", input=human("get tasks"))
    assert contents(listed)[-1] == "Your tasks:\n1. walk dog (todo)"

    # a resume with nothing to resume fails the run; the thread stays usable
    failed = await client.runs.wait(tid, "agent", command={"resume": True}, raise_error=False)
    assert failed["__error__"]["message"] == "The thread has no interrupt to resume"
    with pytest.raises(Exception, match="no interrupt to resume"):
        await client.runs.wait(tid, "agent", command={"resume": True})
    assert contents(await client.runs.wait(tid, "agent", input=human("get tasks")))[-1] == (
        "Your tasks:\n1. walk dog (todo)"
    )


# ---------------------------------------------------------------------------------------------
# long runs (the fake-model mnemo): rejoin, cancel, multitask strategies


async def test_join_stream_with_last_event_id(slow, slow_mnemo):
    tid = await new_thread(slow)
    run = await slow.runs.create(
        tid, "agent", input=human("slow 8 150"), stream_mode=["values", "messages-tuple"], stream_resumable=True
    )
    rid = run["run_id"]

    # a client that reads a few events and leaves
    seen = []
    async with aclosing(slow.runs.join_stream(tid, rid, last_event_id="0")) as s:
        async for part in s:
            seen.append(part)
            if len(seen) == 4:
                break
    assert seen[0].event == "metadata" and seen[0].id == "1"
    assert [int(p.id) for p in seen] == [1, 2, 3, 4]
    # the run goes on without it
    assert (await slow.runs.get(tid, rid))["status"] in ("pending", "running")

    # rejoining after event 4 gets exactly the events after it, to the end of the run
    rest = await collect(slow.runs.join_stream(tid, rid, last_event_id=seen[-1].id))
    ids = [int(p.id) for p in rest]
    assert ids == list(range(5, 5 + len(ids)))
    assert (await slow.runs.get(tid, rid))["status"] == "success"
    answer = [p.data for p in rest if p.event == "values"][-1]
    assert contents(answer) == ["slow 8 150", "w1 w2 w3 w4 w5 w6 w7 w8 "]

    # after the run: a full replay is the first part plus the rest
    full = await collect(slow.runs.join_stream(tid, rid, last_event_id="0"))
    assert [(p.event, p.id, p.data) for p in full] == [(p.event, p.id, p.data) for p in seen + rest]
    # the mode filter on a rejoin
    only = await collect(slow.runs.join_stream(tid, rid, last_event_id="0", stream_mode="values"))
    assert [p.id for p in only] == [p.id for p in full if p.event in ("metadata", "values")]
    both = await collect(
        slow.runs.join_stream(tid, rid, last_event_id="0", stream_mode=["values", "messages-tuple"])
    )
    assert [p.id for p in both] == [p.id for p in full]
    # without Last-Event-ID on an ended run: nothing more
    assert [p.event for p in await collect(slow.runs.join_stream(tid, rid))] in ([], ["metadata"])


async def test_a_stream_rejoined_while_running(slow):
    tid = await new_thread(slow)
    created = []
    first = []
    stream = slow.runs.stream(
        tid,
        "agent",
        input=human("slow 6 150"),
        stream_mode="messages-tuple",
        stream_resumable=True,
        on_disconnect="continue",
        on_run_created=created.append,
    )
    async with aclosing(stream) as s:
        async for part in s:
            first.append(part)
            if part.event == "messages":
                break
    rid = created[0]["run_id"]
    rest = await collect(slow.runs.join_stream(tid, rid, last_event_id=first[-1].id))
    chunks = [p.data[0]["content"] for p in first + rest if p.event == "messages"]
    assert "".join(chunks) == "w1 w2 w3 w4 w5 w6 "
    assert (await slow.runs.get(tid, rid))["status"] == "success"


async def test_cancel(slow, slow_mnemo):
    model = slow_mnemo.model
    tid = await new_thread(slow)
    await slow.runs.wait(tid, "agent", input=human("hello"))

    # interrupt: the run stops, what it wrote stays, the thread is free
    asked = model.count()
    run = await slow.runs.create(tid, "agent", input=human("hang"))
    await until(lambda: model.count() > asked, what="the model to be asked")
    assert (await slow.threads.get(tid))["status"] == "busy"
    cancelled = await slow.runs.cancel(tid, run["run_id"], wait=True)
    assert cancelled["status"] == "interrupted"
    assert (await slow.runs.get(tid, run["run_id"]))["status"] == "interrupted"
    # the model's node had not finished: the thread is `interrupted`, as LangGraph's
    assert (await slow.threads.get(tid))["status"] == "interrupted"
    assert contents((await slow.threads.get_state(tid))["values"]) == ["hello", "echo: hello", "hang"]

    # rollback: the run and what it wrote are gone
    asked = model.count()
    run = await slow.runs.create(tid, "agent", input=human("hang"))
    await until(lambda: model.count() > asked, what="the model to be asked")
    await slow.runs.cancel(tid, run["run_id"], wait=True, action="rollback")
    with pytest.raises(NotFoundError):
        await slow.runs.get(tid, run["run_id"])
    assert contents((await slow.threads.get_state(tid))["values"]) == ["hello", "echo: hello", "hang"]

    # cancel without waiting, and cancel_many by status
    asked = model.count()
    run = await slow.runs.create(tid, "agent", input=human("hang"))
    await until(lambda: model.count() > asked, what="the model to be asked")
    await slow.runs.cancel(tid, run["run_id"])
    status = await until(
        lambda: _status_if_ended(slow, tid, run["run_id"]), what="the cancelled run to end"
    )
    assert status == "interrupted"

    asked = model.count()
    run = await slow.runs.create(tid, "agent", input=human("hang"))
    await until(lambda: model.count() > asked, what="the model to be asked")
    await slow.runs.cancel_many(thread_id=tid, run_ids=[run["run_id"]])
    status = await until(
        lambda: _status_if_ended(slow, tid, run["run_id"]), what="the cancelled run to end"
    )
    assert status == "interrupted"
    assert (await slow.threads.get(tid))["status"] == "interrupted"


async def _status_if_ended(client, tid, rid):
    status = (await client.runs.get(tid, rid))["status"]
    return None if status in ("pending", "running") else status


async def test_multitask_reject_and_enqueue(slow):
    tid = await new_thread(slow)
    first = await slow.runs.create(tid, "agent", input=human("slow 5 150"))

    # reject (the default): 409 while a run is active, for every kind of run
    with pytest.raises(ConflictError) as e:
        await slow.runs.create(tid, "agent", input=human("nope"), multitask_strategy="reject")
    assert e.value.status_code == 409
    # (wait answers through the SDK's reconnecting request, which raises httpx's own error)
    with raises_status(409):
        await slow.runs.wait(tid, "agent", input=human("nope"))
    with pytest.raises(ConflictError):
        await collect(slow.runs.stream(tid, "agent", input=human("nope")))

    # enqueue: the runs wait their turn and run in order
    second = await slow.runs.create(tid, "agent", input=human("second"), multitask_strategy="enqueue")
    third = await slow.runs.create(tid, "agent", input=human("third"), multitask_strategy="enqueue")
    assert second["status"] == "pending" and third["status"] == "pending"
    assert second["multitask_strategy"] == "enqueue"
    values = await slow.runs.join(tid, third["run_id"])
    assert contents(values) == [
        "slow 5 150",
        "w1 w2 w3 w4 w5 ",
        "second",
        "echo: second",
        "third",
        "echo: third",
    ]
    for run in (first, second, third):
        assert (await slow.runs.get(tid, run["run_id"]))["status"] == "success"
    listed = [r["run_id"] for r in await slow.runs.list(tid)]
    assert listed == [third["run_id"], second["run_id"], first["run_id"]]


# ---------------------------------------------------------------------------------------------
# errors


async def test_error_types(client):
    missing = str(uuid.uuid4())
    # 404: the SDK's NotFoundError, an httpx.HTTPStatusError with the server's detail
    with pytest.raises(NotFoundError) as e:
        await client.runs.create(missing, "agent", input=human("hi"))
    assert isinstance(e.value, httpx.HTTPStatusError) and isinstance(e.value, APIStatusError)
    assert e.value.status_code == 404 and e.value.response.status_code == 404
    assert missing in str(e.value) and missing in e.value.response.json()["detail"]
    # runs.wait and runs.join go through the SDK's reconnecting request: plain httpx errors
    with raises_status(404) as e:
        await client.runs.wait(missing, "agent", input=human("hi"))
    assert missing in e.value.response.json()["detail"]
    with pytest.raises(NotFoundError):
        await collect(client.runs.stream(missing, "agent", input=human("hi")))
    tid = await new_thread(client)
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, str(uuid.uuid4()))
    with raises_status(404):
        await client.runs.join(tid, str(uuid.uuid4()))
    with pytest.raises(NotFoundError):
        await client.threads.get_state(missing)

    # 409
    with pytest.raises(ConflictError) as e:
        await client.threads.create(thread_id=tid)
    assert e.value.status_code == 409 and isinstance(e.value, httpx.HTTPStatusError)

    # 422: an unknown assistant (the message names the graphs), a bad strategy, a bad mode
    with pytest.raises(UnprocessableEntityError) as e:
        await client.runs.create(tid, "no-such-graph", input=human("hi"))
    assert e.value.status_code == 422 and "agent" in e.value.response.json()["detail"]
    with raises_status(422):
        await client.runs.wait(tid, "no-such-graph", input=human("hi"))
    with pytest.raises(UnprocessableEntityError):
        await client.runs.create(tid, "agent", input=human("hi"), multitask_strategy="sometimes")
    with pytest.raises(UnprocessableEntityError):
        await collect(client.runs.stream(tid, "agent", input=human("hi"), stream_mode="sideways"))
    with pytest.raises(UnprocessableEntityError):
        await client.threads.create(thread_id="not-a-uuid")
    with pytest.raises(UnprocessableEntityError):
        await client.threads.search(status="sleepy")
    # nothing was run on the thread by any of these
    assert await client.runs.list(tid) == []


# ---------------------------------------------------------------------------------------------
# the SDK's own reconnect: a connection that drops mid-stream


class CuttingProxy:
    """A TCP proxy to mnemo that cuts its first connection after `cut` bytes of response;
    later connections pass through whole."""

    def __init__(self, target_port: int, cut: int):
        self.target_port, self.cut = target_port, cut
        self.connections = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def close(self):
        self.server.close()

    async def _serve(self, client_r, client_w):
        self.connections += 1
        budget = self.cut if self.connections == 1 else None
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(r, w, limit):
            sent = 0
            try:
                while data := await r.read(256):
                    if limit is not None and sent + len(data) >= limit:
                        w.write(data[: limit - sent])
                        await w.drain()
                        break
                    sent += len(data)
                    w.write(data)
                    await w.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                for writer in (client_w, up_w):
                    writer.close()

        await asyncio.gather(pipe(client_r, up_w, None), pipe(up_r, client_w, budget))


async def test_the_sdk_reconnects_a_dropped_stream(slow, slow_mnemo, slow_key):
    port = int(slow_mnemo.url.rsplit(":", 1)[1])
    proxy = CuttingProxy(port, cut=1500)
    url = await proxy.start()
    tid = await new_thread(slow)
    try:
        async with get_client(url=url, api_key=slow_key) as through_proxy:
            created = []
            parts = await collect(
                through_proxy.runs.stream(
                    tid,
                    "agent",
                    input=human("slow 10 80"),
                    stream_mode=["values", "messages-tuple"],
                    stream_resumable=True,
                    on_disconnect="continue",
                    on_run_created=created.append,
                )
            )
    finally:
        await proxy.close()
    assert proxy.connections >= 2, "the first connection was cut and the SDK came back"
    rid = created[0]["run_id"]
    # what the client saw is every event of the run exactly once, in order
    full = await collect(slow.runs.join_stream(tid, rid, last_event_id="0"))
    assert [p.id for p in parts] == [p.id for p in full]
    assert [p.data for p in parts] == [p.data for p in full]
    chunks = [p.data[0]["content"] for p in parts if p.event == "messages"]
    assert "".join(chunks) == "".join(f"w{i} " for i in range(1, 11))
