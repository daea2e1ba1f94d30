"""Static checks of router/Dockerfile and .dockerignore (no Docker engine needed)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "router" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.I)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not pending:
            continue
        if stripped.startswith("#"):
            continue  # comment inside a continued instruction
        if not stripped and not pending:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append((keyword.upper(), args.strip()))
    assert not pending, "dangling line continuation"
    return result


def final_stage(instrs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (k, _) in enumerate(instrs) if k == "FROM")
    return instrs[last_from:]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path (or a parent) decides."""
    ignored = False
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        regex = re.escape(pattern.strip("/"))
        regex = regex.replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = regex.replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(regex, c) for c in candidates):
            ignored = not negate
    return ignored


@pytest.fixture(scope="module")
def instrs() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_base_images_are_slim_and_pinned(instrs: list[tuple[str, str]]) -> None:
    froms = [args.split()[0] for keyword, args in instrs if keyword == "FROM"]
    assert froms
    for image in froms:
        repo, _, tag = image.partition(":")
        assert repo == "python", image
        assert re.match(r"^3\.1[1-9](\.\d+)?-slim", tag), f"{image}: pin a slim Python 3.11+ tag"


def test_dependencies_are_installed_before_the_code_is_copied(
    instrs: list[tuple[str, str]],
) -> None:
    stage = final_stage(instrs)
    dep_install = next(
        i for i, (k, a) in enumerate(stage) if k == "RUN" and "pip install" in a and "-r " in a
    )
    code_copy = next(i for i, (k, a) in enumerate(stage) if k == "COPY" and "router/" in a.split())
    assert dep_install < code_copy, "the dependency layer must not depend on the package's code"
    # and the copy before it carries only the requirements, not the package
    before = [a for k, a in stage[:dep_install] if k == "COPY"]
    assert all("router" not in a.split()[0] for a in before), before


def test_the_image_installs_the_dependencies_and_the_redis_extra(
    instrs: list[tuple[str, str]], tmp_path: Path
) -> None:
    """Run the requirements stage's command on the real pyproject.toml."""
    stage = instrs[: max(i for i, (k, _) in enumerate(instrs) if k == "FROM")]
    (command,) = [a for k, a in stage if k == "RUN"]
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    python_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": python_dir + os.pathsep + os.environ.get("PATH", "")}
    subprocess.run(["sh", "-c", command], cwd=tmp_path, env=env, check=True)
    wanted = (tmp_path / "requirements.txt").read_text().split()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert wanted == project["dependencies"] + project["optional-dependencies"]["redis"]
    assert any(r.startswith("redis") for r in wanted)


def test_runs_as_non_root_after_the_last_install(instrs: list[tuple[str, str]]) -> None:
    stage = final_stage(instrs)
    installs = [
        i
        for i, (k, a) in enumerate(stage)
        if k == "RUN" and re.search(r"pip install|apt-get install|apk add", a)
    ]
    users = [(i, a) for i, (k, a) in enumerate(stage) if k == "USER"]
    assert users, "no USER instruction in the final stage"
    last_index, user = users[-1]
    assert last_index > max(installs), "USER must come after the last install"
    assert user.split(":")[0] not in {"root", "0"}, user
    assert not any(k == "RUN" for k, _ in stage[last_index:]), (
        "nothing should run as root after USER"
    )


def test_single_worker_cli_and_healthcheck(instrs: list[tuple[str, str]]) -> None:
    stage = final_stage(instrs)
    cmd = [a for k, a in stage if k == "CMD"]
    assert len(cmd) == 1 and exec_form(cmd[0])[0] == "memory-router"
    assert "--workers" not in cmd[0]
    assert not any(k == "ENTRYPOINT" for k, _ in stage)

    (health,) = [a for k, a in stage if k == "HEALTHCHECK"]
    check = exec_form(health[health.index("CMD") + 3 :].strip())
    assert check[0] == "python", "slim images have no curl: use Python"
    assert "/health'" in check[-1] and "8765" in check[-1]

    env = " ".join(a for k, a in stage if k == "ENV")
    assert "MEMORY_ROUTER_HOST=0.0.0.0" in env and "MEMORY_ROUTER_PORT=8765" in env
    assert "MEMORY_ROUTER_CONFIG=/etc/memory-router/config.yaml" in env
    assert any(k == "EXPOSE" and a.split()[0] == "8765" for k, a in stage)


def test_no_secrets_in_env_or_arg(instrs: list[tuple[str, str]]) -> None:
    for keyword, args in instrs:
        if keyword in {"ENV", "ARG"}:
            for token in shlex.split(args):
                name = token.split("=", 1)[0]
                assert not SECRET_NAME.search(name), f"{keyword} {name}: pass secrets at run time"


def test_copy_sources_exist_and_are_in_the_build_context(
    instrs: list[tuple[str, str]], ignore_patterns: list[str]
) -> None:
    for keyword, args in instrs:
        if keyword not in {"COPY", "ADD"} or "--from=" in args:
            continue
        *sources, _dest = [t for t in args.split() if not t.startswith("--")]
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"{keyword} {source}: missing in the build context (repo root)"
            assert not dockerignored(source.rstrip("/"), ignore_patterns), (
                f"{source} is .dockerignored"
            )


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        "router/.env",
        "tests/stack/test_compose.py",
        ".git/config",
        "router/__pycache__/x.pyc",
    ],
)
def test_dockerignore_keeps_out(path: str, ignore_patterns: list[str]) -> None:
    assert dockerignored(path, ignore_patterns)


@pytest.mark.parametrize(
    "path", ["pyproject.toml", "README.md", "router/config.yaml", "router/cli.py"]
)
def test_dockerignore_lets_in(path: str, ignore_patterns: list[str]) -> None:
    assert not dockerignored(path, ignore_patterns)
