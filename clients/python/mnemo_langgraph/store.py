"""`MnemoStore`: LangGraph's long-term memory store over mnemo's `/store` API."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from ._http import HttpClient, Transport


def _item(raw: dict[str, Any]) -> Item:
    return Item(
        value=raw["value"],
        key=raw["key"],
        namespace=tuple(raw["namespace"]),
        created_at=raw["created_at"],
        updated_at=raw["updated_at"],
    )


def _search_item(raw: dict[str, Any]) -> SearchItem:
    return SearchItem(
        namespace=tuple(raw["namespace"]),
        key=raw["key"],
        value=raw["value"],
        created_at=raw["created_at"],
        updated_at=raw["updated_at"],
        score=raw.get("score"),
    )


def _request(op: Op) -> tuple[str, str, dict[str, Any]]:
    """(method, path, request kwargs) of one operation. A get or delete that mnemo answers 404
    (an item in a namespace the key does not reach) is an item that is not there."""
    if isinstance(op, GetOp):
        params = {"namespace": ".".join(op.namespace), "key": op.key}
        if not op.refresh_ttl:
            params["refresh_ttl"] = "false"
        return "GET", "/store/items", {"params": params, "missing_ok": True}
    if isinstance(op, PutOp):
        target = {"namespace": list(op.namespace), "key": op.key}
        if op.value is None:
            return "DELETE", "/store/items", {"json": target, "missing_ok": True}
        body: dict[str, Any] = {**target, "value": op.value}
        if op.ttl is not None:
            body["ttl"] = op.ttl
        return "PUT", "/store/items", {"json": body}
    if isinstance(op, SearchOp):
        body = {
            "namespace_prefix": list(op.namespace_prefix),
            "filter": op.filter,
            "limit": op.limit,
            "offset": op.offset,
            "refresh_ttl": op.refresh_ttl,
        }
        if op.query is not None:
            body["query"] = op.query
        return "POST", "/store/items/search", {"json": body}
    if isinstance(op, ListNamespacesOp):
        body = {"max_depth": op.max_depth, "limit": op.limit, "offset": op.offset}
        for cond in op.match_conditions or ():
            body[cond.match_type] = list(cond.path)
        return "POST", "/store/namespaces", {"json": body}
    raise ValueError(f"unknown store operation: {op!r}")


def _result(op: Op, answer: Any) -> Result:
    if isinstance(op, GetOp):
        return None if answer is None else _item(answer)
    if isinstance(op, SearchOp):
        return [_search_item(raw) for raw in answer["items"]]
    if isinstance(op, ListNamespacesOp):
        return [tuple(ns) for ns in answer["namespaces"]]
    return None


class MnemoStore(HttpClient, BaseStore):
    """A LangGraph store kept in a mnemo server: get, put (with a TTL in minutes), delete,
    search with field filters, and namespace listing. Semantic search (`index`, `query`) is not
    supported by mnemo: an `index` is ignored and results are unscored.

    `api_key` (default: `$MNEMO_API_KEY`) is sent as `x-api-key` on every request. A user's key
    reaches only the namespaces under `("users", <its user id>, ...)`: writing elsewhere raises
    `MnemoForbidden`, reading or deleting there finds nothing, searches and namespace listings
    stay within the user's own. A service key reaches every namespace."""

    supports_ttl = True

    def __init__(
        self,
        url: str = "http://127.0.0.1:2024",
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        headers: dict[str, str] | None = None,
        max_connections: int = 16,
    ) -> None:
        self.http = Transport(
            url,
            api_key=api_key,
            timeout=timeout,
            retries=retries,
            headers=headers,
            max_connections=max_connections,
        )

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        results = []
        for op in ops:
            method, path, kwargs = _request(op)
            results.append(_result(op, self.http.request(method, path, **kwargs)))
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        results = []
        for op in ops:
            method, path, kwargs = _request(op)
            results.append(_result(op, await self.http.arequest(method, path, **kwargs)))
        return results
