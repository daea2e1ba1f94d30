"""Running the shipped compose files on a real Docker engine, for the live tier.

``Stack`` is one ``docker compose`` project: the shipped file (``docker-compose.yml`` or
``docker-compose.replicas.yml``, unchanged) plus the test-only overrides in
``tests/live/compose/``, under a project name of its own, with its own ``.env``, its own
copy of the router's rules folder and free loopback ports. Every command and its output
goes to ``test-logs/live/<project>.log``; the services' logs are saved beside it when the
stack goes down.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.support.polling import wait_for

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LOG_DIR = REPO / "test-logs" / "live"
OVERRIDES = HERE / "compose"

SINGLE_FILES = (
    REPO / "docker-compose.yml",
    OVERRIDES / "live.yml",
    OVERRIDES / "double.yml",
    OVERRIDES / "single.yml",
)
REPLICAS_FILES = (
    REPO / "docker-compose.replicas.yml",
    OVERRIDES / "live.yml",
    OVERRIDES / "double.yml",
    OVERRIDES / "replicas.yml",
)
# The single stack with the memory backends' doubles: a fake provider, Supermemory's v5 API.
MEMORY_FILES = (
    REPO / "docker-compose.yml",
    OVERRIDES / "live.yml",
    OVERRIDES / "single.yml",
    OVERRIDES / "memory.yml",
)
# The single stack without the double: for starting with an empty .env.
NO_DOUBLE_FILES = (REPO / "docker-compose.yml", OVERRIDES / "live.yml", OVERRIDES / "single.yml")

# `up --wait` bound: LiteLLM's health check allows 60 s of start period plus 6 tries.
UP_TIMEOUT = 300
# What the compose subprocess may see of this process's environment: nothing that could
# steer compose (COMPOSE_FILE, COMPOSE_PROFILES, ...) or fill in the stack's keys.
_PASSED_ENV = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "TMPDIR")

T = TypeVar("T")


class ComposeError(AssertionError):
    pass


def wait_until(
    what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.5
) -> T:
    """``wait_for`` for a service in a container: ``check`` may raise httpx or OS errors
    while the service is not there yet."""
    return wait_for(check, timeout, interval, what, errors=(httpx.HTTPError, OSError))


def docker(*args: str, timeout: float = 120, check: bool = True) -> str:
    """Run the docker CLI; its standard output."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise ComposeError(f"docker {' '.join(args)}: exit {done.returncode}\n{done.stderr}")
    return done.stdout


@dataclass
class Keys:
    """The stack's keys, random per stack so a leak check can search for them verbatim."""

    anthropic: str = field(default_factory=lambda: "sk-ant-live-" + secrets.token_hex(16))
    litellm_master: str = field(default_factory=lambda: "sk-live-" + secrets.token_hex(24))
    supermemory: str = field(default_factory=lambda: "sm_live_" + secrets.token_hex(20))

    def env_file(self) -> str:
        return (
            f"ANTHROPIC_API_KEY={self.anthropic}\n"
            f"LITELLM_MASTER_KEY={self.litellm_master}\n"
            f"SUPERMEMORY_API_KEY={self.supermemory}\n"
        )

    def all(self) -> list[str]:
        return [self.anthropic, self.litellm_master, self.supermemory]


