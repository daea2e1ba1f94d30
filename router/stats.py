"""Per-client traffic history in the process, for the dashboard and ``memory-router top``.

Prometheus keeps the long history; this keeps the last hour (by default) so that a
developer with no Prometheus can still see, per client id, what is busy, slow,
failing or rate limited. It is a ring of fixed-width time buckets per id:

- ids are the metric labels (``Metrics.user_label``), so they are bounded by the same
  budget as the metrics; past it, newcomers share ``__overflow__``;
- buckets older than ``history_seconds`` fall off the ring, and an id with no bucket
  left and nothing in flight is forgotten when a snapshot is taken;
- latencies go into a sparse log-scale histogram per bucket (bins 12.2 % wide), so the
  p50/p95 reported are the geometric middle of the bin the rank falls in.

Recording is a handful of integer updates on the event loop's thread; the snapshot,
which merges buckets and computes percentiles, runs only when the stats endpoint is
asked.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from typing import Any

BUCKET_SECONDS = 10
HISTORY_SECONDS = 3600
SERIES_STEP_SECONDS = 60

# Bin upper bounds in seconds: 0.5 ms to about 20 minutes, 12.2 % apart.
_RATIO = 2 ** (1 / 6)
BIN_BOUNDS: tuple[float, ...] = tuple(0.0005 * _RATIO**i for i in range(128))


def bin_of(seconds: float) -> int:
    """The histogram bin that holds ``seconds`` (the last bin holds everything above)."""
    return bisect_right(BIN_BOUNDS, seconds)


def bin_value(index: int) -> float:
    """A representative value of bin ``index``, in seconds: the geometric middle."""
    if index <= 0:
        return BIN_BOUNDS[0] / math.sqrt(_RATIO)
    if index >= len(BIN_BOUNDS):
        return BIN_BOUNDS[-1]
    return math.sqrt(BIN_BOUNDS[index - 1] * BIN_BOUNDS[index])


def percentile(histogram: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a sparse histogram, in seconds; None when empty."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= rank:
            return bin_value(index)
    return bin_value(max(histogram))  # unreachable: the counts add up to total


class Bucket:
    """What finished in one time bucket for one id."""

    __slots__ = (
        "client_errors",
        "completion_tokens",
        "latency",
        "prompt_tokens",
        "rate_limited",
        "requests",
        "server_errors",
        "start",
        "ttft",
    )

    def __init__(self, start: int) -> None:
        self.start = start
        self.requests = 0
        self.client_errors = 0  # 4xx other than 429, 499 (client went away) included
        self.server_errors = 0
        self.rate_limited = 0  # 429, the router's own or LiteLLM's
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.latency: dict[int, int] = {}
        self.ttft: dict[int, int] = {}


class ClientHistory:
    """One id's ring of buckets, plus what is true of it right now."""

    __slots__ = ("buckets", "in_flight", "last_seen", "source")

    def __init__(self, size: int) -> None:
        self.buckets: deque[Bucket] = deque(maxlen=size)
        self.in_flight = 0
        self.last_seen = 0.0
        self.source = ""

    def bucket(self, start: int) -> Bucket:
        buckets = self.buckets
        if buckets and buckets[-1].start == start:
            return buckets[-1]
        current = Bucket(start)
        buckets.append(current)  # the oldest falls off the ring
        return current


