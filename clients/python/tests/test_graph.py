"""A real LangGraph graph on MnemoSaver and MnemoStore: a tool-calling loop with a scripted
(offline) chat model, interrupted for approval and resumed, its history read back through
LangGraph and through mnemo's own HTTP API. An app's graph acts for no one user: it runs on a
service key."""

from __future__ import annotations

import operator
import uuid
from typing import Annotated, TypedDict

import httpx
import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.config import get_store
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.store.base import Item
from langgraph.types import Command, interrupt

from mnemo_langgraph import MnemoConflict, MnemoNotFound, MnemoSaver, MnemoStore


@tool
def add_task(title: str) -> str:
    """Adds a task to the user's list."""
    get_store().put(("tasks", "ann"), str(uuid.uuid4()), {"title": title, "done": False})
    return f"added {title!r}"


@tool
def list_tasks() -> str:
    """Lists the user's tasks."""
    items = get_store().search(("tasks", "ann"), filter={"done": False})
    return ", ".join(sorted(i.value["title"] for i in items)) or "nothing"


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    approvals: Annotated[list[str], operator.add]


def build(model, checkpointer, store):
    def agent(state: State) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    def approve(state: State) -> dict:
        call = state["messages"][-1].tool_calls[0]
        answer = interrupt({"question": f"run {call['name']}?", "args": call["args"]})
        return {"approvals": [answer]}

    builder = StateGraph(State)
    builder.add_node("agent", agent)
    builder.add_node("approve", approve)
    builder.add_node("tools", ToolNode([add_task, list_tasks]))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition, {"tools": "approve", END: END})
    builder.add_edge("approve", "tools")
    builder.add_edge("tools", "agent")
    return builder.compile(checkpointer=checkpointer, store=store)


def script() -> FakeMessagesListChatModel:
    return FakeMessagesListChatModel(
        responses=[
            AIMessage(
                "", tool_calls=[{"name": "add_task", "args": {"title": "buy milk"}, "id": "call_1"}]
            ),
            AIMessage("Added buy milk."),
            AIMessage("", tool_calls=[{"name": "list_tasks", "args": {}, "id": "call_2"}]),
            AIMessage("Your tasks: buy milk."),
        ]
    )


async def test_tool_loop_interrupted_resumed_and_read_back_over_http(mnemo) -> None:
    thread = str(uuid.uuid4())
    config = {"configurable": {"thread_id": thread}}
    key = mnemo.service_key
    async with MnemoSaver(mnemo.url, api_key=key) as saver, MnemoStore(mnemo.url, api_key=key) as store:
        await saver.setup()
        graph = build(script(), saver, store)

        first = await graph.ainvoke({"messages": [HumanMessage("add task buy milk")]}, config)
        assert first["__interrupt__"][0].value == {
            "question": "run add_task?",
            "args": {"title": "buy milk"},
        }
        paused = await graph.aget_state(config)
        assert paused.next == ("approve",)
        assert paused.tasks[0].interrupts[0].value["args"] == {"title": "buy milk"}

        done = await graph.ainvoke(Command(resume="yes"), config)
        assert [m.type for m in done["messages"]] == ["human", "ai", "tool", "ai"]
        assert done["messages"][2].content == "added 'buy milk'"
        assert done["messages"][-1].content == "Added buy milk."
        assert done["approvals"] == ["yes"]

        # a second turn on the same thread sees the first turn's state and the store
        again = await graph.ainvoke(
            {"messages": [HumanMessage("get tasks")]}, config
        )  # interrupts at approve again
        assert again["__interrupt__"][0].value["question"] == "run list_tasks?"
        final = await graph.ainvoke(Command(resume="ok"), config)
        assert final["messages"][-2].content == "buy milk"
        assert final["messages"][-1].content == "Your tasks: buy milk."
        assert final["approvals"] == ["yes", "ok"]

        history = [s async for s in graph.aget_state_history(config)]
        assert history[0].values["messages"][-1].content == "Your tasks: buy milk."
        assert history[-1].metadata["source"] == "input"
        steps = [s.metadata["step"] for s in history]
        assert steps == sorted(steps, reverse=True), steps
        # every value came back as the object it was, not a dict
        assert isinstance(history[0].values["messages"][1], AIMessage)
        assert history[0].values["messages"][1].tool_calls[0]["args"] == {"title": "buy milk"}

        tasks = await store.asearch(("tasks", "ann"))
        assert [t.value["title"] for t in tasks] == ["buy milk"]

    # the same thread through mnemo's HTTP API (what agent-chat-ui and the SDKs read)
    with httpx.Client(base_url=mnemo.url, headers={"x-api-key": mnemo.service_key}) as http:
        state = http.get(f"/threads/{thread}/state").json()
        latest = history[0].config["configurable"]["checkpoint_id"]
        assert state["checkpoint"]["checkpoint_id"] == latest
        messages = state["values"]["messages"]
        assert [m["type"] for m in messages] == ["human", "ai", "tool", "ai"] * 2
        assert messages[1]["tool_calls"][0]["args"] == {"title": "buy milk"}
        assert messages[-1]["content"] == "Your tasks: buy milk."
        assert state["values"]["approvals"] == ["yes", "ok"]
        assert state["metadata"]["step"] == history[0].metadata["step"]

        over_http = http.post(f"/threads/{thread}/history", json={"limit": 100}).json()
        assert [h["checkpoint"]["checkpoint_id"] for h in over_http] == [
            s.config["configurable"]["checkpoint_id"] for s in history
        ]
        paused_id = paused.config["configurable"]["checkpoint_id"]
        at_pause = next(h for h in over_http if h["checkpoint"]["checkpoint_id"] == paused_id)
        assert [m["type"] for m in at_pause["values"]["messages"]] == ["human", "ai"]
        # `next` as LangGraph computes it, though mnemo does not know this graph
        assert at_pause["next"] == ["approve"]
        assert [h["next"] for h in over_http] == [list(s.next) for s in history]
        assert state["next"] == []


