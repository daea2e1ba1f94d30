"""Fixtures for the memory tests: real backends (a SQLite file in a tmp dir)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from router.memory.local import LocalBackend


@pytest.fixture
async def local_backend(tmp_path: Path) -> AsyncIterator[LocalBackend]:
    backend = await LocalBackend.open(tmp_path / "memories.sqlite3")
    try:
        yield backend
    finally:
        await backend.aclose()
