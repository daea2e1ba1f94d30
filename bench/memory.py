#!/usr/bin/env python3
"""What each memory backend adds to a request, with a warm store.

    python bench/memory.py            full run (about 3 minutes)
    python bench/memory.py --quick    smoke run for CI (about 40 s): fails on errors, not timings

One router process per backend, each started through its CLI in front of the same static
upstream (nginx answering a canned chat completion, as in bench/run.py), measured one after
the other with wrk:

- ``supermemory-router``: today's header injection, the baseline every other row is set
  against (it does no memory work in the router);
- ``off``: identity and metrics only;
- ``local``: the SQLite store (FTS5), warm;
- ``supermemory-api``: the SDK backend against the Supermemory v5 double
  (tests/doubles/supermemory_api.py) on loopback. The double is a small Python server, so
  this row is the router's own cost plus the double's; against api.supermemory.ai add the
  network round trip and Supermemory's own search time.

The warm store: every id gets ``--memories`` stored turns (default 1,000) drawn from a small
vocabulary, some about the question the bench asks, so each request searches a populated
store and injects ``MEMORY_ROUTER_MEMORY_SEARCH_LIMIT`` (5) memories. The measured id does
not store its own turns (the config's ``memory`` section switches storage off for it), so
the store stays as warm as it started; a second id that does store every turn shows what
storage adds (its turns go to the background queue after the response).

Reported per backend: p50 and p99 at 1 connection, requests/s at 16 connections, the
router's CPU time per request, and the ``x-memory-router-memory`` outcomes seen. Results go
to bench/results/memory.{md,json}; the Markdown is printed too.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from clients import BenchError
from harness import (
    CHAT,
    HERE,
    HOST,
    REPO,
    Processes,
    SetupError,
    clean_env,
    cpu_seconds,
    fetch,
    free_port,
    log,
    require_tools,
    router_argv,
    wait_ready,
    write_rules,
)
from measure import run_wrk
from report import machine_cpu_model
from targets import start_nginx, static_upstream_conf

BACKENDS = ("supermemory-router", "off", "local", "supermemory-api")
BASELINE = "supermemory-router"
DOUBLE = "tests.doubles.supermemory_api"  # run with -m from the repository root
DOUBLE_KEY = "sm_bench_double_" + "0" * 16  # a dummy: nothing leaves loopback
QUESTION = "What did we decide about the deploy script and the staging database?"
BODY = json.dumps(
    {"model": "bench", "messages": [{"role": "user", "content": QUESTION}]},
    separators=(",", ":"),
).encode()
RETRIEVE_UA = "OpenAI/Python 1.40.0"  # default-dev: retrieves, does not store
STORE_UA = "bench-store/1.0"  # bench-store: retrieves and stores every turn
IDS = ("default-dev", "bench-store", "claude-code-cli", "pycharm-ai-chat")
MAPPINGS = """
header_patterns:
  - header: user-agent
    pattern: "^bench-store/"
    user_id: bench-store
default_user_id: default-dev
"""
MEMORY = "per_user_id: {default-dev: {store: false}}"
WORDS = [
    "deploy",
    "script",
    "staging",
    "database",
    "migration",
    "release",
    "branch",
    "review",
    "cache",
    "tokens",
    "editor",
    "tabs",
    "spaces",
    "python",
    "poetry",
    "docker",
    "compose",
    "nginx",
    "redis",
    "queue",
    "worker",
    "retry",
    "budget",
    "timeout",
    "invoice",
    "customer",
    "report",
    "dashboard",
    "alert",
    "metric",
    "latency",
    "throughput",
    "kettle",
    "garden",
    "bicycle",
]


def fact(rng: random.Random, index: int) -> tuple[str, str]:
    """A stored turn: one in ten is about the bench's question."""
    words = rng.sample(WORDS, 8)
    if index % 10 == 0:
        words[:3] = ["deploy", "script", "staging"]
    user = f"Note {index}: " + " ".join(words) + "."
    return user, f"Understood, noted {index}: {' '.join(words[:4])}."


