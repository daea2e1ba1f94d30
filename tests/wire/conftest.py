"""The wire tier: the real ``memory-router`` process between raw-socket peers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.configs import write_rules
from tests.support.environment import clean_env
from tests.support.processes import Process, Processes, rss_kib
from tests.support.router_process import start_router_process
from tests.wire.peer import Script, ScriptedUpstream

KEY = "sm_wire_key_0123456789abcdef"
RULES = """
header_patterns:
  - header: user-agent
    pattern: "^OpenAIClientImpl/Java"
    user_id: pycharm-ai-chat
default_user_id: default-dev
"""


@dataclass
class Router:
    process: Process
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kib(self) -> int:
        return rss_kib(self.process.pid)["VmRSS"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/wire/" in str(item.fspath):
            item.add_marker(pytest.mark.wire)


@pytest.fixture
def upstream() -> Iterator[Callable[[Script], ScriptedUpstream]]:
    started: list[ScriptedUpstream] = []

    def start(script: Script) -> ScriptedUpstream:
        server = ScriptedUpstream(script)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def router(tmp_path: Path) -> Iterator[Callable[..., Router]]:
    """Start the router CLI in front of an upstream: ``router(upstream, **env)``."""
    processes = Processes(tmp_path)
    rules = write_rules(tmp_path / "rules.yaml", RULES)

    def start(upstream: ScriptedUpstream, **env: str) -> Router:
        full_env = clean_env(**{"SUPERMEMORY_API_KEY": KEY, "LOG_LEVEL": "WARNING", **env})
        router = start_router_process(processes, upstream.url, full_env, config=rules)
        return Router(router.process, int(router.url.rsplit(":", 1)[1]))

    yield start
    processes.stop_all()
