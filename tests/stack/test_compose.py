"""Static checks of docker-compose.yml and .env.example (no Docker engine needed)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

SERVICES = {"litellm", "router", "prometheus"}
PINNED_TAG = re.compile(r"^v?\d+\.\d+\.\d+([.-][0-9A-Za-z.]+)?$")
_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<rest>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


# -- helpers -------------------------------------------------------------------


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose-style interpolation: $$ is a literal $, ${VAR:-default}, ${VAR-default}."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        m = _VAR.match(text, i)
        if not m:
            out.append(text[i])
            i += 1
            continue
        name = m.group("braced") or m.group("bare")
        rest = m.group("rest") or ""
        value = env.get(name)
        if rest.startswith(":-"):
            value = value if value else rest[2:]
        elif rest.startswith("-"):
            value = value if value is not None else rest[1:]
        elif rest.startswith((":?", "?")):
            raise AssertionError(
                f"${{{name}{rest}}} would stop the whole stack when {name} is unset"
            )
        out.append(value or "")
        i = m.end()
    return "".join(out)


def variables_used(text: str) -> set[str]:
    """Names of the variables compose interpolates (skipping $$-escaped ones)."""
    names: set[str] = set()
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        m = _VAR.match(text, i)
        if m:
            names.add(m.group("braced") or m.group("bare"))
            i = m.end()
        else:
            i += 1
    return names


def strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def parse_env_file(path: Path) -> list[tuple[str, str, list[str]]]:
    """(name, value, comment lines just above) for every assignment in a .env file."""
    entries: list[tuple[str, str, list[str]]] = []
    comments: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped)
        elif not stripped:
            comments = []
        else:
            name, sep, value = stripped.partition("=")
            assert sep, f"{path.name}: not NAME=value: {line!r}"
            entries.append((name.strip(), value.strip(), comments))
            comments = []
    return entries


@pytest.fixture(scope="module")
def raw() -> str:
    return COMPOSE_FILE.read_text()


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env) for value in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


@pytest.fixture(scope="module")
def compose(raw: str) -> dict[str, Any]:
    # Interpolated as compose would with no .env and an empty shell environment.
    return interpolate_tree(yaml.safe_load(raw), {})


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


# -- services and network ----------------------------------------------------


def test_three_services_on_one_user_defined_network(compose: dict[str, Any]) -> None:
    default = {n for n, svc in compose["services"].items() if "profiles" not in svc}
    assert default == SERVICES
    # the optional services, each behind a profile: Redis for shared rate limits, and
    # Grafana (tests/stack/test_grafana.py)
    assert compose["services"]["redis"]["profiles"] == ["redis"]
    assert compose["services"]["grafana"]["profiles"] == ["grafana"]
    assert compose["services"]["redis"]["image"].startswith("redis:7.")
    networks = compose.get("networks") or {}
    assert len(networks) == 1, "expected exactly one user-defined network"
    (net,) = networks
    for name, svc in compose["services"].items():
        assert svc.get("networks") in ([net], {net: None}), f"{name} is not on network {net!r}"
        assert "network_mode" not in svc, name


def test_restart_policy(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        assert svc.get("restart") == "unless-stopped", name


def _published(svc: dict[str, Any]) -> list[dict[str, Any]]:
    ports = svc.get("ports") or []
    for port in ports:
        assert isinstance(port, dict), f"use the long port syntax: {port!r}"
    return ports


def test_published_ports(services: dict[str, Any]) -> None:
    assert "ports" not in services["litellm"], (
        "LiteLLM must not be published: clients go via the router"
    )

    (router,) = _published(services["router"])
    assert (str(router["published"]), int(router["target"])) == ("8765", 8765)
    # Loopback unless MEMORY_ROUTER_BIND says otherwise (see .env.example).
    assert router["host_ip"] == "127.0.0.1"

    (prom,) = _published(services["prometheus"])
    assert (str(prom["published"]), int(prom["target"])) == ("9090", 9090)
    assert prom["host_ip"] == "127.0.0.1", "Prometheus has no auth: bind it to loopback only"


def test_router_bind_address_is_configurable(raw: str) -> None:
    env = {"MEMORY_ROUTER_BIND": "0.0.0.0"}
    router = interpolate_tree(yaml.safe_load(raw), env)["services"]["router"]
    assert router["ports"][0]["host_ip"] == "0.0.0.0"


def test_images_are_pinned(services: dict[str, Any]) -> None:
    expected = {"litellm": "ghcr.io/berriai/litellm", "prometheus": "prom/prometheus"}
    for name, repo in expected.items():
        image = services[name]["image"]
        assert "@" not in image or image.split("@", 1)[1].startswith("sha256:"), image
        ref, _, tag = image.split("@", 1)[0].rpartition(":")
        assert ref == repo, f"{name}: expected the official image {repo}, got {image}"
        assert PINNED_TAG.match(tag), f"{name}: {image} is not pinned to a concrete version tag"
        assert "latest" not in tag and "stable" not in tag, f"{name}: {tag} moves"


def test_litellm_image_matches_the_version_the_e2e_tier_tests(services: dict[str, Any]) -> None:
    pins = (ROOT / "tests" / "e2e" / "requirements-litellm.txt").read_text()
    match = re.search(r"^litellm(?:\[[a-z,]+\])?==(\S+)$", pins, re.M)
    assert match, "no litellm==X.Y.Z pin in tests/e2e/requirements-litellm.txt"
    tag = services["litellm"]["image"].rpartition(":")[2]
    assert tag == f"v{match.group(1)}", "keep the image tag in step with the e2e pin"


def test_router_is_built_from_its_dockerfile(services: dict[str, Any]) -> None:
    build = services["router"]["build"]
    assert build["context"] == "."
    assert build["dockerfile"] == "router/Dockerfile"
    assert (ROOT / build["context"] / build["dockerfile"]).is_file()
    assert "image" not in services["router"] or "latest" not in services["router"]["image"]


def test_router_waits_for_healthy_litellm(services: dict[str, Any]) -> None:
    assert services["router"]["depends_on"] == {
        "litellm": {"condition": "service_healthy"},
        "redis": {"condition": "service_started", "required": False},
    }
    test = services["litellm"]["healthcheck"]["test"]
    joined = " ".join(test)
    assert "/health/liveliness" in joined, "use the liveness endpoint (/health calls the models)"
    assert test[0] == "CMD" and test[1].startswith("python"), "the image has no curl or wget"
    assert "curl" not in joined and "wget" not in joined


def seconds(duration: str) -> float:
    """A compose duration such as 35s, 1m30s or 1.5m, in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


