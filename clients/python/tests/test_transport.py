"""Retries and errors against a scripted HTTP server standing in for an overloaded mnemo."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mnemo_langgraph import MnemoSaver, MnemoUnavailable


class Scripted:
    """Answers each request with the next (status, body) of a script; records the requests."""

    def __init__(self, script: list[tuple[int, dict | None]]) -> None:
        self.script = list(script)
        self.seen: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                outer.seen.append(f"{self.command} {self.path}")
                status, body = outer.script.pop(0) if outer.script else (500, {"detail": "unscripted"})
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                if status == 503:
                    self.send_header("retry-after", "0")
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
