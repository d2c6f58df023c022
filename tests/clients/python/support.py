"""Small helpers shared by the client tests."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from typing import Any, AsyncIterator


def tag() -> str:
    """A label unique to one test, so tests never see each other's data."""
    return uuid.uuid4().hex[:12]


def human(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


def contents(values: dict) -> list[str]:
    return [m["content"] for m in values["messages"]]


def types(values: dict) -> list[str]:
    return [m["type"] for m in values["messages"]]


async def collect(stream: AsyncIterator[Any], timeout: float = 30) -> list[Any]:
    async def run():
        return [part async for part in stream]

    return await asyncio.wait_for(run(), timeout)


async def until(predicate, timeout: float = 10, what: str = "condition"):
    """Polls a predicate (sync or async) until it answers something truthy, and answers that."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = predicate()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
