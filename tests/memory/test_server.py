"""The store queue at shutdown, with the router as a real process started by its CLI and
the Supermemory v5 double holding the store in flight."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.conftest import Launch
from tests.doubles.fake_litellm import FakeUpstream
from tests.memory.conftest import Double
from tests.support.configs import write_rules
from tests.support.polling import wait_for
from tests.support.router_process import RouterProcess

CHAT = {"model": "m", "messages": [{"role": "user", "content": "remember the drain"}]}
STORED = "User: remember the drain\nAssistant: hello from fake"


def _launch(launch: Launch, tmp_path: Path, double: Double, **env: str) -> RouterProcess:
    return launch(
        write_rules(tmp_path / "rules.yaml", "default_user_id: drain"),
        MEMORY_ROUTER_MEMORY_BACKEND="supermemory-api",
        MEMORY_ROUTER_MEMORY_API_URL=double.url,
        SUPERMEMORY_API_KEY=double.api_key,
        **env,
    )


def test_sigterm_drains_the_store_queue_then_exits_0(
    launch: Launch, tmp_path: Path, double: Double, upstream: FakeUpstream
) -> None:
    router = _launch(launch, tmp_path, double)
    double.state.hold.add("add")
    answer = httpx.post(f"{router.url}/v1/chat/completions", json=CHAT, timeout=10)
    assert answer.status_code == 200  # the answer did not wait for the store
    wait_for(lambda: double.state.held == 1)  # the store is in flight, held by the double

    router.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "Waiting for application shutdown" in router.logs(), timeout=10)
    assert router.proc.poll() is None  # still draining the queue
    double.state.release.set()

    assert router.proc.wait(15) == 0
    assert double.state.texts("drain") == [STORED]
    assert "not stored at shutdown" not in router.logs()


def test_what_the_drain_window_cannot_store_is_counted_lost(
    launch: Launch, tmp_path: Path, double: Double, upstream: FakeUpstream
) -> None:
    router = _launch(launch, tmp_path, double, MEMORY_ROUTER_DRAIN_SECONDS="1")
    double.state.hold.add("add")
    answer = httpx.post(f"{router.url}/v1/chat/completions", json=CHAT, timeout=10)
    assert answer.status_code == 200
    wait_for(lambda: double.state.held == 1)

    router.proc.send_signal(signal.SIGTERM)
    assert router.proc.wait(15) == 0  # the window is bounded: the held store is given up
    assert "memory store queue: 1 turn(s) not stored at shutdown" in router.logs()
