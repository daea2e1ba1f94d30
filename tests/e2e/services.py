"""The end-to-end tier's services: where their files are, how each is started and
awaited, and the handles the tests get (URLs, keys, the double's controls, the process).

Every process writes its output to ``test-logs/e2e/<name>.log``; one that does not come
up fails the test with the tail of its log."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.doubles.controls import ApiDoubleControls, DoubleControls, RouterDoubleControls
from tests.support.environment import clean_env
from tests.support.polling import until_passes
from tests.support.ports import HOST, free_port
from tests.support.processes import Process, ProcessError, start_process
from tests.support.router_process import router_argv

REPO = Path(__file__).resolve().parents[2]
LOG_DIR = REPO / "test-logs" / "e2e"
LITELLM_CONFIG = REPO / "litellm" / "config.yaml"
LITELLM_WRAPPER = REPO / "scripts" / "litellm"
ROUTER_CONFIG = REPO / "router" / "config.yaml"
PROMETHEUS_CONFIG = REPO / "prometheus" / "prometheus.yml"
MEMORY_BUDGET = "1.0"  # seconds; the default 0.3 s leaves little room on a busy 2-core box

# Bounds on start-up. LiteLLM typically needs ~25 s; the bound leaves room for a cold machine.
LITELLM_START_TIMEOUT = 180.0
ROUTER_START_TIMEOUT = 30.0
DOUBLE_START_TIMEOUT = 20.0
PROMETHEUS_START_TIMEOUT = 60.0


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


# What each kind of service answers when it is ready, and how long it may take.
READY = {
    "double": ("/_double/health", DOUBLE_START_TIMEOUT),
    "litellm": ("/health/liveliness", LITELLM_START_TIMEOUT),
    "router": ("/health", ROUTER_START_TIMEOUT),
    "prometheus": ("/-/ready", PROMETHEUS_START_TIMEOUT),
}


@contextlib.contextmanager
def serving(
    name: str, kind: str, argv: Callable[[int], list[str]], *, env: dict[str, str], cwd: Path
) -> Iterator[tuple[Process, str]]:
    """Start ``argv(port)`` as ``name`` on a free loopback port, wait until it is ready
    (``READY[kind]``), yield the process and its URL, and stop it (SIGTERM, then SIGKILL)
    when the block ends."""
    ready, timeout = READY[kind]
    port = free_port()
    url = f"http://{HOST}:{port}"
    process = start_process(name, argv(port), log_dir=LOG_DIR, env=env, cwd=cwd)
    try:
        try:
            process.wait_http_ok(url + ready, timeout)
        except ProcessError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield process, url
    finally:
        process.stop()


def start_dev_script(
    name: str, command: list[str], *, checkout: Path, env: dict[str, str]
) -> Process:
    """``command`` (``scripts/dev.sh``, or a README line that runs it) in ``checkout``, in a
    process group of its own, with SIGINT at its default, as a terminal's shell starts it.
    (This process may have been started with SIGINT ignored, as a background job is, and exec
    would pass that on: bash cannot trap a signal ignored on entry.)"""
    argv = ["env", "--default-signal=INT", *command]
    return start_process(name, argv, log_dir=LOG_DIR, env=env, cwd=checkout)


def press_ctrl_c(process: Process) -> None:
    """SIGINT to the whole process group, as a terminal sends it on Ctrl-C."""
    os.killpg(process.pid, signal.SIGINT)


def double_argv(module: str) -> Callable[[int], list[str]]:
    """A double from tests/doubles/ as a process: ``python -m tests.doubles.<module>``
    (the environment needs the repository on PYTHONPATH: ``double_env``)."""
    return lambda port: [sys.executable, "-m", f"tests.doubles.{module}", "--port", str(port)]


def double_env(**extra: str) -> dict[str, str]:
    return clean_env(PYTHONPATH=str(REPO), **extra)


def litellm_argv(config: Path) -> Callable[[int], list[str]]:
    """LiteLLM as a user without Docker runs it: ``scripts/litellm`` with ``config``."""
    return lambda port: [
        str(LITELLM_WRAPPER),
        *("--config", str(config), "--host", HOST, "--port", str(port)),
    ]


def shipped_router_argv(litellm_url: str) -> Callable[[int], list[str]]:
    """The router CLI with the shipped rules (router/config.yaml), logging at info."""
    return lambda port: router_argv(port, litellm_url, config=ROUTER_CONFIG, log_level="info")


@dataclass
class Secrets:
    """Per-session secrets. Strong and random, so a leak check can search for them verbatim."""

    supermemory_key: str = field(default_factory=lambda: "sm_e2e_" + secrets.token_hex(24))
    litellm_master_key: str = field(default_factory=lambda: "sk-e2e-" + secrets.token_hex(24))
    anthropic_key: str = field(default_factory=lambda: "sk-ant-e2e-" + secrets.token_hex(16))


@dataclass
class Double(RouterDoubleControls):
    """The Supermemory router double, and what it recorded."""

    api_key: str
    process: Process

    @property
    def anthropic_base(self) -> str:
        return f"{self.url}/v3/https://api.anthropic.com"


@dataclass
class Provider(DoubleControls):
    """The fake Anthropic provider, and what it received."""

    api_key: str
    process: Process


@dataclass
class ApiDouble(ApiDoubleControls):
    """The Supermemory v5 API double as a process, and its test-only controls."""

    api_key: str
    process: Process


@dataclass
class LiteLLM:
    url: str
    master_key: str
    config: Path
    process: Process


@dataclass
class Router:
    url: str
    supermemory_key: str
    litellm: LiteLLM
    process: Process


@dataclass
class BackendRouter:
    """A router running one memory backend, in front of the direct LiteLLM."""

    url: str
    backend: str
    litellm: LiteLLM
    process: Process
    store: Path | None = None


@dataclass
class Prometheus:
    url: str
    config: Path
    process: Process
    scrape_interval: float = 1.0

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(
            f"{self.url}/api/v1/query", params={"query": expr}, timeout=10.0, trust_env=False
        )
        response.raise_for_status()
        payload = response.json()
        assert payload["status"] == "success", payload
        result: list[dict[str, Any]] = payload["data"]["result"]
        return result

    def wait_scraping_router(self, timeout: float) -> None:
        """Wait (``timeout`` seconds at most) until the router's target is up."""

        def router_target_up() -> None:
            answer = httpx.get(f"{self.url}/api/v1/targets", timeout=10.0, trust_env=False)
            active = answer.json()["data"]["activeTargets"]
            assert [t["health"] for t in active if t["labels"]["job"] == "memory-router"] == [
                "up"
            ]

        until_passes(router_target_up, timeout=timeout, what="Prometheus scraping the router")


