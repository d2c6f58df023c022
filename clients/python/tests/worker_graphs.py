"""The graphs the worker tests serve (imported by path, as a user's langgraph.json names them).

`graph`: `append` adds "a" to `items` (sleeping `sleep_s` first, in small steps, so a cancel
can stop it) and an AI message; `report` writes a custom event, raises when asked to `fail`,
and asks with `interrupt()` when asked to `ask`, adding the answer."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.types import interrupt
from typing_extensions import NotRequired, TypedDict


class State(TypedDict):
    items: Annotated[list[str], operator.add]
    messages: NotRequired[Annotated[list[AnyMessage], add_messages]]
    ask: NotRequired[bool]
    fail: NotRequired[bool]
    sleep_s: NotRequired[float]


async def append(state: State) -> dict:
    for _ in range(int(state.get("sleep_s", 0) * 10)):
        await asyncio.sleep(0.1)
    return {"items": ["a"], "messages": [AIMessage("hello", id=f"ai-{len(state['items'])}")]}


def report(state: State) -> dict:
    get_stream_writer()({"progress": len(state["items"])})
    if state.get("fail"):
        raise ValueError("asked to fail")
    if state.get("ask"):
        answer = interrupt({"question": "continue?"})
        return {"items": [f"answer:{answer}"], "ask": False}
    return {"items": ["b"]}


builder = StateGraph(State)
builder.add_node("append", append)
builder.add_node("report", report)
builder.add_edge(START, "append")
builder.add_edge("append", "report")
builder.add_edge("report", END)

graph = builder.compile()


def make_graph():
    """A factory, as a langgraph.json may name one."""
    return builder