class Stack:
    """One compose project on the engine; see the module docstring."""

    def __init__(self, kind: str, files: tuple[Path, ...], env_text: str) -> None:
        self.project = f"mrlive-{kind}-{secrets.token_hex(4)}"
        self.files = files
        # A world-readable folder: the router (uid 10001) reads its rules from it.
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.project}-"))
        self.workdir.chmod(0o755)
        self.router_dir = self.workdir / "router"
        shutil.copytree(
            REPO / "router", self.router_dir, ignore=shutil.ignore_patterns("__pycache__")
        )
        for path in [self.router_dir, *self.router_dir.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        self.env_file = self.workdir / "env"
        self.env_file.write_text(env_text)
        self.env_file.chmod(0o600)  # compose reads it on the host; it holds the keys
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{self.project}.log"
        self.environ = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
        self.environ.update(
            LIVE_ENV_FILE=str(self.env_file),
            LIVE_ROUTER_DIR=str(self.router_dir),
        )
        self._logs_saved = False
        self.log_path.write_text(f"# {' '.join(self.argv())}\n\n")

    # -- running compose ------------------------------------------------------------

    def argv(self, *args: str) -> list[str]:
        files = [arg for path in self.files for arg in ("-f", str(path))]
        return [
            "docker",
            "compose",
            "-p",
            self.project,
            "--project-directory",
            str(REPO),
            *files,
            "--env-file",
            str(self.env_file),
            *args,
        ]

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        argv = self.argv(*args)
        started = time.monotonic()
        done = subprocess.run(
            argv, env=self.environ, capture_output=True, text=True, timeout=timeout, check=False
        )
        with self.log_path.open("a") as log:
            log.write(
                f"$ docker compose {' '.join(args)}   # exit {done.returncode}, "
                f"{time.monotonic() - started:.1f} s\n{done.stdout}{done.stderr}\n"
            )
        if check and done.returncode != 0:
            raise ComposeError(
                f"docker compose {' '.join(args)} failed (exit {done.returncode}); "
                f"log: {self.log_path}\n{done.stderr[-3000:]}"
            )
        return done.stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            env=self.environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def up(self) -> None:
        try:
            self.run(
                "up",
                "--detach",
                "--wait",
                "--wait-timeout",
                str(UP_TIMEOUT),
                "--build",
                timeout=UP_TIMEOUT + 600,
            )
        except ComposeError as exc:
            raise ComposeError(f"{exc}\n--- service logs ---\n{self.logs(tail=40)}") from None

    def down(self) -> None:
        """``down -v``, keeping the services' logs in test-logs/live/ first."""
        if not self._logs_saved:
            with contextlib.suppress(ComposeError, subprocess.TimeoutExpired):
                (LOG_DIR / f"{self.project}-services.log").write_text(self.logs())
                self._logs_saved = True
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "40", timeout=300)

    def cleanup(self) -> None:
        """After ``down``: drop the images built for this project and the temporary folder."""
        for image in self.built_images():
            docker("image", "rm", "--force", image, check=False)
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- looking at it ------------------------------------------------------------------

    def logs(self, *services: str, tail: int | None = None) -> str:
        args = ["logs", "--no-color", "--timestamps"]
        if tail is not None:
            args += ["--tail", str(tail)]
        return self.run(*args, *services, timeout=60)

    def url(self, service: str, port: int, index: int = 1) -> str:
        """``http://127.0.0.1:<published port>`` of a service's container port."""
        address = self.run("port", "--index", str(index), service, str(port)).strip()
        if not address:
            raise ComposeError(f"{service}:{port} is not published")
        return "http://" + address.replace("0.0.0.0", "127.0.0.1")

    def containers(self, service: str | None = None, *, stopped: bool = False) -> list[str]:
        args = ["ps", "--quiet"] + (["--all"] if stopped else []) + ([service] if service else [])
        return self.run(*args).split()

    def inspect(self, target: str) -> dict[str, Any]:
        """``docker inspect`` of a container or image."""
        data: list[dict[str, Any]] = json.loads(docker("inspect", target))
        return data[0]

    def built_images(self) -> list[str]:
        out = docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", check=False)
        return [name for name in out.split() if name.startswith(f"{self.project}-")]

    def leftovers(self) -> dict[str, list[str]]:
        """What the engine still holds of this project: containers, networks, volumes."""
        label = f"label=com.docker.compose.project={self.project}"
        return {
            "containers": docker("ps", "--all", "--quiet", "--filter", label).split(),
            "networks": docker("network", "ls", "--quiet", "--filter", label).split(),
            "volumes": docker("volume", "ls", "--quiet", "--filter", label).split(),
        }

    def python_in(self, container: str, code: str) -> str:
        """Run Python inside a container (to reach a port that is not published)."""
        return docker("exec", container, "python", "-c", code, timeout=60)


@contextlib.contextmanager
def running(stack: Stack) -> Iterator[Stack]:
    """``up --wait``; on the way out ``down -v`` and the stack's images, whatever happened."""
    try:
        stack.up()
        yield stack
    finally:
        try:
            stack.down()
        finally:
            stack.cleanup()


def read_json(url: str, **params: Any) -> Any:
    response = httpx.get(url, params=params, timeout=10.0, trust_env=False)
    response.raise_for_status()
    return response.json()


@dataclass
class Prometheus:
    url: str

    def query(self, expr: str) -> list[dict[str, Any]]:
        payload = read_json(f"{self.url}/api/v1/query", query=expr)
        assert payload["status"] == "success", payload
        result: list[dict[str, Any]] = payload["data"]["result"]
        return result

    def values(self, expr: str, label: str) -> dict[str, float]:
        """``{series' label value: sample value}`` of an instant query."""
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr)}

    def targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = read_json(f"{self.url}/api/v1/targets")["data"][
            "activeTargets"
        ]
        return targets
