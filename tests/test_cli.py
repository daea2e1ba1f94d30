"""The command line as a user runs it (router/cli.py): the installed ``memory-router`` script."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import Launch, RouterFactory
from tests.support.configs import write_rules
from tests.support.router_process import run_cli


def test_explain_pattern() -> None:
    out = run_cli("explain", "-H", "User-Agent: OpenAIClientImpl/Java unknown")
    assert out.returncode == 0, out.stderr
    assert "user_id:  pycharm-ai-chat" in out.stdout
    assert "source:   pattern" in out.stdout
    assert "user-agent='OpenAIClientImpl/Java unknown' -> pycharm-ai-chat" in out.stdout


def test_explain_custom_header_json() -> None:
    out = run_cli("explain", "-H", "x-memory-user-id: project-alpha", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["user_id"] == "project-alpha" and info["custom_header_present"] is True


def test_explain_default_and_no_key_in_output() -> None:
    out = run_cli(
        "explain", "-H", "User-Agent: curl/7.68.0", env={"SUPERMEMORY_API_KEY": "sm_secret_value"}
    )
    assert out.returncode == 0
    assert "default-dev" in out.stdout and "x-supermemory-api-key" in out.stdout
    assert "sm_secret_value" not in out.stdout + out.stderr


def test_explain_refused_header_exit_1() -> None:
    out = run_cli("explain", "-H", "x-memory-user-id: not valid")
    assert out.returncode == 1
    assert "refused (HTTP 400 invalid_user_id): Header x-memory-user-id" in out.stderr


POLICY = (
    "user_id_mappings:\n  custom_header_policy: {allowed_ids: [mobile-app]}\n  default_user_id: d\n"
)


@pytest.mark.parametrize(
    ("claimed", "status", "code"),
    [("not valid", 400, "invalid_user_id"), ("desktop-app", 403, "user_id_not_allowed")],
)
def test_explain_prints_the_status_the_proxy_answers(
    start_router: RouterFactory, tmp_path: Path, claimed: str, status: int, code: str
) -> None:
    cfg = tmp_path / "policy.yaml"
    cfg.write_text(POLICY)
    out = run_cli("explain", "--config", str(cfg), "-H", f"x-memory-user-id: {claimed}")
    assert out.returncode == 1
    assert f"refused (HTTP {status} {code})" in out.stderr
    _, url = start_router(config=cfg)
    answer = httpx.post(
        f"{url}/v1/chat/completions", json={"model": "m"}, headers={"x-memory-user-id": claimed}
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
    assert answer.json()["error"]["message"] in out.stderr


def test_explain_malformed_header_flag() -> None:
    out = run_cli("explain", "-H", "no colon here")
    assert out.returncode == 2
    assert "expected 'Name: value'" in out.stderr


def test_check_prints_rule_table() -> None:
    out = run_cli("check")
    assert out.returncode == 0, out.stderr
    assert "pycharm-ai-chat" in out.stdout and "claude-code-cli" in out.stdout
    assert "OK: 3 rule(s)" in out.stdout


def test_check_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "user_id_mappings:\n  header_patterns:\n    - {header: ua, pattern: '(', user_id: x}\n"
        "  default_user_id: d\n"
    )
    out = run_cli("check", "--config", str(bad))
    assert out.returncode == 2
    assert str(bad) in out.stderr and "rule 1" in out.stderr and "regular expression" in out.stderr


def test_config_from_environment(tmp_path: Path) -> None:
    cfg = write_rules(tmp_path / "rules.yaml", "default_user_id: from-env-config")
    out = run_cli("explain", env={"MEMORY_ROUTER_CONFIG": str(cfg)})
    assert "from-env-config" in out.stdout


def test_serve_refuses_bad_config_before_listening(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("user_id_mappings:\n  default_user_id: 'no spaces allowed'\n")
    out = run_cli("--port", "1", "--config", str(bad))
    assert out.returncode == 2
    assert str(bad) in out.stderr and "default_user_id" in out.stderr


def test_serve_refuses_bad_settings() -> None:
    out = run_cli("--litellm-url", "not-a-url")
    assert out.returncode == 2 and "litellm_url" in out.stderr


def test_python_dash_m() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "router", "check"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "OK: 3 rule(s)" in out.stdout


def test_help_lists_flags() -> None:
    out = run_cli("serve", "--help")
    for flag in ("--host", "--port", "--litellm-url", "--config", "--log-level"):
        assert flag in out.stdout


def test_version_and_usage_errors() -> None:
    version = run_cli("--version")
    assert version.returncode == 0 and "memory-router 0.1.0" in version.stdout
    bad_port = run_cli("serve", "--port", "x")
    assert bad_port.returncode == 2 and "--port" in bad_port.stderr


def test_startup_warns_when_the_key_is_missing(launch: Launch, tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules.yaml", "default_user_id: nokey")
    router = launch(rules, SUPERMEMORY_API_KEY="")
    router.proc.send_signal(signal.SIGTERM)
    router.proc.wait(10)
    assert "SUPERMEMORY_API_KEY is not set" in router.logs()
