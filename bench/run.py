#!/usr/bin/env python3
"""memory-router benchmark: what the router costs, next to nginx and LiteLLM.

    python bench/run.py            full run (about 3 minutes; LiteLLM included when installed)
    python bench/run.py --quick    smoke run for CI (under a minute, no LiteLLM, no profile)

Everything runs on loopback, in processes this script starts and stops:

- ``nginx`` (static upstream): a canned chat completion for ``POST /v1/chat/completions``
  and a canned 100-event SSE body for ``POST /v1/sse``;
- ``bench/stream_upstream.py``: a paced SSE upstream (100 events, 10 ms apart);
- ``nginx`` (reverse proxy): keep-alive upstreams, ``proxy_buffering off``, in front of both;
- ``memory-router`` twice, through its CLI: one in front of the static upstream (wrk and the
  profile), one in front of the stream upstream (streaming and memory);
- LiteLLM (``$LITELLM_BIN`` or ``/opt/litellm-venv/bin/litellm``) in front of both, when
  installed and not ``--quick``.

Load comes from ``wrk`` (``bench/post.lua``) and from raw-socket clients (``bench/clients.py``).
Results go to ``bench/results/latest.{md,json}``; the Markdown is printed too.

Exit status: 0 when every measurement was made without errors (slow results are reported,
not failed; ``--strict`` fails them too: status 3); 1 when a measurement hit errors
(socket errors, non-2xx answers, broken or missing streams); 2 when the bench could not
set up (missing tool, a server that did not start).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from clients import BenchError
from harness import HERE, HOST, Processes, SetupError, log, router_metrics
from measure import Bench
from report import collect_meta, evaluate, markdown
from targets import find_litellm, setup

# Paths: direct, nginx, router (and router-NAME for each --compare), litellm.
EXIT_OK, EXIT_ERRORS, EXIT_SETUP, EXIT_TARGETS = 0, 1, 2, 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Benchmark memory-router against direct, nginx and LiteLLM "
        "(see bench/README.md)."
    )
    p.add_argument("--quick", action="store_true", help="CI smoke run: short, no LiteLLM/profile")
    p.add_argument("--duration", type=float, help="seconds per wrk run (full 10, quick 2)")
    p.add_argument(
        "--streams", type=int, help="concurrent streams held open (full 1000, quick 200)"
    )
    p.add_argument(
        "--ttfc-samples", type=int, help="first-chunk samples per path (full 200, quick 30)"
    )
    p.add_argument(
        "--pacing-streams", type=int, help="100-event streams per path (full 5, quick 1)"
    )
    p.add_argument("--chunks", type=int, default=100, help="events per paced stream (100)")
    p.add_argument("--gap-ms", type=float, default=10.0, help="gap between paced events (10 ms)")
    p.add_argument("--skip-litellm", action="store_true", help="do not run LiteLLM")
    p.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    p.add_argument("--profile", action="store_true", help="profile even with --quick")
    p.add_argument("--profile-seconds", type=float, default=10.0)
    p.add_argument(
        "--wrk-threads", type=int, default=1, help="wrk threads (1: the box has 2 cores)"
    )
    p.add_argument("--strict", action="store_true", help="also exit 3 when a target is missed")
    p.add_argument(
        "--router-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the router processes, e.g. MEMORY_ROUTER_MAX_CONNECTIONS=2048",
    )
    p.add_argument(
        "--router-defaults",
        action="store_true",
        help="run the stream router with its shipped pool limit even when it is below --streams",
    )
    p.add_argument(
        "--open-concurrency",
        type=int,
        default=50,
        help="streams being opened at once in the memory test (50; --streams for one burst)",
    )
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="also measure another router build, as target router-NAME: COMMAND is run with "
        "the router's CLI arguments, e.g. before=/path/to/old/.venv/bin/memory-router",
    )
    p.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    p.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "duration": 2.0 if quick else 10.0,
        "streams": 200 if quick else 1000,
        "ttfc_samples": 30 if quick else 200,
        "pacing_streams": 1 if quick else 5,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.ttfc_samples_litellm = min(args.ttfc_samples, 50)
    compare: dict[str, list[str]] = {}
    for item in args.compare:
        name, sep, command = item.partition("=")
        if not sep or not name.isidentifier() or not command.strip():
            p.error(f"--compare wants NAME=COMMAND, got {item!r}")
        compare[name] = shlex.split(command)
    args.compare = compare
    if quick and not args.profile:
        args.no_profile = True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="memory-router-bench-"))
    tmp.chmod(0o755)  # nginx workers (user nobody when started as root) read sse.txt here
    processes = Processes(tmp)
    b = Bench(args=args, tmp=tmp, processes=processes)
    started = time.monotonic()

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    status = EXIT_OK
    try:
        meta = collect_meta(args, find_litellm())
        try:
            setup(b)
        except SetupError as exc:
            log(f"setup failed: {exc}")
            status = EXIT_SETUP
            return status
        log(f"mode {meta['mode']}; wrk -t{args.wrk_threads}; {args.duration:g} s per wrk run")
        phases = [("wrk", b.run_wrk_suite), ("streams", b.run_streams), ("memory", b.run_memory)]
        if not args.no_profile:
            phases.append(("profile", b.run_profile))
        for name, phase in phases:
            try:
                phase()
            except (BenchError, OSError, subprocess.SubprocessError) as exc:
                b.error(f"{name} phase failed: {type(exc).__name__}: {exc}")
        for target, router in b.routers.items():
            for kind, proc, port in (
                ("static", router.static, router.static_port),
                ("stream", router.stream, router.stream_port),
            ):
                name = f"{target}-{kind}"
                if not proc.alive():
                    b.error(f"{name} died:\n{proc.tail()}")
                    continue
                m = router_metrics(f"http://{HOST}:{port}")
                bad = {s: n for s, n in m["requests_by_status"].items() if not s.startswith("2")}
                # wrk stops a run by closing its connections, some mid-request: the router
                # counts those 499 (client closed). At most one per connection per run.
                cut = b.wrk_connections.get(target, 0) if kind == "static" else 0
                if 0 < bad.get("499", 0) <= cut:
                    m["client_closed_at_wrk_stop"] = bad.pop("499")
                b.results.setdefault("router_metrics", {})[name] = m
                if bad:
                    b.error(f"{name} counted non-2xx requests: {bad}")
        targets = evaluate(b)
        meta["elapsed_s"] = round(time.monotonic() - started, 1)
        md = markdown(b, meta, targets)
        md += f"\nRun took {meta['elapsed_s']:.0f} s. Raw data: `bench/results/latest.json`.\n"
        (args.out / "latest.md").write_text(md)
        (args.out / "latest.json").write_text(
            json.dumps(
                {
                    "meta": meta,
                    "targets": targets,
                    "results": b.results,
                    "errors": b.errors,
                    "notes": b.notes,
                },
                indent=2,
            )
            + "\n"
        )
        print(md)
        if b.errors:
            log(f"{len(b.errors)} error(s); exit {EXIT_ERRORS}")
            status = EXIT_ERRORS
        elif args.strict and not all(t.get("met") for t in targets.values()):
            status = EXIT_TARGETS
        return status
    except KeyboardInterrupt:
        log("interrupted")
        status = 130
        return status
    finally:
        processes.stop_all()
        if args.keep_tmp or status != EXIT_OK:
            log(f"logs and configs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
