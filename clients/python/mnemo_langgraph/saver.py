"""`MnemoSaver`: LangGraph's checkpointer over mnemo's raw checkpointer API.

Channel values travel as LangGraph's own typed bytes (`serde.dumps_typed`), so every value a
graph holds comes back byte for byte. Each new value also carries a JSON rendering, which mnemo
shows as the thread's state through `/threads/{id}/state` and `/threads/{id}/history`.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import PurePath
from typing import Any
from urllib.parse import quote
from uuid import UUID

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from ._http import HttpClient, Transport

# the largest page mnemo's checkpoint search serves
_PAGE = 1000


def _seg(part: str) -> str:
    return quote(part, safe="")


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(data: str | None) -> bytes:
    return b"" if data is None else base64.b64decode(data)


# what `plain_scalar` answers for a value it has no JSON rendering of
NO_RENDERING = object()


def plain_scalar(o: Any) -> Any:
    """JSON for values json cannot write that have one obvious rendering: sets as lists, dates
    and times in ISO format, enums as their value, UUIDs, decimals and paths as text, bytes in
    base64; `NO_RENDERING` for anything else."""
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if isinstance(o, (datetime, date, time)):
        return o.isoformat()
    if isinstance(o, enum.Enum):
        return o.value
    if isinstance(o, (UUID, Decimal, PurePath)):
        return str(o)
    if isinstance(o, (bytes, bytearray)):
        return base64.b64encode(o).decode("ascii")
    return NO_RENDERING


def _json_default(o: Any) -> Any:
    if hasattr(o, "model_dump"):  # pydantic models, LangChain's messages among them
        return o.model_dump(mode="json")
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    plain = plain_scalar(o)
    if plain is NO_RENDERING:
        raise TypeError(f"{type(o).__name__} has no JSON rendering")
    return plain


def json_view(value: Any) -> Any:
    """The JSON rendering of a value that mnemo shows as state; None when there is none."""
    try:
        text = json.dumps(value, default=_json_default)
    except (TypeError, ValueError):
        return None
    # mnemo refuses NUL in JSON (Postgres cannot store it): show nothing rather than fail
    return None if "\\u0000" in text else json.loads(text)


INTERRUPT = "__interrupt__"


def is_state_channel(name: str) -> bool:
    """Whether a channel holds the graph's state, not LangGraph's own bookkeeping
    (`__interrupt__`, `__start__`, `branch:to:…`)."""
    return not name.startswith("__") and ":" not in name


def _interrupts_json(value: Any) -> str | None:
    """A task's `__interrupt__` write (a tuple of `Interrupt`s) as JSON text, when JSON holds it
    exactly; mnemo reads such writes as the thread's interrupts and the state's tasks'. None
    (keep LangGraph's own encoding) for anything JSON would change."""
    from langgraph.types import Interrupt

    if not isinstance(value, tuple) or not all(type(i) is Interrupt for i in value):
        return None
    shown = []
    for i in value:
        item: dict[str, Any] = {"value": i.value, "id": i.id}
        if i.response_schema is not None:
            if not isinstance(i.response_schema, dict):
                return None
            item["response_schema"] = i.response_schema
        shown.append(item)
    try:
        text = json.dumps(shown, allow_nan=False)
    except (TypeError, ValueError):
        return None
    # tuples, non-string keys and the like come back changed: not exact
    return text if "\\u0000" not in text and json.loads(text) == shown else None


class _Pages:
    """The request bodies of a checkpoint listing, page after page, up to `limit` in all."""

    def __init__(self, body: dict[str, Any], limit: int | None) -> None:
        self.body, self.limit, self.seen = body, limit, 0

    def first(self) -> dict[str, Any] | None:
        return self._ask()

    def after(self, page: list[dict[str, Any]]) -> dict[str, Any] | None:
        self.seen += len(page)
        if len(page) < self.body["limit"]:
            return None
        self.body["before"] = page[-1]["config"]["checkpoint_id"]
        return self._ask()

    def _ask(self) -> dict[str, Any] | None:
        size = _PAGE if self.limit is None else min(_PAGE, self.limit - self.seen)
        if size <= 0:
            return None
        self.body = {**self.body, "limit": size}
        return self.body


class _Done:
    """An awaitable that is already done: `setup()` works with and without `await`."""

    def __await__(self):  # noqa: D105
        return iter(())


class MnemoSaver(HttpClient, BaseCheckpointSaver[str]):
    """A LangGraph checkpointer that keeps checkpoints in a mnemo server.

    `MnemoSaver(url)` replaces `AsyncPostgresSaver.from_conn_string(...)` (or `PostgresSaver`):
    the app holds no database connection, only one pooled HTTP client, and mnemo's pool is the
    only one that ever touches Postgres. Use it as a context manager, or call `close()` /
    `aclose()` when done.

    `api_key` (default: `$MNEMO_API_KEY`) is sent as `x-api-key` on every request, for a mnemo
    with `MNEMO_AUTH=api_key`. A service key reaches every thread; a user's key only the threads
    it created: another user's thread reads as missing (`get_tuple` is None, `list` yields
    nothing, `delete_thread` does nothing, `prune` skips it) and writing to it or copying it
    raises `MnemoNotFound`. A refused key raises `MnemoUnauthorized`, a key that may not do
    something `MnemoForbidden`.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:2024",
        *,
        api_key: str | None = None,
        serde: SerializerProtocol | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        headers: dict[str, str] | None = None,
        max_connections: int = 16,
    ) -> None:
        super().__init__(serde=serde)
        self.http = Transport(
            url,
            api_key=api_key,
            timeout=timeout,
            retries=retries,
            headers=headers,
            max_connections=max_connections,
        )

    # -- lifecycle ------------------------------------------------------------------------

    def setup(self) -> _Done:
        """Nothing to do: mnemo migrates its own database. Awaitable, like the Postgres savers'."""
        return _Done()

    # -- wire shapes ----------------------------------------------------------------------

    def _put_body(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> tuple[str, dict[str, Any]]:
        conf = config["configurable"]
        values = checkpoint.get("channel_values", {})
        blobs = []
        for channel, version in new_versions.items():
            blob: dict[str, Any] = {"channel": channel, "version": str(version)}
            if channel in values:
                type_, data = self.serde.dumps_typed(values[channel])
                blob.update(type=type_, data=_b64(data), value=json_view(values[channel]))
            else:
                blob.update(type="empty", data=None)
            blobs.append(blob)
        stored = {k: v for k, v in checkpoint.items() if k != "channel_values"}
        stored["channel_values"] = {}
        body = {
            "checkpoint_ns": conf.get("checkpoint_ns", ""),
            "checkpoint_id": checkpoint["id"],
            "parent_checkpoint_id": conf.get("checkpoint_id"),
            "checkpoint": stored,
            "metadata": get_serializable_checkpoint_metadata(config, metadata),
            "blobs": blobs,
        }
        return f"/threads/{_seg(conf['thread_id'])}/checkpoints", body

    @staticmethod
    def _stored_config(body: dict[str, Any], thread_id: str) -> RunnableConfig:
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": body["checkpoint_ns"],
                "checkpoint_id": body["checkpoint_id"],
            }
        }

    def _writes_body(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str,
    ) -> tuple[str, dict[str, Any]]:
        conf = config["configurable"]
        encoded = []
        for channel, value in writes:
            shown = _interrupts_json(value) if channel == INTERRUPT else None
            if shown is not None:
                encoded.append({"channel": channel, "type": "json", "data": _b64(shown.encode())})
                continue
            type_, data = self.serde.dumps_typed(value)
            # what mnemo shows as the task's result in state and history (the bytes stay authoritative)
            view = json_view(value) if is_state_channel(channel) else None
            encoded.append({"channel": channel, "type": type_, "data": _b64(data), "value": view})
        path = (
            f"/threads/{_seg(conf['thread_id'])}/checkpoints/"
            f"{_seg(conf['checkpoint_id'])}/writes"
        )
        body = {
            "checkpoint_ns": conf.get("checkpoint_ns", ""),
            "task_id": task_id,
            "task_path": task_path,
            "writes": encoded,
        }
        return path, body

    @staticmethod
    def _get_request(config: RunnableConfig) -> tuple[str, dict[str, str]]:
        conf = config["configurable"]
        thread = _seg(conf["thread_id"])
        checkpoint_id = get_checkpoint_id(config)
        which = _seg(checkpoint_id) if checkpoint_id else "latest"
        return f"/threads/{thread}/checkpoints/{which}", {
            "checkpoint_ns": conf.get("checkpoint_ns", "")
        }

    @staticmethod
    def _search_request(
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
    ) -> tuple[str, dict[str, Any]]:
        conf = (config or {}).get("configurable", {})
        if "thread_id" not in conf:
            raise ValueError("MnemoSaver.list needs a config with a thread_id")
        body: dict[str, Any] = {"filter": filter or None}
        if "checkpoint_ns" in conf:  # absent: every namespace
            body["checkpoint_ns"] = conf["checkpoint_ns"]
        if before is not None:
            body["before"] = get_checkpoint_id(before)
        return f"/threads/{_seg(conf['thread_id'])}/checkpoints/search", body

    def _tuple(self, rec: dict[str, Any]) -> CheckpointTuple:
        stored = rec["checkpoint"]
        inline = stored.get("channel_values") or {}
        blobs = {b["channel"]: b for b in rec["blobs"]}
        values: dict[str, Any] = {}
        for channel in stored.get("channel_versions", {}):
            blob = blobs.get(channel)
            if blob is not None:
                if blob["type"] != "empty":
                    values[channel] = self.serde.loads_typed(
                        (blob["type"], _unb64(blob["data"]))
                    )
            elif channel in inline:  # a value mnemo itself wrote (a state update over HTTP)
                values[channel] = inline[channel]
        writes = [(w["task_id"], w["channel"], self._write_value(w)) for w in rec["pending_writes"]]
        parent = rec.get("parent_config")
        return CheckpointTuple(
            config={"configurable": rec["config"]},
            checkpoint={**stored, "channel_values": values},
            metadata=rec["metadata"],
            parent_config={"configurable": parent} if parent else None,
            pending_writes=writes,
        )

    def _write_value(self, w: dict[str, Any]) -> Any:
        data = _unb64(w["data"])
        if w["channel"] == INTERRUPT and w["type"] == "json":
            from langgraph.types import Interrupt

            return tuple(
                Interrupt(i["value"], i["id"], response_schema=i.get("response_schema"))
                for i in json.loads(data)
            )
        return self.serde.loads_typed((w["type"], data))

    # -- sync -------------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        path, params = self._get_request(config)
        rec = self.http.request("GET", path, params=params, missing_ok=True)
        return None if rec is None else self._tuple(rec)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        path, body = self._search_request(config, filter, before)
        pages = _Pages(body, limit)
        ask = pages.first()
        while ask is not None:
            page = self.http.request("POST", path, json=ask, missing_ok=True) or []
            yield from map(self._tuple, page)
            ask = pages.after(page)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        path, body = self._put_body(config, checkpoint, metadata, new_versions)
        answer = self.http.request("PUT", path, json=body)
        return self._stored_config(answer, config["configurable"]["thread_id"])

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        path, body = self._writes_body(config, writes, task_id, task_path)
        self.http.request("PUT", path, json=body)

    def delete_thread(self, thread_id: str) -> None:
        self.http.request("DELETE", f"/threads/{_seg(thread_id)}/checkpoints", missing_ok=True)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self.http.request(
            "POST",
            f"/threads/{_seg(source_thread_id)}/copy",
            json={"thread_id": target_thread_id},
            idempotent=False,
        )

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        body = {"thread_ids": list(thread_ids), "strategy": strategy}
        self.http.request("POST", "/threads/prune", json=body)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        body = {"run_ids": list(run_ids)}
        self.http.request("POST", "/checkpoints/delete_for_runs", json=body)

    # -- async ------------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        path, params = self._get_request(config)
        rec = await self.http.arequest("GET", path, params=params, missing_ok=True)
        return None if rec is None else self._tuple(rec)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        path, body = self._search_request(config, filter, before)
        pages = _Pages(body, limit)
        ask = pages.first()
        while ask is not None:
            page = await self.http.arequest("POST", path, json=ask, missing_ok=True) or []
            for rec in page:
                yield self._tuple(rec)
            ask = pages.after(page)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        path, body = self._put_body(config, checkpoint, metadata, new_versions)
        answer = await self.http.arequest("PUT", path, json=body)
        return self._stored_config(answer, config["configurable"]["thread_id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        path, body = self._writes_body(config, writes, task_id, task_path)
        await self.http.arequest("PUT", path, json=body)

    async def adelete_thread(self, thread_id: str) -> None:
        await self.http.arequest(
            "DELETE", f"/threads/{_seg(thread_id)}/checkpoints", missing_ok=True
        )

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self.http.arequest(
            "POST",
            f"/threads/{_seg(source_thread_id)}/copy",
            json={"thread_id": target_thread_id},
            idempotent=False,
        )

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        body = {"thread_ids": list(thread_ids), "strategy": strategy}
        await self.http.arequest("POST", "/threads/prune", json=body)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        body = {"run_ids": list(run_ids)}
        await self.http.arequest("POST", "/checkpoints/delete_for_runs", json=body)

    # -- versions -----------------------------------------------------------------------------

    def get_next_version(self, current: str | int | None, channel: None) -> str:
        """Versions that sort as strings: a zero-padded counter and a random tiebreak, as
        LangGraph's Postgres saver makes them (and mnemo's own state updates)."""
        if current is None:
            n = 0
        elif isinstance(current, int):
            n = current
        else:
            n = int(current.split(".")[0])
        return f"{n + 1:032}.{random.random():016}"
