"""mnemo with a graph worker against the reference server (`langgraph dev`), on the same
LangGraph project (`project/`): each scripted client session (`scenarios.py`) runs against both;
what they answered, with ids and timestamps taken out (`normalize.py`), must be the same. Every
difference is printed, path by path; the test fails on any not listed in `TOLERATED`."""

from __future__ import annotations

import json
import re

import pytest
from langgraph_sdk import get_client

from compare import differences, short
from normalize import Normalizer
from scenarios import SCENARIOS

# What may differ, and why: the reference server's own ways, or mnemo's documented ones. Nothing
# else may.
DELIBERATE = [
    (
        r"\.(langgraph_api_url|langgraph_api_version|langgraph_host|langgraph_plan)$",
        "the reference server's name for itself, which it copies into every run's config and checkpoint",
    ),
    (
        r"\.(langgraph_request_id|langgraph_auth_user|langgraph_auth_user_id|langgraph_auth_permissions"
        r"|user_id|__request_start_time_ms__|__after_seconds__|__pregel_node_finished)$",
        "the reference server's request and auth context, which it copies into the config",
    ),
    (r"^runs\.[a-z_]+( [a-z ]+)?(\[\d+\])?\.kwargs\.", "the run's stored request: each server keeps its own form"),
    (
        r"^runs\.(stream|join_stream)[^.]*\[0\]\[1\]\.thread_id$",
        "mnemo's `metadata` event also names the run's thread (an addition clients ignore)",
    ),
    (r"^threads\.create\.interrupts$", "mnemo's new thread also says it waits on nothing (an addition)"),
    (
        r"^runs\.[a-z_]+( [a-z ]+)?(\[\d+\])?\.multitask_strategy$",
        "mnemo's default multitask strategy is `reject` (README); the reference's is `enqueue`",
    ),
    (r"\.langsmith_session_name$", "the reference's LangSmith tracing project; mnemo has none"),
    (
        r"^assistants\.(set_latest|search\[\d+\])\.context\.",
        "the reference server's set_latest puts back a version's config but keeps the newest"
        " version's context; mnemo puts back both",
    ),
    (
        r"^runs\.join\.(messages|__interrupt__\[\d+\]\.response_schema)$",
        "mnemo's `join` answers as `wait` does (the values, with the interrupt); the reference's"
        " `join` of a run stopped at an interrupt, the interrupt alone",
    ),
    (
        r"\.metadata\.(thread_id|checkpoint_id)$",
        "the reference server's checkpointer also copies the run's `configurable` (its thread, a"
        " fork's checkpoint) into each checkpoint's metadata; mnemo keeps LangGraph's metadata as"
        " LangGraph makes it (MnemoSaver is a plain LangGraph checkpointer too)",
    ),
    (r"^threads\.get[^.]*\.error$", "the reference's thread has an `error`, outside its own OpenAPI schema"),
    (
        r"^runs\.stream resume.*\.metadata\.(checkpoint_map|checkpoint_ns|langgraph_checkpoint_ns|langgraph_node"
        r"|langgraph_path|langgraph_step|langgraph_triggers)$",
        "the reference copies the interrupted task's own context (its node, step, namespace) into"
        " the config of the run that resumes it",
    ),
]


def deliberate(path: str) -> str | None:
    """Why `path` may differ, if it may."""
    return next((why for pattern, why in DELIBERATE if re.search(pattern, path)), None)


async def transcript(url: str, scenario) -> list[tuple[str, object]]:
    steps: list[tuple[str, object]] = []
    client = get_client(url=url, api_key=None)
    await scenario(client, lambda step, value: steps.append((step, value)))
    return steps


def keyed(steps: list[tuple[str, object]]) -> dict[str, object]:
    """Steps by name (a name used twice gets `#2`), so a missing step shows as one."""
    out: dict[str, object] = {}
    for step, value in steps:
        name, n = step, 1
        while name in out:
            n += 1
            name = f"{step} #{n}"
        out[name] = value
    return out


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_same_answers(servers, name, tmp_path) -> None:
    scenario = SCENARIOS[name]
    sides = {}
    for server, url in servers.items():
        sides[server] = keyed(Normalizer()(await transcript(url, scenario)))
        # both transcripts kept, to read a difference in its context
        (tmp_path / f"{server.replace(' ', '-')}.json").write_text(json.dumps(sides[server], indent=1, sort_keys=True))
    found = differences(sides["mnemo"], sides["langgraph dev"])
    reasons: dict[str, int] = {}
    unexpected = []
    for path, a, b in found:
        why = deliberate(path)
        if why is None:
            unexpected.append((path, a, b))
        else:
            reasons[why] = reasons.get(why, 0) + 1
    print(f"\n{name}: {len(found)} differences")
    for why, n in reasons.items():
        print(f"  {n:4d} deliberate: {why}")
    for path, a, b in unexpected:
        print(f"  {path}\n    mnemo:         {short(a)}\n    langgraph dev: {short(b)}")
    assert not unexpected, f"{len(unexpected)} differences from the reference server (printed above)"
