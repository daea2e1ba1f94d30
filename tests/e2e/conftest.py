"""Process fixtures for the end-to-end tier.

Each session starts real processes, once, on free loopback ports:

    test client (openai / anthropic SDK, httpx)
        -> memory-router          (the project's CLI, router/config.yaml)
        -> LiteLLM 1.108.7        (the project's litellm/config.yaml, unmodified, started by
                                   scripts/litellm as a user without Docker would)
        -> Supermemory double     (tests/doubles/supermemory_router.py, under uvicorn)
    Prometheus                    (the project's prometheus/prometheus.yml, router target on
                                   loopback) scrapes the router.

The memory backends the router runs itself get a stack of their own, started when a test
asks for it (tests/e2e/test_memory_backends.py):

    test client -> memory-router (MEMORY_ROUTER_MEMORY_BACKEND=local | supermemory-api | off)
                -> LiteLLM 1.108.7 (scripts/litellm: Anthropic directly)
                -> fake provider  (tests/doubles/anthropic_provider.py: echoes what it was given)
    supermemory-api's router also calls the Supermemory v5 double
    (tests/doubles/supermemory_api.py). Their HTTP(S)_PROXY points at a recorder, so any
    proxy-respecting call beyond loopback would show there.

Every process writes stdout/stderr to test-logs/e2e/<name>.log. When a process fails to come
up, the fixture fails with the tail of its log; when a test fails, the tails of all logs are
attached to the report.

Where the binaries come from:
  * LiteLLM: $LITELLM_BIN, else <repo>/.venvs/litellm/bin/litellm, which is created with
    `python -m venv` + `pip install -r tests/e2e/requirements-litellm.txt` when missing.
    Skips only when the package index cannot be reached at all, and never when $CI is set.
  * memory-router: the console script installed by `pip install -e .` next to this Python.
  * Prometheus: $PROMETHEUS_BIN, else `prometheus` on PATH / /usr/bin/prometheus, else
    `apt-get install prometheus` when running as root.

$E2E_LITELLM_CONFIG points LiteLLM at another config file. It exists only to show the tier
going red against a broken config (e.g. forward_client_headers_to_llm_api: false); never set
it otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .helpers import Clients

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LOG_DIR = REPO / "test-logs" / "e2e"
LITELLM_REQUIREMENTS = HERE / "requirements-litellm.txt"
LITELLM_VENV = REPO / ".venvs" / "litellm"
LITELLM_CONFIG = REPO / "litellm" / "config.yaml"
LITELLM_WRAPPER = REPO / "scripts" / "litellm"
FAKE_PROVIDER = REPO / "tests" / "doubles" / "anthropic_provider.py"
ROUTER_DOUBLE = REPO / "tests" / "doubles" / "supermemory_router.py"
API_DOUBLE = REPO / "tests" / "doubles" / "supermemory_api.py"
MEMORY_BUDGET = "1.0"  # seconds; the default 0.3 s leaves little room on a busy 2-core box
ROUTER_CONFIG = REPO / "router" / "config.yaml"
PROMETHEUS_CONFIG = REPO / "prometheus" / "prometheus.yml"

# Bounds on start-up. LiteLLM typically needs ~25 s; the bound leaves room for a cold machine.
LITELLM_START_TIMEOUT = 180.0
ROUTER_START_TIMEOUT = 30.0
DOUBLE_START_TIMEOUT = 20.0
PROMETHEUS_START_TIMEOUT = 60.0
LITELLM_INSTALL_TIMEOUT = 900.0

# Whatever the developer's shell carries must not steer the processes under test.
_SCRUBBED_ENV = (
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_API_BASE",
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_API_BASE",
    "SUPERMEMORY_API_KEY",
    "SUPERMEMORY_ANTHROPIC_BASE_URL",
    "LITELLM_URL",
    "LITELLM_MASTER_KEY",
    "DATABASE_URL",
    "MEMORY_ROUTER_CONFIG",
    "LOG_LEVEL",
    "ANTHROPIC_PROVIDER_URL",
    "LITELLM_ANTHROPIC_BASE_URL",
    "LITELLM_BIN",
)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    """A loopback port that was free a moment ago (bind to 0 and let the kernel pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def tail(self, lines: int = 60) -> str:
        return log_tail(self.log_path, lines)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM this process's own group (it was started in a new session), then SIGKILL."""
        if self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=grace)


