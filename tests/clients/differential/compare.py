"""Differences between two normalized transcripts, as paths (`step[3].data.messages[0].id`)
with each side's value."""

from __future__ import annotations

import json
from typing import Any

Difference = tuple[str, Any, Any]
MISSING = "<missing>"


def differences(a: Any, b: Any, path: str = "") -> list[Difference]:
    if isinstance(a, dict) and isinstance(b, dict):
        found: list[Difference] = []
        for k in sorted(set(a) | set(b), key=str):
            found += differences(a.get(k, MISSING), b.get(k, MISSING), f"{path}.{k}" if path else str(k))
        return found
    if isinstance(a, list) and isinstance(b, list):
        found = []
        for i in range(max(len(a), len(b))):
            found += differences(a[i] if i < len(a) else MISSING, b[i] if i < len(b) else MISSING, f"{path}[{i}]")
        return found
    return [] if a == b else [(path, a, b)]


def short(value: Any, width: int = 160) -> str:
    text = value if value == MISSING else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."
