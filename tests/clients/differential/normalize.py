"""What two servers' answers may differ in, taken out so the rest can be compared: ids and
timestamps. Each distinct id is replaced by its order of first appearance among the ids first
found under the same key (`<run_id:2>`, `<id:7>`), and keeps that label wherever it shows again,
so the same id must show in the same places on both sides, and an id one side has more of does
not renumber every other; a timestamp becomes `<ts>`."""

from __future__ import annotations

import re
from typing import Any

_ID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # uuids
    r"|(?<![0-9a-z])[0-9a-f]{32}(?![0-9a-z])",  # interrupt ids
    re.I,
)
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:?\d{2}|Z)?$")
_TIME_KEYS = {"created_at", "updated_at", "ts", "timestamp", "expires_at"}


class Normalizer:
    """One per server per scenario: ids are numbered across the whole scenario."""

    def __init__(self) -> None:
        self.ids: dict[str, dict[str, str]] = {}

    def _label(self, kind: str, found: str) -> str:
        found = found.lower()
        # an id keeps the label it was first given; one first seen in metadata (which one side
        # may have more of) lends its label to other metadata only
        for named, labels in self.ids.items():
            if found in labels and (kind.startswith("metadata.") or not named.startswith("metadata.")):
                return labels[found]
        seen = self.ids.setdefault(kind, {})
        return seen.setdefault(found, f"<{kind}:{len(seen) + 1}>")

    def __call__(self, value: Any, kind: str = "id") -> Any:
        if isinstance(value, dict):
            # ids in metadata are numbered apart: one side's extra there renumbers nothing else
            prefix = "metadata." if kind == "metadata" else ""
            # in key order, not the server's: ids are numbered the same way on both sides
            return {
                self(k, "key"): "<ts>" if k in _TIME_KEYS and value[k] is not None else self(value[k], prefix + str(k))
                for k in sorted(value, key=str)
            }
        if isinstance(value, (list, tuple)):
            return [self(v, kind) for v in value]
        if isinstance(value, str):
            if _TIMESTAMP.match(value):
                return "<ts>"
            return _ID.sub(lambda m: self._label(_kind(kind), m.group(0)), value)
        return value


def _kind(key: str) -> str:
    """The label an id is numbered under: its key when that names an id, else `id`."""
    bare = key.removeprefix("metadata.")
    return key if bare.endswith("_id") or bare in ("checkpoint_ns", "key", "langgraph_checkpoint_ns") else "id"
