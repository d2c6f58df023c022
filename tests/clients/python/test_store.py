"""The long-term memory store through `client.store`, as a user: every namespace is under
["users", <the key's user>, ...], the only ones a user's key may reach."""

import asyncio

import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.errors import NotFoundError, PermissionDeniedError, UnprocessableEntityError

from support import tag


@pytest.fixture
async def client(mnemo_url, user_key):
    async with get_client(url=mnemo_url, api_key=user_key) as c:
        yield c


@pytest.fixture
def me(user) -> list[str]:
    """The namespace prefix this test's user owns."""
    return ["users", user.user_id]


async def test_put_get_and_delete_an_item(client, me):
    ns = [*me, tag(), "prefs"]
    await client.store.put_item(ns, "theme", {"theme": "dark", "n": 3})
    item = await client.store.get_item(ns, "theme")
    assert item["namespace"] == ns
    assert item["key"] == "theme"
    assert item["value"] == {"theme": "dark", "n": 3}
    assert item["created_at"].endswith("+00:00") and item["updated_at"] >= item["created_at"]

    # a put on the same key replaces the value and keeps created_at
    await client.store.put_item(ns, "theme", {"theme": "light"})
    again = await client.store.get_item(ns, "theme")
    assert again["value"] == {"theme": "light"}
    assert again["created_at"] == item["created_at"]
    assert again["updated_at"] > item["updated_at"]

    await client.store.delete_item(ns, "theme")
    assert await client.store.get_item(ns, "theme") is None
    # deleting what does not exist is fine
    await client.store.delete_item(ns, "theme")
    assert await client.store.get_item(ns, "never-put") is None


async def test_search_with_filters_and_pages(client, me):
    mine = [*me, tag()]
    ns = [*mine, "memories"]
    for i, (kind, n) in enumerate([("a", 1), ("b", 9), ("a", 10), ("b", 100)]):
        await client.store.put_item(ns, f"k{i}", {"kind": kind, "n": n})
    await client.store.put_item([*mine, "other"], "x", {"kind": "a", "n": 50})

    found = (await client.store.search_items(ns))["items"]
    # newest first, every item unscored
    assert [i["key"] for i in found] == ["k3", "k2", "k1", "k0"]
    assert all(i["score"] is None and i["namespace"] == ns for i in found)

    by_kind = (await client.store.search_items(ns, filter={"kind": "a"}))["items"]
    assert sorted(i["key"] for i in by_kind) == ["k0", "k2"]

    # numbers compare as numbers (9 < 10), not as text
    big = (await client.store.search_items(ns, filter={"n": {"$gte": 9, "$lt": 100}}))["items"]
    assert sorted(i["value"]["n"] for i in big) == [9, 10]
    ne = (await client.store.search_items(ns, filter={"kind": {"$ne": "a"}}))["items"]
    assert sorted(i["key"] for i in ne) == ["k1", "k3"]

    # a prefix reaches every namespace below it
    whole = (await client.store.search_items(mine, filter={"kind": "a"}))["items"]
    assert sorted(i["key"] for i in whole) == ["k0", "k2", "x"]

    page = (await client.store.search_items(ns, limit=2, offset=1))["items"]
    assert [i["key"] for i in page] == ["k2", "k1"]

    # ordering a boolean is not something mnemo pretends to do
    with pytest.raises(UnprocessableEntityError) as e:
        await client.store.search_items(ns, filter={"n": {"$gt": True}})
    assert e.value.status_code == 422


async def test_list_namespaces(client, me):
    t = tag()
    u = [*me, t]
    for ns in ([*u, "memories"], [*u, "prefs"], [*u, "a", "prefs"]):
        await client.store.put_item(ns, "k", {"v": 1})

    got = (await client.store.list_namespaces(prefix=u))["namespaces"]
    assert sorted(got) == sorted([[*u, "a", "prefs"], [*u, "memories"], [*u, "prefs"]])
    shallow = (await client.store.list_namespaces(prefix=u, max_depth=4))["namespaces"]
    assert sorted(shallow) == sorted([[*u, "a"], [*u, "memories"], [*u, "prefs"]])
    prefs = (await client.store.list_namespaces(prefix=u, suffix=["prefs"]))["namespaces"]
    assert sorted(prefs) == sorted([[*u, "a", "prefs"], [*u, "prefs"]])
    # `*` matches one label
    wild = (await client.store.list_namespaces(prefix=[*me, "*", "memories"]))["namespaces"]
    assert [*u, "memories"] in wild
    limited = (await client.store.list_namespaces(prefix=u, limit=1, offset=1))["namespaces"]
    assert len(limited) == 1 and limited[0] in got


