"""The trivial graph `bench/workers` serves through a mnemo graph worker and through
`langgraph dev`: one node that adds one to `n`."""

from typing import TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict):
    n: int


def bump(state: State) -> dict:
    return {"n": state.get("n", 0) + 1}


builder = StateGraph(State)
builder.add_node("bump", bump)
builder.add_edge(START, "bump")
builder.add_edge("bump", END)
graph = builder.compile()
