"""``memory-router top``: the dashboard's table in a terminal, from the stats endpoint.

For a server with no browser. It asks a running router's ``/memory-routing/stats``
every ``interval`` seconds and redraws one plain-text table (no curses, no extra
package): on a terminal it clears the screen first, otherwise (piped to a file or
another program) it prints each table after the last, separated by a blank line.
``--once`` prints one table and exits, for scripts.

``format_table`` is a pure function of the stats JSON, tested on its own.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import httpx

CLEAR = "\x1b[H\x1b[2J"

# (heading, key in a client's row, how to show the value)
Column = tuple[str, str, Callable[[Any], str]]


def _rate(value: Any) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _ms(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.1f}s" if value >= 1000 else f"{value:.0f}ms"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s ago"
    if s < 3600:
        return f"{s // 60}m ago"
    return f"{s // 3600}h ago"


COLUMNS: tuple[Column, ...] = (
    ("CLIENT", "user_id", str),
    ("SOURCE", "source", lambda v: v or "-"),
    ("REQS", "requests", str),
    ("REQ/MIN", "requests_per_minute", _rate),
    ("4XX", "errors_4xx", str),
    ("5XX", "errors_5xx", str),
    ("429", "rate_limited", str),
    ("P50", "latency_p50_ms", _ms),
    ("P95", "latency_p95_ms", _ms),
    ("TTFT50", "ttft_p50_ms", _ms),
    ("PROMPT/MIN", "prompt_tokens_per_minute", _rate),
    ("COMPL/MIN", "completion_tokens_per_minute", _rate),
    ("INFLIGHT", "in_flight", str),
    ("LAST SEEN", "seen_ago", _age),  # format_table adds seen_ago
)


def format_table(stats: dict[str, Any], url: str = "") -> str:
    """The header line and one row per client, as the dashboard shows them."""
    router = stats.get("router", {})
    config = router.get("config", {})
    litellm = (router.get("litellm") or {}).get("status") or "unknown"
    reload = config.get("last_reload")
    reloaded = "none since start"
    if reload:
        when = time.strftime("%H:%M:%S", time.localtime(reload["at"]))
        reloaded = f"{when} by {reload['trigger']}" + ("" if reload["ok"] else " (failed)")
    key = "configured" if router.get("supermemory_key_configured") else "not configured"
    now = stats["now"]
    lines = [
        f"memory-router {url}  window {stats['window_seconds'] // 60} min  "
        f"at {time.strftime('%H:%M:%S', time.localtime(now))}",
        f"config {str(config.get('sha256', '-'))[:12]}  last reload {reloaded}  "
        f"LiteLLM {'ready' if litellm == 'ok' else litellm}  Supermemory key {key}  "
        f"memory {router.get('memory_backend', '-')}",
        "",
    ]
    rows = [[heading for heading, _, _ in COLUMNS]]
    for client in stats["clients"]:
        seen = client["last_seen"]
        values = {**client, "seen_ago": now - seen if seen else None}
        rows.append([show(values[k]) for _, k, show in COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        left = [row[i].ljust(widths[i]) for i in range(2)]
        right = [row[i].rjust(widths[i]) for i in range(2, len(COLUMNS))]
        lines.append("  ".join(left + right).rstrip())
    if not stats["clients"]:
        lines.append("(no traffic in the last hour)")
    return "\n".join(lines) + "\n"


class StatsError(Exception):
    """The stats endpoint could not be read; the message says why, never a token."""


def fetch(client: httpx.Client, url: str, window: int) -> dict[str, Any]:
    try:
        response = client.get(f"{url}/memory-routing/stats", params={"window": window})
    except httpx.HTTPError as exc:
        raise StatsError(f"cannot reach {url}: {type(exc).__name__}") from None
    if response.status_code == 403:
        raise StatsError(
            f"{url} refused the stats: set MEMORY_ROUTER_CONTROL_TOKEN (or --token), "
            "or run this on the router's own machine"
        )
    if response.status_code != 200:
        raise StatsError(f"{url} answered HTTP {response.status_code}")
    try:
        body: dict[str, Any] = response.json()
        body["clients"], body["now"], body["window_seconds"]
    except (ValueError, KeyError, TypeError):
        raise StatsError(f"{url} did not answer with memory-router stats") from None
    return body


def run(
    url: str,
    *,
    token: str | None,
    window: int,
    interval: float,
    once: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Print the table once, or until interrupted (Ctrl-C ends it with status 0)."""
    url = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # trust_env=False: a proxy set for the outside world must not carry loopback calls.
    with httpx.Client(headers=headers, timeout=10.0, trust_env=False) as client:
        try:
            return _loop(client, url, window, interval, once, out, err)
        except KeyboardInterrupt:
            return 0


def _loop(
    client: httpx.Client,
    url: str,
    window: int,
    interval: float,
    once: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    clear = out.isatty() and os.environ.get("TERM") != "dumb"
    first = True
    while True:
        try:
            table = format_table(fetch(client, url, window), url)
        except StatsError as exc:
            if once:
                print(f"memory-router top: {exc}", file=err)
                return 1
            table = f"memory-router top: {exc}; retrying every {interval:g}s\n"
        if clear:
            out.write(CLEAR)
        elif not first:
            out.write("\n")
        out.write(table)
        out.flush()
        first = False
        if once:
            return 0
        time.sleep(interval)
