"""Processes started for a test or a benchmark: each with its own log file, a
bounded wait until it answers, and a stop that escalates from SIGTERM to SIGKILL.

Every process starts in a session of its own, so a stop reaches whatever it started
too (a wrapper script's child, nginx's workers)."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.fetch import fetch


class ProcessError(Exception):
    """A process exited early or did not become ready; the message ends with its log."""


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Returns the exit status."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def kill(self) -> None:
        """SIGKILL at once: the way a crashed service disappears."""
        if self.alive():
            self._signal_group(signal.SIGKILL)
            self.popen.wait(10)

    def _failure(self, what: str, reason: str) -> ProcessError:
        return ProcessError(
            f"{self.name} {reason} before {what}.\n"
            f"--- last lines of {self.log_path} ---\n{self.tail()}"
        )

    def wait_until(
        self,
        ready: Callable[[], object],
        timeout: float,
        what: str,
        interval: float = 0.05,
    ) -> float:
        """Poll ``ready`` until it is truthy; returns the
        seconds it took. Raises ProcessError, with the log's tail, when the process exits
        first or ``timeout`` passes (the process is then stopped). A connection refused or
        cut (OSError, a broken HTTP answer) counts as "not yet"."""
        start = time.monotonic()
        while True:
            if not self.alive():
                raise self._failure(what, f"exited with code {self.popen.returncode}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if ready():
                    return time.monotonic() - start
            if time.monotonic() - start > timeout:
                self.stop()
                raise self._failure(what, f"was not ready within {timeout:g} s")
            time.sleep(interval)

    def wait_http_ok(self, url: str, timeout: float = 30.0) -> float:
        """Wait until GET ``url`` answers 200; returns the seconds it took."""
        return self.wait_until(
            lambda: fetch(url, timeout=2)[0] == 200, timeout, f"GET {url} answered 200"
        )


def start_process(
    name: str,
    argv: list[str],
    *,
    log_dir: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    append: bool = False,
) -> Process:
    """Start ``argv`` with its output in ``log_dir/<name>.log`` (the command line first);
    ``append`` keeps what an earlier run of the same name wrote."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("ab" if append else "wb") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        popen = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(cwd or log_dir),
            start_new_session=True,
        )
    return Process(name, popen, log_path)


@dataclass
class Processes:
    """Starts processes with logs in ``log_dir`` and stops them all, last first."""

    log_dir: Path
    started: list[Process] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Process:
        process = start_process(name, argv, log_dir=self.log_dir, env=env, cwd=cwd)
        self.started.append(process)
        return process

    def stop_all(self, timeout: float = 10.0) -> None:
        for process in reversed(self.started):
            with contextlib.suppress(Exception):
                process.stop(timeout)


def rss_kib(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak) of a process, in KiB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def group_members(pgid: int) -> dict[int, str]:
    """The processes of process group ``pgid`` still running (zombies excluded), each
    pid with its command name, from /proc."""
    members: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        name = text[text.index("(") + 1 : text.rindex(")")]
        state, _ppid, group = text[text.rindex(")") + 2 :].split()[:3]
        if int(group) == pgid and state != "Z":
            members[int(stat.parent.name)] = name
    return members
