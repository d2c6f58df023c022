"""Retries, errors and the API key against a scripted HTTP server standing in for mnemo."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mnemo_langgraph import (
    MnemoError,
    MnemoForbidden,
    MnemoRateLimited,
    MnemoSaver,
    MnemoStore,
    MnemoUnauthorized,
    MnemoUnavailable,
)

KEY = "mnemo_k1d_s3cr3t-never-shown"


class Scripted:
    """Answers each request with the next (status, body) of a script; records the requests
    and the `x-api-key` each one carried."""

    def __init__(self, script: list[tuple[int, dict | None]]) -> None:
        self.script = list(script)
        self.seen: list[str] = []
        self.keys: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                outer.seen.append(f"{self.command} {self.path}")
                outer.keys.append(self.headers.get("x-api-key"))
                status, body = outer.script.pop(0) if outer.script else (500, {"detail": "unscripted"})
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                if status in (429, 503):
                    self.send_header("retry-after", "0")
                if status == 401:
                    self.send_header("www-authenticate", 'Bearer realm="mnemo"')
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


BUSY = (503, {"detail": "no database connection became free in time"})
LIMITED = (429, {"detail": "too many requests"})
NO_KEY = (401, {"detail": "missing credentials"})


@pytest.fixture
def scripted():
    servers = []

    def make(script):
        servers.append(Scripted(script))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def test_idempotent_calls_are_retried_on_503(scripted) -> None:
    server = scripted([BUSY, BUSY, (204, None)])
    with MnemoSaver(server.url, retries=3) as saver:
        saver.delete_thread("t")
    assert server.seen == ["DELETE /threads/t/checkpoints"] * 3


async def test_retries_give_up_with_a_clear_error(scripted) -> None:
    server = scripted([BUSY, BUSY, BUSY])
    async with MnemoSaver(server.url, retries=2) as saver:
        with pytest.raises(MnemoUnavailable) as err:
            await saver.aget_tuple({"configurable": {"thread_id": "a/b", "checkpoint_ns": ""}})
    assert err.value.status == 503
    assert "no database connection" in err.value.detail
    assert server.seen == ["GET /threads/a%2Fb/checkpoints/latest?checkpoint_ns="] * 3


def test_copy_is_not_retried(scripted) -> None:
    server = scripted([BUSY, (200, {})])
    with MnemoSaver(server.url, retries=3) as saver:
        with pytest.raises(MnemoUnavailable):
            saver.copy_thread("a", "b")
    assert server.seen == ["POST /threads/a/copy"]


async def test_the_async_pool_reuses_connections_reads_chunked_and_survives_a_closed_one() -> None:
    """Against a raw HTTP/1.1 server: keep-alive reuse, a chunked reply, and a kept-alive
    connection the server closed while idle (the request goes again on a new one)."""
    import asyncio

    from mnemo_langgraph._wire import AsyncPool

    connections = 0

    async def serve(reader, writer):
        nonlocal connections
        connections += 1
        served = 0
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            served += 1
            if b"/chunked" in head:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                    b"4\r\n{\"a\"\r\n6;ext=1\r\n: [1]}\r\n0\r\n\r\n"
                )
            else:
                echo = b'{"echo": %s}' % (body or b"null")
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(echo), echo))
            await writer.drain()
            if b"/close-after" in head:
                break  # keep-alive was promised, then the server goes away while idle
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = AsyncPool("127.0.0.1", port, max_connections=1, timeout=5, headers={})
    try:
        assert (await pool.request("PUT", "/x", json={"k": [1, "ü"]})).json() == {"echo": {"k": [1, "ü"]}}
        assert (await pool.request("GET", "/chunked")).json() == {"a": [1]}
        assert connections == 1, "one connection, reused"
        await pool.request("POST", "/close-after", json={})
        await asyncio.sleep(0.05)
        assert (await pool.request("GET", "/x", params={"q": "a b"})).json() == {"echo": None}
        assert connections == 2, "the closed connection was replaced"
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()


# ---------------------------------------------------------------------------------------------
# the API key


LATEST = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}


async def test_the_key_goes_with_every_request_on_both_transports(scripted) -> None:
    server = scripted([(204, None)] * 4 + [(200, None)] * 2)
    async with MnemoSaver(server.url, api_key=KEY) as saver:
        saver.delete_thread("t")  # sync: httpx
        await saver.adelete_thread("t")  # async over plain http: the asyncio pool
    # async through httpx (what an https URL or a URL with a path uses)
    async with MnemoSaver(f"{server.url}/prefix", api_key=KEY) as saver:
        await saver.adelete_thread("t")
    async with MnemoStore(server.url, api_key=KEY) as store:
        store.delete(("users", "a"), "k")
        assert await store.aget(("users", "a"), "k") is None
        assert store.get(("users", "a"), "k") is None
    assert server.seen[2] == "DELETE /prefix/threads/t/checkpoints"
    assert server.keys == [KEY] * 6


def test_the_key_comes_from_mnemo_api_key_unless_given(scripted, monkeypatch) -> None:
    server = scripted([(204, None)] * 3)
    monkeypatch.setenv("MNEMO_API_KEY", "from-env")
    with MnemoSaver(server.url) as saver:
        saver.delete_thread("t")
    with MnemoSaver(server.url, api_key=KEY) as saver:
        saver.delete_thread("t")
    monkeypatch.delenv("MNEMO_API_KEY")
    with MnemoSaver(server.url) as saver:
        saver.delete_thread("t")
    assert server.keys == ["from-env", KEY, None]


def test_a_key_that_is_not_one_header_value_is_refused() -> None:
    for bad in ["", "a\r\nx-evil: 1", "ключ"]:
        with pytest.raises(ValueError) as err:
            MnemoSaver("http://127.0.0.1:1", api_key=bad)
        assert bad not in str(err.value) or not bad
    with pytest.raises(ValueError):
        MnemoStore("http://127.0.0.1:1", api_key=KEY, headers={"X-Api-Key": "other"})


async def test_401_is_unauthorized_and_not_retried(scripted) -> None:
    server = scripted([NO_KEY, NO_KEY])
    with MnemoSaver(server.url, api_key=KEY, retries=3) as saver:
        with pytest.raises(MnemoUnauthorized) as err:
            saver.get_tuple(LATEST)
    async with MnemoSaver(server.url, api_key=KEY, retries=3) as saver:
        with pytest.raises(MnemoUnauthorized):
            await saver.aget_tuple(LATEST)
    assert err.value.status == 401 and err.value.detail == "missing credentials"
    assert isinstance(err.value, MnemoError)
    assert len(server.seen) == 2


def test_403_is_forbidden(scripted) -> None:
    server = scripted([(403, {"detail": "this credential may act only as its own user"})])
    with MnemoStore(server.url, api_key=KEY) as store:
        with pytest.raises(MnemoForbidden) as err:
            store.put(("users", "bob", "memories"), "k", {"v": 1})
    assert err.value.status == 403 and "own user" in err.value.detail
    assert server.seen == ["PUT /store/items"]


async def test_429_is_retried_like_503(scripted) -> None:
    server = scripted([LIMITED, BUSY, LIMITED, (204, None)])
    async with MnemoSaver(server.url, api_key=KEY, retries=3) as saver:
        await saver.adelete_thread("t")
    assert server.seen == ["DELETE /threads/t/checkpoints"] * 4


def test_429_out_of_retries_is_rate_limited_and_unavailable(scripted) -> None:
    server = scripted([LIMITED, LIMITED, LIMITED])
    with MnemoSaver(server.url, api_key=KEY, retries=2) as saver:
        with pytest.raises(MnemoUnavailable) as err:
            saver.delete_thread("t")
    assert type(err.value) is MnemoRateLimited and err.value.status == 429
    assert len(server.seen) == 3


def test_429_on_copy_is_not_retried(scripted) -> None:
    server = scripted([LIMITED, (200, {})])
    with MnemoSaver(server.url, api_key=KEY, retries=3) as saver:
        with pytest.raises(MnemoRateLimited):
            saver.copy_thread("a", "b")
    assert server.seen == ["POST /threads/a/copy"]


async def test_the_key_is_never_shown(scripted) -> None:
    server = scripted([NO_KEY, (403, {"detail": "forbidden"}), LIMITED, NO_KEY])
    shown = []
    async with MnemoSaver(server.url, api_key=KEY, retries=0) as saver, MnemoStore(
        server.url, api_key=KEY, retries=0
    ) as store:
        shown += [repr(saver), str(saver), repr(store), repr(saver.http)]
        for call in (
            lambda: saver.aget_tuple(LATEST),
            lambda: store.aput(("users", "x"), "k", {"v": 1}),
            lambda: saver.adelete_thread("t"),
            lambda: store.aget(("users", "x"), "k"),
        ):
            with pytest.raises(MnemoError) as err:
                await call()
            shown += [str(err.value), repr(err.value), repr(err.value.args)]
    assert "api_key=<set>" in shown[0]
    assert not [s for s in shown if KEY in s or "s3cr3t" in s], shown


def test_a_store_item_out_of_reach_is_not_there(scripted) -> None:
    gone = (404, {"detail": "Item not found"})
    server = scripted([gone, gone])
    with MnemoStore(server.url, api_key=KEY) as store:
        assert store.get(("users", "bob"), "k") is None
        store.delete(("users", "bob"), "k")
    assert server.seen == ["GET /store/items?namespace=users.bob&key=k", "DELETE /store/items"]
