"""scripts/dev.sh: LiteLLM and the router as two local processes in one command.

It runs in a copy of the checkout (never this one: a developer's own .env and .dev/ stay
out of it), its .env filled in as a user would, with LiteLLM's Anthropic base URL on the
Supermemory double and LITELLM_BIN on the LiteLLM the tier already has. The copy's .venv
is this Python's, so the router is not installed again (the README-path test installs it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.doubles.controls import header_values
from tests.doubles.supermemory_router import ANSWER_PREFIX
from tests.support.checkout import copy_checkout, fill_env_file
from tests.support.environment import clean_env
from tests.support.fetch import fetch
from tests.support.polling import until_passes, wait_for
from tests.support.ports import HOST, free_port
from tests.support.processes import Process, group_members

from .services import LITELLM_START_TIMEOUT, Double, Secrets, press_ctrl_c, start_dev_script

pytestmark = pytest.mark.e2e

SCRIPT = "scripts/dev.sh"
STOP_TIMEOUT = 60.0  # dev.sh itself gives its processes 40 s before SIGKILL


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    copy = copy_checkout(tmp_path / "memory-router")
    venv = Path(sys.prefix)
    if (venv / "bin" / "memory-router").exists():
        (copy / ".venv").symlink_to(venv)
    return copy


def _filled_env(checkout: Path, values: dict[str, str]) -> None:
    (checkout / ".env").write_text((checkout / ".env.example").read_text())
    fill_env_file(checkout / ".env", values)


def _listening(port: int) -> bool:
    try:
        fetch(f"http://{HOST}:{port}/", timeout=2)
    except OSError:
        return False
    return True


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {name.decode(): value.decode(errors="replace") for name, value in pairs}


def _alive(pids: dict[int, str]) -> list[int]:
    """Those of ``pids`` still running (a zombie counts as gone)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            alive.append(pid)
    return alive


@contextlib.contextmanager
def _listener(port: int) -> Iterator[None]:
    with socket.socket() as sock:
        sock.bind((HOST, port))
        sock.listen()
        yield


