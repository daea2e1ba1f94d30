"""``memory-router memories list|search|forget``: the installed script, as an operator runs it,
against a local store and against the Supermemory v5 double."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.memory.conftest import Double, seed
from tests.support.router_process import run_cli


def run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("memories", *args, env=env, cwd=cwd)


@pytest.fixture
def local_env(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "memories.sqlite3"
    seed(path, "claude-code-cli", "the deploy script is ops/deploy.sh", "I prefer tabs")
    seed(path, "pycharm-ai-chat", "the project uses poetry")
    return {"MEMORY_ROUTER_MEMORY_BACKEND": "local", "MEMORY_ROUTER_MEMORY_LOCAL_PATH": str(path)}


def test_list_and_search_one_ids_memories(local_env: dict[str, str], tmp_path: Path) -> None:
    listed = run("list", "--user-id", "claude-code-cli", "--json", env=local_env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert (data["user_id"], data["backend"]) == ("claude-code-cli", "local")
    assert [m["text"] for m in data["memories"]] == [
        "User: I prefer tabs\nAssistant: noted",
        "User: the deploy script is ops/deploy.sh\nAssistant: noted",
    ]
    found = run(
        "search", "deploy script", "--user-id", "claude-code-cli", env=local_env, cwd=tmp_path
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith("1 memory of claude-code-cli (local)\n")
    assert "  User: the deploy script is ops/deploy.sh" in found.stdout
    assert "poetry" not in found.stdout and "tabs" not in found.stdout


def test_forget_by_id_and_all(local_env: dict[str, str], tmp_path: Path) -> None:
    listed = run("list", "--user-id", "claude-code-cli", "--json", env=local_env, cwd=tmp_path)
    first, second = (m["id"] for m in json.loads(listed.stdout)["memories"])

    gone = run("forget", first, "--user-id", "claude-code-cli", env=local_env, cwd=tmp_path)
    assert (gone.returncode, gone.stdout) == (0, f"{first}: forgotten\n")
    again = run("forget", first, "--user-id", "claude-code-cli", env=local_env, cwd=tmp_path)
    assert (again.returncode, again.stdout) == (1, f"{first}: not found\n")
    # An id belonging to one user id is not found under another.
    other = run("forget", second, "--user-id", "pycharm-ai-chat", env=local_env, cwd=tmp_path)
    assert other.returncode == 1

    everything = run("forget", "--all", "--user-id", "claude-code-cli", env=local_env, cwd=tmp_path)
    assert (everything.returncode, everything.stdout) == (0, "forgot 1 memory of claude-code-cli\n")
    left = run("list", "--user-id", "pycharm-ai-chat", env=local_env, cwd=tmp_path)
    assert "the project uses poetry" in left.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("list",),  # no --user-id
        ("list", "--user-id", "not valid!"),
        ("forget", "--user-id", "alice"),  # neither ids nor --all
        ("forget", "m1", "--all", "--user-id", "alice"),
    ],
)
def test_bad_usage_exits_2(
    args: tuple[str, ...], local_env: dict[str, str], tmp_path: Path
) -> None:
    result = run(*args, env=local_env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"MEMORY_ROUTER_MEMORY_BACKEND": "off"}, "memory is off"),
        ({}, "SUPERMEMORY_API_KEY is unset"),  # supermemory-router, no key
    ],
)
def test_no_backend_to_ask_exits_2(env: dict[str, str], why: str, tmp_path: Path) -> None:
    result = run("list", "--user-id", "alice", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert why in result.stderr


@pytest.mark.parametrize("backend", ["supermemory-api", "supermemory-router"])
def test_supermemory_backends_use_the_api_with_the_same_key(
    backend: str, double: Double, tmp_path: Path
) -> None:
    env = {
        "MEMORY_ROUTER_MEMORY_BACKEND": backend,
        "SUPERMEMORY_API_KEY": double.api_key,
        "MEMORY_ROUTER_MEMORY_API_URL": double.url,
    }
    result = run("list", "--user-id", "claude-code-cli", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"0 memories of claude-code-cli ({backend})\n"
    assert [r["path"] for r in double.state.requests] == ["/ns/claude-code-cli/list/documents"]


def test_a_backend_failure_exits_1_without_the_key(double: Double, tmp_path: Path) -> None:
    env = {
        "MEMORY_ROUTER_MEMORY_BACKEND": "supermemory-api",
        "SUPERMEMORY_API_KEY": "sm_wrong_key_0123456789",
        "MEMORY_ROUTER_MEMORY_API_URL": double.url,
    }
    result = run("forget", "--all", "--user-id", "alice", env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "Supermemory answered 401" in result.stderr
    assert "sm_wrong_key" not in result.stderr + result.stdout
