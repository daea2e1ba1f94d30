"""The server the router runs on (router/server.py), as a real process started by the CLI: on
SIGTERM it stops accepting, lets in-flight streams finish within the drain bound, then exits
0."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import Launch
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.configs import write_rules
from tests.support.polling import wait_for

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def test_sigterm_drains_in_flight_streams_then_exits_0(
    launch: Launch,
    tmp_path: Path,
    upstream: FakeUpstream,
) -> None:
    router = launch(write_rules(tmp_path / "rules.yaml", "default_user_id: drain"))
    with (
        httpx.Client(timeout=10) as c,
        c.stream(
            "POST",
            f"{router.url}/v1/chat/completions",
            json=CHAT,
            headers={"x-test-chunks": "8", "x-test-step": "drain"},
        ) as r,
    ):
        chunks = r.iter_raw()
        next(chunks)  # upstream sends the rest only when allowed
        router.proc.send_signal(signal.SIGTERM)

        def refusing() -> bool:
            try:
                httpx.get(f"{router.url}/health", timeout=0.5)
            except httpx.TransportError:
                return True
            return False

        wait_for(refusing, timeout=5)  # no new connections while draining
        assert router.proc.poll() is None  # still there for the stream in flight
        upstream.allow("drain", 20)
        rest = b"".join(chunks)
    assert rest.endswith(b"data: [DONE]\n\n"), "the in-flight stream must finish"
    assert router.proc.wait(10) == 0


def test_sigterm_drain_is_bounded(launch: Launch, tmp_path: Path, upstream: FakeUpstream) -> None:
    rules = write_rules(tmp_path / "rules.yaml", "default_user_id: held")
    router = launch(rules, MEMORY_ROUTER_DRAIN_SECONDS="1")
    with (
        httpx.Client(timeout=10) as c,
        c.stream(
            "POST",
            f"{router.url}/v1/chat/completions",
            json=CHAT,
            headers={"x-test-hold": "1"},
        ) as r,
    ):
        chunks = r.iter_raw()
        next(chunks)
        router.proc.send_signal(signal.SIGTERM)
        with pytest.raises(httpx.HTTPError):  # upstream holds it open: the drain ends it
            for _ in chunks:
                pass
    assert router.proc.wait(10) == 0  # a drain without its bound would hold forever
    assert upstream.disconnected.wait(5), "the upstream stream is closed too"
