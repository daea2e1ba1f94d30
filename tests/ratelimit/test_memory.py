"""GCRA arithmetic of the in-process limiter, on a fake clock: exact values, no sleeping."""

from __future__ import annotations

import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.ratelimit import Budget, Limit, MemoryRateLimiter, Verdict
from tests.ratelimit.conftest import FakeClock

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that must finish without suspending (the limiter never awaits,
    which is what makes each operation atomic on the event loop)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coro.close()
    raise AssertionError("the memory limiter suspended inside an operation")


def check(limiter: MemoryRateLimiter, limit: Limit, user: str = "u") -> Verdict:
    return run(limiter.check(user, limit))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def limiter(clock: FakeClock) -> MemoryRateLimiter:
    return MemoryRateLimiter(now=clock)


def test_exactly_burst_then_one_per_interval(limiter: MemoryRateLimiter, clock: FakeClock) -> None:
    limit = Limit(requests_per_minute=60, burst=5)
    for n in range(5):
        assert check(limiter, limit) == Verdict(True, 60, 4 - n, float(n + 1), 0.0, None)
    assert check(limiter, limit) == Verdict(False, 60, 0, 5.0, 1.0, "requests")
    clock.advance(0.5)
    assert check(limiter, limit) == Verdict(False, 60, 0, 4.5, 0.5, "requests")
    clock.advance(0.5)
    assert check(limiter, limit) == Verdict(True, 60, 0, 5.0, 0.0, None)
    for _ in range(100):  # steady state: exactly one per T = 1 s
        assert not check(limiter, limit).allowed
        clock.advance(1.0)
        assert check(limiter, limit).allowed
    # Idle long enough to refill: the whole burst again, no more.
    clock.advance(5.0)
    assert [check(limiter, limit).allowed for _ in range(6)] == [True] * 5 + [False]


