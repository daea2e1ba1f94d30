"""Feeding an answer's bytes to ``router.answer.Answer`` the way the proxy does."""

from __future__ import annotations

from collections.abc import Sequence

from router.answer import Answer, Observer
from router.apis import ApiFormat

SSE = b"text/event-stream"
JSON = b"application/json"


def read_answer(
    raw: bytes,
    observers: Sequence[Observer],
    *,
    fmt: ApiFormat | None = "openai",
    content_type: bytes | None = SSE,
    size: int = 7,
    content_length: int | None = None,
) -> Answer:
    """An Answer fed ``raw`` in pieces of ``size`` bytes, then finished."""
    answer = Answer(fmt, observers, content_type=content_type, content_length=content_length)
    for i in range(0, len(raw), size):
        answer.feed(raw[i : i + size])
    answer.finish()
    return answer
