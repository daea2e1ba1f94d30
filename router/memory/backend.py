"""The interface every memory backend implements, and the values it passes around.

A backend scopes every call by the user id the router decided: it is the SQLite
rows' owner in the local store and the namespace (container tag) in Supermemory.
Nothing else a client sends can widen or move that scope.

Failures (defined in ``router.exceptions``, re-exported here)::

    MemoryBackendError        the backend refused or failed; do not retry
    └── TransientMemoryError  timeouts, connection errors, 429 and 5xx; worth a retry
    InvalidUserId (ValueError)  a user id outside the namespace rule, refused before any I/O
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from router.exceptions import InvalidUserId, MemoryBackendError, TransientMemoryError
from router.user_ids import USER_ID_RULE, is_valid_user_id

__all__ = [
    "InvalidUserId",
    "Memories",
    "Memory",
    "MemoryBackend",
    "MemoryBackendError",
    "MetadataValue",
    "TransientMemoryError",
    "Turn",
    "check_user_id",
    "new_turn_id",
]

MetadataValue = str | int | float | bool


def check_user_id(user_id: str) -> str:
    """Return ``user_id`` if it is a valid namespace name, else raise ``InvalidUserId``."""
    # The router's ids are Supermemory's container tag and namespace names, so a
    # decided id is always a valid namespace.
    if not isinstance(user_id, str) or not is_valid_user_id(user_id):
        raise InvalidUserId(f"user id must be {USER_ID_RULE}")
    return user_id


def new_turn_id() -> str:
    """A fresh id for one stored turn; retries reuse it, so a store is idempotent."""
    return "mr_" + uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class Memory:
    """One memory as a backend returns it."""

    id: str
    text: str
    score: float | None = None
    created_at: str | None = None
    conversation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Turn:
    """One finished exchange to store: what the user said and what the assistant answered."""

    user_text: str
    assistant_text: str
    conversation_id: str | None = None
    metadata: Mapping[str, MetadataValue] = field(default_factory=dict)
    id: str = field(default_factory=new_turn_id)

    def content(self) -> str:
        """The text a backend stores and searches."""
        return f"User: {self.user_text}\nAssistant: {self.assistant_text}"


# A module-level alias: inside the protocol, ``list`` names the method.
Memories = list[Memory]


@runtime_checkable
class MemoryBackend(Protocol):
    """Search, store, list and forget memories, always within one user id."""

    @property
    def name(self) -> str:
        """The backend's label in metrics and logs."""
        ...

    async def search(self, user_id: str, query: str, limit: int) -> Memories:
        """The ``limit`` best matches for ``query`` among ``user_id``'s memories."""
        ...

    async def store(self, user_id: str, turn: Turn) -> str:
        """Store ``turn`` under ``user_id``; returns the stored item's id."""
        ...

    async def list(self, user_id: str, limit: int = 100) -> Memories:
        """``user_id``'s memories, newest first."""
        ...

    async def forget(self, user_id: str, memory_id: str) -> bool:
        """Remove one of ``user_id``'s memories; False when there was none by that id."""
        ...

    async def forget_all(self, user_id: str) -> int:
        """Remove all of ``user_id``'s memories; returns how many went."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads."""
        ...