class TrafficStats:
    """The history of every id, fed by the proxy, read by the stats endpoint."""

    def __init__(
        self,
        *,
        bucket_seconds: int = BUCKET_SECONDS,
        history_seconds: int = HISTORY_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if bucket_seconds < 1 or history_seconds < bucket_seconds:
            raise ValueError("need 1 <= bucket_seconds <= history_seconds")
        self.bucket_seconds = bucket_seconds
        self.history_seconds = history_seconds
        self._size = -(-history_seconds // bucket_seconds)
        self._clock = clock
        self._clients: dict[str, ClientHistory] = {}

    def _client(self, user: str) -> ClientHistory:
        client = self._clients.get(user)
        if client is None:
            client = self._clients[user] = ClientHistory(self._size)
        return client

    def started(self, user: str, source: str) -> None:
        """A request from ``user`` (its metric label) began; ``source`` decided its id."""
        client = self._client(user)
        client.in_flight += 1
        client.source = source
        client.last_seen = self._clock()

    def finished(
        self,
        user: str,
        status: int,
        seconds: float,
        ttft: float | None,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        was_started: bool,
    ) -> None:
        """A request from ``user`` ended with ``status`` after ``seconds``."""
        now = self._clock()
        client = self._client(user)
        if was_started:
            client.in_flight -= 1
        client.last_seen = now
        width = self.bucket_seconds
        bucket = client.bucket(int(now) // width * width)
        bucket.requests += 1
        if status == 429:
            bucket.rate_limited += 1
        elif status >= 500:
            bucket.server_errors += 1
        elif status >= 400:
            bucket.client_errors += 1
        if prompt_tokens:
            bucket.prompt_tokens += prompt_tokens
        if completion_tokens:
            bucket.completion_tokens += completion_tokens
        index = bin_of(seconds)
        latency = bucket.latency
        latency[index] = latency.get(index, 0) + 1
        if ttft is not None:
            index = bin_of(ttft)
            first = bucket.ttft
            first[index] = first.get(index, 0) + 1

    def snapshot(
        self, window_seconds: int = 300, series_step_seconds: int = SERIES_STEP_SECONDS
    ) -> dict[str, Any]:
        """Every id's figures over the last ``window_seconds``, and a series of requests
        and errors per ``series_step_seconds`` over the whole history."""
        now = self._clock()
        width = self.bucket_seconds
        window = max(width, min(window_seconds, self.history_seconds))
        step = max(width, series_step_seconds // width * width)
        current = int(now) // width * width
        oldest_kept = current - (self._size - 1) * width
        since = current - (-(-window // width) - 1) * width  # buckets the window touches
        # The window's real length: whole buckets back, plus the part of this one so far.
        span = max(1.0, (current - since) + (now - current))
        steps = -(-self.history_seconds // step)
        series_end = int(now) // step * step
        series_start = series_end - (steps - 1) * step

        clients: list[dict[str, Any]] = []
        for user in list(self._clients):
            client = self._clients[user]
            buckets = client.buckets
            while buckets and buckets[0].start < oldest_kept:
                buckets.popleft()
            if not buckets and client.in_flight <= 0:
                del self._clients[user]
                continue
            requests = client_errors = server_errors = limited = prompt = completion = 0
            latency: dict[int, int] = {}
            ttft: dict[int, int] = {}
            series_requests = [0] * steps
            series_errors = [0] * steps
            for b in buckets:
                slot = (b.start - series_start) // step
                if 0 <= slot < steps:
                    series_requests[slot] += b.requests
                    series_errors[slot] += b.client_errors + b.server_errors + b.rate_limited
                if b.start < since:
                    continue
                requests += b.requests
                client_errors += b.client_errors
                server_errors += b.server_errors
                limited += b.rate_limited
                prompt += b.prompt_tokens
                completion += b.completion_tokens
                for index, count in b.latency.items():
                    latency[index] = latency.get(index, 0) + count
                for index, count in b.ttft.items():
                    ttft[index] = ttft.get(index, 0) + count
            per_minute = 60.0 / span
            clients.append(
                {
                    "user_id": user,
                    "source": client.source or None,
                    "last_seen": round(client.last_seen, 3),
                    "in_flight": max(0, client.in_flight),
                    "requests": requests,
                    "requests_per_minute": round(requests * per_minute, 2),
                    "errors_4xx": client_errors,
                    "errors_5xx": server_errors,
                    "rate_limited": limited,
                    "latency_p50_ms": _ms(percentile(latency, 0.5)),
                    "latency_p95_ms": _ms(percentile(latency, 0.95)),
                    "ttft_p50_ms": _ms(percentile(ttft, 0.5)),
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "prompt_tokens_per_minute": round(prompt * per_minute, 1),
                    "completion_tokens_per_minute": round(completion * per_minute, 1),
                    "series": {"requests": series_requests, "errors": series_errors},
                }
            )
        clients.sort(key=lambda c: (-c["requests"], c["user_id"]))
        return {
            "now": round(now, 3),
            "bucket_seconds": width,
            "history_seconds": self.history_seconds,
            "window_seconds": window,
            "series": {"start": series_start, "step_seconds": step, "points": steps},
            "clients": clients,
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)