async def test_ttl_expires_items_and_reads_refresh_it(client, me):
    ns = [*me, "ttl", tag()]
    # ttl is in minutes; a fraction of a minute keeps the test short
    await client.store.put_item(ns, "short", {"v": 1}, ttl=0.03)  # 1.8 s
    await client.store.put_item(ns, "kept", {"v": 2}, ttl=0.03)
    await client.store.put_item(ns, "forever", {"v": 3})

    await asyncio.sleep(1.2)
    # a read refreshes the TTL of the item it returns ...
    assert (await client.store.get_item(ns, "kept"))["value"] == {"v": 2}
    # ... unless asked not to
    assert (await client.store.get_item(ns, "short", refresh_ttl=False))["value"] == {"v": 1}

    await asyncio.sleep(1.0)  # 2.2 s after the puts: "short" has expired, "kept" has not
    assert await client.store.get_item(ns, "short", refresh_ttl=False) is None
    assert (await client.store.get_item(ns, "kept", refresh_ttl=False))["value"] == {"v": 2}
    keys = [i["key"] for i in (await client.store.search_items(ns, refresh_ttl=False))["items"]]
    assert sorted(keys) == ["forever", "kept"]

    await asyncio.sleep(1.4)  # 2.4 s after the refresh: "kept" has expired too
    assert await client.store.get_item(ns, "kept") is None
    keys = [i["key"] for i in (await client.store.search_items(ns, refresh_ttl=True))["items"]]
    assert keys == ["forever"]
    assert (await client.store.list_namespaces(prefix=ns))["namespaces"] == [ns]


async def test_invalid_namespaces_are_422(client, me):
    with pytest.raises(UnprocessableEntityError) as e:
        await client.store.put_item([*me, ""], "k", {"v": 1})
    assert e.value.status_code == 422
    assert e.value.response.json()["detail"]


async def test_other_namespaces_are_out_of_a_users_reach(client, me, mnemo_url, service_key):
    other = ["users", f"other-{tag()}", "memories"]
    async with get_client(url=mnemo_url, api_key=service_key) as service:
        await service.store.put_item(other, "secret", {"v": "theirs"})
        await service.store.put_item(["shared", "notes"], "n", {"v": "everyone's"})
    # writing outside ["users", <own id>] is 403
    for ns in (other, ["users", "other"], ["shared", tag()], ["users"]):
        with pytest.raises(PermissionDeniedError) as e:
            await client.store.put_item(ns, "k", {"v": 1})
        assert e.value.status_code == 403
    # reading and deleting there is 404, as for an item that does not exist
    with pytest.raises(NotFoundError):
        await client.store.get_item(other, "secret")
    with pytest.raises(NotFoundError):
        await client.store.delete_item(other, "secret")
    # searches and listings stay within the user's own namespaces
    await client.store.put_item([*me, "mine"], "k", {"v": "mine"})
    assert (await client.store.search_items(other))["items"] == []
    assert (await client.store.search_items(["shared"]))["items"] == []
    for prefix in ([], ["users"], ["users", "*"]):
        found = (await client.store.search_items(prefix, limit=100))["items"]
        assert [(i["namespace"], i["key"]) for i in found] == [([*me, "mine"], "k")], prefix
    listed = (await client.store.list_namespaces(prefix=["users"]))["namespaces"]
    assert listed == [[*me, "mine"]]
    assert (await client.store.list_namespaces())["namespaces"] == [[*me, "mine"]]
    async with get_client(url=mnemo_url, api_key=service_key) as service:
        assert (await service.store.get_item(other, "secret"))["value"] == {"v": "theirs"}


def test_the_sync_client(mnemo_url, user_key, me):
    ns = [*me, "sync", tag()]
    with get_sync_client(url=mnemo_url, api_key=user_key) as client:
        client.store.put_item(ns, "k", {"hello": "world"})
        assert client.store.get_item(ns, "k")["value"] == {"hello": "world"}
        assert [i["key"] for i in client.store.search_items(ns)["items"]] == ["k"]
        client.store.delete_item(ns, "k")
        assert client.store.get_item(ns, "k") is None
