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
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from clients import (  # noqa: E402
    BenchError,
    StreamConn,
    start_held_streams,
    summarize,
)
from stream_upstream import COMPLETION, sse_events  # noqa: E402

HOST = "127.0.0.1"
CHAT = "/v1/chat/completions"
UA = "OpenAI/Python 1.40.0"  # matches no rule: walks every pattern, then the default id
BODY = b'{"model":"bench","messages":[{"role":"user","content":"Say hello."}]}'
STREAM_BODY = b'{"model":"bench","stream":true,"messages":[{"role":"user","content":"Say hello."}]}'
LITELLM_STREAM_BODY = STREAM_BODY.replace(b'"bench"', b'"bench-stream"')
SUPERMEMORY_KEY = "sm_bench_" + "0" * 24  # a dummy: nothing leaves loopback
# Paths: direct, nginx, router (and router-NAME for each --compare), litellm.
RPS_TIMES_LITELLM = 25  # the router's requests/s at 16 connections, in LiteLLM's

EXIT_OK, EXIT_ERRORS, EXIT_SETUP, EXIT_TARGETS = 0, 1, 2, 3


class SetupError(Exception):
    """The bench could not be set up (exit status 2)."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


class Procs:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[Proc] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Proc:
        log_path = self.tmp / f"{name}.log"
        with log_path.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(cwd or self.tmp),
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(proc: Proc, url: str, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not proc.alive():
            raise SetupError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
        try:
            status, _ = http("GET", url, timeout=2)
            if status == 200:
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.1)
    raise SetupError(f"{proc.name} not ready at {url} after {timeout:.0f}s:\n{proc.tail()}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def router_metrics(url: str) -> dict[str, Any]:
    """Per-status request counts and the in-flight gauge from the router's /metrics."""
    _, text = http("GET", f"{url}/metrics")
    statuses: dict[str, float] = {}
    in_flight = 0.0
    for line in text.decode().splitlines():
        if line.startswith("memory_router_requests_total{"):
            m = re.search(r'status="([^"]*)"', line)
            if m:
                statuses[m.group(1)] = statuses.get(m.group(1), 0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("memory_router_requests_in_flight{"):
            in_flight += float(line.rsplit(" ", 1)[1])
    return {"requests_by_status": statuses, "in_flight": in_flight}


# --- configs -----------------------------------------------------------------------------------


def nginx_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def nginx_conf(prefix: Path, servers: str, upstreams: str = "") -> str:
    temps = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind}_temp;"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""# generated by bench/run.py
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
{temps}
    keepalive_requests 1000000;
    keepalive_timeout 75s;
{upstreams}
{servers}
}}
"""


def static_upstream_conf(prefix: Path, port: int) -> str:
    completion = nginx_escape(COMPLETION.decode())
    # Too long for an nginx string: a file, and POST on a static file is 405 unless remapped.
    sse = prefix / "sse.txt"
    sse.write_bytes(b"".join(sse_events(100)))
    servers = f"""    server {{
        listen {HOST}:{port} backlog=4096;
        location = {CHAT} {{ default_type application/json; return 200 '{completion}'; }}
        location = /v1/sse {{
            default_type text/event-stream;
            error_page 405 =200 $uri;
            alias {sse};
        }}
        location = /health {{ default_type text/plain; return 200 'ok'; }}
        location / {{ return 404; }}
    }}"""
    return nginx_conf(prefix, servers)


def proxy_conf(
    prefix: Path, port_static: int, up_static: int, port_stream: int, up_stream: int
) -> str:
    keep = "keepalive 64; keepalive_requests 1000000;"
    upstreams = f"""    upstream static_up {{ server {HOST}:{up_static}; {keep} }}
    upstream stream_up {{ server {HOST}:{up_stream}; {keep} }}"""
    common = """            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;"""
    servers = f"""    server {{
        listen {HOST}:{port_static} backlog=4096;
        location / {{
            proxy_pass http://static_up;
{common}
        }}
    }}
    server {{
        listen {HOST}:{port_stream} backlog=4096;
        location / {{
            proxy_pass http://stream_up;
{common}
        }}
    }}"""
    return nginx_conf(prefix, servers, upstreams)


def start_nginx(procs: Procs, nginx: str, name: str, conf_text: str) -> Proc:
    prefix = procs.tmp / name
    conf = prefix / "nginx.conf"
    conf.write_text(conf_text)
    check = subprocess.run(
        [nginx, "-t", "-p", f"{prefix}/", "-e", str(prefix / "error.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
    )
    if check.returncode != 0:
        raise SetupError(f"nginx -t failed for {name}:\n{check.stderr}")
    return procs.start(
        name, [nginx, "-p", f"{prefix}/", "-e", str(prefix / "error.log"), "-c", str(conf)]
    )


def litellm_config(static_port: int, stream_port: int) -> str:
    return f"""# generated by bench/run.py: the shipped litellm/config.yaml settings, bench models
