"""Three mnemo replicas on one database (`MNEMO_TEST_TOPOLOGY=replicas`; skipped otherwise):
what one replica does is seen through the others at once, through Postgres's notifications.
Each test talks to the replicas of the fake-model mnemo directly (A, B, C: `slow_replicas`), not
through nginx, so that it knows which process executes a run and which one is asked."""

import asyncio
import os
import signal
import time
from contextlib import AsyncExitStack

import httpx
import pytest
from langgraph_sdk import get_client

from support import collect, contents, human, tag, until

pytestmark = pytest.mark.skipif(
    os.environ.get("MNEMO_TEST_TOPOLOGY", "plain") != "replicas",
    reason="needs MNEMO_TEST_TOPOLOGY=replicas",
)

# a run's end, or a stored event, reaches the other replicas within this
BOUND_S = 1.0


@pytest.fixture
async def abc(slow_replicas, slow_key):
    """One client per replica, A, B and C, as the same user."""
    assert len(slow_replicas) == 3
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(get_client(url=url, api_key=slow_key))
            for url in slow_replicas
        ]


async def new_thread(client) -> str:
    return (await client.threads.create(metadata={"origin": f"t-{tag()}"}))["thread_id"]


async def test_a_run_started_through_a_and_cancelled_through_b_stops_within_a_second(
    abc, slow_mnemo
):
    a, b, c = abc
    model = slow_mnemo.model
    tid = await new_thread(a)
    asked = model.count()
    # A executes it: 100 words, 100 ms apart (10 s) unless stopped
    run = await a.runs.create(tid, "agent", input=human("slow 100 100"))
    rid = run["run_id"]
    await until(lambda: model.count() > asked, what="the model to be asked")
    assert (await c.runs.get(tid, rid))["status"] == "running"

    # a join through A, waiting for the run to end
    join = asyncio.create_task(a.runs.join(tid, rid))
    await asyncio.sleep(0.3)
    assert not join.done()

    cancelled_at = time.monotonic()
    await b.runs.cancel(tid, rid)
    values = await asyncio.wait_for(join, timeout=10)
    took = time.monotonic() - cancelled_at
    assert took <= BOUND_S, f"the join through A returned {took:.2f} s after the cancel through B"
    print(f"cancel through B -> join through A returned: {took * 1000:.0f} ms")

    run = await c.runs.get(tid, rid)
    assert run["status"] == "interrupted"
    # the model's node had not finished: the thread is `interrupted`, as LangGraph's
    assert (await c.threads.get(tid))["status"] == "interrupted"
    # what the run had said is the input; the answer never finished
    assert contents(values)[0] == "slow 100 100"
    # the thread is free for the next run, through any replica
    done = await c.runs.wait(tid, "agent", input=human("after"))
    assert contents(done)[-1] == "echo: after"


