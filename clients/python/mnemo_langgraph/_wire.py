"""HTTP/1.1 keep-alive requests on asyncio streams, for the async path to a plain-http mnemo.

A graph step costs one or two small requests. httpx's async stack spends about ten times the
CPU of this module on each (measured: ~740 us against ~70 us per request), which made the
client, not mnemo or Postgres, the bottleneck of a busy event loop. This speaks only what mnemo
needs: JSON bodies, Content-Length or chunked replies, keep-alive. https URLs and the sync API go
through httpx.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import httpx

# actix closes a connection after 5 s of keep-alive idleness: never reuse one that old
_MAX_IDLE_S = 4.0

_timeout = getattr(asyncio, "timeout", None)  # Python 3.11+


class Reply:
    """The parts of a response the transport reads (an httpx.Response has the same)."""

    __slots__ = ("status_code", "headers", "content")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code, self.headers, self.content = status_code, headers, content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _Conn:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.idle_since = reader, writer, 0.0

    def close(self) -> None:
        self.writer.close()


class _Stale(Exception):
    """A reused connection was closed by the server before it answered anything."""


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


class AsyncPool:
    """Up to `max_connections` keep-alive connections to one host, for one event loop."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        max_connections: int,
        timeout: float,
        headers: dict[str, str],
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        fixed = {"host": f"{host}:{port}", "accept": "application/json", **headers}
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._idle: list[_Conn] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._loop = asyncio.get_running_loop()

    async def request(
        self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None
    ) -> Reply:
        target = f"{path}?{urlencode(params)}" if params else path
        head = f"{method} {target} HTTP/1.1\r\n".encode("latin-1") + self._fixed
        if json is not None:
            body = _dumps(json)
            head += b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
        else:
            body = b""
        message = head + b"\r\n" + body
        async with self._slots:
            while True:
                conn, reused = self._take(), True
                if conn is None:
                    conn, reused = await self._connect(), False
                try:
                    if _timeout is not None:
                        async with _timeout(self.timeout):
                            reply, keep = await self._exchange(conn, method, message, reused)
                    else:
                        reply, keep = await asyncio.wait_for(
                            self._exchange(conn, method, message, reused), self.timeout
                        )
                except _Stale:
                    conn.close()
                    continue  # nothing reached mnemo: send it again on a new connection
                except TimeoutError as e:
                    conn.close()
                    raise httpx.ReadTimeout(f"no answer from mnemo in {self.timeout} s") from e
                except (OSError, asyncio.IncompleteReadError, ValueError, asyncio.LimitOverrunError) as e:
                    conn.close()
                    raise httpx.ReadError(f"mnemo's connection failed: {e!r}") from e
                except BaseException:
                    conn.close()
                    raise
                if keep:
                    conn.idle_since = self._loop.time()
                    self._idle.append(conn)
                else:
                    conn.close()
                return reply

    def _take(self) -> _Conn | None:
        now = self._loop.time()
        while self._idle:
            conn = self._idle.pop()
            if now - conn.idle_since < _MAX_IDLE_S and not conn.reader.at_eof():
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Conn:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout
            )
        except (OSError, TimeoutError) as e:
            raise httpx.ConnectError(f"cannot connect to mnemo at {self.host}:{self.port}: {e}") from e
        return _Conn(reader, writer)

    @staticmethod
    async def _exchange(
        conn: _Conn, method: str, message: bytes, reused: bool
    ) -> tuple[Reply, bool]:
        reader = conn.reader
        try:
            conn.writer.write(message)
            await conn.writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            if reused and not getattr(e, "partial", b""):
                raise _Stale() from e
            raise
        lines = head.split(b"\r\n")
        version, status = lines[0].split(b" ", 2)[:2]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(b":")
                headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
        code = int(status)
        keep = version == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if code in (204, 304) or 100 <= code < 200 or method == "HEAD":
            content = b""
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            content = await _read_chunked(reader)
        elif "content-length" in headers:
            content = await reader.readexactly(int(headers["content-length"]))
        else:
            content, keep = await reader.read(), False
        return Reply(code, headers, content), keep

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