model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench
      api_base: http://{HOST}:{static_port}/v1
      api_key: sk-bench-upstream
  - model_name: bench-stream
    litellm_params:
      model: openai/bench
      api_base: http://{HOST}:{stream_port}/v1
      api_key: sk-bench-upstream
router_settings:
  disable_cooldowns: true
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
  forward_client_headers_to_llm_api: true
"""


def find_litellm() -> Path | None:
    for candidate in (
        os.environ.get("LITELLM_BIN"),
        "/opt/litellm-venv/bin/litellm",
        str(REPO / ".venvs" / "litellm" / "bin" / "litellm"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def own_router_command() -> list[str]:
    found = shutil.which("memory-router", path=str(Path(sys.executable).parent))
    return [found] if found else [sys.executable, "-m", "router"]


def router_argv(port: int, upstream: str, command: list[str] | None = None) -> list[str]:
    base = command or own_router_command()
    return [
        *base,
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--litellm-url",
        upstream,
        "--log-level",
        "WARNING",
    ]


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MEMORY_ROUTER_", "LITELLM_", "SUPERMEMORY_"))
        and k not in ("LOG_LEVEL", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
    }
    env.update(extra)
    return env


# --- measurements ------------------------------------------------------------------------------


@dataclass
class RouterProcs:
    """One router build under test: a process in front of each upstream."""

    command: list[str]
    static: Proc
    stream: Proc
    static_port: int
    stream_port: int


@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path
    procs: Procs
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
        env = dict(os.environ, BENCH_BODY=body.decode(), BENCH_UA=UA)
        if target == "litellm":
            env["BENCH_AUTH"] = self.litellm_key
        argv = [
            self.args.wrk,
            f"-t{min(self.args.wrk_threads, conns)}",
            f"-c{conns}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(HERE / "post.lua"),
            url,
        ]
        self.wrk_connections[target] = self.wrk_connections.get(target, 0) + conns
        router = self.routers.get(target)
        cpu_before = cpu_seconds(router.static.pid) if router else 0.0
        out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 60)
        line = next((x for x in out.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
        if out.returncode != 0 or line is None:
            raise BenchError(f"wrk failed for {target}: {out.stderr.strip()} {out.stdout[-500:]}")
        data: dict[str, Any] = json.loads(line[len("BENCH_JSON ") :])
        data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
        lat = data["latency_us"]
        data["p50_ms"], data["p99_ms"] = lat["p50"] / 1000, lat["p99"] / 1000
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
            _, stats = http("GET", f"http://{HOST}:{self.stream_port}/_stats")
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
            http("POST", f"http://{HOST}:{self.stream_port}/_release", b"")
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


def router_pool_limit(router_env: list[str]) -> int | None:
    """The router's upstream connection limit under the env the bench gives it, if known."""
    for item in router_env:
        name, _, value = item.partition("=")
        if name == "MEMORY_ROUTER_MAX_CONNECTIONS" and value.isdigit():
            return int(value)
    try:
        from router.settings import Settings

        default = Settings.model_fields["max_connections"].default
    except Exception:  # the bench does not need the router importable
        return None
    return int(default) if isinstance(default, int) else None


