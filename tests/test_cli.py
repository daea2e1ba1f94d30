"""The command line as a user runs it (router/cli.py): the installed ``memory-router`` script."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from router.config_source import packaged_config_path
from tests.conftest import REPO, Launch, RouterFactory
from tests.support.configs import write_rules
from tests.support.environment import clean_env
from tests.support.router_process import router_command, run_cli


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
    assert "OK: 6 rule(s)" in out.stdout
    # an empty folder, no user file: the packaged rules, and it says so
    assert f"config:         {packaged_config_path()} (sha256 " in out.stdout
    assert "from:           packaged: no --config, no MEMORY_ROUTER_CONFIG" in out.stdout


def checkout(root: Path, default_user_id: str) -> Path:
    """A checkout of this project as a developer has one: its pyproject.toml and its
    router/config.yaml, edited."""
    (root / "router").mkdir(parents=True)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    write_rules(root / "router" / "config.yaml", f"default_user_id: {default_user_id}")
    return root


def test_in_a_checkout_the_edited_rules_file_is_the_one_that_runs(tmp_path: Path) -> None:
    # The user has a file of their own too: the checkout's wins.
    (tmp_path / "xdg" / "memory-router").mkdir(parents=True)
    user = write_rules(tmp_path / "xdg" / "memory-router" / "config.yaml", "default_user_id: u")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    repo = checkout(tmp_path / "repo", "edited-in-checkout")
    out = run_cli("explain", env=env, cwd=repo)
    assert out.returncode == 0, out.stderr
    assert "user_id:  edited-in-checkout" in out.stdout
    assert f"config:   {repo / 'router' / 'config.yaml'} (sha256 " in out.stdout
    assert "from:     checkout: the working directory is a memory-router checkout" in out.stdout
    checked = run_cli("check", env=env, cwd=repo)
    assert "from:           checkout:" in checked.stdout
    assert "default:        edited-in-checkout" in checked.stdout
    # Outside a checkout, the user's file.
    elsewhere = run_cli("explain", "--json", env=env)
    info = json.loads(elsewhere.stdout)
    assert info["user_id"] == "u"
    assert info["config"]["path"] == str(user) and info["config"]["origin"] == "user"


def test_a_folder_that_is_not_this_project_is_no_checkout(tmp_path: Path) -> None:
    other = tmp_path / "other"
    (other / "router").mkdir(parents=True)
    write_rules(other / "router" / "config.yaml", "default_user_id: not-mine")
    (other / "pyproject.toml").write_text('[project]\nname = "another-router"\n')
    out = run_cli("explain", "--json", cwd=other)
    info = json.loads(out.stdout)
    assert info["config"]["origin"] == "packaged" and info["user_id"] == "default-dev"


def test_a_file_named_by_flag_or_environment_says_so(tmp_path: Path) -> None:
    flag = write_rules(tmp_path / "flag.yaml", "default_user_id: from-flag")
    env = write_rules(tmp_path / "env.yaml", "default_user_id: from-env")
    repo = checkout(tmp_path / "repo", "from-checkout")
    by_flag = run_cli("check", "--config", str(flag), env={"MEMORY_ROUTER_CONFIG": str(env)})
    assert "from:           flag: given with --config" in by_flag.stdout
    assert "default:        from-flag" in by_flag.stdout
    by_env = run_cli("explain", "--json", env={"MEMORY_ROUTER_CONFIG": str(env)}, cwd=repo)
    info = json.loads(by_env.stdout)
    assert (info["user_id"], info["config"]["origin"]) == ("from-env", "env")
    assert "MEMORY_ROUTER_CONFIG" in info["config"]["reason"]


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


def test_serve_refuses_a_key_too_short_to_be_one() -> None:
    out = run_cli("--port", "1", env={"SUPERMEMORY_API_KEY": "k3y"})
    assert out.returncode == 2
    assert "SUPERMEMORY_API_KEY: is 3 characters long: too short" in out.stderr
    assert "k3y" not in out.stderr


def test_a_yaml_error_names_the_file_not_a_string(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("user_id_mappings:\n  default_user_id: x\n  bad: : y\n")
    out = run_cli("check", "--config", str(bad))
    assert out.returncode == 2
    assert out.stderr == (
        f"memory-router: {bad}: line 3, column 8: not valid YAML: "
        "mapping values are not allowed here\n"
    )


def test_python_dash_m() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "router", "check"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "OK: 6 rule(s)" in out.stdout


def test_help_lists_flags() -> None:
    out = run_cli("serve", "--help")
    for flag in ("--host", "--port", "--litellm-url", "--config", "--log-level"):
        assert flag in out.stdout


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_top_level_help_shows_the_server_flags(flag: str) -> None:
    out = run_cli(flag)
    assert out.returncode == 0, out.stderr
    server = out.stdout[out.stdout.index("server options:") :]
    for name in ("--host", "--port", "--litellm-url", "--config", "--log-level"):
        assert name in server
    for command in ("serve", "explain", "check", "memories"):
        assert command in out.stdout


def test_server_flags_without_a_command_still_serve() -> None:
    # They reach the server, which refuses the bad value, naming the flag.
    out = run_cli("--port", "x")
    assert out.returncode == 2 and "--port" in out.stderr and "invalid int" in out.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["check"],
        ["explain", "-H", "User-Agent: OpenAIClientImpl/Java unknown"],
        ["explain", "--json"],
        ["--help"],
        ["check", "--help"],
        ["--version"],
        ["memories", "list", "--user-id", "someone"],
    ],
)
@pytest.mark.parametrize("buffered", [True, False])
def test_a_reader_that_goes_away_early_gets_no_traceback(
    tmp_path: Path, args: list[str], buffered: bool
) -> None:
    """``memory-router check | head -1``, with the reader gone before the first byte."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = clean_env(
        MEMORY_ROUTER_MEMORY_BACKEND="local",
        MEMORY_ROUTER_MEMORY_LOCAL_PATH=str(tmp_path / "memories.sqlite3"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
    )
    if buffered:  # as in a user's shell; unbuffered, each write fails at once
        del env["PYTHONUNBUFFERED"]
    try:
        done = subprocess.run(
            [*router_command(), *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            cwd=tmp_path,
            timeout=60,
            text=True,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    # argparse's own messages (help, version) ignore a failed unbuffered write: 0
    assert done.returncode == 141 or (not buffered and args[-1] in ("--help", "--version"))


def test_a_shell_pipeline_that_stops_reading_ends_quietly(tmp_path: Path) -> None:
    # As a user types it; the reader may or may not leave before the writer is done.
    done = subprocess.run(
        ["sh", "-c", f"{' '.join(router_command())} check --help | head -1"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.startswith("usage: memory-router check")
    assert done.stderr == ""


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


def test_startup_line_names_the_rules_file_and_why(launch: Launch, tmp_path: Path) -> None:
    rules = write_rules(
        tmp_path / "rules.yaml",
        "default_user_id: d",
        rate_limits="default: {requests_per_minute: 60}",
    )
    router = launch(rules)
    line = next(x for x in router.logs().splitlines() if "memory-router 0.1.0 on" in x)
    assert f"config {rules} (flag: given with --config), 0 rules, default d" in line
    assert "rate limits: default 60 requests/min (burst 10), 0 ids with their own" in line


def placeholder_master_key() -> str:
    """LITELLM_MASTER_KEY as .env.example ships it."""
    lines = (REPO / ".env.example").read_text().splitlines()
    return next(x for x in lines if x.startswith("LITELLM_MASTER_KEY=")).split("=", 1)[1]


@pytest.mark.parametrize("where", ["environment", ".env"])
def test_startup_warns_about_the_placeholder_master_key(
    launch: Launch, tmp_path: Path, where: str
) -> None:
    key = placeholder_master_key()
    assert "REPLACE_ME" in key
    rules = write_rules(tmp_path / "rules.yaml")
    if where == ".env":  # the router runs in tmp_path, and reads ./.env as it starts
        (tmp_path / ".env").write_text(f"LITELLM_MASTER_KEY={key}\n")
        router = launch(rules)
    else:
        router = launch(rules, LITELLM_MASTER_KEY=key)
    logs = router.logs()
    assert "WARNING  | memory_router | LITELLM_MASTER_KEY is still the placeholder" in logs
    assert key not in logs


def test_no_master_key_warning_for_a_key_of_ones_own(launch: Launch, tmp_path: Path) -> None:
    router = launch(write_rules(tmp_path / "rules.yaml"), LITELLM_MASTER_KEY="sk-mine-0123456789")
    httpx.get(f"{router.url}/health")
    assert "LITELLM_MASTER_KEY" not in router.logs()
