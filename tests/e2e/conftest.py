"""Fixtures for the end-to-end tier (the services themselves: tests/e2e/services.py).

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

Where the binaries come from (what is missing, scripts/provision.sh installs):
  * LiteLLM: $LITELLM_BIN, else <repo>/.venvs/litellm/bin/litellm, which
    `scripts/provision.sh litellm` creates or brings up to date with
    tests/e2e/requirements-litellm.txt. Skips only when the package index cannot be reached
    at all, and never when $CI is set.
  * memory-router: the console script installed by `pip install -e .` next to this Python.
  * Prometheus: $PROMETHEUS_BIN, else `prometheus` on PATH / /usr/bin/prometheus, else
    `scripts/provision.sh prometheus` (apt-get as root; otherwise it says what to install).
  * The doubles: `python -m tests.doubles.<name>` (tests/doubles/).

$E2E_LITELLM_CONFIG points LiteLLM at another config file. It exists only to show the tier
going red against a broken config (e.g. forward_client_headers_to_llm_api: false); never set
it otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.support.environment import clean_env, loopback_without_proxy
from tests.support.processes import Process
from tests.support.provision import UNREACHABLE, ProvisionError, provision, system_tool

from .services import (
    LITELLM_CONFIG,
    LOG_DIR,
    MEMORY_BUDGET,
    REPO,
    ApiDouble,
    BackendRouter,
    Double,
    LiteLLM,
    NetworkTrap,
    Prometheus,
    Provider,
    Router,
    Secrets,
    double_argv,
    double_env,
    in_ci,
    litellm_argv,
    running_prometheus,
    serving,
    shipped_router_argv,
)

LITELLM_VENV = REPO / ".venvs" / "litellm"


# --------------------------------------------------------------------------- hooks


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On failure, attach the tail of every process log the test used."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for value in funcargs.values():
            process = getattr(value, "process", None)
            if isinstance(process, Process):
                report.sections.append(
                    (f"{process.name} log tail ({process.log_path})", process.tail(40))
                )
    return report


# --------------------------------------------------------------------------- provisioning


@pytest.fixture(scope="session")
def litellm_bin() -> Path:
    configured = os.environ.get("LITELLM_BIN")
    if configured:
        path = Path(configured)
        if not path.exists():
            pytest.fail(f"LITELLM_BIN={configured} does not exist", pytrace=False)
        return path
    try:
        provision("litellm", LOG_DIR / "provision-litellm.log")
    except ProvisionError as exc:
        if exc.status == UNREACHABLE and not in_ci():
            pytest.skip(str(exc))
        pytest.fail(str(exc), pytrace=False)
    return LITELLM_VENV / "bin" / "litellm"


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    configured = os.environ.get("PROMETHEUS_BIN")
    if configured:
        return Path(configured)
    try:
        return Path(system_tool("prometheus", LOG_DIR, also=("/usr/bin/prometheus",)))
    except ProvisionError as exc:
        pytest.fail(f"Prometheus is needed (or set PROMETHEUS_BIN): {exc}", pytrace=False)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def e2e_secrets() -> Secrets:
    return Secrets()


@pytest.fixture(scope="session")
def session_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session", autouse=True)
def _loopback_without_proxy() -> Iterator[None]:
    """The SDK clients in the tests honour *_PROXY; keep loopback traffic direct."""
    with loopback_without_proxy():
        yield


@pytest.fixture(scope="session")
def double(e2e_secrets: Secrets, session_tmp: Path) -> Iterator[Double]:
    yield from _double(
        Double, "supermemory-double", "supermemory_router", e2e_secrets.supermemory_key, session_tmp
    )


H = TypeVar("H", Double, Provider, ApiDouble)


def _double(handle: type[H], name: str, module: str, key: str, cwd: Path) -> Iterator[H]:
    """A double from tests/doubles/ as a process, its key in the environment variable it
    reads (``SUPERMEMORY_DOUBLE_API_KEY``, the provider's ``FAKE_PROVIDER_API_KEY``)."""
    variable = "FAKE_PROVIDER_API_KEY" if handle is Provider else "SUPERMEMORY_DOUBLE_API_KEY"
    env = double_env(**{variable: key})
    with serving(name, "double", double_argv(module), env=env, cwd=cwd) as (proc, url):
        yield handle(url=url, api_key=key, process=proc)


@pytest.fixture(scope="session")
def litellm(
    litellm_bin: Path, double: Double, e2e_secrets: Secrets, session_tmp: Path
) -> Iterator[LiteLLM]:
    config = Path(os.environ.get("E2E_LITELLM_CONFIG") or LITELLM_CONFIG)
    # The wrapper sets LiteLLM's api_base from the backend: here the default,
    # supermemory-router, so Anthropic calls go to the double's /v3/ prefix.
    env = {"SUPERMEMORY_ANTHROPIC_BASE_URL": double.anthropic_base}
    yield from _litellm("litellm", config, litellm_bin, e2e_secrets, session_tmp, env)


def _litellm(
    name: str,
    config: Path,
    litellm_bin: Path,
    e2e_secrets: Secrets,
    cwd: Path,
    env: dict[str, str],
) -> Iterator[LiteLLM]:
    full_env = clean_env(
        ANTHROPIC_API_KEY=e2e_secrets.anthropic_key,
        LITELLM_MASTER_KEY=e2e_secrets.litellm_master_key,
        # Use the model cost map bundled with the package instead of fetching it.
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_BIN=str(litellm_bin),
        **env,
    )
    with serving(name, "litellm", litellm_argv(config), env=full_env, cwd=cwd) as (proc, url):
        yield LiteLLM(
            url=url, master_key=e2e_secrets.litellm_master_key, config=config, process=proc
        )


@pytest.fixture(scope="session")
def router(litellm: LiteLLM, e2e_secrets: Secrets, session_tmp: Path) -> Iterator[Router]:
    # cwd is an empty directory so that a developer's .env cannot leak into the run.
    env = clean_env(SUPERMEMORY_API_KEY=e2e_secrets.supermemory_key)
    argv = shipped_router_argv(litellm.url)
    with serving("memory-router", "router", argv, env=env, cwd=session_tmp) as (proc, url):
        yield Router(
            url=url, supermemory_key=e2e_secrets.supermemory_key, litellm=litellm, process=proc
        )


@pytest.fixture(scope="session")
def prometheus(prometheus_bin: Path, router: Router, session_tmp: Path) -> Iterator[Prometheus]:
    workdir = session_tmp / "prometheus"
    with running_prometheus("prometheus", prometheus_bin, router.url, workdir) as prometheus:
        yield prometheus


# --------------------------------------------------------------------------- memory backends


@pytest.fixture(scope="session")
def network_trap() -> Iterator[NetworkTrap]:
    trap = NetworkTrap()
    yield trap
    trap.close()


@pytest.fixture(scope="session")
def provider(e2e_secrets: Secrets, session_tmp: Path) -> Iterator[Provider]:
    yield from _double(
        Provider, "fake-provider", "anthropic_provider", e2e_secrets.anthropic_key, session_tmp
    )


@pytest.fixture(scope="session")
def api_double(e2e_secrets: Secrets, session_tmp: Path) -> Iterator[ApiDouble]:
    yield from _double(
        ApiDouble,
        "supermemory-v5-double",
        "supermemory_api",
        e2e_secrets.supermemory_key,
        session_tmp,
    )


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
    env = {
        "MEMORY_ROUTER_MEMORY_BACKEND": "local",
        "ANTHROPIC_PROVIDER_URL": provider.url,
        **network_trap.env(),
    }
    yield from _litellm("litellm-direct", LITELLM_CONFIG, litellm_bin, e2e_secrets, workdir, env)


def _backend_router(
    backend: str,
    litellm: LiteLLM,
    trap: NetworkTrap,
    workdir: Path,
    store: Path | None = None,
    **env: str,
) -> Iterator[BackendRouter]:
    """A router running ``backend`` in front of ``litellm``, with the network trap as its
    proxy and ``env`` besides; its log is ``memory-router-<workdir name>.log``."""
    workdir.mkdir()
    full_env = clean_env(MEMORY_ROUTER_MEMORY_BACKEND=backend, **trap.env(), **env)
    # Nothing of Supermemory's but what the fixture passes (the local router: nothing).
    has_key = any(name.startswith("SUPERMEMORY") for name in full_env)
    assert has_key == ("SUPERMEMORY_API_KEY" in env)
    argv = shipped_router_argv(litellm.url)
    name = f"memory-{workdir.name}"
    with serving(name, "router", argv, env=full_env, cwd=workdir) as (proc, url):
        yield BackendRouter(url=url, backend=backend, litellm=litellm, process=proc, store=store)


@pytest.fixture(scope="session")
def router_local(
    direct_litellm: LiteLLM, network_trap: NetworkTrap, session_tmp: Path
) -> Iterator[BackendRouter]:
    """No Supermemory key anywhere in its environment."""
    workdir = session_tmp / "router-local"
    store = workdir / "data" / "memories.sqlite3"
    yield from _backend_router(
        "local",
        direct_litellm,
        network_trap,
        workdir,
        store,
        MEMORY_ROUTER_MEMORY_LOCAL_PATH=str(store),
        MEMORY_ROUTER_MEMORY_BUDGET_SECONDS=MEMORY_BUDGET,
    )


@pytest.fixture(scope="session")
def router_api(
    direct_litellm: LiteLLM, api_double: ApiDouble, network_trap: NetworkTrap, session_tmp: Path
) -> Iterator[BackendRouter]:
    yield from _backend_router(
        "supermemory-api",
        direct_litellm,
        network_trap,
        session_tmp / "router-api",
        MEMORY_ROUTER_MEMORY_API_URL=api_double.url,
        SUPERMEMORY_API_KEY=api_double.api_key,
        MEMORY_ROUTER_MEMORY_BUDGET_SECONDS=MEMORY_BUDGET,
    )


@pytest.fixture(scope="session")
def router_off(
    direct_litellm: LiteLLM, network_trap: NetworkTrap, e2e_secrets: Secrets, session_tmp: Path
) -> Iterator[BackendRouter]:
    """Memory off, with a Supermemory key set: it must go nowhere."""
    yield from _backend_router(
        "off",
        direct_litellm,
        network_trap,
        session_tmp / "router-off",
        SUPERMEMORY_API_KEY=e2e_secrets.supermemory_key,
    )