def split_hostport(url: str) -> tuple[str, int]:
    m = re.match(r"http://([^:/]+):(\d+)", url)
    assert m, url
    return m.group(1), int(m.group(2))


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


# --- report ------------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**missed**")


def evaluate(b: Bench) -> dict[str, Any]:
    r = b.results
    t: dict[str, Any] = {}
    wrk = r.get("wrk", {})
    if "router" in wrk and "direct" in wrk:
        added = wrk["router"]["c1"]["p50_ms"] - wrk["direct"]["c1"]["p50_ms"]
        t["p50_added_c1"] = {"value_ms": added, "limit_ms": 0.5, "met": added <= 0.5}
    if "router" in wrk and "litellm" in wrk:
        times = wrk["router"]["c16"]["rps"] / wrk["litellm"]["c16"]["rps"]
        t["rps_vs_litellm"] = {
            "value": times,
            "limit": RPS_TIMES_LITELLM,
            "met": times >= RPS_TIMES_LITELLM,
        }
    if "router" in wrk and "nginx" in wrk:
        share = wrk["router"]["c16"]["rps"] / wrk["nginx"]["c16"]["rps"]
        t["rps_share_c16"] = {"value": share}  # reported, not a target
    ttfc = r.get("ttfc", {})
    if ttfc.get("router", {}).get("p50") is not None and ttfc.get("direct", {}).get("p50"):
        added = ttfc["router"]["p50"] - ttfc["direct"]["p50"]
        t["ttfc_added"] = {"value_ms": added, "limit_ms": 1.0, "met": added <= 1.0}
    pacing = r.get("pacing", {})
    if "router" in pacing:
        p = pacing["router"]
        t["no_batching"] = {
            "batched_reads": p["batched_reads"],
            "max_events_per_read": p["max_events_per_read"],
            "met": p["batched_reads"] == 0 and p["streams"] > 0,
        }
    mem = r.get("memory", {}).get("router")
    if mem:
        parts = {
            "no_errors": mem["error_count"] == 0,
            "rss_under_200mb": mem["rss_peak_mib"] * 1.048576 < 200,  # MiB -> MB
            "rss_fell_after": mem["rss_fell"],
        }
        raised = (mem.get("pool") or {}).get("raised_to")
        t["streams_memory"] = {
            "errors": mem["error_count"],
            "rss_open_mib": mem["rss_open_mib"],
            "rss_peak_mib": mem["rss_peak_mib"],
            "rss_after_mib": mem["rss_after_mib"],
            "parts": parts,
            "pool_raised_to": raised,
            "pool_configured": (mem.get("pool") or {}).get("configured"),
            # A pass that needed a bigger pool than shipped is not a pass of the router as shipped.
            "met": all(parts.values()) and not raised,
        }
    return t


def summary_rows(targets: dict[str, Any], n: int) -> list[tuple[str, str, str]]:
    def get(key: str, field_: str) -> Any:
        return targets.get(key, {}).get(field_)

    share = get("rps_share_c16", "value")
    times = get("rps_vs_litellm", "value")
    mem = targets.get("streams_memory")
    if mem:
        measured = (
            f"{mem['errors']} errors, peak {mem['rss_peak_mib'] * 1.048576:.0f} MB, "
            f"{'fell' if mem['parts']['rss_fell_after'] else 'did not fall'} after"
        )
        if mem.get("pool_raised_to"):
            measured += f"; needed MEMORY_ROUTER_MAX_CONNECTIONS={mem['pool_raised_to']}"
    else:
        measured = "n/a"
    batching = targets.get("no_batching")
    return [
        (
            "router adds ≤ 0.5 ms p50 at 1 connection",
            f"+{fmt(get('p50_added_c1', 'value_ms'))} ms",
            "p50_added_c1",
        ),
        (
            f"router ≥ {RPS_TIMES_LITELLM} times LiteLLM's req/s at 16 connections",
            f"{fmt(times, 1)} times (and {fmt(share * 100 if share is not None else None, 1)}% "
            "of nginx's, reported)",
            "rps_vs_litellm",
        ),
        (
            "router adds ≤ 1 ms to the first chunk",
            f"+{fmt(get('ttfc_added', 'value_ms'))} ms",
            "ttfc_added",
        ),
        (
            "no chunk batched",
            f"{batching['batched_reads']} batched reads" if batching else "n/a",
            "no_batching",
        ),
        (f"{n:,} streams: no errors, RSS < 200 MB, falling after", measured, "streams_memory"),
    ]


