"""What recording one request in the dashboard's history costs (router/stats.py).

    .venv/bin/python bench/record_cost.py [--requests N]

Times ``TrafficStats.started`` plus ``finished``, as the proxy calls them once per
request, over N requests spread across ten ids, and prints microseconds per request.
Compare it with the router's CPU time per request in bench/run.py's report.
"""

from __future__ import annotations

import argparse
import time

from harness import REPO  # noqa: F401  (puts the repository on sys.path)

from router.stats import TrafficStats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500_000)
    args = parser.parse_args()
    stats = TrafficStats()
    ids = [f"client-{i}" for i in range(10)]
    start = time.perf_counter()
    for i in range(args.requests):
        user = ids[i % 10]
        stats.started(user, "pattern")
        stats.finished(user, 200, 0.0123 + (i % 7) * 0.01, 0.004, 120, 30, was_started=True)
    elapsed = time.perf_counter() - start
    print(f"{elapsed / args.requests * 1e6:.2f} µs per request ({args.requests} requests)")


if __name__ == "__main__":
    main()