class NetworkTrap:
    """A TCP listener that every memory-stack process has as its HTTP(S) proxy.

    Loopback is exempt (NO_PROXY), so the fake provider, the v5 double and LiteLLM are
    reached directly; a proxy-respecting call to anywhere else arrives here instead, is
    recorded (its request line only) and refused."""

    def __init__(self) -> None:
        self.connections: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((HOST, 0))
        self._sock.listen(16)
        self.url = f"http://{HOST}:{self._sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                with contextlib.suppress(OSError):
                    first = conn.recv(4096).split(b"\r\n", 1)[0]
                    self.connections.append(first.decode("latin-1"))
                    conn.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")

    def env(self) -> dict[str, str]:
        names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
        return {n: self.url for n in names} | {n.lower(): self.url for n in names}

    def close(self) -> None:
        self._sock.close()


@contextlib.contextmanager
def running_prometheus(
    name: str, prometheus_bin: Path, router_url: str, workdir: Path
) -> Iterator[Prometheus]:
    """Prometheus as ``name``, with the project's config pointed at the router at
    ``router_url`` and scraping it every second; its config and data in ``workdir``."""
    if not PROMETHEUS_CONFIG.exists():
        pytest.fail(f"{PROMETHEUS_CONFIG} is missing", pytrace=False)
    workdir.mkdir()
    config_path = workdir / "prometheus.yml"
    router_target = router_url.removeprefix("http://")
    config_path.write_text(
        yaml.safe_dump(
            adapt_prometheus_config(PROMETHEUS_CONFIG, router_target=router_target, interval="1s")
        )
    )

    def argv(port: int) -> list[str]:
        return [
            str(prometheus_bin),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={HOST}:{port}",
        ]

    with serving(name, "prometheus", argv, env=clean_env(), cwd=workdir) as (proc, url):
        yield Prometheus(url=url, config=config_path, process=proc)


def adapt_prometheus_config(source: Path, *, router_target: str, interval: str) -> dict[str, Any]:
    """The project's Prometheus config, pointed at the loopback router.

    Changed: the memory-router job's targets (compose's `router:8765` -> loopback), the scrape
    and evaluation intervals, rule file paths made absolute (missing ones dropped). Jobs whose
    targets exist only inside compose (litellm, ...) are dropped.
    """
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    glob = config.setdefault("global", {})
    glob.update(scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval)

    jobs = [
        job for job in config.get("scrape_configs", []) if job.get("job_name") == "memory-router"
    ]
    if not jobs:
        pytest.fail(f"{source} has no scrape job named memory-router", pytrace=False)
    for job in jobs:
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        job["static_configs"] = [{"targets": [router_target]}]
    config["scrape_configs"] = jobs

    rule_files = [source.parent / rule for rule in config.get("rule_files", [])]
    config["rule_files"] = [str(path) for path in rule_files if path.exists()]
    config.pop("alerting", None)
    config.pop("remote_write", None)
    return config

