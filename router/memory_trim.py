"""Give memory back to the operating system after a burst of requests.

CPython frees objects at once, but glibc's allocator keeps the freed heap pages
for reuse, so the router's resident set stays at its peak after, say, 1,000
concurrent streams end. ``malloc_trim(0)`` returns those pages. It is a no-op
where it does not exist (musl, macOS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def find_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class BurstTrimmer:
    """Counts requests in flight; when a burst of at least ``burst`` ends, trims once."""

    __slots__ = ("_active", "_burst", "_peak", "_trim", "trims")

    def __init__(self, burst: int = 256, trim: Callable[[int], int] | None = None) -> None:
        self._burst = burst
        self._trim = trim if trim is not None else find_malloc_trim()
        self._active = 0
        self._peak = 0
        self.trims = 0

    def started(self) -> None:
        self._active += 1
        if self._active > self._peak:
            self._peak = self._active

    def finished(self) -> None:
        self._active -= 1
        if self._active == 0 and self._peak >= self._burst:
            self._peak = 0
            if self._trim is not None:
                self._trim(0)
                self.trims += 1
