"""What a graph streams, as the SSE events the LangGraph API sends: the run's `stream_mode`
mapped onto LangGraph's stream modes, and each chunk named and rendered as JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from typing import Any

from .saver import NO_RENDERING, plain_scalar

# the run's stream modes (LangGraph API names) and the LangGraph mode each streams from
_MODES = {
    "values": "values",
    "updates": "updates",
    "messages": "messages",
    "messages-tuple": "messages",
    "custom": "custom",
    "debug": "debug",
    "tasks": "tasks",
    "checkpoints": "checkpoints",
    "events": None,  # astream_events, not a stream mode
}

Event = tuple[str, Any]


def _default(o: Any) -> Any:
    """JSON for what json cannot write: LangChain messages and other pydantic models as their
    `model_dump()`, interrupts as `{value, id}`, dataclasses, sets, dates, enums, bytes; else
    `str(o)`, so an odd value never stops a run."""
    if _is_interrupt(o):
        return {"value": o.value, "id": o.id, "response_schema": getattr(o, "response_schema", None)}
    if hasattr(o, "model_dump"):
        try:
            return o.model_dump()
        except Exception:  # noqa: BLE001
            pass
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return {f.name: getattr(o, f.name) for f in dataclasses.fields(o)}
    if hasattr(o, "_asdict"):  # named tuples nested where json treats them as lists
        return o._asdict()
    plain = plain_scalar(o)
    if plain is not NO_RENDERING:
        return plain
    if hasattr(o, "dict") and callable(o.dict):
        try:
            return o.dict()
        except Exception:  # noqa: BLE001
            pass
    return str(o)


def _is_interrupt(o: Any) -> bool:
    return type(o).__name__ == "Interrupt" and hasattr(o, "value") and hasattr(o, "id")


def to_json(value: Any) -> Any:
    """`value` as plain JSON data (dicts, lists, strings, numbers, booleans, None)."""
    text = json.dumps(value, default=_default, ensure_ascii=False)
    # Postgres cannot store NUL in JSON: mnemo refuses it
    return json.loads(text.replace("\\u0000", ""))


def requested_modes(stream_mode: Any) -> list[str]:
    """A run's `stream_mode` (null, one name or a list) as a list; `["values"]` by default.
    Unknown names are dropped (mnemo validates them)."""
    if stream_mode is None:
        return ["values"]
    modes = [stream_mode] if isinstance(stream_mode, str) else list(stream_mode)
    known = [m for m in dict.fromkeys(modes) if m in _MODES]
    return known or ["values"]


def langgraph_modes(requested: Sequence[str]) -> list[str]:
    """The LangGraph stream modes to ask `astream` for. Always at least `values` (ignored when
    not requested), so a run of `events` alone still runs its graph."""
    modes = [_MODES[m] for m in requested if _MODES[m] is not None]
    return list(dict.fromkeys(modes)) or ["values"]


class StreamMapper:
    """Turns `astream(..., stream_mode=[...], subgraphs=...)` chunks into (event, data) pairs."""

    def __init__(self, requested: Sequence[str], subgraphs: bool) -> None:
        self.requested = set(requested)
        self.subgraphs = subgraphs
        self._messages: dict[str, Any] = {}  # the legacy `messages` mode's accumulated chunks

    def chunk(self, item: Any) -> Iterator[Event]:
        """Events of one item of `astream` with a list of stream modes: `(mode, chunk)`, or
        `(namespace, mode, chunk)` with subgraphs."""
        if self.subgraphs:
            ns, mode, data = item
        else:
            ns, (mode, data) = (), item
        yield from self._mode_events(tuple(ns or ()), mode, data)

    def _name(self, event: str, ns: tuple[str, ...]) -> str:
        return f"{event}|{'|'.join(ns)}" if ns and self.subgraphs else event

    def _mode_events(self, ns: tuple[str, ...], mode: str, data: Any) -> Iterator[Event]:
        if mode == "messages":
            yield from self._message_events(ns, data)
        elif mode == "debug" and "debug" in self.requested:
            yield self._name(mode, ns), to_json(_debug(data))
        elif mode in self.requested:
            yield self._name(mode, ns), to_json(data)

    def _message_events(self, ns: tuple[str, ...], data: Any) -> Iterator[Event]:
        """`messages-tuple` when asked (also with `messages`, which it then replaces)."""
        if "messages-tuple" in self.requested:
            message, metadata = data
            yield self._name("messages", ns), to_json([message, metadata])
        elif "messages" in self.requested:
            yield from self._legacy_message_events(ns, data)

    def _legacy_message_events(self, ns: tuple[str, ...], data: Any) -> Iterator[Event]:
        """The `messages` mode of the LangGraph API: `messages/metadata` when a message first
        shows, then the message so far as `messages/partial` (a chunk) or `messages/complete`."""
        message, metadata = data
        msg_id = getattr(message, "id", None) or (message.get("id") if isinstance(message, dict) else None)
        key = str(msg_id)
        if key not in self._messages:
            self._messages[key] = message
            yield self._name("messages/metadata", ns), to_json({key: {"metadata": metadata}})
        elif _is_chunk(message):
            try:
                self._messages[key] = self._messages[key] + message
            except TypeError:
                self._messages[key] = message
        else:
            self._messages[key] = message
        name = "messages/partial" if _is_chunk(message) else "messages/complete"
        yield self._name(name, ns), to_json([_as_message(self._messages[key])])

    def event(self, ev: dict[str, Any]) -> Iterator[Event]:
        """Events of one `astream_events` event: the root graph's own stream chunks (the root
        has no parents) become the other modes' events; the rest are `events` events."""
        if ev.get("event") == "on_chain_stream" and not ev.get("parent_ids"):
            yield from self.chunk(ev.get("data", {}).get("chunk"))
        elif "events" in self.requested and "langsmith:hidden" not in (ev.get("tags") or ()):
            yield "events", to_json(ev)


