"""Logs (router/logs.py): the secret-scrubbing filter on the handler, in the CLI's setup, in
an embedded app, and in the router process's own lines."""

from __future__ import annotations

import io
import logging
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router.app import create_app
from router.logs import MIN_SECRET_LENGTH, REDACTED, RedactingFilter
from router.server import server_config
from router.settings import Settings
from tests.conftest import SM_KEY, Launch
from tests.doubles.fake_litellm import FakeUpstream
from tests.support.configs import write_rules
from tests.support.ports import free_port
from tests.support.servers import serve_in_thread

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}

SECRET = "sk-secret-0123456789"


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"bad value {SECRET}")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("memory_router.x", logging.INFO, __file__, 1, msg, args, exc_info)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_record("key %s in args", SECRET), f"key {REDACTED} in args"),
        (_record(f"key {SECRET} in the message"), f"key {REDACTED} in the message"),
        (_record("%d%%, nothing secret", 5), "5%, nothing secret"),
        (_record("twice: %s %s", SECRET, SECRET), f"twice: {REDACTED} {REDACTED}"),
    ],
)
def test_filter_scrubs_the_message(record: logging.LogRecord, message: str) -> None:
    assert RedactingFilter([SECRET, ""]).filter(record) is True
    assert record.getMessage() == message


@pytest.mark.parametrize("short", ["x", "e", "1234567"])
def test_a_value_too_short_to_be_a_secret_is_not_scrubbed(short: str) -> None:
    # Scrubbing one character everywhere would mangle every line and hide nothing.
    line = "memory-router 0.1.0 on http://127.0.0.1:8765 -> http://localhost:4000; 1234567"
    record = _record(line)
    assert RedactingFilter([short, SECRET]).filter(record) is True
    assert record.getMessage() == line
    record = _record(f"{line} {SECRET}")
    RedactingFilter([short, SECRET]).filter(record)
    assert record.getMessage() == f"{line} {REDACTED}"


def test_a_secret_of_the_minimum_length_is_scrubbed() -> None:
    secret = "k" * MIN_SECRET_LENGTH
    record = _record(f"key {secret}.")
    RedactingFilter([secret]).filter(record)
    assert record.getMessage() == f"key {REDACTED}."


def test_filter_scrubs_tracebacks_and_stacks() -> None:
    record = _record("failed", exc=True)
    record.stack_info = f"Stack (most recent call last):\n  frame with {SECRET}"
    RedactingFilter([SECRET]).filter(record)
    line = logging.Formatter("%(message)s").format(record)
    assert f"ValueError: bad value {REDACTED}" in line
    assert f"frame with {REDACTED}" in line
    assert SECRET not in line


def test_the_cli_setup_scrubs_every_logger() -> None:
    """configure_logging in a process of its own: it sets up the root logger."""
    code = textwrap.dedent(
        """
        import logging, sys
        from router.logs import configure_logging

        secret = sys.argv[1]
        configure_logging(logging.INFO, [secret])
        logging.getLogger("memory_router").info("own %s", secret)
        logging.getLogger("memory_router.ratelimit").warning("child %s", secret)
        logging.getLogger("uvicorn.error").error("uvicorn %s", secret)
        logging.getLogger("some.library").warning("library %s", secret)
        logging.getLogger("some.library").info("library info %s", secret)
        try:
            raise ValueError(secret)
        except ValueError:
            logging.getLogger("memory_router").exception("failed")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code, SECRET], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    for name, text in [
        ("memory_router", "own"),
        ("memory_router.ratelimit", "child"),
        ("uvicorn.error", "uvicorn"),
        ("some.library", "library"),
    ]:
        assert any(line.endswith(f"| {name} | {text} {REDACTED}") for line in lines), name
    assert f"ValueError: {REDACTED}" in lines
    assert "library info" not in done.stderr  # other libraries from WARNING up
    assert SECRET not in done.stderr


@pytest.fixture
def acme() -> Iterator[io.StringIO]:
    """An embedding program's own logging: one handler on its ``acme`` logger."""
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logger = logging.getLogger("acme")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def test_an_embedded_app_scrubs_its_records_and_its_child_loggers(
    acme: io.StringIO, upstream: FakeUpstream, upstream_url: str, tmp_path: Path
) -> None:
    config = write_rules(
        tmp_path / "rules.yaml",
        "default_user_id: d",
        rate_limits="default: {requests_per_minute: 60}",
    )
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        litellm_url=upstream_url,
        supermemory_api_key=SM_KEY,
        config=config,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens: the limiter warns
    )
    app = create_app(settings, logger=logging.getLogger("acme.router"))
    with serve_in_thread(app, server_config(app, settings, log_level="warning")) as url:
        # A key-shaped value is a valid id: a client can make the router log it.
        r = httpx.post(
            f"{url}/v1/chat/completions", json={"model": "m"}, headers={"x-memory-user-id": SM_KEY}
        )
    assert r.status_code == 200 and upstream.last().header("x-sm-user-id") == SM_KEY
    logging.getLogger("acme.router.audit").warning("a child logger's record: %s", SM_KEY)
    text = acme.getvalue()
    assert f"user_id={REDACTED} source=custom_header" in text
    assert "acme.router.ratelimit: rate limiter: Redis failed" in text
    assert f"acme.router.audit: a child logger's record: {REDACTED}" in text
    assert SM_KEY not in text


def test_process_logs_decisions_and_never_the_key(
    launch: Launch,
    tmp_path: Path,
    upstream: FakeUpstream,
) -> None:
    router = launch(
        write_rules(tmp_path / "rules.yaml", "default_user_id: logs"), LOG_LEVEL="DEBUG"
    )
    httpx.post(
        f"{router.url}/v1/chat/completions",
        json={**CHAT, "stream": False},
        headers={"x-request-id": "rid-log-1"},
    )
    httpx.post(
        f"{router.url}/v1/chat/completions", json=CHAT, headers={"x-memory-user-id": "bad id"}
    )
    httpx.post(
        f"{router.url}/v1/chat/completions", json=CHAT, headers={"x-supermemory-api-key": SM_KEY}
    )  # even when a client sends it
    httpx.post(  # or names it as its id, which the routing line would show
        f"{router.url}/v1/chat/completions",
        json={**CHAT, "stream": False},
        headers={"x-memory-user-id": SM_KEY},
    )
    router.proc.send_signal(signal.SIGTERM)
    assert router.proc.wait(10) == 0
    logs = router.logs()
    assert "rid-log-1 routing model=m user_id=logs source=default" in logs
    assert "injected=x-sm-user-id,x-supermemory-api-key" in logs
    assert "rejected" in logs
    assert "user_id=[redacted] source=custom_header" in logs
    assert SM_KEY not in logs
