"""Fixtures for the live tier: the shipped compose files on a real Docker engine.

``docker_engine`` runs ``tests/live/provision.sh`` once per session (engine, Compose v2 and
the local stand-in images; see that script). When this machine cannot have an engine, the
tier is skipped and says why, unless ``MEMORY_ROUTER_REQUIRE_LIVE=1`` (set by ``.ci/run``),
which turns the skip into a failure.

Each stack fixture is module-scoped: it comes up (``up --wait``) before the module's first
test and goes down (``down -v``) after its last, so only one stack runs at a time.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.doubles.controls import DoubleControls
from tests.support.environment import loopback_without_proxy

from .stack import (
    HERE,
    LOG_DIR,
    REPLICAS_FILES,
    SINGLE_FILES,
    Keys,
    Prometheus,
    Stack,
    running,
)

PROVISION = HERE / "provision.sh"
PROVISION_TIMEOUT = 1800
REQUIRE_ENV = "MEMORY_ROUTER_REQUIRE_LIVE"
UNAVAILABLE = 3  # provision.sh's exit status when no engine can be had here


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but the live tier cannot run: {reason}", pytrace=False)
    pytest.skip(f"live tier: {reason}")


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A running engine with Compose v2 and the stand-in images, or a skip saying why."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / "provision.log"
    try:
        with log_path.open("w") as log:
            code = subprocess.run(
                ["bash", str(PROVISION)],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=PROVISION_TIMEOUT,
                check=False,
            ).returncode
    except FileNotFoundError:
        _unavailable("bash is not installed")
        return
    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
    if code == UNAVAILABLE:
        _unavailable(tail.splitlines()[-1] if tail else f"see {log_path}")
    elif code != 0:
        pytest.fail(
            f"tests/live/provision.sh failed (exit {code}); log: {log_path}\n{tail}",
            pytrace=False,
        )


@pytest.fixture(scope="session", autouse=True)
def _loopback_without_proxy() -> Iterator[None]:
    """The SDK clients honour *_PROXY; the published ports are on loopback."""
    with loopback_without_proxy():
        yield


@dataclass
class SingleStack:
    """docker-compose.yml as shipped, with the test overrides (see stack.py)."""

    stack: Stack
    keys: Keys
    router_url: str
    prometheus: Prometheus
    double: DoubleControls


@dataclass
class ReplicasStack:
    """docker-compose.replicas.yml as shipped, with the test overrides."""

    stack: Stack
    keys: Keys
    lb_url: str
    prometheus: Prometheus
    double: DoubleControls


# Rate limits the replicas tests use, added to that stack's copy of the rules.
REPLICA_LIMITS = """
rate_limits:
  per_user_id:
    live-burst: {requests_per_minute: 1, burst: 5}
    live-redis-down: {requests_per_minute: 1, burst: 5}
"""


@pytest.fixture(scope="module")
def single_stack(docker_engine: None) -> Iterator[SingleStack]:
    keys = Keys()
    stack = Stack("single", SINGLE_FILES, keys.env_file())
    with running(stack):
        yield SingleStack(
            stack=stack,
            keys=keys,
            router_url=stack.url("router", 8765),
            prometheus=Prometheus(stack.url("prometheus", 9090)),
            double=DoubleControls(stack.url("supermemory", 9000)),
        )


@pytest.fixture(scope="module")
def replicas_stack(docker_engine: None) -> Iterator[ReplicasStack]:
    keys = Keys()
    stack = Stack("replicas", REPLICAS_FILES, keys.env_file())
    rules = stack.router_dir / "config.yaml"
    rules.write_text(rules.read_text() + REPLICA_LIMITS)
    with running(stack):
        yield ReplicasStack(
            stack=stack,
            keys=keys,
            lb_url=stack.url("lb", 8765),
            prometheus=Prometheus(stack.url("prometheus", 9090)),
            double=DoubleControls(stack.url("supermemory", 9000)),
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """On failure, attach the tail of every service's log in the stack the test used."""
    report = yield
    if report.failed and call.when == "call":
        for value in getattr(item, "funcargs", {}).values():
            stack = getattr(value, "stack", None)
            if isinstance(stack, Stack):
                try:
                    logs = stack.logs(tail=30)
                except Exception as exc:  # the engine itself may be the problem
                    logs = f"(could not read the logs: {exc})"
                report.sections.append((f"{stack.project} service logs (tail)", logs))
    return report
