"""``memory-router top`` (router/top.py): the table as a pure function, then the real
command against a live router."""

from __future__ import annotations

import signal
import subprocess
import threading
from typing import Any

import httpx
import pytest

from router.app import RouterApp
from router.top import format_table
from tests.conftest import SM_KEY, RouterFactory
from tests.support.environment import clean_env
from tests.support.ports import free_port
from tests.support.router_process import router_command, run_cli

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
NOW = 1_800_000_000.0


def client_row(user: str, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "user_id": user,
        "source": "pattern",
        "last_seen": NOW - 5,
        "in_flight": 0,
        "requests": 0,
        "requests_per_minute": 0.0,
        "errors_4xx": 0,
        "errors_5xx": 0,
        "rate_limited": 0,
        "latency_p50_ms": None,
        "latency_p95_ms": None,
        "ttft_p50_ms": None,
        "prompt_tokens_per_minute": 0.0,
        "completion_tokens_per_minute": 0.0,
    }
    return {**base, **values}


def snapshot(*clients: dict[str, Any], **router: Any) -> dict[str, Any]:
    return {
        "now": NOW,
        "window_seconds": 300,
        "clients": list(clients),
        "router": {
            "config": {"sha256": "ab" * 32, "last_reload": None},
            "litellm": {"status": "ok"},
            "supermemory_key_configured": True,
            "memory_backend": "supermemory-router",
            **router,
        },
    }


def parse(table: str) -> dict[str, dict[str, str]]:
    """Rows of the table by client id, cells by heading."""
    lines = table.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("CLIENT"))
    headings = lines[head].replace("LAST SEEN", "LAST_SEEN").split()
    rows = {}
    for line in lines[head + 1 :]:
        cells = line.replace(" ago", "_ago").split()
        if len(cells) == len(headings):
            rows[cells[0]] = dict(zip(headings, cells, strict=True))
    return rows


@pytest.mark.parametrize(
    ("row", "column", "shown"),
    [
        (client_row("a", requests=12), "REQS", "12"),
        (client_row("a", requests_per_minute=2.4), "REQ/MIN", "2.4"),
        (client_row("a", requests_per_minute=1234.5), "REQ/MIN", "1234"),
        (client_row("a", errors_4xx=3, errors_5xx=1, rate_limited=7), "429", "7"),
        (client_row("a", latency_p50_ms=38.2), "P50", "38ms"),
        (client_row("a", latency_p95_ms=1400.0), "P95", "1.4s"),
        (client_row("a", ttft_p50_ms=None), "TTFT50", "-"),
        (client_row("a", source=None), "SOURCE", "-"),
        (client_row("a", source="custom_header"), "SOURCE", "custom_header"),
        (client_row("a", in_flight=2), "INFLIGHT", "2"),
        (client_row("a", last_seen=NOW - 5), "LAST_SEEN", "5s_ago"),
        (client_row("a", last_seen=NOW - 600), "LAST_SEEN", "10m_ago"),
    ],
)
def test_cells(row: dict[str, Any], column: str, shown: str) -> None:
    assert parse(format_table(snapshot(row)))["a"][column] == shown


@pytest.mark.parametrize(
    ("router", "expected"),
    [
        ({}, ["config abababababab", "LiteLLM ready", "Supermemory key configured"]),
        ({"litellm": {"status": "unreachable"}}, ["LiteLLM unreachable"]),
        ({"supermemory_key_configured": False}, ["Supermemory key not configured"]),
        (
            {
                "config": {
                    "sha256": "cd" * 32,
                    "last_reload": {"at": NOW, "trigger": "file", "ok": False},
                }
            },
            ["config cdcdcdcdcdcd", "by file (failed)"],
        ),
    ],
)
def test_header_line(router: dict[str, Any], expected: list[str]) -> None:
    table = format_table(snapshot(**router))
    for text in expected:
        assert text in table
    assert "(no traffic in the last hour)" in table


