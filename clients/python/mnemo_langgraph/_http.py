"""One HTTP connection pool per client object, errors that say what mnemo said, and retries
for the calls that are safe to repeat."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import httpx

from ._wire import AsyncPool

# statuses worth another try: mnemo overloaded (503 + Retry-After) or a proxy in the way
_RETRY_STATUSES = frozenset({502, 503, 504})
_MAX_BACKOFF_S = 10.0


class MnemoError(Exception):
    """mnemo answered with an error status; `detail` is its `{"detail": ...}` message."""

    def __init__(self, status: int, detail: str, method: str, path: str) -> None:
        super().__init__(f"mnemo {method} {path} -> {status}: {detail}")
        self.status = status
        self.detail = detail


class MnemoNotFound(MnemoError):
    """404: no such thread, checkpoint or route."""


class MnemoConflict(MnemoError):
    """409: the target exists already, or the thread is busy."""


class MnemoInvalid(MnemoError):
    """400/413/422: mnemo refused the request as malformed."""


class MnemoUnavailable(MnemoError):
    """503 after every retry: mnemo could not get a database connection in time."""


def _error(resp: httpx.Response, method: str, path: str) -> MnemoError:
    try:
        detail = str(resp.json().get("detail", resp.text))
    except ValueError:
        detail = resp.text
    cls = {
        404: MnemoNotFound,
        409: MnemoConflict,
        400: MnemoInvalid,
        413: MnemoInvalid,
        422: MnemoInvalid,
        503: MnemoUnavailable,
    }.get(resp.status_code, MnemoError)
    return cls(resp.status_code, detail, method, path)


def _delay(attempt: int, resp: httpx.Response | None) -> float:
    if resp is not None:
        try:
            return min(float(resp.headers["retry-after"]), _MAX_BACKOFF_S)
        except (KeyError, ValueError):
            pass
    return min(0.05 * 2**attempt, _MAX_BACKOFF_S) * (0.5 + random.random() / 2)


class Transport:
    """Sends JSON requests to one mnemo. The sync client (httpx) is shared by every thread; the
    async pool belongs to the event loop that first used it (connections cannot cross loops).
    Over plain http the async pool is `_wire.AsyncPool`; over https it is httpx's."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        headers: dict[str, str] | None = None,
        max_connections: int = 16,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self._kwargs: dict[str, Any] = {
            "base_url": self.url,
            "timeout": timeout,
            "headers": headers or {},
            "limits": httpx.Limits(max_connections=max_connections),
        }
        self._sync: httpx.Client | None = None
        self._async: AsyncPool | httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._max_connections = max_connections
        self._lock = threading.Lock()

    def _client(self) -> httpx.Client:
        with self._lock:
            if self._sync is None:
                self._sync = httpx.Client(**self._kwargs)
            return self._sync

    def _aclient(self) -> AsyncPool | httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._async is None or self._loop is not loop:
            url = httpx.URL(self.url)
            if url.scheme == "http" and not url.path.strip("/"):
                self._async = AsyncPool(
                    url.host,
                    url.port or 80,
                    max_connections=self._max_connections,
                    timeout=self._kwargs["timeout"],
                    headers=self._kwargs["headers"],
                )
            else:
                self._async = httpx.AsyncClient(**self._kwargs)
            self._loop = loop
        return self._async

    def _again(self, resp: httpx.Response | None, idempotent: bool, attempt: int) -> bool:
        """Whether to try once more after `resp` (None: the connection failed)."""
        if not idempotent or attempt >= self.retries:
            return False
        return resp is None or resp.status_code in _RETRY_STATUSES

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool = True,
        missing_ok: bool = False,
    ) -> Any:
        """The JSON answer (None for 204, or for 404 when `missing_ok`)."""
        client = self._client()
        attempt = 0
        while True:
            try:
                resp = client.request(method, path, json=json, params=params)
            except httpx.TransportError:
                if not self._again(None, idempotent, attempt):
                    raise
                resp = None
            if resp is not None and not self._again(resp, idempotent, attempt):
                return self._result(resp, method, path, missing_ok)
            time.sleep(_delay(attempt, resp))
            attempt += 1

    async def arequest(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool = True,
        missing_ok: bool = False,
    ) -> Any:
        """`request`, on the running event loop."""
        client = self._aclient()
        attempt = 0
        while True:
            try:
                resp = await client.request(method, path, json=json, params=params)
            except httpx.TransportError:
                if not self._again(None, idempotent, attempt):
                    raise
                resp = None
            if resp is not None and not self._again(resp, idempotent, attempt):
                return self._result(resp, method, path, missing_ok)
            await asyncio.sleep(_delay(attempt, resp))
            attempt += 1

    @staticmethod
    def _result(resp: httpx.Response, method: str, path: str, missing_ok: bool) -> Any:
        if resp.status_code == 404 and missing_ok:
            return None
        if resp.status_code >= 400:
            raise _error(resp, method, path)
        if resp.status_code == 204 or not resp.content:
            return None
        return resp.json()

    def close(self) -> None:
        with self._lock:
            if self._sync is not None:
                self._sync.close()
                self._sync = None

    async def aclose(self) -> None:
        self.close()
        if self._async is not None:
            await self._async.aclose()
            self._async = None


class HttpClient:
    """The lifecycle MnemoSaver and MnemoStore share: one Transport, closed by `close()`,
    `aclose()` or leaving a `with` / `async with` block."""

    http: Transport

    def close(self) -> None:
        self.http.close()

    async def aclose(self) -> None:
        await self.http.aclose()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
