"""Start the router as a user would: the ``memory-router`` CLI in its own process."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SM_KEY
from tests.servers import wait_for


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RouterProcess:
    def __init__(self, proc: subprocess.Popen[str], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    def logs(self) -> str:
        return self.log.read_text()


@pytest.fixture
def launch(upstream_url: str, tmp_path: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[str]] = []
    handles: list[object] = []

    def start(config: Path, **env: str) -> RouterProcess:
        exe = shutil.which("memory-router")
        assert exe, "memory-router is not installed: pip install -e ."
        port = _free_port()
        log = tmp_path / f"router-{port}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("MEMORY_ROUTER_")}
        full_env.update({"SUPERMEMORY_API_KEY": SM_KEY, **env})
        handle = log.open("w")
        handles.append(handle)
        proc = subprocess.Popen(
            [exe, "--port", str(port), "--litellm-url", upstream_url, "--config", str(config)],
            env=full_env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"router exited early:\n{log.read_text()}")
            try:
                return httpx.get(f"{url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=30, interval=0.1)
        return RouterProcess(proc, url, log)

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    for handle in handles:
        handle.close()  # type: ignore[attr-defined]
