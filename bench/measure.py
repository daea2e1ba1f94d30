"""The measurements: the sanity check of every path first, then wrk runs, streams (first
chunk, pacing), held streams and memory, and the profile. ``Bench`` holds one run's
targets, results, errors and notes."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clients import BenchError, StreamConn, start_held_streams, summarize
from harness import (
    BODY,
    CHAT,
    HERE,
    HOST,
    LITELLM_STREAM_BODY,
    REPO,
    STREAM_BODY,
    SUPERMEMORY_KEY,
    UA,
    Process,
    Processes,
    SetupError,
    cpu_seconds,
    fetch,
    fmt,
    log,
    router_metrics,
    rss_kib,
    split_hostport,
)


def run_wrk(
    wrk: str,
    url: str,
    conns: int,
    seconds: float,
    *,
    body: bytes,
    ua: str,
    threads: int = 1,
    auth: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """One wrk run with ``bench/post.lua``: its JSON results, plus requests/s and p50/p99
    in ms. BenchError when wrk fails."""
    env = dict(os.environ, BENCH_BODY=body.decode(), BENCH_UA=ua)
    if auth:
        env["BENCH_AUTH"] = auth
    argv = [
        wrk,
        f"-t{min(threads, conns)}",
        f"-c{conns}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "post.lua"),
        url,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise BenchError(
            f"wrk failed for {name or url}: {out.stderr.strip()} {out.stdout[-500:]}"
        )
    data: dict[str, Any] = json.loads(line[len("BENCH_JSON ") :])
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    lat = data["latency_us"]
    data["p50_ms"], data["p99_ms"] = lat["p50"] / 1000, lat["p99"] / 1000
    return data


@dataclass
class RouterProcs:
    """One router build under test: a process in front of each upstream."""

    command: list[str]
    static: Process
    stream: Process
    static_port: int
    stream_port: int


@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path
    processes: Processes
    urls: dict[str, str] = field(default_factory=dict)  # static path targets
    stream_urls: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)
    litellm_key: str = ""
    # Per router target ("router", and "router-NAME" for each --compare): its two processes.
    routers: dict[str, RouterProcs] = field(default_factory=dict)
    stream_port: int = 0  # the paced Python upstream
    wrk_connections: dict[str, int] = field(default_factory=dict)  # per target, all runs
    pool: dict[str, Any] = field(default_factory=dict)  # the stream routers' pool limit

    @property
    def targets(self) -> list[str]:
        """Every path measured, in report order."""
        return ["direct", "nginx", *self.routers, "litellm"]

    def error(self, msg: str) -> None:
        log("ERROR: " + msg)
        self.errors.append(msg)

    def auth(self, target: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.litellm_key}"} if target == "litellm" else {}

    # wrk ---------------------------------------------------------------------------------------

    def wrk(
        self, target: str, url: str, conns: int, seconds: float, body: bytes = BODY
    ) -> dict[str, Any]:
        self.wrk_connections[target] = self.wrk_connections.get(target, 0) + conns
        router = self.routers.get(target)
        cpu_before = cpu_seconds(router.static.pid) if router else 0.0
        data = run_wrk(
            self.args.wrk,
            url,
            conns,
            seconds,
            body=body,
            ua=UA,
            threads=self.args.wrk_threads,
            auth=self.litellm_key if target == "litellm" else None,
            name=target,
        )
        if router is not None and data["requests"]:
            # The router's own CPU time per request: steadier than req/s on a shared machine.
            data["cpu_us"] = (cpu_seconds(router.static.pid) - cpu_before) / data["requests"] * 1e6
        errs = {k: v for k, v in data["errors"].items() if v}
        if errs or data["requests"] == 0:
            self.error(f"wrk {target} c={conns}: errors {errs}, {data['requests']} requests")
        log(
            f"wrk {target:8s} c={conns:<3d} {data['rps']:9.0f} req/s  "
            f"p50 {data['p50_ms']:.3f} ms  p99 {data['p99_ms']:.3f} ms  errors {errs or 0}"
        )
        return data

    def run_wrk_suite(self) -> None:
        d = self.args.duration
        latency: dict[str, Any] = {}
        for target, url in self.urls.items():
            # LiteLLM manages ~60 req/s here; its runs are still d seconds long.
            self.wrk(target, url, 16, max(1.0, d / 5))  # warm-up (pools, caches), not recorded
            latency[target] = {
                "c1": self.wrk(target, url, 1, d),
                "c16": self.wrk(target, url, 16, d),
            }
        self.results["wrk"] = latency
        sse: dict[str, Any] = {}
        for target in ("direct", "nginx", *self.routers):
            url = self.urls[target].replace(CHAT, "/v1/sse")
            sse[target] = self.wrk(target, url, 16, d)
        self.results["wrk_sse"] = sse

    # streaming ---------------------------------------------------------------------------------

    def run_streams(self) -> None:
        a = self.args
        conns = {t: StreamConn(*split_hostport(u)) for t, u in self.stream_urls.items()}
        hdrs = {"User-Agent": UA}

        def body_for(target: str) -> bytes:
            return LITELLM_STREAM_BODY if target == "litellm" else STREAM_BODY

        ttfc: dict[str, list[float]] = {t: [] for t in conns}
        short = {**hdrs, "x-bench-chunks": "2", "x-bench-gap-ms": "10"}
        for _ in range(2):  # warm-up
            for t, c in conns.items():
                c.stream(CHAT, body_for(t), {**short, **self.auth(t)})
        for i in range(a.ttfc_samples):
            for t, c in conns.items():
                if t == "litellm" and i >= a.ttfc_samples_litellm:
                    continue
                r = self._checked_stream(t, c, body_for(t), {**short, **self.auth(t)}, 2)
                if r is not None:
                    ttfc[t].append(r.ttfc)
        pacing: dict[str, dict[str, Any]] = {}
        full = {**hdrs, "x-bench-chunks": str(a.chunks), "x-bench-gap-ms": f"{a.gap_ms:g}"}
        for t, c in conns.items():
            gaps: list[float] = []
            per_read_max = 0
            batched = 0
            events = []
            first: list[float] = []
            for _ in range(a.pacing_streams):
                r = self._checked_stream(t, c, body_for(t), {**full, **self.auth(t)}, a.chunks)
                if r is None:
                    continue
                gaps += r.gaps
                per_read_max = max(per_read_max, max(r.events_per_read, default=0))
                batched += r.batched_reads
                events.append(r.events)
                first.append(r.ttfc)
            pacing[t] = {
                "streams": len(events),
                "events_per_stream": sorted(set(events)),
                "max_events_per_read": per_read_max,
                "batched_reads": batched,
                "gap_ms": summarize(gaps),
                "first_chunk_ms": summarize(first),
            }
            g = pacing[t]["gap_ms"]
            log(
                f"pacing {t:8s} {len(events)} streams, events {sorted(set(events))}, "
                f"max/read {per_read_max}, batched {batched}, "
                f"gap p50 {fmt(g['p50'])} p99 {fmt(g['p99'])} ms"
            )
        for c in conns.values():
            c.close()
        self.results["ttfc"] = {t: summarize(v) for t, v in ttfc.items()}
        for t, s in self.results["ttfc"].items():
            log(f"ttfc   {t:8s} n={s['n']} p50 {fmt(s['p50'])} ms p99 {fmt(s['p99'])} ms")
        self.results["pacing"] = pacing

    def _checked_stream(
        self, target: str, conn: StreamConn, body: bytes, headers: dict[str, str], expect: int
    ) -> Any:
        try:
            r = conn.stream(CHAT, body, headers)
        except (OSError, BenchError) as exc:
            self.error(f"stream via {target}: {type(exc).__name__}: {exc}")
            return None
        # LiteLLM re-frames the stream and may add events; the others pass it through 1:1.
        if r.status != 200 or not r.done_seen or (target != "litellm" and r.events != expect):
            self.error(
                f"stream via {target}: status {r.status}, {r.events} events "
                f"(expected {expect}), [DONE] seen: {r.done_seen}"
            )
            return None
        return r

    # memory ------------------------------------------------------------------------------------

    def run_memory(self) -> None:
        self.results["memory"] = {}
        for name in self.routers:
            self.run_memory_of(name)

    def run_memory_of(self, name: str) -> None:
        router = self.routers[name]
        pid = router.stream.pid
        url = f"http://{HOST}:{router.stream_port}"
        n = self.args.streams
        before = rss_kib(pid)
        log(f"memory: {name} pid {pid} idle VmRSS {before['VmRSS'] / 1024:.1f} MiB; opening {n}")
        host, port = split_hostport(self.stream_urls[name])
        headers = {"User-Agent": UA, "x-bench-hold": "1", "x-bench-chunks": "3"}
        result: dict[str, Any] = {"streams": n, "rss_idle_mib": before["VmRSS"] / 1024}

        result["pool"] = self.pool
        if name == "router":
            self._note_pool(n)

        async def go() -> None:
            t0 = time.monotonic()
            state, tasks = start_held_streams(
                host,
                port,
                CHAT,
                STREAM_BODY,
                headers,
                n,
                open_timeout=30,
                opening_concurrency=self.args.open_concurrency,
            )
            try:
                await asyncio.wait_for(state.all_resolved.wait(), 120)
            except TimeoutError:
                self.error(f"memory {name}: only {state.resolved} of {n} streams resolved in 120 s")
            result["open_seconds"] = time.monotonic() - t0
            await asyncio.sleep(1.0)
            held = rss_kib(pid)
            m = router_metrics(url)
            _, stats = fetch(f"http://{HOST}:{self.stream_port}/_stats")
            result.update(
                opened=state.opened,
                rss_open_mib=held["VmRSS"] / 1024,
                router_in_flight_open=m["in_flight"],
                upstream_while_open=json.loads(stats),
            )
            log(
                f"memory {name}: {state.opened}/{n} open after {result['open_seconds']:.1f} s, "
                f"VmRSS {held['VmRSS'] / 1024:.1f} MiB, router in-flight {m['in_flight']:.0f}, "
                f"errors so far {state.errors or 0}"
            )
            t1 = time.monotonic()
            fetch(f"http://{HOST}:{self.stream_port}/_release", "POST", b"")
            _, pending = await asyncio.wait(tasks, timeout=60)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            result["finish_seconds"] = time.monotonic() - t1
            result["finished"] = state.finished
            result["errors"] = dict(state.errors)
            result["error_count"] = state.error_count

        asyncio.run(go())
        samples: list[tuple[float, float]] = []
        for delay in (0.5, 2.0, 5.0) if not self.args.quick else (0.5, 2.0):
            time.sleep(delay - (samples[-1][0] if samples else 0))
            samples.append((delay, rss_kib(pid)["VmRSS"] / 1024))
        after = router_metrics(url)
        hwm = rss_kib(pid)["VmHWM"] / 1024
        result.update(
            rss_after_mib=samples[-1][1],
            rss_after_series_mib=[[d, r] for d, r in samples],
            rss_peak_mib=hwm,
            router_in_flight_after=after["in_flight"],
            router_requests_by_status=after["requests_by_status"],
        )
        result["rss_fell"] = result["rss_after_mib"] < result["rss_open_mib"]
        if result["error_count"]:
            self.error(f"memory {name}: {result['error_count']} stream errors: {result['errors']}")
        if after["in_flight"]:
            self.error(f"memory {name}: in-flight gauge {after['in_flight']} after all closed")
        log(
            f"memory {name}: finished {result['finished']}/{n}, errors {result['errors'] or 0}, "
            f"VmRSS after {result['rss_after_mib']:.1f} MiB (peak {hwm:.1f} MiB)"
        )
        self.results["memory"][name] = result

    def _note_pool(self, n: int) -> None:
        if self.pool.get("raised_to"):
            self.notes.append(
                f"The router's upstream pool allows {self.pool['configured']} connections by "
                f"default (MEMORY_ROUTER_MAX_CONNECTIONS), fewer than the {n} streams: streams "
                "beyond it wait for a slot and are answered 503 after the pool timeout (10 s). "
                f"The stream router ran with MEMORY_ROUTER_MAX_CONNECTIONS="
                f"{self.pool['raised_to']} so that memory could be measured; "
                "`--router-defaults` runs it as shipped."
            )
        elif self.pool.get("configured") is not None and self.pool["configured"] < n:
            self.notes.append(
                f"The router's upstream pool allows {self.pool['configured']} connections "
                f"(MEMORY_ROUTER_MAX_CONNECTIONS) for {n} streams: the rest wait for a slot and "
                "are answered 503 after the pool timeout (MEMORY_ROUTER_POOL_TIMEOUT, 10 s)."
            )

    # profile -----------------------------------------------------------------------------------

    def run_profile(self) -> None:
        pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which(
            "py-spy"
        )
        if not pyspy:
            self.notes.append("profile skipped: py-spy is not installed (pip install py-spy)")
            return
        out_dir = self.args.out
        d = self.args.profile_seconds
        pid = str(self.routers["router"].static.pid)
        prof: dict[str, Any] = {"seconds": d, "rate_hz": 200, "connections": 16}
        for kind, name in (("raw", "profile.txt"), ("flamegraph", "profile.svg")):
            path = out_dir / name
            spy = subprocess.Popen(
                [
                    pyspy,
                    "record",
                    "--pid",
                    pid,
                    "--rate",
                    "200",
                    "--duration",
                    f"{d:g}",
                    "--format",
                    kind,
                    "--nolineno",
                    "--threads",
                    "--output",
                    str(path),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            time.sleep(1.0)  # let py-spy attach
            run = self.wrk("router", self.urls["router"], 16, d)
            try:
                spy_out = spy.communicate(timeout=d + 60)[0].decode(errors="replace")
            except subprocess.TimeoutExpired:
                spy.kill()
                spy_out = spy.communicate()[0].decode(errors="replace")
            if spy.returncode != 0 or not path.exists():
                self.notes.append(f"py-spy {kind} failed: {spy_out.strip()[-300:]}")
                continue
            prof[f"{kind}_file"] = str(
                path.relative_to(REPO) if path.is_relative_to(REPO) else path
            )
            prof[f"rps_while_profiling_{kind}"] = run["rps"]
        raw = out_dir / "profile.txt"
        if raw.exists():
            prof.update(summarize_profile(raw.read_text()))
        self.results["profile"] = prof


def _package(frame: str) -> str:
    """``func (httpx/_client.py)`` -> ``httpx``; ``run (threading.py)`` -> ``threading``."""
    m = re.search(r"\(([^()]*)\)$", frame)
    where = m.group(1) if m else frame
    return where.split("/", 1)[0].removesuffix(".py")


def summarize_profile(text: str, top: int = 15) -> dict[str, Any]:
    """Self and total sample shares per function, from py-spy's collapsed ("raw") stacks.

    Shares are of the main thread's samples (the event loop: all request handling).
    Other threads are counted separately: py-spy can sample a thread blocked in C
    code (anyio's idle worker waiting on its queue) as active.
    """
    self_n: dict[str, int] = {}
    total_n: dict[str, int] = {}
    pkg_n: dict[str, int] = {}
    others: dict[str, int] = {}
    samples = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        if frames and frames[0].startswith("thread "):
            thread = frames.pop(0).split(":", 1)[-1].strip()
            if thread != "MainThread":
                others[thread] = others.get(thread, 0) + n
                continue
        if not frames:
            continue
        samples += n
        self_n[frames[-1]] = self_n.get(frames[-1], 0) + n
        pkg = _package(frames[-1])
        pkg_n[pkg] = pkg_n.get(pkg, 0) + n
        for f in set(frames):
            total_n[f] = total_n.get(f, 0) + n

    def rows(d: dict[str, int], limit: int = top) -> list[dict[str, Any]]:
        best = sorted(d.items(), key=lambda kv: -kv[1])[:limit]
        return [
            {"function": f, "samples": c, "pct": 100.0 * c / samples if samples else 0.0}
            for f, c in best
        ]

    return {
        "samples": samples,
        "top_self": rows(self_n),
        "top_total": rows(total_n, top + 10),
        "self_by_package": rows(pkg_n, 12),
        "other_thread_samples": others,
    }


def sanity(b: Bench) -> None:
    """One request per path, checked, before any measurement.

    A broken LiteLLM is recorded as an error and left out; anything else stops the bench.
    """
    for target in list(b.urls):
        try:
            _sanity_one(b, target)
        except (SetupError, BenchError, OSError) as exc:
            if target != "litellm":
                raise SetupError(str(exc)) from None
            b.error(f"LiteLLM left out: {exc}")
            b.urls.pop("litellm", None)
            b.stream_urls.pop("litellm", None)
    log("sanity checks passed: every path answers; the router injects its headers")


def _sanity_one(b: Bench, target: str) -> None:
    headers = {"Content-Type": "application/json", "User-Agent": UA, **b.auth(target)}
    status, answer = fetch(b.urls[target], "POST", BODY, headers)
    if status != 200 or b"chat.completion" not in answer:
        raise SetupError(f"sanity: POST via {target} answered {status}: {answer[:300]!r}")
    body = LITELLM_STREAM_BODY if target == "litellm" else STREAM_BODY
    conn = StreamConn(*split_hostport(b.stream_urls[target]))
    marker = secrets.token_hex(4)
    probe = {"User-Agent": UA, "x-bench-chunks": "3", "x-bench-probe": marker, **b.auth(target)}
    try:
        r = conn.stream(CHAT, body, probe)
    finally:
        conn.close()
    if r.status != 200 or not r.done_seen:
        raise SetupError(f"sanity: stream via {target}: status {r.status}, {r.events} events")
    _, last = fetch(f"http://{HOST}:{b.stream_port}/_last")
    seen = json.loads(last)
    if seen.get("x-bench-probe") != marker:
        # LiteLLM forwards x-* headers only with forward_client_headers_to_llm_api.
        raise SetupError(f"sanity: the stream via {target} did not carry x-bench-* headers")
    injected = (seen.get("x-sm-user-id"), seen.get("x-supermemory-api-key"))
    if target.startswith("router") and injected != ("default-dev", SUPERMEMORY_KEY):
        raise SetupError(f"sanity: router did not inject memory headers: {seen}")