def markdown(b: Bench, meta: dict[str, Any], targets: dict[str, Any]) -> str:
    r = b.results
    lines: list[str] = []
    w = lines.append
    mode = "quick" if b.args.quick else "full"
    w(f"# memory-router benchmark ({mode} run, {meta['date']})")
    w("")
    w(
        f"Machine: {meta['cpus']} CPU(s), {meta['cpu_model']}; {meta['os']}. "
        "**Load generator and servers share these cores**, so absolute numbers are low and "
        "noisy: compare within a run, as ratios."
    )
    w(
        f"Versions: memory-router {meta['versions'].get('memory-router')}, Python "
        f"{meta['python']}, uvicorn {meta['versions'].get('uvicorn')}, httpx "
        f"{meta['versions'].get('httpx')}, {meta['nginx']}, {meta['wrk']}, LiteLLM "
        f"{meta['versions'].get('litellm', 'not run')}."
    )
    w(
        f"wrk `-t{b.args.wrk_threads}`, {b.args.duration:g} s per run, POST {CHAT} with a small "
        f"JSON body, User-Agent `{UA}`. nginx: 1 worker process each (upstream, proxy); router: "
        "1 process, its defaults (log level WARNING)."
    )
    w("")
    w("| Path | What it is |")
    w("| --- | --- |")
    w("| direct | the upstream itself (nginx static JSON; for streams the paced Python upstream) |")
    w("| nginx | nginx reverse proxy, keep-alive upstream, `proxy_buffering off` |")
    w("| router | memory-router (CLI, default settings) |")
    for name, router in b.routers.items():
        if name != "router":
            w(f"| {name} | another router build: `{' '.join(router.command)}` |")
    w("| litellm | LiteLLM proxy, master key, no DB, shipped `litellm/config.yaml` settings |")
    w("")

    def row_target(name: str) -> bool:
        return name in (r.get("wrk") or {})

    wrk = r.get("wrk", {})
    tg = targets.get("p50_added_c1", {})
    w("## 1. Latency, 1 connection: router adds ≤ 0.5 ms at p50 vs direct")
    w("")
    w("| Path | p50 ms | p99 ms | added p50 vs direct, ms | req/s |")
    w("| --- | --- | --- | --- | --- |")
    for t in b.targets:
        if not row_target(t):
            w(f"| {t} | n/a | n/a | n/a | n/a |")
            continue
        c1 = wrk[t]["c1"]
        added = c1["p50_ms"] - wrk["direct"]["c1"]["p50_ms"]
        w(f"| {t} | {fmt(c1['p50_ms'])} | {fmt(c1['p99_ms'])} | {fmt(added)} | {c1['rps']:.0f} |")
    w("")
    w(f"Target: {verdict(tg.get('met'))} (router adds {fmt(tg.get('value_ms'))} ms).")
    w("")
    tg = targets.get("rps_vs_litellm", {})
    w(f"## 2. Throughput, 16 connections: router ≥ {RPS_TIMES_LITELLM} times LiteLLM's requests/s")
    w("")
    w("| Path | req/s | p50 ms | p99 ms | % of nginx req/s | router CPU µs per request |")
    w("| --- | --- | --- | --- | --- | --- |")
    for t in b.targets:
        if not row_target(t):
            w(f"| {t} | n/a | n/a | n/a | n/a |")
            continue
        c16 = wrk[t]["c16"]
        share = 100 * c16["rps"] / wrk["nginx"]["c16"]["rps"]
        cpu = fmt(c16["cpu_us"], 0) if "cpu_us" in c16 else "n/a"
        w(
            f"| {t} | {c16['rps']:.0f} | {fmt(c16['p50_ms'])} | {fmt(c16['p99_ms'])} "
            f"| {share:.1f}% | {cpu} |"
        )
    w("")
    times = tg.get("value")
    share = targets.get("rps_share_c16", {}).get("value")
    w(
        f"Target: {verdict(tg.get('met'))} (router at {fmt(times, 1)} times LiteLLM's requests/s, "
        f"and {fmt(share * 100 if share else None, 1)}% of nginx's)."
    )
    sse = r.get("wrk_sse", {})
    if sse:
        w("")
        w(
            "Also, a 100-event SSE body (17 KB, served at once by nginx) at 16 connections: "
            + ", ".join(
                f"{t} {sse[t]['rps']:.0f} req/s (p50 {sse[t]['p50_ms']:.2f} ms)" for t in sse
            )
            + "."
        )
    w("")
    ttfc = r.get("ttfc", {})
    tg = targets.get("ttfc_added", {})
    w("## 3. Time to first chunk: router adds ≤ 1 ms")
    w("")
    w(
        "Short streams (first event at once, then `[DONE]` 10 ms later) on a kept-alive "
        "connection, interleaved across paths; time from request sent to first event received."
    )
    w("")
    w("| Path | samples | p50 ms | p90 ms | p99 ms | added p50 vs direct, ms |")
    w("| --- | --- | --- | --- | --- | --- |")
    for t in b.targets:
        s = ttfc.get(t)
        if not s or not s["n"]:
            w(f"| {t} | 0 | n/a | n/a | n/a | n/a |")
            continue
        added = s["p50"] - ttfc["direct"]["p50"]
        w(
            f"| {t} | {s['n']} | {fmt(s['p50'])} | {fmt(s['p90'])} | {fmt(s['p99'])} "
            f"| {fmt(added)} |"
        )
    w("")
    w(f"Target: {verdict(tg.get('met'))} (router adds {fmt(tg.get('value_ms'))} ms).")
    w("")
    pacing = r.get("pacing", {})
    tg = targets.get("no_batching", {})
    w(f"## 4. Chunk pacing: {b.args.chunks} events {b.args.gap_ms:g} ms apart, no chunk batched")
    w("")
    w(
        "A read that completes more than one event means the path held a chunk back and sent "
        "it with the next one."
    )
    w("")
    w(
        "| Path | streams | events/stream | max events per read | batched reads "
        "| gap p50 ms | gap p99 ms | gap max ms | first chunk p50 ms |"
    )
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for t in b.targets:
        p = pacing.get(t)
        if not p:
            w(f"| {t} | 0 | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        g = p["gap_ms"]
        ev = "/".join(str(e) for e in p["events_per_stream"])
        w(
            f"| {t} | {p['streams']} | {ev} | {p['max_events_per_read']} | {p['batched_reads']} "
            f"| {fmt(g['p50'])} | {fmt(g['p99'])} | {fmt(g['max'])} "
            f"| {fmt(p['first_chunk_ms']['p50'])} |"
        )
    w("")
    w(f"Target: {verdict(tg.get('met'))}.")
    w("")
    mems = r.get("memory", {})
    mem = mems.get("router")
    tg = targets.get("streams_memory", {})
    n = mem["streams"] if mem else b.args.streams
    w(f"## 5. {n:,} concurrent open streams: no errors, RSS < 200 MB and falling after")
    w("")
    w(
        "Streams through the router to an upstream that sends one event and then holds the "
        "stream open until released; router resident set from `/proc/<pid>/status`."
    )
    w("")
    w(
        "| Path | streams opened | finished | errors | RSS idle MiB | RSS open MiB "
        "| RSS peak MiB | RSS after close MiB | fell after |"
    )
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for t in b.targets:
        m = mems.get(t)
        if not m:
            w(f"| {t} | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a |")
            continue
        errs = m["error_count"]
        detail = f" ({', '.join(f'{k}: {v}' for k, v in m['errors'].items())})" if errs else ""
        w(
            f"| {t} | {m['opened']} | {m['finished']} | {errs}{detail} "
            f"| {m['rss_idle_mib']:.1f} | {m['rss_open_mib']:.1f} | {m['rss_peak_mib']:.1f} "
            f"| {m['rss_after_mib']:.1f} | {'yes' if m['rss_fell'] else 'no'} |"
        )
    w("")
    w(
        "Only the routers are measured here (direct, nginx and LiteLLM hold no per-stream "
        "state this bench is about)."
    )
    if mem:
        w(
            f"Router in-flight gauge: {mem['router_in_flight_open']:.0f} while open, "
            f"{mem['router_in_flight_after']:.0f} after; all {n} opened in "
            f"{mem['open_seconds']:.1f} s. RSS after close, by seconds: "
            + ", ".join(f"{d:g} s {v:.1f} MiB" for d, v in mem["rss_after_series_mib"])
            + "."
        )
    w("")
    if tg:
        p = tg["parts"]
        detail = (
            f"errors {'0' if p['no_errors'] else tg['errors']}; "
            f"peak RSS {tg['rss_peak_mib'] * 1.048576:.0f} MB "
            f"({'under' if p['rss_under_200mb'] else 'over'} 200 MB); "
            f"RSS {'fell' if p['rss_fell_after'] else 'did not fall'} after the streams closed"
        )
        if tg.get("pool_raised_to"):
            detail += (
                f"; only with MEMORY_ROUTER_MAX_CONNECTIONS={tg['pool_raised_to']}: the shipped "
                f"limit ({tg['pool_configured']}) refuses streams beyond it"
            )
        w(f"Target: {verdict(tg.get('met'))} ({detail}).")
    else:
        w("Target: n/a.")
    w("")
    prof = r.get("profile")
    if prof and prof.get("top_self"):
        w(f"## Profile: router under wrk, 16 connections ({prof['seconds']:g} s, py-spy)")
        w("")
        others = prof.get("other_thread_samples") or {}
        w(
            f"{prof['samples']} main-thread samples at {prof['rate_hz']} Hz; percentages are "
            "of those (the event loop does all request handling). Flame graph: "
            f"`{prof.get('flamegraph_file', 'n/a')}`; collapsed stacks (open in "
            f"speedscope.app): `{prof.get('raw_file', 'n/a')}`."
            + (
                " Other threads, left out (idle waits py-spy sampled as busy): "
                + ", ".join(f"{k} {v}" for k, v in others.items())
                + " samples."
                if others
                else ""
            )
        )
        w("")
        w(
            "Self time by package: "
            + ", ".join(f"{p['function']} {p['pct']:.0f}%" for p in prof.get("self_by_package", []))
            + "."
        )
        w("")
        # Entry frames (module, main, uvicorn's loop) are ~100% total: show what is below them.
        below = [t for t in prof["top_total"] if t["pct"] < 90.0]
        w("| Top self time | % | | Top total time (below the entry frames) | % |")
        w("| --- | --- | --- | --- | --- |")
        for s, tt in zip(prof["top_self"][:12], below[:12], strict=False):
            w(f"| `{s['function']}` | {s['pct']:.1f} | | `{tt['function']}` | {tt['pct']:.1f} |")
        w("")
    w("## Summary")
    w("")
    w("| Target | Measured | Result |")
    w("| --- | --- | --- |")
    for label, measured, key in summary_rows(targets, n):
        w(f"| {label} | {measured} | {verdict(targets.get(key, {}).get('met'))} |")
    w("")
    if b.notes:
        w("Notes:")
        w("")
        for note in b.notes:
            w(f"- {note}")
        w("")
    if b.errors:
        w(f"**Errors ({len(b.errors)}):**")
        w("")
        for e in b.errors:
            w(f"- {e}")
        w("")
    return "\n".join(lines)


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "?"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0].strip() if text else "?"


