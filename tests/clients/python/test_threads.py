"""Assistants, threads, state and history through `client.assistants` and `client.threads`, as a
user (each test its own)."""

import uuid

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError, NotFoundError, UnprocessableEntityError

from support import contents, human, tag

AGENT_ID = "fe096781-5601-53d2-b2f6-0d3403f7e9ca"  # uuid5 of the graph name, as LangGraph derives it


@pytest.fixture
async def client(mnemo_url, user_key):
    async with get_client(url=mnemo_url, api_key=user_key) as c:
        yield c


async def test_assistants_made_changed_in_versions_and_run(client):
    made = await client.assistants.create(
        "agent",
        config={"configurable": {"system_prompt": "Be terse."}},
        metadata={"team": tag()},
        name="terse",
    )
    assert made["version"] == 1 and made["graph_id"] == "agent"
    aid = made["assistant_id"]
    changed = await client.assistants.update(aid, metadata={"step": 2}, name="terser")
    assert changed["version"] == 2 and changed["name"] == "terser"
    assert changed["metadata"] == {**made["metadata"], "step": 2}
    versions = await client.assistants.get_versions(aid)
    assert [v["version"] for v in versions] == [2, 1]
    back = await client.assistants.set_latest(aid, 1)
    assert back["version"] == 1 and back["name"] == "terse"
    found = await client.assistants.search(metadata=made["metadata"])
    assert [a["assistant_id"] for a in found] == [aid]
    assert await client.assistants.count(metadata=made["metadata"]) == 1
    assert (await client.assistants.get_schemas(aid))["graph_id"] == "agent"

    # a run of it: its graph, with its config under the run's own
    thread = await client.threads.create()
    values = await client.runs.wait(thread["thread_id"], aid, input=human("get tasks"))
    assert contents(values)[0] == "get tasks"
    run = (await client.runs.list(thread["thread_id"]))[0]
    assert run["assistant_id"] == aid
    assert run["kwargs"]["config"]["configurable"]["system_prompt"] == "Be terse."

    with pytest.raises(ConflictError):
        await client.assistants.create("agent", assistant_id=aid)
    same = await client.assistants.create("legacy", assistant_id=aid, if_exists="do_nothing")
    assert same["graph_id"] == "agent"
    with pytest.raises(ConflictError):
        await client.assistants.update(AGENT_ID, name="mine")
    await client.assistants.delete(aid)
    with pytest.raises(NotFoundError):
        await client.assistants.get(aid)


async def test_assistants_search_and_get(client):
    found = await client.assistants.search(graph_id="agent")
    assert [a["assistant_id"] for a in found] == [AGENT_ID]
    agent = found[0]
    assert agent["graph_id"] == "agent" and agent["name"] == "agent"
    assert agent["metadata"] == {"created_by": "system"}

    everything = await client.assistants.search(limit=10)
    assert {a["graph_id"] for a in everything} >= {"agent", "legacy"}
    page = await client.assistants.search(limit=1, offset=1)
    assert len(page) == 1 and page[0]["assistant_id"] in {a["assistant_id"] for a in everything}
    obj = await client.assistants.search(limit=1, response_format="object")
    assert len(obj["assistants"]) == 1 and obj["next"] == "1"  # the X-Pagination-Next header
    last = await client.assistants.search(limit=10, response_format="object")
    assert len(last["assistants"]) == len(everything) and last["next"] is None
    assert await client.assistants.count(graph_id="agent") == 1

    got = await client.assistants.get(AGENT_ID)
    assert got["assistant_id"] == AGENT_ID and got["graph_id"] == "agent"
    assert got["version"] == agent["version"]

    schemas = await client.assistants.get_schemas(AGENT_ID)
    assert schemas["graph_id"] == "agent"
    assert "messages" in schemas["state_schema"]["properties"]
    graph = await client.assistants.get_graph(AGENT_ID)
    assert {"agent", "tools"} <= {n["id"] for n in graph["nodes"]}

    with pytest.raises(NotFoundError):
        await client.assistants.get(str(uuid.uuid4()))
    with pytest.raises(UnprocessableEntityError):
        await client.assistants.get("not-a-uuid")


async def test_create_get_update_delete(client, user):
    thread_id = str(uuid.uuid4())
    mine = {"user_id": user.user_id, "n": 1}
    created = await client.threads.create(thread_id=thread_id, metadata=mine)
    assert created["thread_id"] == thread_id
    assert created["status"] == "idle" and created["values"] is None
    assert created["metadata"] == mine

    # if_exists: raise (also the default) is a 409, do_nothing answers the existing thread
    for if_exists in ("raise", None):
        with pytest.raises(ConflictError) as e:
            await client.threads.create(thread_id=thread_id, if_exists=if_exists)
        assert e.value.status_code == 409
    same = await client.threads.create(
        thread_id=thread_id, metadata={"n": 99, "other": True}, if_exists="do_nothing"
    )
    assert same["thread_id"] == thread_id and same["metadata"] == mine
    assert same["created_at"] == created["created_at"]

    got = await client.threads.get(thread_id)
    assert got["thread_id"] == thread_id and got["metadata"] == created["metadata"]

    # update merges top-level metadata keys
    updated = await client.threads.update(thread_id, metadata={"n": 2, "color": "blue"})
    assert updated["metadata"] == {"user_id": user.user_id, "n": 2, "color": "blue"}
    assert (await client.threads.get(thread_id))["metadata"] == updated["metadata"]

    await client.threads.delete(thread_id)
    with pytest.raises(NotFoundError) as e:
        await client.threads.get(thread_id)
    assert e.value.status_code == 404
    with pytest.raises(NotFoundError):
        await client.threads.delete(thread_id)
    with pytest.raises(NotFoundError):
        await client.threads.update(thread_id, metadata={"n": 3})


