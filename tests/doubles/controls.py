"""The test side of the doubles' test-only routes (``/_double/...``), for a double that
runs as a process or in a container, and reading what it recorded."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx


def _get(url: str) -> Any:
    response = httpx.get(url, timeout=10.0, trust_env=False)
    response.raise_for_status()
    return response.json()


def _post(url: str) -> None:
    httpx.post(url, timeout=10.0, trust_env=False).raise_for_status()


@dataclass
class DoubleControls:
    """What a double received, and the holds on its streams (``formats.Holds``)."""

    url: str

    def requests(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = _get(f"{self.url}/_double/requests")
        return records

    def requests_with(self, marker: str) -> list[dict[str, Any]]:
        """The recorded requests whose body mentions ``marker`` (each test uses its own)."""
        return [r for r in self.requests() if marker in json.dumps(r["body"])]

    def hold(self, marker: str) -> None:
        """Hold streams about ``marker``: each text chunk after the first waits for ``allow``."""
        _post(f"{self.url}/_double/hold/{marker}")

    def allow(self, marker: str) -> None:
        """Let a held stream about ``marker`` send its next text chunk."""
        _post(f"{self.url}/_double/allow/{marker}")


@dataclass
class RouterDoubleControls(DoubleControls):
    """The Supermemory router double's controls, with the memories it keeps per user."""

    def memories(self) -> dict[str, list[str]]:
        memories: dict[str, list[str]] = _get(f"{self.url}/_double/memories")
        return memories


@dataclass
class ApiDoubleControls:
    """The Supermemory v5 API double's controls: operations held and released, failures."""

    url: str

    def hold(self, operation: str) -> None:
        _post(f"{self.url}/_double/hold/{operation}")

    def release(self) -> None:
        _post(f"{self.url}/_double/release")

    def fail(self, status: int, count: int = 1) -> None:
        _post(f"{self.url}/_double/fail/{status}?count={count}")

    def requests(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = _get(f"{self.url}/_double/requests")
        return records


def header_values(record: Mapping[str, Any], name: str) -> list[str]:
    """All values of header ``name`` in a request a double recorded."""
    wanted = name.lower()
    return [value for key, value in record["headers"] if key.lower() == wanted]
