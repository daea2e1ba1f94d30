"""In-process GCRA limiter: state in a dict, for a single router process."""

from __future__ import annotations

import time
from collections.abc import Callable

from router.ratelimit.types import (
    EPS,
    Budget,
    Limit,
    Params,
    Verdict,
    allowed_without_state,
    budget_of,
    floor_count,
)


class MemoryRateLimiter:
    """GCRA state in a dict, for a single process.

    Operations never await, so each is atomic on the event loop. Memory is bounded:
    entries whose TATs have passed are swept when the dict doubles since the last
    sweep, and past ``max_entries`` the least recently updated entries are evicted
    (those users start again from a full budget).
    """

    def __init__(
        self, *, now: Callable[[], float] = time.monotonic, max_entries: int = 100_000
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._now = now
        self._max_entries = max_entries
        self._state: dict[str, tuple[float, float]] = {}  # user id -> (request, token) TAT
        self._sweep_at = min(1024, max_entries)

    def __len__(self) -> int:
        return len(self._state)

    async def check(self, user_id: str, limit: Limit) -> Verdict:
        if limit.unlimited:
            return allowed_without_state(limit)
        p = Params.of(limit)
        now = self._now()
        r_tat, t_tat = self._state.get(user_id, (now, now))
        r_tat, t_tat = max(r_tat, now), max(t_tat, now)
        rpm = limit.requests_per_minute or 0
        t_wait = t_tat - p.t_tau - now if p.t_int else 0.0
        r_wait = r_tat + p.r_int - p.r_tau - now if p.r_int else 0.0
        if t_wait > EPS or r_wait > EPS:
            reason = "tokens" if t_wait > EPS else "requests"
            remaining = floor_count((now + p.r_tau - r_tat) / p.r_int) if p.r_int else 0
            return Verdict(False, rpm, remaining, r_tat - now, max(t_wait, r_wait), reason)
        if not p.r_int:
            return Verdict(True, 0, 0, 0.0, 0.0, None)
        r_tat += p.r_int
        self._store(user_id, r_tat, t_tat, now)
        remaining = floor_count((now + p.r_tau - r_tat) / p.r_int)
        return Verdict(True, rpm, remaining, r_tat - now, 0.0, None)

    async def add_tokens(self, user_id: str, limit: Limit, tokens: int) -> None:
        if tokens <= 0 or limit.tokens_per_minute is None:
            return
        now = self._now()
        r_tat, t_tat = self._state.get(user_id, (now, now))
        self._store(user_id, r_tat, max(t_tat, now) + tokens * 60.0 / limit.tokens_per_minute, now)

    async def peek(self, user_id: str, limit: Limit) -> Budget:
        now = self._now()
        r_tat, t_tat = self._state.get(user_id, (now, now))
        return budget_of(limit, max(r_tat - now, 0.0), max(t_tat - now, 0.0))

    async def aclose(self) -> None:
        self._state.clear()

    def _store(self, user_id: str, r_tat: float, t_tat: float, now: float) -> None:
        state = self._state
        if state.pop(user_id, None) is None and len(state) >= self._sweep_at:
            self._sweep(now)
        state[user_id] = (r_tat, t_tat)  # re-inserted last: dict order is update order

    def _sweep(self, now: float) -> None:
        state = self._state
        for user_id in [u for u, (r, t) in state.items() if r <= now and t <= now]:
            del state[user_id]
        if len(state) >= self._max_entries:
            excess = len(state) - self._max_entries * 9 // 10
            for user_id in list(state)[:excess]:
                del state[user_id]
        self._sweep_at = min(self._max_entries, max(1024, 2 * len(state)))