def _debug(data: Any) -> Any:
    """A `debug` event as the LangGraph API sends it: a checkpoint's payload also names the
    checkpoint and its parent (`{thread_id, checkpoint_ns, checkpoint_id}`), and a task with
    a subgraph state names that state's checkpoint."""
    payload = data.get("payload") if isinstance(data, dict) else None
    if not isinstance(payload, dict) or data.get("type") != "checkpoint":
        return data
    tasks = []
    for task in payload.get("tasks") or ():
        state = task.get("state") if isinstance(task, dict) else None
        if isinstance(state, dict) and state.get("configurable"):
            task = {k: v for k, v in task.items() if k != "state"}
            task["checkpoint"] = state["configurable"]
        tasks.append(task)
    shown = {
        **payload,
        "checkpoint": _checkpoint_ref(payload.get("config")),
        "parent_checkpoint": _checkpoint_ref(payload.get("parent_config")),
        "tasks": tasks,
    }
    return {**data, "payload": shown}


def _checkpoint_ref(config: Any) -> dict[str, Any] | None:
    conf = config.get("configurable") if isinstance(config, dict) else None
    if not conf or not conf.get("thread_id") or not conf.get("checkpoint_id"):
        return None
    ref = {"checkpoint_id": conf["checkpoint_id"], "thread_id": conf["thread_id"]}
    if "checkpoint_ns" in conf:
        ref["checkpoint_ns"] = conf["checkpoint_ns"] or ""
    if "checkpoint_map" in conf:
        ref["checkpoint_map"] = conf["checkpoint_map"]
    return ref


def _is_chunk(message: Any) -> bool:
    try:
        from langchain_core.messages import BaseMessageChunk
    except ImportError:  # pragma: no cover - langchain-core comes with langgraph
        return False
    return isinstance(message, BaseMessageChunk)


def _as_message(message: Any) -> Any:
    """A chunk accumulated so far, as the whole message it will be (what the API sends)."""
    try:
        from langchain_core.messages import message_chunk_to_message

        return message_chunk_to_message(message)
    except (ImportError, TypeError, ValueError):
        return message
