"""A small LangGraph project, as a team keeps one: served once by `langgraph dev` and once by
mnemo with a graph worker, so the differential tests can compare the two servers.

`agent` asks a scripted chat model (LangChain's fake chat model, its answer a function of the
conversation), which calls the `add_task` tool for "add <title>"; the tool writes the task to the
store and a custom stream event. Then the `review` subgraph asks, with `interrupt()`, whether to
keep the tasks of the turn, and answers with what it was told. "slow" makes the model take its
time (a run to cancel)."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Iterator
from typing import Any

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.config import get_store, get_stream_writer
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import interrupt


class ScriptedChatModel(GenericFakeChatModel):
    """LangChain's fake chat model, answering from the conversation rather than from a list:
    both servers get the same answers whatever order their runs come in."""

    messages: Iterator[Any] = iter(())

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=answer(messages))])

    def _stream(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        reply = answer(messages)
        if not reply.tool_calls:
            yield from super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs)
            return
        chunks = [
            {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
            for i, c in enumerate(reply.tool_calls)
        ]
        yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=chunks, chunk_position="last"))


def answer(messages: list[BaseMessage]) -> AIMessage:
    persona = next((m.content for m in messages if isinstance(m, SystemMessage)), "assistant")
    last = messages[-1]
    if isinstance(last, ToolMessage):
        return AIMessage(f"{persona}: done, {last.content}.")
    text = str(last.content)
    if m := re.fullmatch(r"add (.+)", text):
        titles = [t.strip() for t in m.group(1).split(" and ")]
        calls = [{"name": "add_task", "args": {"title": t}, "id": f"call_{len(messages)}_{i}"} for i, t in enumerate(titles)]
        return AIMessage("", tool_calls=calls)
    return AIMessage(f"{persona}: you said {text}.")


@tool
def add_task(title: str) -> str:
    """Adds a task to the list."""
    key = re.sub(r"\W+", "-", title.lower()).strip("-")
    get_store().put(("tasks",), key, {"title": title, "done": False})
    get_stream_writer()({"task_added": title})
    return f"added {title}"


model = ScriptedChatModel()


async def agent(state: MessagesState, config: RunnableConfig) -> dict:
    persona = config.get("configurable", {}).get("persona") or os.environ.get("PROJECT_GREETING", "assistant")
    if state["messages"][-1].content == "slow":
        await asyncio.sleep(30)
    reply = await model.bind_tools([add_task]).ainvoke([SystemMessage(persona), *state["messages"]])
    return {"messages": [reply]}


def route(state: MessagesState) -> str:
    return "tools" if state["messages"][-1].tool_calls else "review"


def ask(state: MessagesState) -> dict:
    turn = []
    for m in reversed(state["messages"]):
        if isinstance(m, HumanMessage):
            break
        turn.append(m)
    added = [m.content for m in reversed(turn) if isinstance(m, ToolMessage)]
    if not added:
        return {}
    verdict = interrupt({"question": "keep these tasks?", "tasks": added})
    return {"messages": [AIMessage(f"review: {verdict}")]}


review = StateGraph(MessagesState)
review.add_node("ask", ask)
review.add_edge(START, "ask")
review.add_edge("ask", END)

builder = StateGraph(MessagesState)
builder.add_node("agent", agent)
builder.add_node("tools", ToolNode([add_task]))
builder.add_node("review", review.compile())
builder.add_edge(START, "agent")
builder.add_conditional_edges("agent", route, ["tools", "review"])
builder.add_edge("tools", "agent")
builder.add_edge("review", END)

graph = builder.compile()
