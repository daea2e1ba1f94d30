"""The types both limiters share: a Limit, a Verdict, the RateLimiter protocol,
and the GCRA parameters a Limit turns into."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

BURST_SECONDS = 10  # default burst: 10 seconds' worth of the per-minute rate (1/6)
EPS = 1e-9  # absorbs float rounding in comparisons and floors


@dataclass(frozen=True, slots=True)
class Limit:
    """Per-minute budgets for one user id; ``None`` means unlimited.

    ``burst``: requests that may arrive back to back on a fresh budget (GCRA tolerance
    ``burst * 60/rpm``); default ``ceil(rpm / 6)``, i.e. 10 seconds' worth, at least 1.
    ``token_burst``: tokens that may be outstanding (spent ahead of the steady rate)
    while requests are still admitted; default ``ceil(tpm / 6)``. A response may push
    usage past it: the next request is then refused until the excess has drained.
    """

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    burst: int | None = None
    token_burst: int | None = None

    def __post_init__(self) -> None:
        for name in ("requests_per_minute", "tokens_per_minute", "burst"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.token_burst is not None and self.token_burst < 0:
            raise ValueError(f"token_burst must be at least 0, got {self.token_burst}")

    @property
    def effective_burst(self) -> int:
        """The request burst in force (0 when requests are unlimited)."""
        if self.requests_per_minute is None:
            return 0
        if self.burst is not None:
            return self.burst
        return max(1, math.ceil(self.requests_per_minute * BURST_SECONDS / 60))

    @property
    def effective_token_burst(self) -> int:
        """The token allowance in force (0 when tokens are unlimited)."""
        if self.tokens_per_minute is None:
            return 0
        if self.token_burst is not None:
            return self.token_burst
        return math.ceil(self.tokens_per_minute * BURST_SECONDS / 60)

    @property
    def unlimited(self) -> bool:
        return self.requests_per_minute is None and self.tokens_per_minute is None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to one ``check``.

    ``limit``, ``remaining`` and ``reset_seconds`` describe the request budget (all 0
    when requests are unlimited); ``retry_after`` and ``reason`` whichever budget
    refused. ``reason`` is ``"tokens"``, ``"requests"`` or ``"unavailable"`` (Redis
    down with fail_open=False) when refused, ``None`` when allowed.
    """

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: float
    retry_after: float
    reason: str | None


@dataclass(frozen=True, slots=True)
class Budget:
    """What is left of one id's budgets at one moment, as ``peek`` reports it.

    ``requests``: requests that could be made back to back now; ``tokens``: tokens that
    could still be spent, below 0 while the id is in debt (a response used more than was
    left, and requests are refused until it drains). Each is ``None`` when that budget
    is unlimited. ``requests_full_in`` and ``tokens_full_in``: seconds until that budget
    is full again (0 when it is).
    """

    requests: int | None
    tokens: int | None
    requests_full_in: float
    tokens_full_in: float


def budget_of(limit: Limit, requests_full_in: float, tokens_full_in: float) -> Budget:
    """The budget left when each TAT lies ``*_full_in`` seconds ahead of now (GCRA: a
    budget holds ``tau / interval`` units and a TAT in the future has used that much)."""
    p = Params.of(limit)
    requests = floor_count((p.r_tau - requests_full_in) / p.r_int) if p.r_int else None
    tokens = None
    if p.t_int:
        tokens = math.floor((p.t_tau - tokens_full_in) / p.t_int + EPS)
    return Budget(
        requests,
        tokens,
        requests_full_in if p.r_int else 0.0,
        tokens_full_in if p.t_int else 0.0,
    )


class RateLimiter(Protocol):
    async def check(self, user_id: str, limit: Limit) -> Verdict:
        """Refuse if the token budget is exhausted, else take one request (or refuse)."""
        ...

    async def add_tokens(self, user_id: str, limit: Limit, tokens: int) -> None:
        """Debit tokens used by a finished response; may put the budget into debt."""
        ...

    async def peek(self, user_id: str, limit: Limit) -> Budget | None:
        """What is left of the id's budgets now, taking nothing; ``None`` when the
        limiter cannot tell (Redis is down)."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Params:
    """GCRA parameters in seconds; an interval of 0 means that budget is unlimited."""

    r_int: float
    r_tau: float
    t_int: float
    t_tau: float

    @classmethod
    def of(cls, limit: Limit) -> Params:
        rpm, tpm = limit.requests_per_minute, limit.tokens_per_minute
        r_int = 60.0 / rpm if rpm else 0.0
        t_int = 60.0 / tpm if tpm else 0.0
        return cls(r_int, limit.effective_burst * r_int, t_int, limit.effective_token_burst * t_int)


def allowed_without_state(limit: Limit) -> Verdict:
    rpm = limit.requests_per_minute or 0
    return Verdict(True, rpm, rpm, 0.0, 0.0, None)


def floor_count(x: float) -> int:
    return max(0, math.floor(x + EPS))
