"""The wire tier: the real ``memory-router`` process between raw-socket peers."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.processes import Process, Processes, rss_kib
from tests.wire.peer import Script, ScriptedUpstream

KEY = "sm_wire_key_0123456789abcdef"
RULES = """\
user_id_mappings:
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
    exe = shutil.which("memory-router")
    assert exe, "memory-router is not installed: pip install -e ."
    processes = Processes(tmp_path)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)

    def start(upstream: ScriptedUpstream, **env: str) -> Router:
        port = free_port()
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_ROUTER_")}
        full_env.update({"SUPERMEMORY_API_KEY": KEY, "LOG_LEVEL": "WARNING", **env})
        process = processes.start(
            f"router-{port}",
            [exe, "--port", str(port), "--litellm-url", upstream.url, "--config", str(rules)],
            env=full_env,
        )
        process.wait_http_ok(f"http://127.0.0.1:{port}/health")
        return Router(process, port)

    yield start
    processes.stop_all()
