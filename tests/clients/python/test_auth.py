"""Authentication (`MNEMO_AUTH=api_key`) through the SDK: a user's key sees only its own threads
(another user's are missing: search never returns them, every route on them is 404), a request
without a key or with a wrong one is the SDK's AuthenticationError (401), and a user's key may not
act as another user (403) nor stop another user's runs."""

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import AuthenticationError, NotFoundError, PermissionDeniedError

from support import collect, contents, human, tag, until

AGENT_ID = "fe096781-5601-53d2-b2f6-0d3403f7e9ca"


async def test_a_second_user_sees_none_of_the_first_users_threads(mnemo, make_user, service_key):
    alice, bob = make_user("alice"), make_user("bob")
    suite = tag()
    async with get_client(url=mnemo.url, api_key=alice.key) as a, get_client(
        url=mnemo.url, api_key=bob.key
    ) as b:
        talked = (await a.threads.create(metadata={"suite": suite}))["thread_id"]
        done = await a.runs.wait(talked, "agent", input=human("add task buy milk"))
        assert contents(done)[-1] == 'Added task "buy milk".'
        quiet = (await a.threads.create(metadata={"suite": suite}))["thread_id"]
        theirs = {talked, quiet}
        mine = (await b.threads.create(metadata={"suite": suite}))["thread_id"]

        # alice lists hers (as agent-chat-ui's sidebar asks), bob only his
        by_graph = await a.threads.search(metadata={"graph_id": "agent"}, limit=100)
        assert [t["thread_id"] for t in by_graph] == [talked]
        assert {t["thread_id"] for t in await a.threads.search(limit=100)} == theirs
        for search in (
            dict(limit=100),
            dict(metadata={"suite": suite}, limit=100),
            dict(metadata={"graph_id": "agent"}, limit=100),
            dict(metadata={"assistant_id": AGENT_ID}, limit=100),
            dict(ids=sorted(theirs), limit=100),
            dict(status="idle", limit=100),
        ):
            found = {t["thread_id"] for t in await b.threads.search(**search)}
            assert not found & theirs, (search, found)
        assert {t["thread_id"] for t in await b.threads.search(limit=100)} == {mine}
        assert await b.threads.count(metadata={"suite": suite}) == 1
        assert await a.threads.count(metadata={"suite": suite}) == 2

        # every route on alice's thread is 404 to bob, as if it did not exist
        for tid in theirs:
            with pytest.raises(NotFoundError):
                await b.threads.get(tid)
            with pytest.raises(NotFoundError):
                await b.threads.get_state(tid)
            with pytest.raises(NotFoundError):
                await b.threads.get_history(tid)
            with pytest.raises(NotFoundError):
                await b.threads.update(tid, metadata={"taken": True})
            with pytest.raises(NotFoundError):
                await b.threads.update_state(tid, {"messages": [{"type": "ai", "content": "x"}]})
            with pytest.raises(NotFoundError):
                await b.threads.copy(tid)
            with pytest.raises(NotFoundError):
                await b.runs.list(tid)
            with pytest.raises(NotFoundError):
                await b.runs.create(tid, "agent", input=human("get tasks"))
            with pytest.raises(NotFoundError):
                await b.threads.delete(tid)
        [run] = await a.runs.list(talked)
        with pytest.raises(NotFoundError):
            await b.runs.get(talked, run["run_id"])
        with pytest.raises(httpx.HTTPStatusError) as e:
            await b.runs.join(talked, run["run_id"])
        assert e.value.response.status_code == 404

        # bob's agent does not see alice's tasks either
        listed = await b.runs.wait(mine, "agent", input=human("get tasks"))
        assert "buy milk" not in contents(listed)[-1]

        # nothing bob tried touched alice's threads
        assert {t["thread_id"] for t in await a.threads.search(limit=100)} == theirs
        state = await a.threads.get_state(talked)
        assert contents(state["values"]) == contents(done)
        assert "taken" not in (await a.threads.get(talked))["metadata"]

    # a service sees both users' threads
    async with get_client(url=mnemo.url, api_key=service_key) as service:
        everyone = await service.threads.search(metadata={"suite": suite}, limit=100)
        assert {t["thread_id"] for t in everyone} == theirs | {mine}


