"""The API key against a real mnemo with `MNEMO_AUTH=api_key`: no key is refused, a user's key
reaches the threads it created and its own store namespaces, and nothing of another user's; a
user over its request rate is retried, then refused."""

from __future__ import annotations

import uuid

import pytest
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)

from conftest import create_key, start_mnemo, stop_mnemo
from mnemo_langgraph import (
    MnemoForbidden,
    MnemoNotFound,
    MnemoRateLimited,
    MnemoSaver,
    MnemoStore,
    MnemoUnauthorized,
    MnemoUnavailable,
)


@pytest.fixture(autouse=True)
def no_key_in_the_environment(monkeypatch):
    monkeypatch.delenv("MNEMO_API_KEY", raising=False)


def checkpoint_on(saver: MnemoSaver, thread: str, value: str):
    """Puts one checkpoint holding `value` on `thread`; answers its config."""
    cp = generate_checkpoint(channel_values={"k": value}, channel_versions={"k": 1})
    return saver.put(generate_config(thread), cp, generate_metadata(), {"k": 1})


async def test_no_key_or_a_wrong_key_is_unauthorized(mnemo) -> None:
    latest = {"configurable": {"thread_id": str(uuid.uuid4()), "checkpoint_ns": ""}}
    for key in (None, "mnemo_nosuchkey_0000000000000000", "not-a-key"):
        async with MnemoSaver(mnemo.url, api_key=key) as saver, MnemoStore(
            mnemo.url, api_key=key
        ) as store:
            with pytest.raises(MnemoUnauthorized) as err:
                saver.get_tuple(latest)  # sync: httpx
            assert err.value.status == 401
            with pytest.raises(MnemoUnauthorized):
                await saver.aget_tuple(latest)  # async: the keep-alive pool
            with pytest.raises(MnemoUnauthorized):
                await store.aput(("users", "alice", "memories"), "k", {"v": 1})
            if key is not None:
                assert key not in str(err.value) and key not in repr(saver)


async def test_the_key_from_the_environment(mnemo, monkeypatch) -> None:
    monkeypatch.setenv("MNEMO_API_KEY", mnemo.service_key)
    thread = f"env-{uuid.uuid4()}"
    async with MnemoSaver(mnemo.url) as saver:
        cfg = checkpoint_on(saver, thread, "from env")
        got = await saver.aget_tuple(cfg)
        assert got is not None and got.checkpoint["channel_values"] == {"k": "from env"}
        await saver.adelete_thread(thread)


async def test_a_users_key_reaches_its_own_threads_only(mnemo) -> None:
    alice_key, bob_key = mnemo.key("alice", name="alice"), mnemo.key("bob", name="bob")
    thread = f"alice-{uuid.uuid4()}"
    with MnemoSaver(mnemo.url, api_key=alice_key) as alice, MnemoSaver(
        mnemo.url, api_key=bob_key
    ) as bob:
        # alice creates the thread by writing its first checkpoint, then reads it back
        cfg = checkpoint_on(alice, thread, "alice's")
        alice.put_writes(cfg, [("k", "pending")], task_id="t1")
        got = alice.get_tuple(cfg)
        assert got is not None and got.checkpoint["channel_values"] == {"k": "alice's"}
        assert got.pending_writes == [("t1", "k", "pending")]
        assert [t.config for t in alice.list({"configurable": {"thread_id": thread}})] == [
            got.config
        ]
        async with MnemoSaver(mnemo.url, api_key=alice_key) as alice_async:
            assert (await alice_async.aget_tuple(cfg)).checkpoint["id"] == got.checkpoint["id"]

        # to bob the thread does not exist: reads find nothing, deleting and pruning leave it
        # alone, writes and copies are MnemoNotFound
        assert bob.get_tuple(cfg) is None
        assert bob.get_tuple({"configurable": {"thread_id": thread}}) is None
        assert list(bob.list({"configurable": {"thread_id": thread}})) == []
        with pytest.raises(MnemoNotFound):
            checkpoint_on(bob, thread, "bob's")
        with pytest.raises(MnemoNotFound):
            bob.put_writes(cfg, [("k", "bob's")], task_id="t2")
        with pytest.raises(MnemoNotFound):
            bob.copy_thread(thread, f"bob-{uuid.uuid4()}")
        bob.delete_thread(thread)
        bob.prune([thread], strategy="delete")
        async with MnemoSaver(mnemo.url, api_key=bob_key) as bob_async:
            assert await bob_async.aget_tuple(cfg) is None
            assert [t async for t in bob_async.alist({"configurable": {"thread_id": thread}})] == []
            with pytest.raises(MnemoNotFound):
                await bob_async.aput_writes(cfg, [("k", "bob's")], task_id="t2")
            await bob_async.adelete_thread(thread)
            await bob_async.aprune([thread], strategy="keep_latest")

        # and nothing bob tried changed alice's thread
        again = alice.get_tuple(cfg)
        assert again is not None and again.checkpoint == got.checkpoint
        assert again.pending_writes == [("t1", "k", "pending")]
        alice.delete_thread(thread)
        assert alice.get_tuple(cfg) is None


