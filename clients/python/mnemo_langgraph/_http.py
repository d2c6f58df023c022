"""One HTTP connection pool per client object, the API key on every request, errors that say
what mnemo said, and retries for the calls that are safe to repeat."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
from typing import Any

import httpx

from ._wire import AsyncPool

# statuses worth another try: mnemo overloaded (503 + Retry-After), the caller over its request
# rate (429 + Retry-After), or a proxy in the way
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_MAX_BACKOFF_S = 10.0

# where the key comes from when none is passed (langgraph-sdk reads LANGGRAPH_API_KEY the same way)
API_KEY_ENV = "MNEMO_API_KEY"


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


class MnemoRateLimited(MnemoUnavailable):
    """429 after every retry (or on a call that is not retried): this credential sent more
    requests than mnemo allows it. A `MnemoUnavailable`, so one `except` covers both."""


class MnemoUnauthorized(MnemoError):
    """401: no API key, or one mnemo does not accept (unknown, revoked, expired)."""


class MnemoForbidden(MnemoError):
    """403: the key is valid but may not do this (a user's key outside its own data, such as
    another user's store namespace)."""


_ERRORS: dict[int, type[MnemoError]] = {
    400: MnemoInvalid,
    401: MnemoUnauthorized,
    403: MnemoForbidden,
    404: MnemoNotFound,
    409: MnemoConflict,
    413: MnemoInvalid,
    415: MnemoInvalid,
    422: MnemoInvalid,
    429: MnemoRateLimited,
    503: MnemoUnavailable,
}


def _error(resp: httpx.Response, method: str, path: str) -> MnemoError:
    try:
        body = resp.json()
        detail = str(body.get("detail", resp.text)) if isinstance(body, dict) else resp.text
    except ValueError:
        detail = resp.text
    cls = _ERRORS.get(resp.status_code, MnemoError)
    return cls(resp.status_code, detail, method, path)


def api_key_headers(api_key: str | None, headers: dict[str, str] | None) -> dict[str, str]:
    """`headers` plus `x-api-key`: `api_key`, else `$MNEMO_API_KEY`, else none. The key is
    checked to be one header value; it never appears in an error message."""
    merged = dict(headers or {})
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if key is None:
        return merged
    key = key.strip()
    if not key:
        if api_key is not None:
            raise ValueError("api_key is empty")
        return merged  # MNEMO_API_KEY set to nothing: no key
    if not (key.isascii() and key.isprintable()):
        raise ValueError("api_key must be printable ASCII on one line")
    if any(k.lower() == "x-api-key" for k in merged):
        raise ValueError("pass the key as api_key, not as an x-api-key header")
    merged["x-api-key"] = key
    return merged


def _delay(attempt: int, resp: httpx.Response | None) -> float:
    if resp is not None:
        try:
            return max(0.0, min(float(resp.headers["retry-after"]), _MAX_BACKOFF_S))
        except (KeyError, ValueError):
            pass
    return min(0.05 * 2**attempt, _MAX_BACKOFF_S) * (0.5 + random.random() / 2)


class Transport:
    """Sends JSON requests to one mnemo. The sync client (httpx) is shared by every thread; the
    async pool belongs to the event loop that first used it (connections cannot cross loops).
    Over plain http the async pool is `_wire.AsyncPool`; over https it is httpx's. Both send
    the same headers, the API key among them, on every request."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
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
            "headers": api_key_headers(api_key, headers),
            "limits": httpx.Limits(max_connections=max_connections),
        }
        self._sync: httpx.Client | None = None
        self._async: AsyncPool | httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._max_connections = max_connections
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the headers: they hold the key
        return f"Transport({self.url!r})"

    @property
    def has_api_key(self) -> bool:
        return "x-api-key" in self._kwargs["headers"]

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

    def __repr__(self) -> str:  # the key stays out of logs and tracebacks
        key = ", api_key=<set>" if self.http.has_api_key else ""
        return f"{type(self).__name__}({self.http.url!r}{key})"

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
