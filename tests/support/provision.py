"""What the test fixtures do when something they need is missing: run
``scripts/provision.sh`` (or the live tier's ``tests/live/provision.sh``), the one place
that installs it, with its output in a log, and say clearly what failed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "provision.sh"
UNREACHABLE = 3  # provision.sh's status when the package index cannot be reached
TIMEOUT = 900.0


class ProvisionError(Exception):
    """provision.sh failed; ``status`` is its exit status, the message ends with its log."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def run_to_log(
    argv: list[str], log_path: Path, timeout: float, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run ``argv`` from the repository root, its output in ``log_path``; its exit status
    and the last lines of the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        status = subprocess.run(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, timeout=timeout
        ).returncode
    return status, "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])


def provision(what: str, log_path: Path, timeout: float = TIMEOUT) -> None:
    """``scripts/provision.sh what``, its output in ``log_path``."""
    env = {**os.environ, "PYTHON": sys.executable}
    status, tail = run_to_log(["bash", str(SCRIPT), what], log_path, timeout, env)
    if status != 0:
        raise ProvisionError(
            f"scripts/provision.sh {what} failed (exit {status}); log: {log_path}\n{tail}", status
        )


def system_tool(name: str, log_dir: Path, also: tuple[str, ...] = ()) -> str:
    """The path of the program ``name``: on PATH or at one of ``also``, else installed
    by provision.sh (as root) first. Raises ProvisionError saying what to install."""

    def found() -> str | None:
        return shutil.which(name) or next((p for p in also if os.access(p, os.X_OK)), None)

    path = found()
    if path is None:
        provision(name, log_dir / f"provision-{name}.log")
        path = found()
    if path is None:
        raise ProvisionError(f"{name} is still missing after scripts/provision.sh {name}", 1)
    return path