def collect_meta(args: argparse.Namespace, litellm: Path | None) -> dict[str, Any]:
    versions = {}
    for dist in ("memory-router", "uvicorn", "httpx", "uvloop", "httptools"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    if litellm is not None and not args.quick and not args.skip_litellm:
        py = litellm.parent / "python"
        versions["litellm"] = tool_version(
            [str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"]
        )
    cpu_model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    wrk_v = tool_version([args.wrk, "--version"])
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
        "nginx": tool_version([args.nginx, "-v"]).replace("nginx version: ", ""),
        "wrk": " ".join(wrk_v.split()[:2]),
        "mode": "quick" if args.quick else "full",
        "settings": {
            "duration_s": args.duration,
            "wrk_threads": args.wrk_threads,
            "streams": args.streams,
            "ttfc_samples": args.ttfc_samples,
            "pacing_streams": args.pacing_streams,
            "chunks": args.chunks,
            "gap_ms": args.gap_ms,
        },
    }


# --- main --------------------------------------------------------------------------------------


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


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(needed, soft)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise SetupError(f"open-file limit {soft} < {needed}; raise it (ulimit -n {needed})")


def setup(b: Bench) -> None:
    a = b.args
    for tool in (a.nginx, a.wrk):
        if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
            raise SetupError(f"{tool} not found: apt-get install nginx-light wrk")
    # Each held stream costs the router two sockets and this process one.
    raise_fd_limit(3 * a.streams + 256)

    up_port, stream_port = free_port(), free_port()
    px_static, px_stream = free_port(), free_port()
    b.stream_port = stream_port

    litellm_bin = find_litellm()
    lite = None
    if a.quick or a.skip_litellm:
        b.notes.append("LiteLLM not run (" + ("--quick" if a.quick else "--skip-litellm") + ").")
    elif litellm_bin is None:
        b.notes.append(
            "LiteLLM not run: not installed (set LITELLM_BIN, or install litellm[proxy]==1.108.7 "
            "into /opt/litellm-venv)."
        )
    else:
        # Started first: it takes ~25 s, and its start-up CPU must not overlap measurements.
        b.litellm_key = "sk-" + secrets.token_hex(16)
        lport = free_port()
        cfg = b.tmp / "litellm.yaml"
        cfg.write_text(litellm_config(up_port, stream_port))
        env = clean_env(LITELLM_MASTER_KEY=b.litellm_key, LITELLM_LOCAL_MODEL_COST_MAP="True")
        lite = (
            b.procs.start(
                "litellm",
                [str(litellm_bin), "--config", str(cfg), "--host", HOST, "--port", str(lport)],
                env=env,
            ),
            f"http://{HOST}:{lport}",
        )
        log(f"starting LiteLLM ({litellm_bin}) on :{lport}")

    for name in ("nginx-upstream", "nginx-proxy"):
        (b.tmp / name).mkdir()
    up = start_nginx(
        b.procs, a.nginx, "nginx-upstream", static_upstream_conf(b.tmp / "nginx-upstream", up_port)
    )
    stream = b.procs.start(
        "stream-upstream",
        [
            sys.executable,
            str(HERE / "stream_upstream.py"),
            "--port",
            str(stream_port),
            "--chunks",
            str(a.chunks),
            "--gap-ms",
            f"{a.gap_ms:g}",
        ],
        env=clean_env(),
    )
    px = start_nginx(
        b.procs,
        a.nginx,
        "nginx-proxy",
        proxy_conf(b.tmp / "nginx-proxy", px_static, up_port, px_stream, stream_port),
    )
    router_env = clean_env(SUPERMEMORY_API_KEY=SUPERMEMORY_KEY)
    for item in a.router_env:
        name, sep, value = item.partition("=")
        if not sep:
            raise SetupError(f"--router-env wants NAME=VALUE, got {item!r}")
        router_env[name] = value
        b.notes.append(f"router run with {name}={value}")
    # The stream routers hold --streams upstream connections at once: when the pool is
    # smaller, raise it (reported) unless --router-defaults asks for the shipped limit.
    stream_env = dict(router_env)
    limit = router_pool_limit(a.router_env)
    b.pool = {"configured": limit, "raised_to": None}
    if limit is not None and limit < a.streams and not a.router_defaults:
        raised = (a.streams // 100 + 1) * 100
        stream_env["MEMORY_ROUTER_MAX_CONNECTIONS"] = str(raised)
        b.pool["raised_to"] = raised
    builds = {"router": own_router_command(), **{f"router-{k}": v for k, v in a.compare.items()}}
    for name, command in builds.items():
        rt_static, rt_stream = free_port(), free_port()
        b.routers[name] = RouterProcs(
            command,
            b.procs.start(
                f"{name}-static",
                router_argv(rt_static, f"http://{HOST}:{up_port}", command),
                env=router_env,
            ),
            b.procs.start(
                f"{name}-stream",
                router_argv(rt_stream, f"http://{HOST}:{stream_port}", command),
                env=stream_env,
            ),
            rt_static,
            rt_stream,
        )
    wait_ready(up, f"http://{HOST}:{up_port}/health", 15)
    wait_ready(stream, f"http://{HOST}:{stream_port}/health", 15)
    wait_ready(px, f"http://{HOST}:{px_static}/health", 15)
    b.urls = {
        "direct": f"http://{HOST}:{up_port}{CHAT}",
        "nginx": f"http://{HOST}:{px_static}{CHAT}",
    }
    b.stream_urls = {
        "direct": f"http://{HOST}:{stream_port}{CHAT}",
        "nginx": f"http://{HOST}:{px_stream}{CHAT}",
    }
    for name, router in b.routers.items():
        wait_ready(router.static, f"http://{HOST}:{router.static_port}/health", 30)
        wait_ready(router.stream, f"http://{HOST}:{router.stream_port}/health", 30)
        b.urls[name] = f"http://{HOST}:{router.static_port}{CHAT}"
        b.stream_urls[name] = f"http://{HOST}:{router.stream_port}{CHAT}"
    if lite is not None:
        proc, url = lite
        try:
            took = wait_ready(proc, f"{url}/health/liveliness", 180)
            log(f"LiteLLM ready after {took:.0f} s")
            b.urls["litellm"] = f"{url}{CHAT}"
            b.stream_urls["litellm"] = f"{url}{CHAT}"
        except SetupError as exc:
            b.error(f"LiteLLM did not start: {exc}")
    sanity(b)


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
    status, answer = http("POST", b.urls[target], BODY, headers)
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
    _, last = http("GET", f"http://{HOST}:{b.stream_port}/_last")
    seen = json.loads(last)
    if seen.get("x-bench-probe") != marker:
        # LiteLLM forwards x-* headers only with forward_client_headers_to_llm_api.
        raise SetupError(f"sanity: the stream via {target} did not carry x-bench-* headers")
    injected = (seen.get("x-sm-user-id"), seen.get("x-supermemory-api-key"))
    if target.startswith("router") and injected != ("default-dev", SUPERMEMORY_KEY):
        raise SetupError(f"sanity: router did not inject memory headers: {seen}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="memory-router-bench-"))
    tmp.chmod(0o755)  # nginx workers (user nobody when started as root) read sse.txt here
    procs = Procs(tmp)
    b = Bench(args=args, tmp=tmp, procs=procs)
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
        procs.stop_all()
        if args.keep_tmp or status != EXIT_OK:
            log(f"logs and configs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
