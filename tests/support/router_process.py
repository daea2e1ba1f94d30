"""The router as a user starts it: the ``memory-router`` CLI in a process of its own."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.support.environment import clean_env
from tests.support.ports import HOST, free_port
from tests.support.processes import Process, Processes

START_TIMEOUT = 30.0


def router_command() -> list[str]:
    """The console script installed next to this Python, else one on PATH, else
    ``python -m router``."""
    name = "memory-router"
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    return [found] if found else [sys.executable, "-m", "router"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``memory-router ARGS`` as a user runs it, to the end: nothing of this environment
    steers it (``clean_env``, then ``env``), and it runs in ``cwd`` or in an empty folder,
    so a developer's own ``.env`` cannot change the outcome. Its per-user config folder
    (``XDG_CONFIG_HOME``) is an empty one too, unless ``env`` names another."""
    with tempfile.TemporaryDirectory() as empty:
        isolated = {"XDG_CONFIG_HOME": str(Path(empty) / "user-config"), **(env or {})}
        return subprocess.run(
            [*router_command(), *args],
            capture_output=True,
            text=True,
            env=clean_env(**isolated),
            cwd=cwd or empty,
            timeout=timeout,
        )


def router_argv(
    port: int,
    litellm_url: str,
    *,
    config: Path | None = None,
    log_level: str | None = None,
    command: list[str] | None = None,
) -> list[str]:
    """``memory-router serve`` on loopback ``port`` in front of ``litellm_url``;
    ``command`` is another build that takes the same arguments (``[]``: the arguments
    alone, for a command of the caller's own)."""
    base = router_command() if command is None else command
    argv = [*base, "serve", "--host", HOST, "--port", str(port)]
    argv += ["--litellm-url", litellm_url]
    if config is not None:
        argv += ["--config", str(config)]
    if log_level is not None:
        argv += ["--log-level", log_level]
    return argv


@dataclass
class RouterProcess:
    process: Process
    url: str

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        """The process itself, for signals and its exit status."""
        return self.process.popen

    def logs(self) -> str:
        return self.process.log()


def start_router_process(
    processes: Processes,
    litellm_url: str,
    env: dict[str, str],
    *,
    config: Path | None = None,
    log_level: str | None = None,
    name: str | None = None,
    timeout: float = START_TIMEOUT,
    cwd: Path | None = None,
) -> RouterProcess:
    """Start the router CLI with exactly ``env`` (in ``cwd``, by default the log folder)
    and wait until ``/health`` answers 200 (ProcessError, with its log's tail, when it
    does not). Its log is ``<name>.log``, by default ``router-<port>.log``."""
    port = free_port()
    process = processes.start(
        name or f"router-{port}",
        router_argv(port, litellm_url, config=config, log_level=log_level),
        env=env,
        cwd=cwd,
    )
    url = f"http://{HOST}:{port}"
    process.wait_http_ok(f"{url}/health", timeout)
    return RouterProcess(process, url)