async def test_a_stream_rejoined_through_c_gets_every_event_once_in_order_live(abc):
    a, b, c = abc
    tid = await new_thread(a)
    words = 20
    run = await a.runs.create(
        tid,
        "agent",
        input=human(f"slow {words} 100"),
        stream_mode=["values", "messages-tuple"],
        stream_resumable=True,
    )
    rid = run["run_id"]

    # through C, from the start, while A executes the run: each event with when it arrived
    arrivals = []

    async def follow():
        async for part in c.runs.join_stream(tid, rid, last_event_id="0"):
            arrivals.append((time.monotonic(), part))

    await asyncio.wait_for(follow(), timeout=30)
    ended_at = time.monotonic()
    assert (await b.runs.get(tid, rid))["status"] == "success"
    parts = [p for _, p in arrivals]

    # every event exactly once, in order: 1, 2, 3, … and the same as the stored stream
    ids = [int(p.id) for p in parts]
    assert ids == list(range(1, len(ids) + 1)), ids
    full = await collect(b.runs.join_stream(tid, rid, last_event_id="0"))
    assert [(p.event, p.id, p.data) for p in parts] == [(p.event, p.id, p.data) for p in full]
    chunks = [(t, p.data[0]["content"]) for t, p in arrivals if p.event == "messages"]
    assert "".join(c for _, c in chunks) == "".join(f"w{i} " for i in range(1, words + 1))

    # live: the words arrived as the model said them (100 ms apart, about 2 s in all), not in
    # one batch at the end
    first, last = chunks[0][0], chunks[-1][0]
    assert last - first >= 1.0, f"the words arrived within {last - first:.2f} s"
    assert ended_at - first >= 1.0

    # and a rejoin through C with a Last-Event-ID in the middle gets exactly the rest
    middle = parts[len(parts) // 2].id
    rest = await collect(c.runs.join_stream(tid, rid, last_event_id=middle))
    assert [p.id for p in rest] == [p.id for p in full if int(p.id) > int(middle)]


async def test_a_run_whose_replica_is_killed_is_resumed_by_another_and_finishes(
    abc, slow_mnemo, slow_key
):
    """`kill -9` of the replica executing a run: once its lease expires (3 s, its own setting),
    another replica resumes the run, makes the model call again, and the client sees it finish."""
    a, b, c = abc
    model = slow_mnemo.model
    d = slow_mnemo.server.start_another("fakemodel-d", {"MNEMO_RUN_LEASE_S": "3"})
    async with get_client(url=d.url, api_key=slow_key) as on_d:
        tid = await new_thread(on_d)
        asked = model.count()
        run = await on_d.runs.create(tid, "agent", input=human("slow 20 100"))
        rid = run["run_id"]
        await until(lambda: model.count() > asked, what="the model to be asked by D")
        await asyncio.sleep(0.5)
    os.kill(d.pid, signal.SIGKILL)
    d.proc.wait(timeout=10)
    killed_at = time.monotonic()

    # B waits for the run; some replica takes it back once D's lease has expired
    values = await asyncio.wait_for(b.runs.join(tid, rid), timeout=60)
    took = time.monotonic() - killed_at
    print(f"kill -9 of D -> the run finished elsewhere after {took:.1f} s")
    assert contents(values) == ["slow 20 100", "".join(f"w{i} " for i in range(1, 21))]
    assert (await c.runs.get(tid, rid))["status"] == "success"
    assert (await a.threads.get(tid))["status"] == "idle"
    # asked again by the replica that resumed the run
    assert model.count() >= asked + 2
    # the stored stream: the resumed attempt's metadata, then its answer
    parts = await collect(c.runs.join_stream(tid, rid, last_event_id="0"))
    metadata = [p.data for p in parts if p.event == "metadata"]
    assert [m["attempt"] for m in metadata] == [2], metadata
    assert parts[-1].event == "values"
    assert contents(parts[-1].data)[-1] == "".join(f"w{i} " for i in range(1, 21))


async def test_the_proxy_spreads_requests_over_every_replica(slow_mnemo, slow_replicas, slow_key):
    """nginx's round robin: requests to its URL reach each of the three replicas."""
    service = slow_mnemo.server.key(name="pytest-replicas-metrics")

    async def served(http: httpx.AsyncClient, url: str) -> float:
        r = await http.get(f"{url}/metrics", headers={"x-api-key": service})
        r.raise_for_status()
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in r.text.splitlines()
            if line.startswith("mnemo_http_requests_total")
        )

    async with httpx.AsyncClient(timeout=10) as http:
        before = [await served(http, url) for url in slow_replicas]
        for _ in range(9):
            r = await http.post(
                f"{slow_mnemo.url}/threads/search", json={"limit": 1}, headers={"x-api-key": slow_key}
            )
            assert r.status_code == 200, r.text
        after = [await served(http, url) for url in slow_replicas]
    # each replica served some of the nine (its own /metrics reads count once each)
    assert all(a - b >= 2 for a, b in zip(after, before)), (before, after)
