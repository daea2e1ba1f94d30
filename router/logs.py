"""Logging setup: one format, and the Supermemory key scrubbed from every line."""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "memory_router"
FORMAT = "%(asctime)s | %(levelname)-8s | %(name)s | %(message)s"


class RedactingFormatter(logging.Formatter):
    """Replaces each secret with ``[redacted]`` in the formatted line."""

    def __init__(self, fmt: str, secrets: list[str]) -> None:
        super().__init__(fmt)
        self._secrets = [s for s in secrets if s]

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, "[redacted]")
        return line


class RedactingFilter(logging.Filter):
    """Scrubs secrets from each record before any handler sees it (tests' too)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(secret in message for secret in self.secrets):
                for secret in self.secrets:
                    message = message.replace(secret, "[redacted]")
                record.msg, record.args = message, None
        return True


def redact(logger: logging.Logger, secrets: list[str]) -> None:
    """Make ``logger`` scrub ``secrets`` from every record it emits."""
    for existing in logger.filters:
        if isinstance(existing, RedactingFilter):
            existing.secrets.update(s for s in secrets if s)
            return
    new = RedactingFilter()
    new.secrets.update(s for s in secrets if s)
    logger.addFilter(new)


def configure_logging(level: int, secrets: list[str]) -> logging.Handler:
    """Send the router's and uvicorn's logs to stderr through one redacting handler."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter(FORMAT, secrets))
    for name in (LOGGER_NAME, "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    return handler
