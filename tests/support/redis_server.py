"""A real redis-server on a loopback port, for tests that need Redis; it can be
killed and started again on the same port."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.support.ports import HOST, free_port
from tests.support.processes import Process, start_process

START_TIMEOUT = 10.0


def _ping(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=0.2) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")


class RedisServer:
    """One redis-server process on a fixed loopback port, persistence off, in ``workdir``
    (its log, ``redis.log``, keeps every run)."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self.process: Process | None = None

    def start(self) -> None:
        assert self.process is None, "already running"
        argv = [self.binary, "--port", str(self.port), "--bind", HOST]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        self.process = start_process("redis", argv, log_dir=self.workdir, append=True)
        try:
            self.process.wait_until(lambda: _ping(self.port), START_TIMEOUT, "PING answered")
        except Exception:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL: the way a crashed Redis disappears."""
        if self.process is not None:
            self.process.kill()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(5)
            self.process = None
