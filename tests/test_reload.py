"""Hot reload of the routing config (router/reload.py): a file change or SIGHUP replaces the
rules, a bad file is refused and the old rules keep serving, a request in flight keeps its
decision."""

from __future__ import annotations

import logging
import shutil
import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, SM_KEY, Launch, RouterFactory
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.configs import write_rules
from tests.support.environment import clean_env
from tests.support.polling import wait_for
from tests.support.processes import Processes
from tests.support.router_process import start_router_process

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_config_file_change_takes_effect_without_restart(
    start_router: RouterFactory, upstream: FakeUpstream, tmp_path: Path, client: httpx.Client
) -> None:
    cfg = write_rules(tmp_path / "rules.yaml", "default_user_id: before\n")
    app, url = start_router(config=cfg)
    assert client.get(f"{url}/memory-routing/info").json()["user_id"] == "before"
    old_digest = app.router.rules.digest

    write_rules(cfg, "default_user_id: after\n")
    wait_for(lambda: client.get(f"{url}/memory-routing/info").json()["user_id"] == "after")
    client.post(f"{url}/v1/chat/completions", json=CHAT)
    assert upstream.last().header("x-sm-user-id") == "after"

    info = client.get(f"{url}/memory-routing/info").json()["config"]
    assert info["sha256"] == app.router.rules.digest != old_digest
    assert info["last_reload"]["ok"] is True and info["last_reload"]["trigger"] == "file"
    registry = app.metrics.registry
    assert registry.get_sample_value("memory_router_config_info", {"sha256": info["sha256"]}) == 1
    assert registry.get_sample_value("memory_router_config_info", {"sha256": old_digest}) is None
    assert registry.get_sample_value("memory_router_config_last_reload_success") == 1


def test_invalid_config_is_refused_and_old_rules_keep_serving(
    start_router: RouterFactory,
    upstream: FakeUpstream,
    tmp_path: Path,
    client: httpx.Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    cfg = write_rules(tmp_path / "rules.yaml", "default_user_id: stable\n")
    app, url = start_router(config=cfg)
    with caplog.at_level("ERROR", logger="memory_router"):
        cfg.write_text("user_id_mappings:\n  default_user_id: 'not valid'\n")
        wait_for(
            lambda: app.metrics.registry.get_sample_value(
                "memory_router_config_reloads_total", {"trigger": "file", "outcome": "failure"}
            )
        )
    assert any(
        "refused" in r.getMessage() and "default_user_id" in r.getMessage() for r in caplog.records
    )
    client.post(f"{url}/v1/chat/completions", json=CHAT)
    assert upstream.last().header("x-sm-user-id") == "stable"
    info = client.get(f"{url}/memory-routing/info").json()
    assert info["user_id"] == "stable"
    assert info["config"]["last_reload"]["ok"] is False
    assert "default_user_id" in info["config"]["last_reload"]["error"]
    assert app.metrics.registry.get_sample_value("memory_router_config_last_reload_success") == 0


def test_in_flight_request_keeps_its_decision_across_a_reload(
    start_router: RouterFactory, upstream: FakeUpstream, tmp_path: Path
) -> None:
    cfg = write_rules(tmp_path / "rules.yaml", "default_user_id: old-rules\n")
    app, url = start_router(config=cfg, watch_config=False)
    with (
        httpx.Client(timeout=10) as c,
        c.stream(
            "POST",
            f"{url}/v1/chat/completions",
            json={**CHAT, "stream": True},
            headers={"x-test-chunks": "3", "x-test-step": "reload"},
        ) as r,
    ):
        chunks = r.iter_raw()
        next(chunks)  # upstream sends no more until allowed: the request is in flight
        write_rules(cfg, "default_user_id: new-rules\n")
        assert app.reloader.reload("sighup")
        upstream.allow("reload", 10)
        rest = b"".join(chunks)
    assert rest.endswith(b"data: [DONE]\n\n")
    assert upstream.last().header("x-sm-user-id") == "old-rules"
    httpx.post(f"{url}/v1/chat/completions", json=CHAT)
    assert upstream.last().header("x-sm-user-id") == "new-rules"


def test_sighup_reloads_the_config(launch: Launch, tmp_path: Path, upstream: FakeUpstream) -> None:
    cfg = write_rules(tmp_path / "rules.yaml", "default_user_id: first")
    router = launch(cfg, MEMORY_ROUTER_WATCH_CONFIG="false")
    write_rules(cfg, "default_user_id: second")
    assert httpx.get(f"{router.url}/memory-routing/info").json()["user_id"] == "first"
    router.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: httpx.get(f"{router.url}/memory-routing/info").json()["user_id"] == "second")
    info = httpx.get(f"{router.url}/memory-routing/info").json()
    assert info["config"]["last_reload"]["trigger"] == "sighup"
    assert router.proc.poll() is None


def test_in_a_checkout_the_router_watches_its_own_rules_file(
    upstream_url: str, upstream: FakeUpstream, tmp_path: Path
) -> None:
    """Started in a checkout without --config, the router runs ./router/config.yaml, says
    so, and reloads that file when it is edited."""
    repo = tmp_path / "repo"
    (repo / "router").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", repo / "pyproject.toml")
    rules = write_rules(repo / "router" / "config.yaml", "default_user_id: checkout-first")
    processes = Processes(tmp_path / "logs")
    env = clean_env(SUPERMEMORY_API_KEY=SM_KEY, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    try:
        router = start_router_process(processes, upstream_url, env, cwd=repo)
        info = httpx.get(f"{router.url}/memory-routing/info").json()
        assert info["user_id"] == "checkout-first"
        assert info["config"]["path"] == str(rules)
        assert info["config"]["origin"] == "checkout"
        assert info["config"]["reason"] == "the working directory is a memory-router checkout"
        assert f"config {rules} (checkout: the working directory is" in router.logs()

        write_rules(rules, "default_user_id: checkout-edited")
        wait_for(
            lambda: httpx.get(f"{router.url}/memory-routing/info").json()["user_id"]
            == "checkout-edited",
            timeout=10,
            what="the edited checkout rules to be reloaded",
        )
        httpx.post(f"{router.url}/v1/chat/completions", json=CHAT)
        assert upstream.last().header("x-sm-user-id") == "checkout-edited"
    finally:
        processes.stop_all(timeout=5)


def test_the_reload_line_says_what_became_of_the_rate_limits(
    start_router: RouterFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = write_rules(tmp_path / "rules.yaml", "default_user_id: d")
    app, _ = start_router(config=cfg, watch_config=False)

    def reload_line() -> str:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="memory_router"):
            assert app.reloader.reload("sighup")
        (line,) = [r.getMessage() for r in caplog.records if "config reloaded" in r.getMessage()]
        return line

    assert reload_line().endswith(", 0 rules, rate limits: none (unchanged); file unchanged")
    write_rules(
        cfg,
        "default_user_id: d",
        rate_limits="""
        default: {requests_per_minute: 60, tokens_per_minute: 1000}
        per_user_id: {a: {burst: 3}, b: {requests_per_minute: null}}
        """,
    )
    assert reload_line().endswith(
        ", 0 rules, rate limits: default 60 requests/min (burst 10), 1000 tokens/min, "
        "2 ids with their own (changed)"
    )
    # The rules change, the limits do not.
    text = cfg.read_text().replace("default_user_id: d", "default_user_id: e")
    cfg.write_text(text)
    line = reload_line()
    assert line.endswith("2 ids with their own (unchanged)")
    assert line.startswith(f"config reloaded (sighup): {cfg} sha256 ")
