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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from tests.doubles.controls import DoubleControls
from tests.support.environment import loopback_without_proxy
from tests.support.provision import run_to_log

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
    log_path = LOG_DIR / "provision.log"
    try:
        code, tail = run_to_log(["bash", str(PROVISION)], log_path, PROVISION_TIMEOUT)
    except FileNotFoundError:
        _unavailable("bash is not installed")
        return
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
class LiveStack:
    """A shipped compose file running with the test overrides (see stack.py): the URL the
    clients call, Prometheus, and the Supermemory double's controls."""

    stack: Stack
    keys: Keys
    url: str
    prometheus: Prometheus
    double: DoubleControls


class SingleStack(LiveStack):
    """docker-compose.yml: the clients call the router."""

    @property
    def router_url(self) -> str:
        return self.url


class ReplicasStack(LiveStack):
    """docker-compose.replicas.yml: the clients call the nginx balancer."""

    @property
    def lb_url(self) -> str:
        return self.url


# Rate limits the replicas tests use, added to that stack's copy of the rules.
REPLICA_LIMITS = """
rate_limits:
  per_user_id:
    live-burst: {requests_per_minute: 1, burst: 5}
    live-redis-down: {requests_per_minute: 1, burst: 5}
"""

S = TypeVar("S", SingleStack, ReplicasStack)


def _up(kind: type[S], files: tuple[Path, ...], entry: str, more_rules: str = "") -> Iterator[S]:
    """The stack up (``up --wait``) with fresh keys and ``more_rules`` added to its copy of
    the router's rules; down (``down -v``) afterwards."""
    keys = Keys()
    stack = Stack(kind.__name__.removesuffix("Stack").lower(), files, keys.env_file())
    rules = stack.router_dir / "config.yaml"
    rules.write_text(rules.read_text() + more_rules)
    with running(stack):
        yield kind(
            stack=stack,
            keys=keys,
            url=stack.url(entry, 8765),
            prometheus=Prometheus(stack.url("prometheus", 9090)),
            double=DoubleControls(stack.url("supermemory", 9000)),
        )


@pytest.fixture(scope="module")
def single_stack(docker_engine: None) -> Iterator[SingleStack]:
    yield from _up(SingleStack, SINGLE_FILES, "router")


@pytest.fixture(scope="module")
def replicas_stack(docker_engine: None) -> Iterator[ReplicasStack]:
    yield from _up(ReplicasStack, REPLICAS_FILES, "lb", REPLICA_LIMITS)


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
