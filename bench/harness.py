"""What every bench script shares: the requests it sends, its log, the set-up error,
and processes started, awaited and stopped through ``tests.support``.

bench/ is a folder of scripts, not a package: importing this module puts the repository
root on ``sys.path``, so the scripts use the test suite's support code (free ports,
processes with logs, the clean environment, the router's command line)."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if sys.path[:1] != [str(REPO)]:
    sys.path.insert(0, str(REPO))

from tests.support.configs import write_rules  # noqa: E402
from tests.support.environment import clean_env  # noqa: E402
from tests.support.fetch import fetch  # noqa: E402
from tests.support.ports import HOST, free_port  # noqa: E402
from tests.support.processes import Process, ProcessError, Processes, rss_kib  # noqa: E402
from tests.support.router_process import router_argv, router_command  # noqa: E402

__all__ = [
    "BODY",
    "CHAT",
    "HOST",
    "LITELLM_STREAM_BODY",
    "REPO",
    "STREAM_BODY",
    "SUPERMEMORY_KEY",
    "UA",
    "Process",
    "Processes",
    "SetupError",
    "clean_env",
    "cpu_seconds",
    "fetch",
    "fmt",
    "free_port",
    "log",
    "require_tools",
    "router_argv",
    "router_command",
    "router_metrics",
    "rss_kib",
    "split_hostport",
    "wait_ready",
    "write_rules",
]

CHAT = "/v1/chat/completions"
UA = "OpenAI/Python 1.40.0"  # matches no rule: walks every pattern, then the default id
BODY = b'{"model":"bench","messages":[{"role":"user","content":"Say hello."}]}'
STREAM_BODY = b'{"model":"bench","stream":true,"messages":[{"role":"user","content":"Say hello."}]}'
LITELLM_STREAM_BODY = STREAM_BODY.replace(b'"bench"', b'"bench-stream"')
SUPERMEMORY_KEY = "sm_bench_" + "0" * 24  # a dummy: nothing leaves loopback


class SetupError(Exception):
    """The bench could not be set up (exit status 2)."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def require_tools(*tools: str) -> None:
    for tool in tools:
        if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
            raise SetupError(f"{tool} not found: apt-get install nginx-light wrk")


def wait_ready(proc: Process, url: str, timeout: float) -> float:
    """Seconds until GET ``url`` answered 200; SetupError when it does not."""
    try:
        return proc.wait_http_ok(url, timeout)
    except ProcessError as exc:
        raise SetupError(str(exc)) from None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def router_metrics(url: str) -> dict[str, Any]:
    """Per-status request counts and the in-flight gauge from the router's /metrics."""
    _, text = fetch(f"{url}/metrics")
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


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def split_hostport(url: str) -> tuple[str, int]:
    m = re.match(r"http://([^:/]+):(\d+)", url)
    assert m, url
    return m.group(1), int(m.group(2))