async def test_search_and_count_by_metadata(client):
    suite = tag()
    ids = []
    for i in range(3):
        t = await client.threads.create(metadata={"suite": suite, "i": i, "even": i % 2 == 0})
        ids.append(t["thread_id"])
    await client.threads.create(metadata={"suite": "someone else"})

    found = await client.threads.search(metadata={"suite": suite}, sort_by="created_at", sort_order="asc")
    assert [t["thread_id"] for t in found] == ids
    even = await client.threads.search(metadata={"suite": suite, "even": True})
    assert sorted(t["thread_id"] for t in even) == sorted([ids[0], ids[2]])
    page = await client.threads.search(
        metadata={"suite": suite}, limit=1, offset=1, sort_by="created_at", sort_order="asc"
    )
    assert [t["thread_id"] for t in page] == [ids[1]]
    by_id = await client.threads.search(ids=[ids[1]])
    assert [t["thread_id"] for t in by_id] == [ids[1]]
    idle = await client.threads.search(metadata={"suite": suite}, status="idle")
    assert len(idle) == 3

    assert await client.threads.count(metadata={"suite": suite}) == 3
    assert await client.threads.count(metadata={"suite": suite, "even": False}) == 1


async def test_state_history_and_copy(client):
    thread = await client.threads.create(metadata={"origin": tag()})
    tid = thread["thread_id"]

    empty = await client.threads.get_state(tid)
    assert empty["values"] == {} and empty["checkpoint"] is None and empty["next"] == []

    await client.runs.wait(tid, "agent", input=human("add task buy milk"))
    final = await client.runs.wait(tid, "agent", input=human("get tasks"))
    assert contents(final)[-1] == "Your tasks:\n1. buy milk (todo)"

    state = await client.threads.get_state(tid)
    assert contents(state["values"]) == contents(final)
    assert state["next"] == [] and state["tasks"] == []
    assert state["checkpoint"]["thread_id"] == tid
    assert state["parent_checkpoint"]["checkpoint_id"] < state["checkpoint"]["checkpoint_id"]
    assert state["metadata"]["source"] == "loop"

    # the thread now names its graph, and its values are the latest state
    got = await client.threads.get(tid)
    assert got["metadata"]["graph_id"] == "agent" and got["metadata"]["assistant_id"] == AGENT_ID
    assert contents(got["values"]) == contents(final)

    history = await client.threads.get_history(tid, limit=100)
    ids = [h["checkpoint"]["checkpoint_id"] for h in history]
    assert ids == sorted(ids, reverse=True), "history is newest first"
    assert ids[0] == state["checkpoint"]["checkpoint_id"]
    assert len(history) >= 6  # two runs: input, model, tools, model / input, model, tools, model
    # each state links to the one before it
    for newer, older in zip(history, history[1:]):
        assert newer["parent_checkpoint"]["checkpoint_id"] == older["checkpoint"]["checkpoint_id"]
    assert history[-1]["parent_checkpoint"] is None
    assert history[-1]["metadata"]["source"] == "input"

    # limit and before page through it
    first = await client.threads.get_history(tid, limit=2)
    assert [h["checkpoint"]["checkpoint_id"] for h in first] == ids[:2]
    for before in (first[-1]["checkpoint"], first[-1]["checkpoint"]["checkpoint_id"]):
        nxt = await client.threads.get_history(tid, limit=2, before=before)
        assert [h["checkpoint"]["checkpoint_id"] for h in nxt] == ids[2:4]
    nested = await client.threads.get_history(
        tid, limit=3, before={"configurable": {"checkpoint_id": ids[1]}}
    )
    assert [h["checkpoint"]["checkpoint_id"] for h in nested] == ids[2:5]

    # metadata filter: the input checkpoints, one per run
    inputs = await client.threads.get_history(tid, metadata={"source": "input"})
    assert len(inputs) == 2 and all(h["metadata"]["source"] == "input" for h in inputs)
    assert contents(inputs[0]["values"])[-1] == "get tasks"
    assert contents(inputs[1]["values"]) == ["add task buy milk"]

    # the state at one checkpoint
    old = await client.threads.get_state(tid, checkpoint_id=inputs[0]["checkpoint"]["checkpoint_id"])
    assert contents(old["values"]) == contents(inputs[0]["values"])

    # a copy carries the whole history; the original is untouched by what happens to the copy
    copy = await client.threads.copy(tid)
    cid = copy["thread_id"]
    assert cid != tid
    copied = await client.threads.get_history(cid, limit=100)
    assert [contents(h["values"]) for h in copied] == [contents(h["values"]) for h in history]
    await client.runs.wait(cid, "agent", input=human("add task walk dog"))
    assert len(contents((await client.threads.get_state(tid))["values"])) == len(contents(final))
    assert contents((await client.threads.get_state(cid))["values"])[-1] == 'Added task "walk dog".'

    with pytest.raises(NotFoundError):
        await client.threads.copy(str(uuid.uuid4()))


async def test_update_state_appends_messages(client):
    thread = await client.threads.create()
    tid = thread["thread_id"]
    await client.runs.wait(tid, "agent", input=human("hello"))
    before = contents((await client.threads.get_state(tid))["values"])
    res = await client.threads.update_state(
        tid, {"messages": [{"type": "ai", "content": "an added note"}]}, as_node="agent"
    )
    assert res["checkpoint"]["thread_id"] == tid
    state = await client.threads.get_state(tid)
    assert contents(state["values"]) == before + ["an added note"]
    assert state["metadata"]["source"] == "update"
    assert state["checkpoint"]["checkpoint_id"] == res["checkpoint"]["checkpoint_id"]