def test_partial_refill_gives_back_whole_requests_only(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    limit = Limit(requests_per_minute=120, burst=4)  # T = 0.5 s
    for _ in range(4):
        check(limiter, limit)
    clock.advance(1.25)  # 2.5 intervals: 2 requests back, the third in 0.25 s
    assert check(limiter, limit) == Verdict(True, 120, 1, 1.25, 0.0, None)
    assert check(limiter, limit) == Verdict(True, 120, 0, 1.75, 0.0, None)
    assert check(limiter, limit) == Verdict(False, 120, 0, 1.75, 0.25, "requests")


def test_no_double_allowance_at_a_minute_edge(limiter: MemoryRateLimiter, clock: FakeClock) -> None:
    limit = Limit(requests_per_minute=60)  # default burst 10
    clock.t = 59.75
    assert sum(check(limiter, limit).allowed for _ in range(50)) == 10
    clock.t = 60.0  # a fixed window would start afresh here
    assert sum(check(limiter, limit).allowed for _ in range(50)) == 0
    clock.t = 60.75
    assert sum(check(limiter, limit).allowed for _ in range(50)) == 1


def test_hammering_for_two_minutes_never_exceeds_burst_plus_rate(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    limit = Limit(requests_per_minute=60, burst=10)
    admitted: list[float] = []
    for _ in range(120 * 16):  # a request every 1/16 s
        if check(limiter, limit).allowed:
            admitted.append(clock.t)
        clock.advance(1 / 16)
    in_any_minute = max(sum(1 for t in admitted if a <= t < a + 60) for a in admitted)
    assert in_any_minute == 10 + 60 - 1  # the burst plus one per second after it
    assert len(admitted) == 10 + 119


def test_default_burst_is_ten_seconds_worth() -> None:
    assert Limit(requests_per_minute=60).effective_burst == 10
    assert Limit(requests_per_minute=1000).effective_burst == 167
    assert Limit(requests_per_minute=5).effective_burst == 1
    assert Limit(requests_per_minute=60, burst=2).effective_burst == 2
    assert Limit(tokens_per_minute=60_000).effective_token_burst == 10_000
    assert Limit(tokens_per_minute=60_000, token_burst=0).effective_token_burst == 0
    assert Limit().effective_burst == Limit().effective_token_burst == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"requests_per_minute": 0},
        {"tokens_per_minute": -5},
        {"requests_per_minute": 10, "burst": 0},
        {"tokens_per_minute": 10, "token_burst": -1},
    ],
)
def test_invalid_limits_are_rejected(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        Limit(**kwargs)


def test_unlimited_is_always_allowed_and_keeps_no_state(
    limiter: MemoryRateLimiter,
) -> None:
    for _ in range(1000):
        assert check(limiter, Limit()) == Verdict(True, 0, 0, 0.0, 0.0, None)
    run(limiter.add_tokens("u", Limit(), 10**9))
    run(limiter.add_tokens("u", Limit(tokens_per_minute=60), 0))
    assert len(limiter) == 0


def test_tokens_only_limit(limiter: MemoryRateLimiter, clock: FakeClock) -> None:
    limit = Limit(tokens_per_minute=480, token_burst=80)  # 0.125 s per token, tau 10 s
    for _ in range(100):
        assert check(limiter, limit) == Verdict(True, 0, 0, 0.0, 0.0, None)
    run(limiter.add_tokens("u", limit, 81))  # one token past the allowance
    assert check(limiter, limit) == Verdict(False, 0, 0, 0.0, 0.125, "tokens")
    clock.advance(0.125)
    assert check(limiter, limit).allowed


def test_big_token_debit_refuses_until_it_has_drained(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    limit = Limit(requests_per_minute=60, burst=5, tokens_per_minute=480, token_burst=80)
    assert check(limiter, limit).allowed
    run(limiter.add_tokens("u", limit, 400))  # 50 s of tokens; 10 s tolerated
    refused = check(limiter, limit)
    # No request is taken by a refusal: 4 remain, the request budget refills in 1 s.
    assert refused == Verdict(False, 60, 4, 1.0, 40.0, "tokens")
    clock.advance(39.5)
    assert check(limiter, limit) == Verdict(False, 60, 5, 0.0, 0.5, "tokens")
    clock.advance(0.5)
    assert check(limiter, limit) == Verdict(True, 60, 4, 1.0, 0.0, None)
    assert check(limiter, limit).allowed  # the token budget is not charged by checks


def test_spending_exactly_the_token_allowance_still_admits(
    limiter: MemoryRateLimiter,
) -> None:
    limit = Limit(tokens_per_minute=480, token_burst=80)
    run(limiter.add_tokens("u", limit, 80))
    assert check(limiter, limit).allowed
    run(limiter.add_tokens("u", limit, 1))
    assert check(limiter, limit).reason == "tokens"


def test_token_debits_accumulate(limiter: MemoryRateLimiter) -> None:
    limit = Limit(tokens_per_minute=480, token_burst=0)
    for _ in range(8):
        run(limiter.add_tokens("u", limit, 10))  # 8 * 10 tokens = 10 s
    assert check(limiter, limit).retry_after == 10.0


def test_when_both_budgets_refuse_retry_after_covers_both(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    limit = Limit(requests_per_minute=6, burst=1, tokens_per_minute=480, token_burst=0)
    assert check(limiter, limit).allowed  # next request in 10 s
    run(limiter.add_tokens("u", limit, 8))  # tokens clear in 1 s
    assert check(limiter, limit) == Verdict(False, 6, 0, 10.0, 10.0, "tokens")
    clock.advance(1.0)
    assert check(limiter, limit) == Verdict(False, 6, 0, 9.0, 9.0, "requests")


def test_users_are_independent(limiter: MemoryRateLimiter) -> None:
    limit = Limit(requests_per_minute=60, burst=1)
    assert check(limiter, limit, "a").allowed
    assert not check(limiter, limit, "a").allowed
    assert check(limiter, limit, "b").allowed


def test_a_changed_limit_applies_to_the_existing_state(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    for _ in range(2):
        assert check(limiter, Limit(requests_per_minute=60, burst=2)).allowed
    assert not check(limiter, Limit(requests_per_minute=60, burst=2)).allowed
    assert check(limiter, Limit(requests_per_minute=60, burst=3)).allowed


def test_memory_stays_bounded_under_random_ids(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    limit = Limit(requests_per_minute=60, tokens_per_minute=6000)
    peak = 0
    for _ in range(50_000):
        user = uuid.uuid4().hex
        assert check(limiter, limit, user).allowed
        run(limiter.add_tokens(user, limit, 50))  # TATs 1 s / 0.5 s ahead
        clock.advance(0.001)  # ~1000 ids live at any time
        peak = max(peak, len(limiter))
    assert peak <= 4096


def test_hard_cap_evicts_least_recently_updated(clock: FakeClock) -> None:
    limiter = MemoryRateLimiter(now=clock, max_entries=1000)
    limit = Limit(requests_per_minute=1, burst=1, tokens_per_minute=1, token_burst=0)
    assert check(limiter, limit, "hot").allowed
    for n in range(20_000):  # far-future TATs: nothing ever expires by itself
        run(limiter.add_tokens(f"id-{n}", limit, 10**6))
        if n % 100 == 0:
            run(limiter.add_tokens("hot", limit, 1))  # keeps "hot" recently updated
        assert len(limiter) <= 1000
    assert check(limiter, limit, "hot").reason == "tokens"  # its state survived
    assert check(limiter, limit, "id-19999").reason == "tokens"
    assert check(limiter, limit, "id-0").allowed  # evicted: a fresh budget


def peek(limiter: MemoryRateLimiter, limit: Limit, user: str = "u") -> Budget:
    return run(limiter.peek(user, limit))


def test_peek_reports_what_is_left_and_takes_nothing(
    limiter: MemoryRateLimiter, clock: FakeClock
) -> None:
    limit = Limit(requests_per_minute=60, burst=3, tokens_per_minute=600, token_burst=100)
    assert peek(limiter, limit) == Budget(3, 100, 0.0, 0.0)  # a fresh id: full budgets
    assert len(limiter) == 0  # and no state made for it
    check(limiter, limit)
    for _ in range(5):  # peeking again and again takes nothing
        assert peek(limiter, limit) == Budget(2, 100, 1.0, 0.0)
    run(limiter.add_tokens("u", limit, 40))  # 0.1 s per token
    assert peek(limiter, limit) == Budget(2, 60, 1.0, 4.0)
    clock.advance(0.5)
    assert peek(limiter, limit) == Budget(2, 65, 0.5, 3.5)
    check(limiter, limit)
    check(limiter, limit)
    left = peek(limiter, limit)
    assert left.requests == 0 and left.requests_full_in == pytest.approx(2.5)
    assert not check(limiter, limit).allowed  # peek said 0: the next one is refused


def test_peek_shows_token_debt_below_zero(limiter: MemoryRateLimiter, clock: FakeClock) -> None:
    limit = Limit(tokens_per_minute=60, token_burst=10)  # 1 s per token
    run(limiter.add_tokens("u", limit, 25))
    assert peek(limiter, limit) == Budget(None, -15, 0.0, 25.0)
    assert check(limiter, limit).reason == "tokens"
    clock.advance(15)
    assert peek(limiter, limit) == Budget(None, 0, 0.0, 10.0)
    assert check(limiter, limit).allowed


def test_aclose_drops_state(limiter: MemoryRateLimiter) -> None:
    check(limiter, Limit(requests_per_minute=60))
    run(limiter.aclose())
    assert len(limiter) == 0


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MemoryRateLimiter(max_entries=0)


@settings(max_examples=200, deadline=None)
@given(
    interval=st.sampled_from([0.5, 1.0, 2.0]),
    burst=st.integers(1, 8),
    gaps=st.lists(st.integers(0, 12), min_size=1, max_size=80),
)
def test_gcra_matches_a_token_bucket(interval: float, burst: int, gaps: list[int]) -> None:
    """Against a reference token bucket (capacity ``burst``, one token per interval),
    for arrivals on a 1/4 s grid (exact in binary floating point)."""
    clock = FakeClock(0.0)
    limiter = MemoryRateLimiter(now=clock)
    limit = Limit(requests_per_minute=int(60 / interval), burst=burst)
    level, last = float(burst), 0.0
    admitted: list[float] = []
    for gap in gaps:
        clock.advance(gap / 4)
        level = min(float(burst), level + (clock.t - last) / interval)
        last = clock.t
        expected = level >= 1
        verdict = check(limiter, limit)
        assert verdict.allowed == expected
        if expected:
            level -= 1
            admitted.append(clock.t)
            assert verdict.remaining == int(level)
        else:
            assert verdict.retry_after == pytest.approx((1 - level) * interval)
    for start in admitted:  # no window of length W admits more than burst + W/T
        for width in (interval, 10.0, 60.0):
            inside = sum(1 for t in admitted if start <= t < start + width)
            assert inside <= burst + width / interval