async def test_a_users_key_writes_its_own_store_namespaces_only(mnemo) -> None:
    alice_key = mnemo.key("alice", name="alice-store")
    mine, theirs = ("users", "alice", "memories"), ("users", "bob", "memories")
    with MnemoStore(mnemo.url, api_key=mnemo.service_key) as service:
        service.put(theirs, "secret", {"text": "bob's"})
    async with MnemoStore(mnemo.url, api_key=alice_key) as alice:
        alice.put(mine, "likes", {"text": "tea"})
        await alice.aput(mine, "dislikes", {"text": "coffee"})
        assert alice.get(mine, "likes").value == {"text": "tea"}
        assert sorted(i.key for i in await alice.asearch(mine)) == ["dislikes", "likes"]
        with pytest.raises(MnemoForbidden) as err:
            alice.put(theirs, "note", {"text": "from alice"})
        assert err.value.status == 403
        with pytest.raises(MnemoForbidden):
            await alice.aput(("users", "bob"), "note", {"text": "from alice"})
        with pytest.raises(MnemoForbidden):
            alice.put(("shared",), "note", {"text": "from alice"})
        # bob's items are not there for alice: not to read, find, list or delete
        assert alice.get(theirs, "secret") is None
        assert await alice.aget(theirs, "secret") is None
        assert alice.search(theirs) == []
        assert [i.namespace for i in alice.search(("users",))] == [mine, mine]
        assert alice.list_namespaces(prefix=("users",)) == [mine]
        alice.delete(theirs, "secret")
    with MnemoStore(mnemo.url, api_key=mnemo.service_key) as service:
        assert service.get(theirs, "note") is None
        assert service.get(theirs, "secret").value == {"text": "bob's"}
        assert service.get(mine, "likes").value == {"text": "tea"}


def test_a_user_over_its_request_rate_is_retried_then_rate_limited(tmp_path) -> None:
    """A mnemo allowing a user 1 request/s (burst 2): the saver waits out `429` + Retry-After
    and goes on; with no retries left the caller gets MnemoRateLimited (a MnemoUnavailable)."""
    database_url = f"sqlite://{tmp_path}/rate.db"
    proc, url = start_mnemo(
        database_url,
        tmp_path / "mnemo.log",
        MNEMO_RATE_LIMIT_PER_S="1",
        MNEMO_RATE_LIMIT_BURST="2",
    )
    try:
        key = create_key(database_url, user="carol", name="carol")
        latest = {"configurable": {"thread_id": "carol-1", "checkpoint_ns": ""}}
        with MnemoSaver(url, api_key=key, retries=0) as impatient:
            with pytest.raises(MnemoRateLimited) as err:
                for _ in range(10):
                    impatient.get_tuple(latest)
        assert err.value.status == 429 and isinstance(err.value, MnemoUnavailable)
        with MnemoSaver(url, api_key=key, retries=5) as patient:
            for _ in range(4):  # beyond the burst: each waits for its Retry-After
                assert patient.get_tuple(latest) is None
    finally:
        stop_mnemo(proc)
