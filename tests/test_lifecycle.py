"""The router as a real process started by its CLI: SIGHUP reload, SIGTERM drain, logs."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import SM_KEY
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.configs import write_rules
from tests.support.polling import wait_for

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def test_sighup_reloads_the_config(launch, tmp_path: Path, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
    cfg = write_rules(tmp_path / "rules.yaml", "default_user_id: first")
    router = launch(cfg, MEMORY_ROUTER_WATCH_CONFIG="false")
    write_rules(cfg, "default_user_id: second")
    assert httpx.get(f"{router.url}/memory-routing/info").json()["user_id"] == "first"
    router.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: httpx.get(f"{router.url}/memory-routing/info").json()["user_id"] == "second")
    info = httpx.get(f"{router.url}/memory-routing/info").json()
    assert info["config"]["last_reload"]["trigger"] == "sighup"
    assert router.proc.poll() is None


def test_sigterm_drains_in_flight_streams_then_exits_0(
    launch,
    tmp_path: Path,
    upstream: FakeUpstream,  # type: ignore[no-untyped-def]
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


def test_sigterm_drain_is_bounded(launch, tmp_path: Path, upstream: FakeUpstream) -> None:  # type: ignore[no-untyped-def]
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


def test_process_logs_decisions_and_never_the_key(
    launch,
    tmp_path: Path,
    upstream: FakeUpstream,  # type: ignore[no-untyped-def]
) -> None:
    router = launch(
        write_rules(tmp_path / "rules.yaml", "default_user_id: logs"), LOG_LEVEL="DEBUG"
    )
    httpx.post(
        f"{router.url}/v1/chat/completions",
        json={**CHAT, "stream": False},
        headers={"x-request-id": "rid-log-1"},
    )
    httpx.post(
        f"{router.url}/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": "bad id"}
    )
    httpx.post(
        f"{router.url}/v1/chat/completions", json=CHAT, headers={"x-supermemory-api-key": SM_KEY}
    )  # even when a client sends it
    httpx.post(  # or names it as its id, which the routing line would show
        f"{router.url}/v1/chat/completions",
        json={**CHAT, "stream": False},
        headers={"x-memory-user-id": SM_KEY},
    )
    router.proc.send_signal(signal.SIGTERM)
    assert router.proc.wait(10) == 0
    logs = router.logs()
    assert "rid-log-1 routing model=m user_id=logs source=default" in logs
    assert "injected=x-sm-user-id,x-supermemory-api-key" in logs
    assert "rejected" in logs
    assert "user_id=[redacted] source=custom_header" in logs
    assert SM_KEY not in logs


def test_startup_warns_when_the_key_is_missing(launch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rules = write_rules(tmp_path / "rules.yaml", "default_user_id: nokey")
    router = launch(rules, SUPERMEMORY_API_KEY="")
    router.proc.send_signal(signal.SIGTERM)
    router.proc.wait(10)
    assert "SUPERMEMORY_API_KEY is not set" in router.logs()