def start_process(name: str, argv: list[str], *, env: dict[str, str], cwd: Path) -> ManagedProcess:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{name}.log"
    with log_path.open("wb") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        popen = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ManagedProcess(name, popen, log_path)


def wait_until(
    ready: Callable[[], bool], *, proc: ManagedProcess, timeout: float, what: str
) -> float:
    """Poll `ready` until it holds; fail with the log tail if the process dies or time runs out.

    Returns the seconds waited.
    """
    start = time.monotonic()
    while True:
        if proc.popen.poll() is not None:
            pytest.fail(
                f"{proc.name} exited with code {proc.popen.returncode} before {what}.\n"
                f"--- last lines of {proc.log_path} ---\n{proc.tail()}",
                pytrace=False,
            )
        with contextlib.suppress(httpx.HTTPError, OSError):
            if ready():
                return time.monotonic() - start
        if time.monotonic() - start > timeout:
            proc.stop()
            pytest.fail(
                f"{proc.name}: no {what} within {timeout:.0f} s.\n"
                f"--- last lines of {proc.log_path} ---\n{proc.tail()}",
                pytrace=False,
            )
        time.sleep(0.2)


def http_ok(url: str, *, expect: int = 200) -> Callable[[], bool]:
    def check() -> bool:
        return httpx.get(url, timeout=2.0, trust_env=False).status_code == expect

    return check


