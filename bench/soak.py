"""Soak test: many concurrent streaming clients through the router for a while.

    python bench/soak.py                 # 200 clients, 60 s
    python bench/soak.py --quick         # CI smoke: 50 clients, 5 s

Each client opens an OpenAI-format stream through the router to the paced upstream
(bench/stream_upstream.py), reads it to ``[DONE]``, checks every event arrived, and
starts the next one, until the time is up. Everything runs on loopback and stops by
itself. Passes (exit 0) when:

- no stream failed (any status other than 200, a missing event, or a broken read);
- the router's in-flight gauge is 0 once the clients stop;
- the router's resident set after the run is within ``--rss-growth`` (default 25%)
  of what it was after the first ``--warmup`` seconds, so memory is flat.

Prints a JSON summary; exit 1 on a failed check, 2 when setup failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (  # bench/ is a folder of scripts, not a package
    HERE,
    HOST,
    Processes,
    SetupError,
    clean_env,
    free_port,
    router_argv,
    router_metrics,
    rss_kib,
    wait_ready,
)


async def one_stream(port: int, chunks: int, gap_ms: int) -> None:
    body = json.dumps({"model": "bench", "stream": True, "messages": []}).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"x-bench-chunks: {chunks}\r\nx-bench-gap-ms: {gap_ms}\r\n"
        "x-memory-user-id: soak\r\nConnection: close\r\n\r\n"
    ).encode() + body
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout=30 + chunks * gap_ms / 1000)
    finally:
        writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    events = rest.count(b"data: ")
    if events != chunks or b"data: [DONE]" not in rest:
        raise RuntimeError(f"{events} of {chunks} events")


async def drive(
    port: int, clients: int, seconds: float, chunks: int, gap_ms: int
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    done = 0
    errors: dict[str, int] = {}

    async def client() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            try:
                await one_stream(port, chunks, gap_ms)
                done += 1
            except Exception as exc:  # every failure counts, whatever it is
                key = f"{type(exc).__name__}: {exc}"[:120]
                errors[key] = errors.get(key, 0) + 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return {"streams": done, "errors": errors}


def soak(command: list[str] | None, args: argparse.Namespace) -> dict[str, Any] | None:
    """One soak run through the router build ``command`` (default: this checkout's)."""
    clients = args.clients or (50 if args.quick else 200)
    seconds = args.seconds or (5.0 if args.quick else 60.0)
    warmup = args.warmup if args.warmup is not None else min(10.0, seconds / 3)

    tmp = Path(tempfile.mkdtemp(prefix="memory-router-soak-"))
    processes = Processes(tmp)
    try:
        up_port, router_port = free_port(), free_port()
        upstream = processes.start(
            "upstream",
            [sys.executable, str(HERE / "stream_upstream.py"), "--port", str(up_port)],
            env=clean_env(),
        )
        wait_ready(upstream, f"http://{HOST}:{up_port}/health", 20)
        router = processes.start(
            "router",
            router_argv(
                router_port, f"http://{HOST}:{up_port}", log_level="WARNING", command=command
            ),
            env=clean_env(SUPERMEMORY_API_KEY="sm_soak_key_0123"),
        )
        url = f"http://{HOST}:{router_port}"
        wait_ready(router, f"{url}/health", 30)
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr)
        processes.stop_all()
        return None

    try:
        rss_start = rss_kib(router.pid)["VmRSS"]

        async def run() -> tuple[dict[str, Any], int]:
            task = asyncio.create_task(
                drive(router_port, clients, seconds, args.chunks, args.gap_ms)
            )
            await asyncio.sleep(warmup)
            warm = rss_kib(router.pid)["VmRSS"]
            return await task, warm

        result, rss_warm = asyncio.run(run())
        rss_end = rss_kib(router.pid)["VmRSS"]
        metrics = router_metrics(url)
    finally:
        processes.stop_all()

    growth = (rss_end - rss_warm) / rss_warm
    checks = {
        "no errors": not result["errors"],
        "in-flight gauge back to 0": metrics["in_flight"] == 0,
        f"rss growth <= {args.rss_growth:.0%} after warm-up": growth <= args.rss_growth,
        "streams completed": result["streams"] > 0,
    }
    return {
        "router": " ".join(command) if command else "this checkout",
        "clients": clients,
        "seconds": seconds,
        "events_per_stream": args.chunks,
        "streams": result["streams"],
        "streams_per_second": round(result["streams"] / seconds, 1),
        "errors": result["errors"],
        "in_flight_after": metrics["in_flight"],
        "requests_by_status": metrics["requests_by_status"],
        "rss_mib": {
            "start": round(rss_start / 1024, 1),
            "after_warmup": round(rss_warm / 1024, 1),
            "end": round(rss_end / 1024, 1),
            "growth_after_warmup": round(growth, 3),
        },
        "checks": checks,
        "passed": all(checks.values()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke: 50 clients, 5 s")
    parser.add_argument("--clients", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--chunks", type=int, default=20, help="events per stream")
    parser.add_argument("--gap-ms", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=None)
    parser.add_argument("--rss-growth", type=float, default=0.25)
    parser.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="also soak another router build (run after this checkout's), e.g. "
        "before=/path/to/old/.venv/bin/memory-router",
    )
    args = parser.parse_args(argv)
    builds: dict[str, list[str] | None] = {"router": None}
    for item in args.compare:
        name, sep, command = item.partition("=")
        if not sep or not command.strip():
            parser.error(f"--compare wants NAME=COMMAND, got {item!r}")
        builds[f"router-{name}"] = shlex.split(command)
    summaries: dict[str, Any] = {}
    for name, command in builds.items():
        summary = soak(command, args)
        if summary is None:
            return 2
        summaries[name] = summary
    print(json.dumps(summaries if len(summaries) > 1 else summaries["router"], indent=2))
    return 0 if all(s["passed"] for s in summaries.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