def _run_to_end(checkout: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(checkout / SCRIPT)],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "stop",
    [
        # A terminal's Ctrl-C reaches the whole group: each process gets SIGINT too.
        pytest.param(press_ctrl_c, id="ctrl-c"),
        # SIGTERM to dev.sh alone (kill, a process manager): it must stop the rest itself.
        pytest.param(lambda dev: os.kill(dev.pid, signal.SIGTERM), id="sigterm-to-dev.sh"),
    ],
)
def test_runs_both_answers_and_a_stop_ends_everything(
    stop: Callable[[Process], None],
    checkout: Path,
    litellm_bin: Path,
    prometheus_bin: Path,
    double: Double,
    e2e_secrets: Secrets,
) -> None:
    ports = {"router": free_port(), "litellm": free_port(), "prometheus": free_port()}
    _filled_env(
        checkout,
        {
            "ANTHROPIC_API_KEY": e2e_secrets.anthropic_key,
            "LITELLM_MASTER_KEY": e2e_secrets.litellm_master_key,
            "SUPERMEMORY_API_KEY": e2e_secrets.supermemory_key,
            "SUPERMEMORY_ANTHROPIC_BASE_URL": double.anthropic_base,
            # compose's Redis: dev.sh must not hand it to the processes
            "REDIS_URL": "redis://redis:6379/0",
            "MEMORY_ROUTER_PORT": str(ports["router"]),
            "LITELLM_PORT": str(ports["litellm"]),
            "PROMETHEUS_PORT": str(ports["prometheus"]),
        },
    )
    env = clean_env(
        LITELLM_BIN=str(litellm_bin),
        PROMETHEUS_BIN=str(prometheus_bin),
        LITELLM_LOCAL_MODEL_COST_MAP="True",
    )
    router = f"http://{HOST}:{ports['router']}"
    prometheus = f"http://{HOST}:{ports['prometheus']}"
    dev = start_dev_script("dev-sh", [SCRIPT, "--prometheus"], checkout=checkout, env=env)
    try:
        dev.wait_http_ok(f"{router}/health/readiness", LITELLM_START_TIMEOUT)
        wait_for(lambda: "dev.sh: ready" in dev.log(), 10, what="dev.sh says it is ready")

        # A request through the router that LiteLLM answers (from the double).
        marker = f"dev-sh-{uuid.uuid4().hex[:8]}"
        body = {"model": "claude-haiku-4.5", "messages": [{"role": "user", "content": marker}]}
        status, answer = fetch(
            f"{router}/v1/chat/completions",
            "POST",
            json.dumps(body).encode(),
            {
                "Authorization": f"Bearer {e2e_secrets.litellm_master_key}",
                "Content-Type": "application/json",
            },
            timeout=60,
        )
        assert status == 200, answer
        text = json.loads(answer)["choices"][0]["message"]["content"]
        assert text.startswith(ANSWER_PREFIX) and marker in text
        (seen,) = double.requests_with(marker)
        assert header_values(seen, "x-sm-user-id") == ["default-dev"]

        # Prometheus, on the loopback config, scrapes the router and LiteLLM.
        def both_up() -> None:
            status, raw = fetch(f"{prometheus}/api/v1/query?query=up", timeout=5)
            assert status == 200, raw
            up = {r["metric"]["job"]: r["value"][1] for r in json.loads(raw)["data"]["result"]}
            assert up.get("memory-router") == "1" and up.get("litellm") == "1", up

        until_passes(both_up, timeout=60, interval=1, what="Prometheus scraping both")

        members = group_members(dev.pid)
        by_name = {name: pid for pid, name in members.items()}
        assert {"litellm", "memory-router", "prometheus"} <= set(by_name), members

        # .env's values reach the processes only through their own reading of it,
        # except REDIS_URL naming compose's host, which dev.sh empties.
        router_env = _environ(by_name["memory-router"])
        assert router_env.get("REDIS_URL") == ""
        assert "LITELLM_MASTER_KEY" not in router_env
        assert "ANTHROPIC_API_KEY" not in router_env

        stop(dev)
        assert dev.popen.wait(STOP_TIMEOUT) == 0, dev.tail(40)
        wait_for(
            lambda: not group_members(dev.pid) and not _alive(members),
            STOP_TIMEOUT,
            interval=0.2,
            what="every process dev.sh started gone",
        )
        assert not group_members(dev.pid)
        for name, port in ports.items():
            assert not _listening(port), f"{name}'s port {port} still answers"
        log = dev.log()
        assert "dev.sh: stopping" in log
        assert "Traceback" not in log, dev.tail(60)
    finally:
        if dev.alive():
            dev.stop()
        for pid in group_members(dev.pid):
            os.kill(pid, signal.SIGKILL)


def test_without_a_master_key_it_says_what_to_do_and_starts_nothing(checkout: Path) -> None:
    result = _run_to_end(checkout, clean_env())
    assert result.returncode == 2, result
    assert "LITELLM_MASTER_KEY is not set" in result.stderr
    assert "cp .env.example .env" in result.stderr
    assert not (checkout / ".venvs").exists()


def test_a_taken_port_is_named_with_the_setting_that_moves_it(checkout: Path) -> None:
    taken = free_port()
    with _listener(taken):
        _filled_env(
            checkout,
            {
                "LITELLM_MASTER_KEY": "sk-test-" + uuid.uuid4().hex,
                "MEMORY_ROUTER_PORT": str(free_port()),
                "LITELLM_PORT": str(taken),
            },
        )
        result = _run_to_end(checkout, clean_env())
    assert result.returncode == 2, result
    assert f"port {taken}, for LiteLLM, is already taken" in result.stderr
    assert "set LITELLM_PORT" in result.stderr