def base_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED_ENV and not k.startswith("MEMORY_ROUTER_")
    }
    # Loopback traffic must never go through a proxy configured in the environment.
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1", "localhost"]))
    env.update(NO_PROXY=no_proxy, no_proxy=no_proxy, PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


# --------------------------------------------------------------------------- services


@dataclass
class Double:
    """The Supermemory double, and what it recorded."""

    url: str
    api_key: str
    process: ManagedProcess

    @property
    def anthropic_base(self) -> str:
        return f"{self.url}/v3/https://api.anthropic.com"

    def requests(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/_double/requests", timeout=10.0, trust_env=False)
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()
        return records

    def requests_with(self, marker: str) -> list[dict[str, Any]]:
        """The recorded requests whose body mentions `marker` (each test uses its own)."""
        return [r for r in self.requests() if marker in json.dumps(r["body"])]

    def hold(self, marker: str) -> None:
        """Hold streams about `marker`: each text chunk after the first waits for ``allow``."""
        httpx.post(f"{self.url}/_double/hold/{marker}", trust_env=False).raise_for_status()

    def allow(self, marker: str) -> None:
        """Let a held stream about `marker` send its next text chunk."""
        httpx.post(f"{self.url}/_double/allow/{marker}", trust_env=False).raise_for_status()

    def memories(self) -> dict[str, list[str]]:
        response = httpx.get(f"{self.url}/_double/memories", timeout=10.0, trust_env=False)
        response.raise_for_status()
        memories: dict[str, list[str]] = response.json()
        return memories


@dataclass
class LiteLLM:
    url: str
    master_key: str
    config: Path
    process: ManagedProcess


@dataclass
class Router:
    url: str
    supermemory_key: str
    litellm: LiteLLM
    process: ManagedProcess


@dataclass
class Prometheus:
    url: str
    config: Path
    process: ManagedProcess
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


@dataclass
class Secrets:
    """Per-session secrets. Strong and random, so a leak check can search for them verbatim."""

    supermemory_key: str = field(default_factory=lambda: "sm_e2e_" + secrets.token_hex(24))
    litellm_master_key: str = field(default_factory=lambda: "sk-e2e-" + secrets.token_hex(24))
    anthropic_key: str = field(default_factory=lambda: "sk-ant-e2e-" + secrets.token_hex(16))


# --------------------------------------------------------------------------- hooks


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On failure, attach the tail of every process log the test used."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for value in funcargs.values():
            process = getattr(value, "process", None)
            if isinstance(process, ManagedProcess):
                report.sections.append(
                    (f"{process.name} log tail ({process.log_path})", process.tail(40))
                )
    return report


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def clients() -> Iterator[Clients]:
    pool = Clients()
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def e2e_secrets() -> Secrets:
    return Secrets()


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session", autouse=True)
def _loopback_without_proxy() -> Iterator[None]:
    """The SDK clients in the tests honour *_PROXY; keep loopback traffic direct."""
    saved = {k: os.environ.get(k) for k in ("NO_PROXY", "no_proxy")}
    value = ",".join(filter(None, [saved["NO_PROXY"] or "", "127.0.0.1", "localhost"]))
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = value
    yield
    for key, old in saved.items():
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


@pytest.fixture(scope="session")
def double(e2e_secrets: Secrets, session_tmp: Path) -> Iterator[Double]:
    port = free_port()
    proc = start_process(
        "supermemory-double",
        [sys.executable, str(ROUTER_DOUBLE), "--port", str(port)],
        env=base_env(SUPERMEMORY_DOUBLE_API_KEY=e2e_secrets.supermemory_key),
        cwd=session_tmp,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            http_ok(f"{url}/_double/health"),
            proc=proc,
            timeout=DOUBLE_START_TIMEOUT,
            what="GET /_double/health == 200",
        )
        yield Double(url=url, api_key=e2e_secrets.supermemory_key, process=proc)
    finally:
        proc.stop()


def _index_reachable() -> bool:
    """Whether pip's package index answers at all (pip's own config decides which one)."""
    index = os.environ.get("PIP_INDEX_URL")
    if not index:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            index = subprocess.run(
                [sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
    index = (index or "https://pypi.org/simple").rstrip("/")
    try:
        with urllib.request.urlopen(f"{index}/litellm/", timeout=15):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, just not with 200
    except (urllib.error.URLError, OSError):
        return False


def _install_litellm() -> Path:
    """Create <repo>/.venvs/litellm from requirements-litellm.txt unless it is already current."""
    binary = LITELLM_VENV / "bin" / "litellm"
    stamp = LITELLM_VENV / ".requirements.sha256"
    wanted = hashlib.sha256(LITELLM_REQUIREMENTS.read_bytes()).hexdigest()
    if binary.exists() and stamp.exists() and stamp.read_text().strip() == wanted:
        return binary

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / "litellm-install.log"
    python = LITELLM_VENV / "bin" / "python"
    steps = []
    if not python.exists():
        steps.append([sys.executable, "-m", "venv", str(LITELLM_VENV)])
    steps.append([str(python), "-m", "pip", "install", "--quiet", "-r", str(LITELLM_REQUIREMENTS)])
    deadline = time.monotonic() + LITELLM_INSTALL_TIMEOUT
    with log_path.open("wb") as log:
        for argv in steps:
            log.write(f"$ {' '.join(argv)}\n".encode())
            log.flush()
            code = subprocess.run(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            ).returncode
            if code != 0:
                break
    if code == 0 and binary.exists():
        stamp.write_text(wanted + "\n")
        return binary
    if not _index_reachable() and not in_ci():
        pytest.skip(
            "LiteLLM is not installed and the package index cannot be reached; "
            f"set LITELLM_BIN or install {LITELLM_REQUIREMENTS.name} (see {log_path})"
        )
    pytest.fail(
        f"installing LiteLLM into {LITELLM_VENV} failed (exit {code}).\n"
        f"--- last lines of {log_path} ---\n{log_tail(log_path)}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def litellm_bin() -> Path:
    configured = os.environ.get("LITELLM_BIN")
    if configured:
        path = Path(configured)
        if not path.exists():
            pytest.fail(f"LITELLM_BIN={configured} does not exist", pytrace=False)
        return path
    return _install_litellm()


@pytest.fixture(scope="session")
def litellm(
    litellm_bin: Path, double: Double, e2e_secrets: Secrets, session_tmp: Path
) -> Iterator[LiteLLM]:
    config = Path(os.environ.get("E2E_LITELLM_CONFIG") or LITELLM_CONFIG)
    port = free_port()
    env = base_env(
        SUPERMEMORY_ANTHROPIC_BASE_URL=double.anthropic_base,
        ANTHROPIC_API_KEY=e2e_secrets.anthropic_key,
        LITELLM_MASTER_KEY=e2e_secrets.litellm_master_key,
        # Use the model cost map bundled with the package instead of fetching it.
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_BIN=str(litellm_bin),
    )
    # The wrapper sets LiteLLM's api_base from the backend: here the default,
    # supermemory-router, so Anthropic calls go to the double's /v3/ prefix.
    proc = start_process(
        "litellm",
        [str(LITELLM_WRAPPER), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=session_tmp,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            http_ok(f"{url}/health/liveliness"),
            proc=proc,
            timeout=LITELLM_START_TIMEOUT,
            what="GET /health/liveliness == 200",
        )
        yield LiteLLM(
            url=url, master_key=e2e_secrets.litellm_master_key, config=config, process=proc
        )
    finally:
        proc.stop()


def _router_bin() -> Path:
    name = "memory-router"
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        pytest.fail(
            "the memory-router console script is not installed; run `pip install -e .` "
            "in the repository root",
            pytrace=False,
        )
    return Path(found)


@pytest.fixture(scope="session")
def router(litellm: LiteLLM, e2e_secrets: Secrets, session_tmp: Path) -> Iterator[Router]:
    binary = _router_bin()
    port = free_port()
    # cwd is an empty directory so that a developer's .env cannot leak into the run.
    proc = start_process(
        "memory-router",
        [
            str(binary),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--litellm-url",
            litellm.url,
            "--config",
            str(ROUTER_CONFIG),
            "--log-level",
            "info",
        ],
        env=base_env(SUPERMEMORY_API_KEY=e2e_secrets.supermemory_key),
        cwd=session_tmp,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            http_ok(f"{url}/health"),
            proc=proc,
            timeout=ROUTER_START_TIMEOUT,
            what="GET /health == 200",
        )
        yield Router(
            url=url, supermemory_key=e2e_secrets.supermemory_key, litellm=litellm, process=proc
        )
    finally:
        proc.stop()


def _prometheus_bin() -> Path:
    configured = os.environ.get("PROMETHEUS_BIN")
    if configured:
        return Path(configured)
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found:
        return Path(found)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_path = LOG_DIR / "prometheus-install.log"
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        with log_path.open("wb") as log:
            for argv in (
                ["apt-get", "update"],
                ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
            ):
                subprocess.run(
                    argv, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=600, check=False
                )
        if Path("/usr/bin/prometheus").exists():
            return Path("/usr/bin/prometheus")
        pytest.fail(f"apt-get install prometheus failed.\n{log_tail(log_path)}", pytrace=False)
    pytest.fail(
        "Prometheus not found: install Debian's `prometheus` package or set PROMETHEUS_BIN",
        pytrace=False,
    )


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


@pytest.fixture(scope="session")
def prometheus(router: Router, session_tmp: Path) -> Iterator[Prometheus]:
    binary = _prometheus_bin()
    if not PROMETHEUS_CONFIG.exists():
        pytest.fail(f"{PROMETHEUS_CONFIG} is missing", pytrace=False)
    workdir = session_tmp / "prometheus"
    workdir.mkdir()
    config_path = workdir / "prometheus.yml"
    router_target = router.url.removeprefix("http://")
    config_path.write_text(
        yaml.safe_dump(
            adapt_prometheus_config(PROMETHEUS_CONFIG, router_target=router_target, interval="1s")
        )
    )
    port = free_port()
    proc = start_process(
        "prometheus",
        [
            str(binary),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        env=base_env(),
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            http_ok(f"{url}/-/ready"),
            proc=proc,
            timeout=PROMETHEUS_START_TIMEOUT,
            what="GET /-/ready == 200",
        )
        yield Prometheus(url=url, config=config_path, process=proc)
    finally:
        proc.stop()


# --------------------------------------------------------------------------- memory backends


class NetworkTrap:
    """A TCP listener that every memory-stack process has as its HTTP(S) proxy.

    Loopback is exempt (NO_PROXY), so the fake provider, the v5 double and LiteLLM are
    reached directly; a proxy-respecting call to anywhere else arrives here instead, is
    recorded (its request line only) and refused."""

    def __init__(self) -> None:
        self.connections: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
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


@dataclass
class Provider:
    """The fake Anthropic provider, and what it received."""

    url: str
    api_key: str
    process: ManagedProcess

    def requests(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/_double/requests", timeout=10.0, trust_env=False)
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()
        return records

    def requests_with(self, marker: str) -> list[dict[str, Any]]:
        return [r for r in self.requests() if marker in json.dumps(r["body"])]

    def hold(self, marker: str) -> None:
        httpx.post(f"{self.url}/_double/hold/{marker}", trust_env=False).raise_for_status()

    def allow(self, marker: str) -> None:
        httpx.post(f"{self.url}/_double/allow/{marker}", trust_env=False).raise_for_status()


@dataclass
class ApiDouble:
    """The Supermemory v5 API double as a process, and its test-only controls."""

    url: str
    api_key: str
    process: ManagedProcess

    def _post(self, path: str) -> None:
        httpx.post(f"{self.url}{path}", timeout=10.0, trust_env=False).raise_for_status()

    def hold(self, operation: str) -> None:
        self._post(f"/_double/hold/{operation}")

    def release(self) -> None:
        self._post("/_double/release")

    def fail(self, status: int, count: int = 1) -> None:
        self._post(f"/_double/fail/{status}?count={count}")

    def requests(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/_double/requests", timeout=10.0, trust_env=False)
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()
        return records


@dataclass
class BackendRouter:
    """A router running one memory backend, in front of the direct LiteLLM."""

    url: str
    backend: str
    litellm: LiteLLM
    process: ManagedProcess
    store: Path | None = None


@pytest.fixture(scope="session")
def network_trap() -> Iterator[NetworkTrap]:
    trap = NetworkTrap()
    yield trap
    trap.close()


@pytest.fixture(scope="session")
def provider(e2e_secrets: Secrets, session_tmp: Path) -> Iterator[Provider]:
    port = free_port()
    proc = start_process(
        "fake-provider",
        [sys.executable, str(FAKE_PROVIDER), "--port", str(port)],
        env=base_env(FAKE_PROVIDER_API_KEY=e2e_secrets.anthropic_key),
        cwd=session_tmp,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            http_ok(f"{url}/_double/health"),
            proc=proc,
            timeout=DOUBLE_START_TIMEOUT,
            what="GET /_double/health == 200",
        )
        yield Provider(url=url, api_key=e2e_secrets.anthropic_key, process=proc)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def api_double(e2e_secrets: Secrets, session_tmp: Path) -> Iterator[ApiDouble]:
    port = free_port()
    proc = start_process(
        "supermemory-v5-double",
        [sys.executable, str(API_DOUBLE), "--port", str(port)],
        env=base_env(SUPERMEMORY_DOUBLE_API_KEY=e2e_secrets.supermemory_key),
        cwd=session_tmp,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            http_ok(f"{url}/_double/health"),
            proc=proc,
            timeout=DOUBLE_START_TIMEOUT,
            what="GET /_double/health == 200",
        )
        yield ApiDouble(url=url, api_key=e2e_secrets.supermemory_key, process=proc)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def direct_litellm(
    litellm_bin: Path,
    provider: Provider,
    network_trap: NetworkTrap,
    e2e_secrets: Secrets,
    session_tmp: Path,
) -> Iterator[LiteLLM]:
    """LiteLLM as scripts/litellm runs it for MEMORY_ROUTER_MEMORY_BACKEND=local: Anthropic
    calls go straight to the provider (the fake one, by ANTHROPIC_PROVIDER_URL). The
    supermemory-api and off routers share it: the wrapper gives them the same base URL."""
    workdir = session_tmp / "direct-litellm"
    workdir.mkdir()
    port = free_port()
    env = base_env(
        MEMORY_ROUTER_MEMORY_BACKEND="local",
        ANTHROPIC_PROVIDER_URL=provider.url,
        ANTHROPIC_API_KEY=e2e_secrets.anthropic_key,
        LITELLM_MASTER_KEY=e2e_secrets.litellm_master_key,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_BIN=str(litellm_bin),
        **network_trap.env(),
    )
    proc = start_process(
        "litellm-direct",
        [
            str(LITELLM_WRAPPER),
            "--config",
            str(LITELLM_CONFIG),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            http_ok(f"{url}/health/liveliness"),
            proc=proc,
            timeout=LITELLM_START_TIMEOUT,
            what="GET /health/liveliness == 200",
        )
        yield LiteLLM(
            url=url, master_key=e2e_secrets.litellm_master_key, config=LITELLM_CONFIG, process=proc
        )
    finally:
        proc.stop()


def _backend_router(
    name: str, litellm: LiteLLM, workdir: Path, env: dict[str, str], store: Path | None = None
) -> Iterator[BackendRouter]:
    workdir.mkdir()
    port = free_port()
    proc = start_process(
        name,
        [
            str(_router_bin()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--litellm-url",
            litellm.url,
            "--config",
            str(ROUTER_CONFIG),
            "--log-level",
            "info",
        ],
        env=env,
        cwd=workdir,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            http_ok(f"{url}/health"),
            proc=proc,
            timeout=ROUTER_START_TIMEOUT,
            what="GET /health == 200",
        )
        yield BackendRouter(
            url=url,
            backend=env["MEMORY_ROUTER_MEMORY_BACKEND"],
            litellm=litellm,
            process=proc,
            store=store,
        )
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def router_local(
    direct_litellm: LiteLLM, network_trap: NetworkTrap, session_tmp: Path
) -> Iterator[BackendRouter]:
    """No Supermemory key anywhere in its environment."""
    workdir = session_tmp / "router-local"
    store = workdir / "data" / "memories.sqlite3"
    env = base_env(
        MEMORY_ROUTER_MEMORY_BACKEND="local",
        MEMORY_ROUTER_MEMORY_LOCAL_PATH=str(store),
        MEMORY_ROUTER_MEMORY_BUDGET_SECONDS=MEMORY_BUDGET,
        **network_trap.env(),
    )
    assert not any(name.startswith("SUPERMEMORY") for name in env)
    yield from _backend_router("memory-router-local", direct_litellm, workdir, env, store)


@pytest.fixture(scope="session")
def router_api(
    direct_litellm: LiteLLM, api_double: ApiDouble, network_trap: NetworkTrap, session_tmp: Path
) -> Iterator[BackendRouter]:
    env = base_env(
        MEMORY_ROUTER_MEMORY_BACKEND="supermemory-api",
        MEMORY_ROUTER_MEMORY_API_URL=api_double.url,
        SUPERMEMORY_API_KEY=api_double.api_key,
        MEMORY_ROUTER_MEMORY_BUDGET_SECONDS=MEMORY_BUDGET,
        **network_trap.env(),
    )
    yield from _backend_router("memory-router-api", direct_litellm, session_tmp / "router-api", env)


@pytest.fixture(scope="session")
def router_off(
    direct_litellm: LiteLLM, network_trap: NetworkTrap, e2e_secrets: Secrets, session_tmp: Path
) -> Iterator[BackendRouter]:
    """Memory off, with a Supermemory key set: it must go nowhere."""
    env = base_env(
        MEMORY_ROUTER_MEMORY_BACKEND="off",
        SUPERMEMORY_API_KEY=e2e_secrets.supermemory_key,
        **network_trap.env(),
    )
    yield from _backend_router("memory-router-off", direct_litellm, session_tmp / "router-off", env)
