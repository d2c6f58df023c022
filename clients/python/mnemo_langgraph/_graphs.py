"""Finding a user's graphs (`langgraph.json`, `NAME=path.py:attr`), compiling them onto mnemo's
checkpointer and store, and describing them to mnemo (JSON schemas, a drawing)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("mnemo_langgraph.worker")


@dataclass
class GraphSpec:
    """One graph to serve: its id, where it comes from, and its description."""

    graph_id: str
    path: str
    description: str | None = None
    base_dir: Path | None = None


# -- where graphs come from -------------------------------------------------------------------


def parse_graph_arg(arg: str) -> GraphSpec:
    """`NAME=path.py:attr` (or `NAME=package.module:attr`), paths relative to the cwd."""
    name, sep, path = arg.partition("=")
    if not sep or not name.strip() or ":" not in path:
        raise ValueError(f"--graph takes NAME=path.py:attr, not {arg!r}")
    return GraphSpec(name.strip(), path.strip(), base_dir=Path.cwd())


def load_config(path: str | Path, *, set_env: bool = True) -> list[GraphSpec]:
    """The graphs of a `langgraph.json` (the LangGraph CLI's format). Its `env` (an object, or the
    path of a `.env` file) is loaded into `os.environ` without overriding what is set already."""
    file = Path(path).resolve()
    config = json.loads(file.read_text())
    base = file.parent
    graphs = config.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise ValueError(f"{file}: no graphs (expected \"graphs\": {{\"name\": \"./file.py:attr\"}})")
    if set_env:
        load_env(config.get("env"), base)
    specs = []
    for name, entry in graphs.items():
        if isinstance(entry, dict):  # {"path": ..., "description": ...}
            specs.append(GraphSpec(name, entry["path"], entry.get("description"), base))
        else:
            specs.append(GraphSpec(name, str(entry), None, base))
    return specs


def load_env(env: Any, base: Path) -> None:
    """`env` of a langgraph.json: a mapping, or a dotenv file's path relative to `base`."""
    if isinstance(env, dict):
        pairs = {str(k): str(v) for k, v in env.items()}
    elif isinstance(env, str):
        pairs = read_dotenv(base / env)
    else:
        return
    for key, value in pairs.items():
        os.environ.setdefault(key, value)


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (`export ` prefix, quotes and `#` comments allowed)."""
    pairs: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        pairs[key.strip()] = value
    return pairs


def import_attr(spec: GraphSpec) -> Any:
    """The object `spec.path` names: `./file.py:attr` (relative to `spec.base_dir`) or
    `package.module:attr`. A file's directory goes on `sys.path`, so its sibling imports work."""
    location, _, attr = spec.path.rpartition(":")
    if not location or not attr:
        raise ValueError(f"graph {spec.graph_id}: {spec.path!r} is not path.py:attr")
    if location.endswith(".py") or "/" in location or os.sep in location:
        file = Path(location)
        if not file.is_absolute():
            file = (spec.base_dir or Path.cwd()) / file
        file = file.resolve()
        if str(file.parent) not in sys.path:
            sys.path.insert(0, str(file.parent))
        module_name = f"mnemo_graph_{spec.graph_id}_{file.stem}".replace("-", "_")
        module_spec = importlib.util.spec_from_file_location(module_name, file)
        if module_spec is None or module_spec.loader is None:
            raise ValueError(f"graph {spec.graph_id}: cannot import {file}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(location)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


# -- compiling --------------------------------------------------------------------------------


def _is_compiled(obj: Any) -> bool:
    return hasattr(obj, "astream") and hasattr(obj, "get_graph")


def to_compiled(obj: Any, graph_id: str) -> Any:
    """A compiled graph from `obj`: a compiled graph, a builder (`StateGraph`), or a callable
    returning either (called with no argument, or with an empty config if it takes one)."""
    if callable(obj) and not _is_compiled(obj) and not hasattr(obj, "compile"):
        params = inspect.signature(obj).parameters
        obj = obj({"configurable": {}}) if params else obj()
        if inspect.isawaitable(obj):
            raise TypeError(f"graph {graph_id}: async graph factories are not supported")
    if not _is_compiled(obj) and hasattr(obj, "compile"):
        obj = obj.compile()
    if not _is_compiled(obj):
        raise TypeError(f"graph {graph_id}: {type(obj).__name__} is not a LangGraph graph")
    return obj


def with_persistence(graph: Any, checkpointer: Any, store: Any) -> Any:
    """The graph on mnemo's checkpointer and store, as `langgraph dev` attaches its own."""
    update = {"checkpointer": checkpointer, "store": store}
    if hasattr(graph, "copy"):
        try:
            return graph.copy(update=update)
        except TypeError:
            pass
    graph.checkpointer = checkpointer
    graph.store = store
    return graph


# -- describing -------------------------------------------------------------------------------


def _schema(graph: Any, method: str) -> dict[str, Any]:
    """`graph.<method>()`, or `{}` when the graph has no such schema or cannot render it."""
    fn = getattr(graph, method, None)
    if fn is None:
        return {}
    try:
        with warnings.catch_warnings():  # get_config_jsonschema is deprecated in LangGraph 1
            warnings.simplefilter("ignore")
            schema = fn()
    except Exception as e:  # noqa: BLE001 - a schema is informative, never fatal
        log.debug("%s: %s", method, e)
        return {}
    return schema if isinstance(schema, dict) else {}


def _state_schema(graph: Any) -> dict[str, Any]:
    builder = getattr(graph, "builder", None)
    typ = getattr(builder, "state_schema", None) or getattr(builder, "schema", None)
    if typ is None:
        return {}
    try:
        from pydantic import TypeAdapter

        return TypeAdapter(typ).json_schema()
    except Exception as e:  # noqa: BLE001
        log.debug("state schema: %s", e)
        return {}


# what a run's `configurable` holds that is the server's, not the graph's settings
_SERVER_KEYS = ("__pregel_checkpointer", "__pregel_store", "checkpoint_id", "checkpoint_ns", "thread_id")


def _config_schema(graph: Any) -> dict[str, Any]:
    """The schema of the graph's `configurable` settings, as the LangGraph API shows it (the
    rest of a config, such as `recursion_limit`, is not the graph's); `{}` when it has none."""
    try:
        with warnings.catch_warnings():  # config_schema is deprecated in LangGraph 1
            warnings.simplefilter("ignore")
            fields = getattr(graph.config_schema(), "model_fields", None) or {}
        if "configurable" not in fields:
            return {}
        from pydantic import TypeAdapter

        schema = TypeAdapter(fields["configurable"].annotation).json_schema()
    except Exception as e:  # noqa: BLE001 - a schema is informative, never fatal
        log.debug("config schema: %s", e)
        return {}
    for key in _SERVER_KEYS:
        schema.get("properties", {}).pop(key, None)
    if getattr(graph, "config_type", None) is not None and hasattr(graph.config_type, "__name__"):
        schema["title"] = graph.config_type.__name__
    return schema


def graph_schemas(graph: Any) -> dict[str, dict[str, Any]]:
    """The five schemas mnemo shows for a graph (`/assistants/{id}/schemas`); `{}` for any
    the graph cannot render."""
    return {
        "input_schema": _schema(graph, "get_input_jsonschema"),
        "output_schema": _schema(graph, "get_output_jsonschema"),
        "state_schema": _state_schema(graph),
        "config_schema": _config_schema(graph),
        "context_schema": _schema(graph, "get_context_jsonschema"),
    }


def graph_drawing(graph: Any, xray: bool = False) -> dict[str, list[dict[str, Any]]]:
    """The graph's nodes and edges (with `xray`, its subgraphs' too) as the LangGraph API
    answers `/assistants/{id}/graph`: LangChain's JSON drawing, without the nodes' class paths."""
    try:
        drawn = graph.get_graph(xray=xray).to_json()
    except Exception as e:  # noqa: BLE001
        log.debug("drawing: %s", e)
        return {"nodes": [], "edges": []}
    for node in drawn.get("nodes", []):
        if isinstance(node.get("data"), dict):
            node["data"].pop("id", None)
    return json.loads(json.dumps({"nodes": drawn.get("nodes", []), "edges": drawn.get("edges", [])}, default=str))


def state_defaults(graph: Any) -> dict[str, Any]:
    """What the graph's state channels hold before any write (a list reducer's `[]`), as JSON,
    by channel: LangGraph shows them in every state."""
    from langgraph.errors import EmptyChannelError

    from .saver import is_state_channel, json_view

    try:  # LangGraph's "no stored value" (internal; without it, nothing is shown)
        from langgraph._internal._typing import MISSING
    except ImportError:  # pragma: no cover - another LangGraph layout
        return {}
    out: dict[str, Any] = {}
    for name, channel in (getattr(graph, "channels", None) or {}).items():
        if not is_state_channel(name):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                value = channel.from_checkpoint(MISSING).get()
        except EmptyChannelError:
            continue
        except Exception as e:  # noqa: BLE001 - informative, never fatal
            log.debug("channel %s: %s", name, e)
            continue
        shown = json_view(value)
        if shown is not None:
            out[name] = shown
    return out


def subgraph_schemas(graph: Any) -> dict[str, dict[str, dict[str, Any]]]:
    """Each subgraph's schemas by namespace (`parent|child` for nested ones)."""
    try:
        found = list(graph.get_subgraphs(recurse=True))
    except Exception as e:  # noqa: BLE001
        log.debug("subgraphs: %s", e)
        return {}
    return {ns: graph_schemas(sub) for ns, sub in found}
