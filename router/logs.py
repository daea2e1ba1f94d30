"""Logging: one format, and one filter on the handler that keeps secrets out of every line.

The scrubbing is a filter on the *handler*, not on a logger: a logger's filters see
only the records made on that very logger, while a handler's see every record it
writes, whichever logger made it (``memory_router``, ``memory_router.ratelimit``,
``uvicorn.error``, a library).

- ``configure_logging`` (the CLI) writes everything through one stderr handler that
  carries the filter.
- ``create_app`` puts the filter on the handlers its logger's records reach when the
  app is built, for apps embedded in a program that configured logging itself. A
  handler added later needs ``RedactingFilter(settings.secrets)`` added to it too.

Only secrets of at least ``MIN_SECRET_LENGTH`` characters are scrubbed: replacing a
one-character "secret" everywhere would mangle every line and hide nothing. The
settings refuse a Supermemory key or control token shorter than that at start-up.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

LOGGER_NAME = "memory_router"
FORMAT = "%(asctime)s | %(levelname)-8s | %(name)s | %(message)s"
REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8
_TRACEBACKS = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Replaces each secret with ``[redacted]`` in a record's message, traceback and stack.
    Values shorter than ``MIN_SECRET_LENGTH`` are not secrets it can scrub: ignored."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets: set[str] = set(scrubbable(secrets))

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if self._found(message):
            record.msg, record.args = self._scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text and self._found(record.exc_text):
            record.exc_text = self._scrub(record.exc_text)
        if record.stack_info and self._found(record.stack_info):
            record.stack_info = self._scrub(record.stack_info)
        return True

    def _found(self, text: str) -> bool:
        return any(secret in text for secret in self.secrets)

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


def scrubbable(secrets: Iterable[str]) -> list[str]:
    """The secrets long enough to scrub."""
    return [s for s in secrets if len(s) >= MIN_SECRET_LENGTH]


def redact_handlers(logger: logging.Logger, secrets: Iterable[str]) -> None:
    """Scrub ``secrets`` in every handler that records of ``logger`` (and of its
    children) reach now; with none, in ``logging.lastResort``, which Python uses then."""
    wanted = scrubbable(secrets)
    if not wanted:
        return
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers.extend(current.handlers)
        current = current.parent if current.propagate else None
    if not handlers and logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        _filter_of(handler).secrets.update(wanted)


def _filter_of(handler: logging.Handler) -> RedactingFilter:
    for existing in handler.filters:
        if isinstance(existing, RedactingFilter):
            return existing
    new = RedactingFilter()
    handler.addFilter(new)
    return new


def configure_logging(level: int, secrets: list[str]) -> logging.Handler:
    """Send every log record to stderr through one scrubbing handler on the root logger.

    The router's and uvicorn's loggers log at ``level``; other libraries' records
    appear from WARNING up.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in (LOGGER_NAME, "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.setLevel(level)
        logger.propagate = True
    return handler