def test_sync_graph_and_the_errors_callers_see(mnemo) -> None:
    thread = str(uuid.uuid4())
    config = {"configurable": {"thread_id": thread}}
    model = FakeMessagesListChatModel(responses=[AIMessage("hello")])
    key = mnemo.service_key
    with MnemoSaver(mnemo.url, api_key=key) as saver, MnemoStore(mnemo.url, api_key=key) as store:
        saver.setup()
        graph = build(model, saver, store)
        out = graph.invoke({"messages": [HumanMessage("hi")]}, config)
        assert out["messages"][-1].content == "hello"
        assert len(list(saver.list(config))) == 3  # input, agent, and the end of the loop
        assert len(list(saver.list(config, limit=2))) == 2

        saver.copy_thread(thread, f"{thread}-copy")
        with pytest.raises(MnemoConflict):
            saver.copy_thread(thread, f"{thread}-copy")
        with pytest.raises(MnemoNotFound):
            saver.copy_thread("no-such-thread", "anything")
        copied = saver.get_tuple({"configurable": {"thread_id": f"{thread}-copy"}})
        assert copied is not None and copied.checkpoint["channel_values"]["messages"][-1].content == "hello"

        saver.prune([thread], strategy="keep_latest")
        assert len(list(saver.list(config))) == 1
        saver.delete_thread(thread)
        assert saver.get_tuple(config) is None
        with pytest.raises(ValueError):
            list(saver.list(None))


def test_store_operations(mnemo) -> None:
    ns = ("prefs", str(uuid.uuid4())[:8])
    with MnemoStore(mnemo.url, api_key=mnemo.service_key) as store:
        store.put(ns, "color", {"value": "blue", "rank": 1})
        store.put(ns, "food", {"value": "tea", "rank": 2}, ttl=5)
        store.put((*ns, "deep"), "x", {"rank": 3})
        item = store.get(ns, "color")
        assert isinstance(item, Item) and item.value == {"value": "blue", "rank": 1}
        assert item.namespace == ns
        assert store.get(ns, "missing") is None
        found = store.search(ns, filter={"rank": {"$gte": 2}})
        assert sorted(i.key for i in found) == ["food", "x"]
        assert [i.key for i in store.search(ns, filter={"value": "blue"})] == ["color"]
        assert store.list_namespaces(prefix=ns) == [ns, (*ns, "deep")]
        assert store.list_namespaces(prefix=ns, max_depth=2) == [ns]
        store.delete(ns, "color")
        assert store.get(ns, "color") is None


def test_any_string_is_a_thread_id(mnemo) -> None:
    from langgraph.checkpoint.conformance.test_utils import (
        generate_checkpoint,
        generate_config,
        generate_metadata,
    )

    with MnemoSaver(mnemo.url, api_key=mnemo.service_key) as saver:
        for tid in ["a/b", "user:1 2", "ü?#%", "x%2Fy"]:
            cp = generate_checkpoint(channel_values={"k": tid}, channel_versions={"k": 1})
            cfg = saver.put(generate_config(tid, checkpoint_ns="sub/1"), cp, generate_metadata(), {"k": 1})
            got = saver.get_tuple(cfg)
            assert got is not None and got.config["configurable"]["thread_id"] == tid
            assert got.checkpoint["channel_values"] == {"k": tid}
            assert [t.checkpoint["id"] for t in saver.list({"configurable": {"thread_id": tid}})] == [cp["id"]]
            saver.delete_thread(tid)
            assert saver.get_tuple(cfg) is None