@pytest.mark.parametrize("file", ["docker-compose.yml", "docker-compose.replicas.yml"])
def test_router_may_finish_its_drain_before_docker_kills_it(file: str) -> None:
    from router.settings import Settings

    router = yaml.safe_load((ROOT / file).read_text())["services"]["router"]
    drain = Settings(_env_file=None).drain_seconds  # type: ignore[call-arg]
    # Docker's default grace is 10 s; the router drains streams for longer than that.
    assert seconds(router.get("stop_grace_period", "10s")) > drain


def test_router_environment(services: dict[str, Any]) -> None:
    env = services["router"]["environment"]
    assert env["LITELLM_URL"] == "http://litellm:4000"
    assert env["MEMORY_ROUTER_HOST"] == "0.0.0.0"
    assert str(env["MEMORY_ROUTER_PORT"]) == "8765"
    assert env["MEMORY_ROUTER_CONFIG"] == "/etc/memory-router/config.yaml"
    assert env["LOG_LEVEL"] == "INFO"
    assert "SUPERMEMORY_API_KEY" in env
    # The router needs none of LiteLLM's secrets.
    assert "env_file" not in services["router"]
    assert not {"ANTHROPIC_API_KEY", "LITELLM_MASTER_KEY"} & set(env)


def test_litellm_listens_where_the_router_looks(services: dict[str, Any]) -> None:
    command = services["litellm"]["command"]
    assert command[command.index("--port") + 1] == "4000"
    assert command[command.index("--config") + 1] == "/app/config.yaml"


def test_litellm_environment(services: dict[str, Any]) -> None:
    svc = services["litellm"]
    assert svc["env_file"] == [{"path": ".env", "required": False}], (
        "a missing .env must not stop the stack"
    )
    env = svc["environment"]
    assert (
        env["SUPERMEMORY_ANTHROPIC_BASE_URL"]
        == "https://api.supermemory.ai/v3/https://api.anthropic.com"
    )
    assert env["ANTHROPIC_API_KEY"] == "" and env["LITELLM_MASTER_KEY"] == ""


