"""LangGraph's checkpointer and store, kept in a mnemo server over HTTP."""

from ._http import (
    MnemoConflict,
    MnemoError,
    MnemoInvalid,
    MnemoNotFound,
    MnemoUnavailable,
)
from .saver import MnemoSaver
from .store import MnemoStore

__all__ = [
    "MnemoConflict",
    "MnemoError",
    "MnemoInvalid",
    "MnemoNotFound",
    "MnemoSaver",
    "MnemoStore",
    "MnemoUnavailable",
]
