"""The in-process traffic history: buckets, windows, percentiles and bounds, on a fake clock."""

from __future__ import annotations

import math
from typing import Any

import pytest

from router.stats import BIN_BOUNDS, TrafficStats, bin_of, bin_value, percentile


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def finish(
    stats: TrafficStats, user: str, status: int = 200, seconds: float = 0.1, **kw: Any
) -> None:
    stats.started(user, kw.pop("source", "pattern"))
    stats.finished(
        user,
        status,
        seconds,
        kw.pop("ttft", None),
        kw.pop("prompt", 0),
        kw.pop("completion", 0),
        was_started=True,
    )


def client(snapshot: dict[str, Any], user: str) -> dict[str, Any]:
    found = [c for c in snapshot["clients"] if c["user_id"] == user]
    assert len(found) == 1, snapshot["clients"]
    return found[0]


@pytest.mark.parametrize(
    ("seconds", "within"),
    [(0.0003, BIN_BOUNDS[0]), (0.001, 0.001), (0.25, 0.25), (3.0, 3.0), (90.0, 90.0)],
)
def test_a_value_lands_in_a_bin_whose_middle_is_within_six_percent(
    seconds: float, within: float
) -> None:
    middle = bin_value(bin_of(seconds))
    assert abs(middle - within) / within <= 0.0595 or seconds < BIN_BOUNDS[0]


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 0.5, None),
        ([0.1], 0.5, 0.1),
        ([0.1] * 50 + [1.0] * 50, 0.5, 0.1),
        ([0.1] * 50 + [1.0] * 50, 0.51, 1.0),
        ([0.01] * 95 + [5.0] * 5, 0.95, 0.01),
        ([0.01] * 94 + [5.0] * 6, 0.95, 5.0),
    ],
)
def test_percentiles_of_a_histogram(values: list[float], q: float, expected: float | None) -> None:
    histogram: dict[int, int] = {}
    for v in values:
        histogram[bin_of(v)] = histogram.get(bin_of(v), 0) + 1
    got = percentile(histogram, q)
    if expected is None:
        assert got is None
    else:
        assert got is not None and math.isclose(got, expected, rel_tol=0.06)


@pytest.mark.parametrize(
    ("statuses", "ok", "four", "five", "limited"),
    [
        ([200, 201, 304], 3, 0, 0, 0),
        ([400, 403, 499], 0, 3, 0, 0),
        ([429, 429], 0, 0, 0, 2),
        ([500, 502, 503, 504], 0, 0, 4, 0),
        ([200, 404, 429, 500], 1, 1, 1, 1),
    ],
)
def test_answers_are_counted_by_class(
    statuses: list[int], ok: int, four: int, five: int, limited: int
) -> None:
    stats = TrafficStats(clock=Clock())
    for status in statuses:
        finish(stats, "a", status)
    row = client(stats.snapshot(), "a")
    assert row["requests"] == len(statuses)
    assert (row["errors_4xx"], row["errors_5xx"], row["rate_limited"]) == (four, five, limited)


def test_clients_are_kept_apart_and_sorted_busiest_first() -> None:
    stats = TrafficStats(clock=Clock())
    for _ in range(3):
        finish(stats, "jetbrains", prompt=10, completion=5, source="pattern")
    finish(stats, "curl", 500, source="default")
    snap = stats.snapshot(60)
    assert [c["user_id"] for c in snap["clients"]] == ["jetbrains", "curl"]
    jet, curl = snap["clients"]
    assert (jet["requests"], jet["prompt_tokens"], jet["completion_tokens"]) == (3, 30, 15)
    assert (jet["errors_5xx"], curl["errors_5xx"]) == (0, 1)
    assert (jet["source"], curl["source"]) == ("pattern", "default")