def seed_local(path: Path, count: int) -> None:
    from router.memory.backend import Turn
    from router.memory.local import LocalBackend

    async def go() -> None:
        backend = await LocalBackend.open(path)
        try:
            for user_id in IDS:
                rng = random.Random(user_id)
                for i in range(count):
                    user, answer = fact(rng, i)
                    await backend.store(user_id, Turn(user, answer))
        finally:
            await backend.aclose()

    asyncio.run(go())


def seed_double(url: str, count: int) -> None:
    import httpx

    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {DOUBLE_KEY}"}, trust_env=False
    ) as client:
        for user_id in IDS:
            rng = random.Random(user_id)
            for i in range(count):
                user, answer = fact(rng, i)
                content = f"User: {user}\nAssistant: {answer}"
                client.post(f"/ns/{user_id}/document", json={"content": content}).raise_for_status()


def wrk(args: argparse.Namespace, url: str, conns: int, seconds: float, ua: str) -> dict[str, Any]:
    try:
        data = run_wrk(args.wrk, url, conns, seconds, body=BODY, ua=ua)
    except BenchError as exc:
        raise SetupError(str(exc)) from None
    data["errors_total"] = sum(data["errors"].values())
    return data


def outcome_of(url: str, ua: str) -> str | None:
    headers = {"Content-Type": "application/json", "User-Agent": ua}
    import urllib.request

    request = urllib.request.Request(url, data=BODY, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise SetupError(f"{url} answered {response.status}")
        value: str | None = response.headers.get("x-memory-router-memory")
        return value


def metric_sum(url: str, name: str, **labels: str) -> float:
    _, text = fetch(url.replace(CHAT, "/metrics"))
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def merge_rounds(runs: list[dict[str, Any]], cpu: float) -> dict[str, Any]:
    """Interleaved 1-connection runs of one backend: the median round's p50 and p99, and
    CPU over all of them (clock ticks are 10 ms: short runs alone would be too coarse)."""
    ordered = sorted(runs, key=lambda r: r["p50_ms"])
    middle = ordered[len(ordered) // 2]
    requests = sum(r["requests"] for r in runs)
    return {
        "rounds": runs,
        "p50_ms": middle["p50_ms"],
        "p99_ms": sorted(r["p99_ms"] for r in runs)[len(runs) // 2],
        "requests": requests,
        "errors_total": sum(r["errors_total"] for r in runs),
        "cpu_us": cpu / max(1, requests) * 1e6,
    }


def measure(
    args: argparse.Namespace, routers: dict[str, tuple[Any, str]]
) -> dict[str, dict[str, Any]]:
    """1 connection in interleaved rounds (so that drift in the machine's load hits every
    backend alike), then 16 connections, then storing every turn."""
    d = args.duration
    results: dict[str, dict[str, Any]] = {}
    for name, (_, url) in routers.items():
        results[name] = {"outcome": outcome_of(url, RETRIEVE_UA)}
        wrk(args, url, 16, max(1.0, d / 5), RETRIEVE_UA)  # warm-up, not recorded
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in routers}
    cpu: dict[str, float] = dict.fromkeys(routers, 0.0)
    for _ in range(args.rounds):
        for name, (proc, url) in routers.items():
            before = cpu_seconds(proc.pid)
            runs[name].append(wrk(args, url, 1, d / args.rounds, RETRIEVE_UA))
            cpu[name] += cpu_seconds(proc.pid) - before
    for name, (proc, url) in routers.items():
        r = results[name]
        r["c1"] = merge_rounds(runs[name], cpu[name])
        r["c16"] = wrk(args, url, 16, d, RETRIEVE_UA)
        if name in ("local", "supermemory-api"):
            before = cpu_seconds(proc.pid)
            stored = wrk(args, url, 1, d, STORE_UA)
            stored["cpu_us"] = (cpu_seconds(proc.pid) - before) / max(1, stored["requests"]) * 1e6
            r["c1_storing"] = stored
        r["retrievals"] = {
            o: metric_sum(url, "memory_router_memory_retrievals_total", outcome=o)
            for o in ("injected", "none", "skipped-timeout", "skipped-error")
        }
        r["stores_ok"] = metric_sum(
            url, "memory_router_memory_operations_total", operation="store", outcome="ok"
        )
        r["dropped"] = metric_sum(url, "memory_router_memory_store_dropped_total")
        c1 = r["c1"]
        log(
            f"{name:18s} p50 {c1['p50_ms']:.3f} ms  p99 {c1['p99_ms']:.3f} ms  "
            f"c16 {r['c16']['rps']:.0f} req/s  cpu {c1['cpu_us']:.0f} us/req  "
            f"retrievals {r['retrievals']}"
        )
    return results


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    base = results[BASELINE]["c1"]["p50_ms"]
    lines = [
        "# Memory backends: what each adds (bench/memory.py)",
        "",
        f"{meta['date']}, {meta['cpus']} CPUs ({meta['cpu_model']}), Python {meta['python']}, "
        f"{meta['mode']} run, {meta['memories']} memories per id ({len(IDS)} ids), "
        f"wrk -t1, {meta['duration_s']:g} s per run (1 connection: {meta['rounds']} "
        "interleaved rounds, the median round). The question matches about a tenth of each "
        "id's memories; 5 are injected.",
        "",
        "| backend | p50, 1 conn | added at p50 | p99, 1 conn | req/s, 16 conn | "
        "router CPU / request | x-memory-router-memory | over the budget |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in BACKENDS:
        r = results.get(name)
        if r is None:
            continue
        c1 = r["c1"]
        added = c1["p50_ms"] - base
        lines.append(
            f"| {name} | {c1['p50_ms']:.3f} ms | "
            + ("baseline" if name == BASELINE else f"{added:+.3f} ms")
            + f" | {c1['p99_ms']:.3f} ms | {r['c16']['rps']:,.0f} | {c1['cpu_us']:.0f} µs | "
            + f"{r['outcome'] or '(none)'} | {_skipped(r)} |"
        )
    lines += ["", "Storing every turn as well (a second id; the store runs after the answer):", ""]
    lines += ["| backend | p50, 1 conn | added at p50 | router CPU / request | turns stored |"]
    lines += ["| --- | --- | --- | --- | --- |"]
    for name in ("local", "supermemory-api"):
        r = results.get(name)
        if r is None or "c1_storing" not in r:
            continue
        s = r["c1_storing"]
        lines.append(
            f"| {name} | {s['p50_ms']:.3f} ms | {s['p50_ms'] - base:+.3f} ms | "
            f"{s['cpu_us']:.0f} µs | {r['stores_ok']:,.0f} (dropped {r['dropped']:,.0f}) |"
        )
    lines += [
        "",
        "supermemory-api's figures include the v5 double's own time (a Python server on the "
        "same two cores, which at 16 connections cannot keep up: searches then pass the "
        "budget and the request goes on without memories, as designed); against "
        "Supermemory's service, add the network round trip and its search time, up to the "
        "budget (MEMORY_ROUTER_MEMORY_BUDGET_SECONDS, 0.3 s).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="What each memory backend adds (bench/README.md).")
    p.add_argument("--quick", action="store_true", help="smoke run: short, fewer memories")
    p.add_argument("--duration", type=float, help="seconds per wrk run (full 10, quick 2)")
    p.add_argument("--memories", type=int, help="stored turns per id (full 1000, quick 200)")
    p.add_argument("--rounds", type=int, help="interleaved 1-connection rounds (full 5, quick 1)")
    p.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs)")
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    p.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    args = p.parse_args(argv)
    args.duration = args.duration or (2.0 if args.quick else 10.0)
    args.memories = args.memories or (200 if args.quick else 1000)
    args.rounds = max(1, args.rounds or (1 if args.quick else 5))
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="memory-router-membench-"))
    tmp.chmod(0o755)
    processes = Processes(tmp)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    status = 0
    try:
        require_tools(args.nginx, args.wrk)
        up_port, double_port = free_port(), free_port()
        (tmp / "nginx-upstream").mkdir()
        up = start_nginx(
            processes,
            args.nginx,
            "nginx-upstream",
            static_upstream_conf(tmp / "nginx-upstream", up_port),
        )
        double = processes.start(
            "v5-double",
            [sys.executable, "-m", DOUBLE, "--port", str(double_port)],
            env=clean_env(SUPERMEMORY_DOUBLE_API_KEY=DOUBLE_KEY, PYTHONPATH=str(REPO)),
        )
        wait_ready(up, f"http://{HOST}:{up_port}/health", 15)
        double_url = f"http://{HOST}:{double_port}"
        wait_ready(double, f"{double_url}/_double/health", 30)
        log(f"seeding {args.memories} memories for each of {len(IDS)} ids")
        store = tmp / "local" / "memories.sqlite3"
        store.parent.mkdir()
        seed_local(store, args.memories)
        seed_double(double_url, args.memories)
        config = write_rules(tmp / "rules.yaml", MAPPINGS, memory=MEMORY)
        routers: dict[str, tuple[Any, str]] = {}
        for name in BACKENDS:
            port = free_port()
            env = clean_env(MEMORY_ROUTER_MEMORY_BACKEND=name)
            if name in ("supermemory-router", "supermemory-api", "off"):
                env["SUPERMEMORY_API_KEY"] = DOUBLE_KEY
            if name == "supermemory-api":
                env["MEMORY_ROUTER_MEMORY_API_URL"] = double_url
            if name == "local":
                env["MEMORY_ROUTER_MEMORY_LOCAL_PATH"] = str(store)
            argv_ = router_argv(
                port, f"http://{HOST}:{up_port}", config=config, log_level="WARNING"
            )
            routers[name] = (
                processes.start(f"router-{name}", argv_, env=env),
                f"http://{HOST}:{port}",
            )
        for name, (proc, url) in routers.items():
            wait_ready(proc, f"{url}/health", 30)
            seen = outcome_of(url + CHAT, RETRIEVE_UA)
            expected = "injected" if name in ("local", "supermemory-api") else None
            if seen != expected:
                raise SetupError(f"router {name}: x-memory-router-memory {seen!r}, not {expected}")
        log("sanity checks passed: memory backends inject, the others add no memory header")
        results = measure(args, {name: (proc, url + CHAT) for name, (proc, url) in routers.items()})
        errors = [
            f"{name}: {r[k]['errors_total']} wrk errors"
            for name, r in results.items()
            for k in ("c1", "c16", "c1_storing")
            if k in r and r[k]["errors_total"]
        ]
        for name, (proc, _) in routers.items():
            if not proc.alive():
                errors.append(f"router {name} died:\n{proc.tail()}")
        meta = {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "cpu_model": machine_cpu_model(),
            "python": platform.python_version(),
            "mode": "quick" if args.quick else "full",
            "memories": args.memories,
            "duration_s": args.duration,
            "rounds": args.rounds,
        }
        md = markdown(results, meta)
        if errors:
            md += "\n**Errors:**\n\n" + "\n".join(f"- {e}" for e in errors) + "\n"
            status = 1
        (args.out / "memory.md").write_text(md)
        (args.out / "memory.json").write_text(
            json.dumps({"meta": meta, "results": results, "errors": errors}, indent=2) + "\n"
        )
        print(md)
        return status
    except SetupError as exc:
        log(f"setup failed: {exc}")
        status = 2
        return status
    except KeyboardInterrupt:
        status = 130
        return status
    finally:
        processes.stop_all()
        if args.keep_tmp or status:
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _skipped(result: dict[str, Any]) -> str:
    """Retrievals cut by the budget or failed, of all made (every run together)."""
    seen = result.get("retrievals", {})
    total = sum(seen.values())
    if not total:
        return "n/a"
    cut = seen.get("skipped-timeout", 0) + seen.get("skipped-error", 0)
    return f"{cut:,.0f} of {total:,.0f}"


if __name__ == "__main__":
    sys.exit(main())