async def test_no_key_or_a_wrong_key_is_401(mnemo_url, user_key):
    for key in (None, "mnemo_000000000000_notakey", "not-a-key-at-all"):
        async with get_client(url=mnemo_url, api_key=key) as anonymous:
            with pytest.raises(AuthenticationError) as e:
                await anonymous.threads.search()
            assert e.value.status_code == 401
            assert e.value.response.headers.get("www-authenticate")
            assert e.value.response.json()["detail"]
            with pytest.raises(AuthenticationError):
                await anonymous.threads.create()
            with pytest.raises(AuthenticationError):
                await anonymous.assistants.search()
            with pytest.raises(AuthenticationError):
                await anonymous.store.get_item(["users", "x"], "k")
            with pytest.raises(httpx.HTTPStatusError) as e:
                await anonymous.runs.wait(None, "agent", input=human("hi"))
            assert e.value.response.status_code == 401
    # the probes and /info answer without a key (agent-chat-ui's connection check)
    async with httpx.AsyncClient(base_url=mnemo_url) as http:
        for path in ("/ok", "/info", "/health", "/ready"):
            assert (await http.get(path)).status_code == 200, path
    # and with one, everything answers
    async with get_client(url=mnemo_url, api_key=user_key) as c:
        assert await c.threads.search() == []


async def test_a_users_key_may_not_act_as_another_user(mnemo_url, user, user_key):
    async with get_client(url=mnemo_url, api_key=user_key) as c:
        with pytest.raises(PermissionDeniedError):
            await c.threads.create(metadata={"user_id": f"someone-{tag()}"})
        tid = (await c.threads.create(metadata={"user_id": user.user_id}))["thread_id"]
        with pytest.raises(PermissionDeniedError):
            await c.runs.create(
                tid, "agent", input=human("get tasks"), config={"configurable": {"user_id": "root"}}
            )
        # naming itself is fine
        done = await c.runs.wait(
            tid, "agent", input=human("get tasks"), config={"configurable": {"user_id": user.user_id}}
        )
        assert done["messages"][-1]["type"] == "ai"


async def test_a_second_user_cannot_reach_the_first_users_running_run(slow_mnemo, make_slow_user):
    alice, bob = make_slow_user("alice"), make_slow_user("bob")
    model = slow_mnemo.model
    async with get_client(url=slow_mnemo.url, api_key=alice.key) as a, get_client(
        url=slow_mnemo.url, api_key=bob.key
    ) as b:
        tid = (await a.threads.create())["thread_id"]
        asked = model.count()
        run = await a.runs.create(tid, "agent", input=human("hang"), stream_resumable=True)
        await until(lambda: model.count() > asked, what="the model to be asked")

        # bob's cancels reach none of alice's runs: "all" means all of his
        # (cancel with wait and join_stream raise httpx's own error, NotFoundError's base)
        await b.runs.cancel_many(status="all")
        for attempt in (
            b.runs.cancel(tid, run["run_id"], wait=True),
            b.runs.cancel(tid, run["run_id"]),
            b.runs.cancel_many(thread_id=tid, run_ids=[run["run_id"]]),
            collect(b.runs.join_stream(tid, run["run_id"], last_event_id="0")),
        ):
            with pytest.raises(httpx.HTTPStatusError) as e:
                await attempt
            assert e.value.response.status_code == 404
        assert (await a.runs.get(tid, run["run_id"]))["status"] == "running"
        assert (await a.threads.get(tid))["status"] == "busy"

        # alice's own cancel stops it
        cancelled = await a.runs.cancel(tid, run["run_id"], wait=True)
        assert cancelled["status"] == "interrupted"
