"""One `.env` variable, MEMORY_ROUTER_MEMORY_BACKEND, switches the whole stack: the router's
backend, and where LiteLLM sends Anthropic calls (Supermemory's memory router, or Anthropic
itself), so memory is never applied twice. Checked for both ways of running LiteLLM: the
compose entrypoint (run with /bin/sh, as the image would) and scripts/litellm."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack.test_compose import interpolate, interpolate_tree

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "scripts" / "litellm"
SUPERMEMORY = "https://api.supermemory.ai/v3/https://api.anthropic.com"
ANTHROPIC = "https://api.anthropic.com"
EXPECTED = {
    None: SUPERMEMORY,  # unset: the default backend
    "supermemory-router": SUPERMEMORY,
    "supermemory-api": ANTHROPIC,
    "local": ANTHROPIC,
    "off": ANTHROPIC,
}


@pytest.fixture(scope="module")
def compose_text() -> str:
    return (ROOT / "docker-compose.yml").read_text()


@pytest.fixture
def fake_litellm(tmp_path: Path) -> Path:
    fake = tmp_path / "bin" / "litellm"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "BASE=$LITELLM_ANTHROPIC_BASE_URL" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake


def _env(fake: Path, **extra: str | None) -> dict[str, str]:
    env = {"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "LITELLM_BIN": str(fake)}
    env |= {"ANTHROPIC_API_KEY": "sk-ant-x", "LITELLM_MASTER_KEY": "sk-abc"}
    env |= {k: v for k, v in extra.items() if v is not None}
    return env


def run_entrypoint(
    compose_text: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    shell, flag, script, argv0 = yaml.safe_load(compose_text)["services"]["litellm"]["entrypoint"]
    script = interpolate(script, {})  # undo compose's $$ escapes
    return subprocess.run(
        [shell, flag, script, argv0, "--port", "4000"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


def run_wrapper(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WRAPPER), "--port", "4000"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("backend", list(EXPECTED))
def test_litellm_calls_supermemory_only_when_it_does_the_memory(
    backend: str | None, compose_text: str, fake_litellm: Path, tmp_path: Path
) -> None:
    env = _env(fake_litellm, MEMORY_ROUTER_MEMORY_BACKEND=backend)
    for result in (run_entrypoint(compose_text, env, tmp_path), run_wrapper(env, tmp_path)):
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [f"BASE={EXPECTED[backend]}", "--port", "4000"]
        assert result.stderr == ""


def test_both_keep_an_overridden_base(
    compose_text: str, fake_litellm: Path, tmp_path: Path
) -> None:
    double = "http://supermemory:9000/v3/https://api.anthropic.com"
    provider = "http://127.0.0.1:9999"
    for backend, expected in (("supermemory-router", double), ("local", provider)):
        env = _env(
            fake_litellm,
            MEMORY_ROUTER_MEMORY_BACKEND=backend,
            SUPERMEMORY_ANTHROPIC_BASE_URL=double,
            ANTHROPIC_PROVIDER_URL=provider,
        )
        for result in (run_entrypoint(compose_text, env, tmp_path), run_wrapper(env, tmp_path)):
            assert result.stdout.splitlines()[0] == f"BASE={expected}", result.stderr


def test_an_unknown_backend_stops_litellm(
    compose_text: str, fake_litellm: Path, tmp_path: Path
) -> None:
    env = _env(fake_litellm, MEMORY_ROUTER_MEMORY_BACKEND="supermemory")
    for result in (run_entrypoint(compose_text, env, tmp_path), run_wrapper(env, tmp_path)):
        assert result.returncode != 0
        assert "BASE=" not in result.stdout
        assert "MEMORY_ROUTER_MEMORY_BACKEND=supermemory is not one of" in result.stderr


def test_the_wrapper_reads_dotenv_and_the_environment_wins(
    fake_litellm: Path, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "# the user's settings\n"
        "MEMORY_ROUTER_MEMORY_BACKEND=local\n"
        'ANTHROPIC_PROVIDER_URL="http://127.0.0.1:8888"\n'
        "\n"
        "not a line\n"
    )
    from_file = run_wrapper(_env(fake_litellm), tmp_path)
    assert from_file.stdout.splitlines()[0] == "BASE=http://127.0.0.1:8888", from_file.stderr
    env = _env(fake_litellm, MEMORY_ROUTER_MEMORY_BACKEND="supermemory-router")
    overridden = run_wrapper(env, tmp_path)
    assert overridden.stdout.splitlines()[0] == f"BASE={SUPERMEMORY}"


def test_one_dotenv_variable_reaches_the_router_and_litellm(compose_text: str) -> None:
    for value in ("local", "supermemory-api"):
        compose = interpolate_tree(
            yaml.safe_load(compose_text), {"MEMORY_ROUTER_MEMORY_BACKEND": value}
        )
        for service in ("router", "litellm"):
            env = compose["services"][service]["environment"]
            assert env["MEMORY_ROUTER_MEMORY_BACKEND"] == value, service
    default = interpolate_tree(yaml.safe_load(compose_text), {})["services"]
    assert default["router"]["environment"]["MEMORY_ROUTER_MEMORY_BACKEND"] == "supermemory-router"


def test_the_local_store_is_on_a_named_volume(compose_text: str) -> None:
    compose: dict[str, Any] = yaml.safe_load(compose_text)
    volumes = [v for v in compose["services"]["router"]["volumes"] if v["type"] == "volume"]
    assert volumes == [
        {"type": "volume", "source": "memory-data", "target": "/var/lib/memory-router"}
    ]
    assert "memory-data" in compose["volumes"]
    dockerfile = (ROOT / "router" / "Dockerfile").read_text()
    path = re.search(r"MEMORY_ROUTER_MEMORY_LOCAL_PATH=(\S+)", dockerfile)
    assert path is not None and Path(path.group(1)).parent == Path("/var/lib/memory-router")
    # The image makes the directory the unprivileged user's, so a new volume is writable.
    assert "install -d -o 10001 -g 10001 -m 0750 /var/lib/memory-router" in dockerfile


@pytest.mark.parametrize("name", ["docker-compose.yml", "docker-compose.replicas.yml"])
def test_every_compose_file_gives_the_router_the_same_backend_as_litellm(name: str) -> None:
    """The replicas file's LiteLLM extends docker-compose.yml's, entrypoint included: a
    router left on the default while LiteLLM follows `.env` would send Supermemory's
    headers, key included, to Anthropic."""
    text = (ROOT / name).read_text()
    for value in ("local", "supermemory-api", "off"):
        services = interpolate_tree(yaml.safe_load(text), {"MEMORY_ROUTER_MEMORY_BACKEND": value})[
            "services"
        ]
        assert services["router"]["environment"]["MEMORY_ROUTER_MEMORY_BACKEND"] == value
        litellm = services["litellm"]
        if "extends" in litellm:
            assert litellm["extends"] == {"file": "docker-compose.yml", "service": "litellm"}
        else:
            assert litellm["environment"]["MEMORY_ROUTER_MEMORY_BACKEND"] == value
    mounts = yaml.safe_load(text)["services"]["router"]["volumes"]
    assert {"type": "volume", "source": "memory-data", "target": "/var/lib/memory-router"} in mounts
