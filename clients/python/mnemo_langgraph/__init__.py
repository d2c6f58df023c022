"""LangGraph's checkpointer and store, kept in a mnemo server over HTTP."""

from ._http import (
    MnemoConflict,
    MnemoError,
    MnemoForbidden,
    MnemoInvalid,
    MnemoNotFound,
    MnemoRateLimited,
    MnemoUnauthorized,
    MnemoUnavailable,
)
from .saver import MnemoSaver
from .store import MnemoStore

__all__ = [
    "MnemoConflict",
    "MnemoError",
    "MnemoForbidden",
    "MnemoInvalid",
    "MnemoNotFound",
    "MnemoRateLimited",
    "MnemoSaver",
    "MnemoStore",
    "MnemoUnauthorized",
    "MnemoUnavailable",
]
