"""LangGraph's own checkpointer conformance suite (`langgraph-checkpoint-conformance`) against a
real mnemo, on each backend: every base capability and every extended one must pass. The saver
uses a service key: the suite's threads belong to no user."""

from __future__ import annotations

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from mnemo_langgraph import MnemoSaver


async def test_conformance(mnemo, capsys) -> None:
    @checkpointer_test(name=f"MnemoSaver ({mnemo.backend})")
    async def factory():
        async with MnemoSaver(mnemo.url, api_key=mnemo.service_key) as saver:
            yield saver

    report = await validate(factory, progress=ProgressCallbacks.verbose())
    with capsys.disabled():  # the report shows in every run, passing or not
        report.print_report()
    failed = {
        cap: result.failures for cap, result in report.results.items() if result.passed is not True
    }
    assert not failed, f"capabilities not passed: {failed}"
    assert {c.value for c in ALL_CAPABILITIES} <= set(report.results)