def test_no_variable_is_required(raw: str) -> None:
    # ${VAR:?msg} would refuse to start the whole stack when .env is missing.
    assert not re.search(r"(?<!\$)\$\{[A-Za-z_][A-Za-z0-9_]*:?\?", strip_comments(raw))


# -- mounts ----------------------------------------------------------------------


def _binds(svc: dict[str, Any]) -> list[dict[str, Any]]:
    binds = []
    for vol in svc.get("volumes") or []:
        assert isinstance(vol, dict), f"use the long volume syntax: {vol!r}"
        if vol["type"] == "bind":
            binds.append(vol)
    return binds


def test_every_mounted_host_file_exists_and_is_read_only(services: dict[str, Any]) -> None:
    seen = 0
    for name, svc in services.items():
        for vol in _binds(svc):
            source = ROOT / vol["source"]
            assert source.exists(), f"{name}: {vol['source']} does not exist"
            assert vol.get("read_only") is True, f"{name}: mount {vol['source']} read-only"
            # Otherwise Docker creates an empty directory where the file is missing.
            assert vol.get("bind", {}).get("create_host_path") is False, name
            seen += 1
    assert seen >= 4


def test_expected_mounts(services: dict[str, Any]) -> None:
    def targets(name: str) -> dict[str, str]:
        return {v["target"]: v["source"] for v in _binds(services[name])}

    assert targets("litellm") == {"/app/config.yaml": "./litellm/config.yaml"}
    # the router's folder, not the file: edits that replace the file must reach the
    # container for hot reload, and a single-file bind mount keeps the old inode
    assert targets("router") == {"/etc/memory-router": "./router"}
    config = services["router"]["environment"]["MEMORY_ROUTER_CONFIG"]
    assert config.startswith("/etc/memory-router/")
    assert (ROOT / "router" / config.removeprefix("/etc/memory-router/")).is_file()
    assert targets("prometheus") == {
        "/etc/prometheus/prometheus.yml": "./prometheus/prometheus.yml",
        "/etc/prometheus/rules.yml": "./prometheus/rules.yml",
    }
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]


# -- .env.example --------------------------------------------------------------


def commented_examples(path: Path) -> set[str]:
    """Names of the settings a .env file shows commented out (``# NAME=value``)."""
    found = re.findall(r"^#\s*([A-Z][A-Z0-9_]*)=\S", path.read_text(), re.M)
    return set(found)


def test_every_compose_variable_is_in_env_example(raw: str) -> None:
    replicas = (ROOT / "docker-compose.replicas.yml").read_text()
    used = variables_used(strip_comments(raw)) | variables_used(strip_comments(replicas))
    documented = {name for name, _, _ in parse_env_file(ENV_EXAMPLE)}
    documented |= commented_examples(ENV_EXAMPLE)
    assert used, "no ${VAR} found: is the parser broken?"
    assert used <= documented, f"missing from .env.example: {sorted(used - documented)}"
    assert documented <= used, f"in .env.example but unused by compose: {sorted(documented - used)}"


def test_env_example_entries_have_comments_and_placeholders() -> None:
    entries = parse_env_file(ENV_EXAMPLE)
    names = [name for name, _, _ in entries]
    assert len(names) == len(set(names)), "duplicate variable"
    for name, value, comments in entries:
        assert comments, f"{name} has no comment above it"
        assert value, f"{name} needs a placeholder (or comment it out, as REDIS_URL is)"
    secrets = {n: v for n, v, _ in entries if re.search(r"KEY|SECRET|TOKEN", n)}
    assert set(secrets) == {"ANTHROPIC_API_KEY", "LITELLM_MASTER_KEY", "SUPERMEMORY_API_KEY"}
    for name, value in secrets.items():
        assert "REPLACE_ME" in value, f"{name}: mark the placeholder clearly"