def test_rows_keep_the_servers_order_and_columns_line_up() -> None:
    table = format_table(
        snapshot(client_row("busy-client-with-long-id", requests=100), client_row("b", requests=1))
    )
    rows = parse(table)
    assert list(rows) == ["busy-client-with-long-id", "b"]
    lines = [line for line in table.splitlines() if line.startswith(("CLIENT", "busy", "b "))]
    assert len({line.index(" 100") + 4 for line in lines if " 100" in line}) == 1
    ends = {len(line) for line in lines}
    assert len(ends) == 1, lines  # right-aligned numbers end in one column


def test_top_once_against_a_live_router(
    router_app: tuple[RouterApp, str], client: httpx.Client
) -> None:
    _, url = router_app
    for _ in range(3):
        client.post(url + "/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": "a"})
    client.post(url + "/v1/chat/completions", json=CHAT, headers={"x-test-status": "502"})

    done = run_cli("top", "--url", url, "--once")

    assert done.returncode == 0, done.stderr
    rows = parse(done.stdout)
    assert (rows["a"]["REQS"], rows["a"]["SOURCE"], rows["a"]["5XX"]) == ("3", "custom_header", "0")
    assert (rows["default-dev"]["REQS"], rows["default-dev"]["5XX"]) == ("1", "1")
    assert "LiteLLM ready" in done.stdout and SM_KEY not in done.stdout


def test_top_refreshes_until_interrupted(
    router_app: tuple[RouterApp, str], client: httpx.Client
) -> None:
    _, url = router_app
    client.post(url + "/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": "live"})
    seen: list[str] = []
    with subprocess.Popen(
        [*router_command(), "top", "--url", url, "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        timer = threading.Timer(20, process.kill)  # a bound on the whole read
        timer.start()
        try:
            table: list[str] = []
            for line in process.stdout:
                if line.strip():
                    table.append(line)
                    continue
                if not any(row.startswith("CLIENT") for row in table):
                    continue  # the blank line inside the header
                seen.append(parse("".join(table)).get("live", {}).get("REQS", ""))
                table = []
                if seen == ["1"]:  # the first table: now more traffic
                    client.post(
                        url + "/v1/chat/completions",
                        json=CHAT,
                        headers={"x-memory-user-id": "live"},
                    )
                if seen[-1] == "2":
                    break
            process.send_signal(signal.SIGINT)
            assert process.wait(10) == 0
            errors = process.stderr.read()
        finally:
            timer.cancel()
            if process.poll() is None:
                process.kill()
    assert seen[0] == "1" and seen[-1] == "2", seen
    assert "Traceback" not in errors


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--once"], 1, "cannot reach"),
        (["--once", "--window", "5"], 2, "--window must be from 10 to 3600"),
        (["--once", "--interval", "0"], 2, "--interval must be more than 0"),
    ],
)
def test_top_says_what_is_wrong(args: list[str], status: int, message: str) -> None:
    done = run_cli("top", "--url", f"http://127.0.0.1:{free_port()}", *args)
    assert done.returncode == status
    assert message in done.stderr and "Traceback" not in done.stderr


def test_top_sends_the_token_and_says_when_it_is_refused(start_router: RouterFactory) -> None:
    _, url = start_router(control_access="token", control_token="ctl-token-123")
    refused = run_cli("top", "--url", url, "--once")
    assert refused.returncode == 1 and "MEMORY_ROUTER_CONTROL_TOKEN" in refused.stderr
    by_flag = run_cli("top", "--url", url, "--once", "--token", "ctl-token-123")
    assert by_flag.returncode == 0 and "CLIENT" in by_flag.stdout
    by_env = run_cli(
        "top", "--url", url, "--once", env={"MEMORY_ROUTER_CONTROL_TOKEN": "ctl-token-123"}
    )
    assert by_env.returncode == 0 and "ctl-token-123" not in by_env.stdout