def test_rates_are_per_minute_over_the_window_elapsed() -> None:
    clock = Clock(1_000_000.0)  # a bucket boundary
    stats = TrafficStats(clock=clock)
    for i in range(30):  # 30 requests spread over 5 minutes
        clock.now = 1_000_000.0 + i * 10
        finish(stats, "a", prompt=100)
    clock.now = 1_000_000.0 + 295  # 30 buckets back, the last one half through
    row = client(stats.snapshot(300), "a")
    assert row["requests"] == 30
    assert math.isclose(row["requests_per_minute"], 6.0, rel_tol=0.05)
    assert math.isclose(row["prompt_tokens_per_minute"], 600.0, rel_tol=0.05)


def test_the_window_leaves_out_older_buckets_but_the_series_keeps_them() -> None:
    clock = Clock(1_000_000.0)
    stats = TrafficStats(clock=clock)
    finish(stats, "a", 500)
    clock.now += 20 * 60
    finish(stats, "a")
    snap = stats.snapshot(300)
    row = client(snap, "a")
    assert (row["requests"], row["errors_5xx"]) == (1, 0)
    assert sum(row["series"]["requests"]) == 2
    assert sum(row["series"]["errors"]) == 1
    assert len(row["series"]["requests"]) == snap["series"]["points"] == 60
    assert row["series"]["requests"][-1] == 1  # the newest minute is the last point


def test_latency_and_time_to_first_token_percentiles() -> None:
    stats = TrafficStats(clock=Clock())
    for _ in range(19):
        finish(stats, "a", seconds=0.2, ttft=0.05)
    finish(stats, "a", seconds=8.0, ttft=None)  # a request that never sent a byte
    row = client(stats.snapshot(), "a")
    assert math.isclose(row["latency_p50_ms"], 200, rel_tol=0.06)
    assert math.isclose(row["latency_p95_ms"], 200, rel_tol=0.06)
    assert math.isclose(row["ttft_p50_ms"], 50, rel_tol=0.06)
    finish(stats, "a", seconds=8.0)
    assert math.isclose(client(stats.snapshot(), "a")["latency_p95_ms"], 8000, rel_tol=0.06)


def test_in_flight_counts_requests_started_and_not_finished() -> None:
    clock = Clock()
    stats = TrafficStats(clock=clock)
    stats.started("a", "custom_header")
    stats.started("a", "custom_header")
    row = client(stats.snapshot(), "a")
    assert (row["in_flight"], row["requests"], row["last_seen"]) == (2, 0, clock.now)
    stats.finished("a", 200, 0.1, 0.01, 0, 0, was_started=True)
    assert client(stats.snapshot(), "a")["in_flight"] == 1
    # A request refused before its id was decided never started.
    stats.finished("__invalid__", 400, 0.001, None, 0, 0, was_started=False)
    assert client(stats.snapshot(), "__invalid__")["in_flight"] == 0


def test_history_is_bounded_in_time_and_idle_ids_are_forgotten() -> None:
    clock = Clock(1_000_000.0)
    stats = TrafficStats(bucket_seconds=10, history_seconds=600, clock=clock)
    for i in range(200):  # 2,000 s of traffic, one request per bucket
        clock.now = 1_000_000.0 + i * 10
        finish(stats, "busy")
    finish(stats, "once")
    history = stats._clients["busy"].buckets
    assert len(history) == 60  # 600 s of 10 s buckets, no more
    clock.now += 601
    snap = stats.snapshot(600)
    assert snap["clients"] == []
    assert stats._clients == {}


def test_an_idle_id_with_a_request_in_flight_is_kept() -> None:
    clock = Clock()
    stats = TrafficStats(history_seconds=60, clock=clock)
    stats.started("slow", "pattern")
    clock.now += 3600
    assert client(stats.snapshot(60), "slow")["in_flight"] == 1


@pytest.mark.parametrize(("bucket", "history"), [(0, 60), (10, 5), (-1, 10)])
def test_bad_shapes_are_refused(bucket: int, history: int) -> None:
    with pytest.raises(ValueError):
        TrafficStats(bucket_seconds=bucket, history_seconds=history)