def test_sourcing_env_example_exports_no_empty_variable(tmp_path: Path) -> None:
    """``set -a; . ./.env`` (the no-Docker path) hands LiteLLM whatever the file sets: an
    empty REDIS_URL there makes it warn, so the file exports no empty value at all."""
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    done = subprocess.run(
        ["sh", "-c", "set -a; . ./.env; set +a; env"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    exported = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert "REDIS_URL" not in exported
    from_file = {name for name, _, _ in parse_env_file(ENV_EXAMPLE)}
    assert from_file <= set(exported)
    assert [n for n in from_file if not exported[n]] == []


@pytest.mark.parametrize(
    ("dotenv", "expected"), [("", ""), ("REDIS_URL=redis://redis:6379/0\n", "redis://redis:6379/0")]
)
def test_the_router_still_gets_redis_url_from_compose(raw: str, dotenv: str, expected: str) -> None:
    # Compose interpolates from .env: the example's values, plus the line a user uncomments.
    env = {name: value for name, value, _ in parse_env_file(ENV_EXAMPLE)}
    env.update(line.split("=", 1) for line in dotenv.splitlines())
    router = interpolate_tree(yaml.safe_load(raw), env)["services"]["router"]
    assert router["environment"]["REDIS_URL"] == expected
    replicas = yaml.safe_load((ROOT / "docker-compose.replicas.yml").read_text())
    assert replicas["services"]["router"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert "REDIS_URL" in commented_examples(ENV_EXAMPLE)


def test_master_key_placeholder_is_one_litellm_accepts() -> None:
    value = dict((n, v) for n, v, _ in parse_env_file(ENV_EXAMPLE))["LITELLM_MASTER_KEY"]
    # LiteLLM refuses an empty key and the well-known sk-1234.
    assert value.startswith("sk-") and value.strip() == value
    assert value != "sk-1234" and len(value) >= 32


def test_dotenv_is_git_ignored() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().split()


# -- the litellm entrypoint that reports missing keys ------------------------


@pytest.fixture()
def entrypoint(raw: str, tmp_path: Path) -> dict[str, Any]:
    """Runs the compose entrypoint for litellm with /bin/sh and a fake `litellm`."""
    svc = yaml.safe_load(raw)["services"]["litellm"]
    shell, flag, script, argv0 = svc["entrypoint"]
    assert (shell, flag) == ("/bin/sh", "-c")
    assert not variables_used(script), "unescaped $ in the script: compose would interpolate it"
    script = interpolate(script, {})  # undo the $$ escapes, as compose does
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "litellm"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "KEY=$LITELLM_MASTER_KEY" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return {
        "argv": [shell, flag, script, argv0, *svc["command"]],
        "bindir": bindir,
        "command": svc["command"],
    }


def _run(
    ep: dict[str, Any], env: dict[str, str], path: str | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {
        "PATH": path if path is not None else f"{ep['bindir']}{os.pathsep}{os.environ['PATH']}",
        **env,
    }
    return subprocess.run(ep["argv"], env=full_env, capture_output=True, text=True, timeout=30)


def test_entrypoint_with_all_keys_is_silent(entrypoint: dict[str, Any]) -> None:
    result = _run(entrypoint, {"ANTHROPIC_API_KEY": "sk-ant-x", "LITELLM_MASTER_KEY": "sk-abc"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == ["KEY=sk-abc", *entrypoint["command"]]


def test_entrypoint_without_env_names_the_missing_keys(entrypoint: dict[str, Any]) -> None:
    result = _run(entrypoint, {})
    assert result.returncode == 0, result.stderr
    assert "ANTHROPIC_API_KEY is not set" in result.stderr
    assert "LITELLM_MASTER_KEY is not set" in result.stderr
    key_line, *args = result.stdout.splitlines()
    # LiteLLM still starts, with a strong random key nobody knows (never printed).
    assert re.fullmatch(r"KEY=sk-[0-9a-f]{64}", key_line)
    assert key_line[4:] not in result.stderr
    assert args == entrypoint["command"]
    assert _run(entrypoint, {}).stdout.splitlines()[0] != key_line


def test_entrypoint_flags_placeholders(entrypoint: dict[str, Any]) -> None:
    values = {n: v for n, v, _ in parse_env_file(ENV_EXAMPLE)}
    env = {k: values[k] for k in ("ANTHROPIC_API_KEY", "LITELLM_MASTER_KEY")}
    result = _run(entrypoint, env)
    assert result.returncode == 0
    assert "ANTHROPIC_API_KEY is still the placeholder" in result.stderr
    assert "LITELLM_MASTER_KEY is still the placeholder" in result.stderr


def test_entrypoint_refuses_a_weak_generated_key(entrypoint: dict[str, Any]) -> None:
    # No python on PATH: it must stop with a message rather than start with "sk-".
    result = _run(entrypoint, {"ANTHROPIC_API_KEY": "x"}, path=str(entrypoint["bindir"]))
    assert result.returncode == 1
    assert "could not generate a throwaway master key" in result.stderr
    assert "KEY=" not in result.stdout
