"""The upstream's answer, read once as it is relayed: one parser, several observers.

The proxy hands each chunk to ``Answer.feed`` after the chunk has gone to the client,
and calls ``Answer.finish`` when the answer is over. The answer is split into events
once: each ``data:`` line of a server-sent event stream is one ``AnswerEvent``, a JSON
body is one ``AnswerEvent`` at the end (kept up to ``MAX_JSON_BYTES``). Every event goes
to the observers in turn, and is parsed as JSON at most once, by the first that asks.

Observers: token usage (``router.usage``), the assistant's text for memory
(``router.memory.answer_text``) and ``EndOfAnswer`` here, which tells whether the
answer's final event has been relayed. A small error answer's first bytes are also
kept for ``router.hints``. Nothing here raises on a malformed answer or holds a chunk
back.

An observer may name the byte strings an event must contain for it to care
(``marks``); when no observer wants every event, a chunk holding none of them is not
split at all. That keeps a stream the router only counts tokens on nearly free.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from router.apis import ApiFormat
from router.hints import Peek

MAX_LINE_BYTES = 1024 * 1024
MAX_JSON_BYTES = 8 * 1024 * 1024


class AnswerEvent:
    """One event: the payload of an SSE ``data:`` line, or a whole JSON body."""

    __slots__ = ("_value", "data", "parsed")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.parsed = False
        self._value: Any = None

    def json(self) -> Any:
        """The payload as JSON, parsed on first use; None when it is not JSON."""
        if not self.parsed:
            self.parsed = True
            try:
                self._value = json.loads(self.data)
            except (ValueError, RecursionError):
                self._value = None
        return self._value


class Observer:
    """Something read from an answer's events. The base class ignores them all."""

    __slots__ = ()

    # Byte strings at least one of which an event holds when this observer cares about
    # it; None: every event.
    marks: ClassVar[tuple[bytes, ...] | None] = None

    def event(self, event: AnswerEvent) -> None:
        """One event of a stream, in order."""

    def body(self, event: AnswerEvent) -> None:
        """A whole JSON body, once the answer is over."""

    def lost(self) -> None:
        """A stream's line ran over ``MAX_LINE_BYTES``: an event was skipped."""


def _final_event(fmt: ApiFormat | None) -> tuple[bytes, tuple[str, ...]]:
    """The mark and the ``type`` values of a stream's last event, for each API."""
    if fmt == "anthropic":
        return b'"message_stop"', ("message_stop",)
    if fmt == "responses":
        return b'"response.', ("response.completed", "response.failed", "response.incomplete")
    if fmt == "gemini":
        return b'"finishReason"', ()
    return b"[DONE]", ()


class EndOfAnswer(Observer):
    """Whether a stream's final event has passed: ``data: [DONE]`` (chat completions and
    most OpenAI-style streams), ``message_stop`` (Anthropic), ``response.completed``,
    ``.failed`` or ``.incomplete`` (Responses API), a candidate's ``finishReason``
    (Gemini)."""

    __slots__ = ("_gemini", "_types", "mark", "seen")

    def __init__(self, fmt: ApiFormat | None) -> None:
        self.mark, self._types = _final_event(fmt)
        self._gemini = fmt == "gemini"
        self.seen = False

    def event(self, event: AnswerEvent) -> None:
        if self.seen or self.mark not in event.data:
            return
        if event.data == b"[DONE]":
            self.seen = True
            return
        value = event.json()
        if not isinstance(value, dict):
            return
        if self._gemini:
            candidates = value.get("candidates")
            self.seen = isinstance(candidates, list) and any(
                isinstance(c, dict) and isinstance(c.get("finishReason"), str) for c in candidates
            )
        else:
            self.seen = value.get("type") in self._types


_SSE, _JSON, _BYTES = 0, 1, 2


class Answer:
    """One answer, from its first byte to its end."""

    __slots__ = (
        "_body",
        "_chunks",
        "_end",
        "_finished",
        "_kind",
        "_length",
        "_marks",
        "_observers",
        "_size",
        "_tail",
        "peek",
        "relayed",
    )

    def __init__(
        self,
        fmt: ApiFormat | None,
        observers: Sequence[Observer],
        *,
        content_type: bytes | None,
        content_encoding: bytes | None = None,
        content_length: int | None = None,
        peek: Peek | None = None,
    ) -> None:
        self._kind = _kind_of(content_type, content_encoding)
        self._end = end = EndOfAnswer(fmt)
        self._observers: tuple[Observer, ...] = (*observers, end)
        marks = [end.mark]
        for observer in observers:
            if observer.marks is None:
                self._marks: tuple[bytes, ...] | None = None
                break
            marks += observer.marks
        else:
            self._marks = tuple(marks)
        self._length = content_length
        self.peek = peek
        self.relayed = 0
        self._tail = b""
        self._chunks: list[bytes] | None = []
        self._size = 0
        self._body: AnswerEvent | None = None
        self._finished = False

    def feed(self, chunk: bytes) -> None:
        """Read one chunk, already sent to the client."""
        self.relayed += len(chunk)
        if self.peek is not None:
            self.peek.feed(chunk)
        if self._kind == _SSE:
            self._feed_events(chunk)
        elif self._kind == _JSON and self._chunks is not None:
            self._size += len(chunk)
            if self._size > MAX_JSON_BYTES:
                self._chunks = None
            else:
                self._chunks.append(chunk)

    def _feed_events(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        marks = self._marks
        if marks is not None:
            for mark in marks:
                if mark in data:
                    break
            else:  # nothing any observer cares about: keep only the unfinished line
                cut = data.rfind(b"\n")
                tail = data[cut + 1 :] if cut >= 0 else data
                self._tail = tail if len(tail) <= MAX_LINE_BYTES else b""
                return
        lines = data.split(b"\n")
        tail = lines.pop()
        if len(tail) > MAX_LINE_BYTES:
            tail = b""
            for observer in self._observers:
                observer.lost()
        self._tail = tail
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        if line.startswith(b"data:"):
            event = AnswerEvent(line[5:].strip())
            for observer in self._observers:
                observer.event(event)

    def finish(self) -> None:
        """The answer is over (or the client left): read what is left. Idempotent."""
        if self._finished:
            return
        self._finished = True
        if self._kind == _SSE:
            if self._tail:
                tail, self._tail = self._tail, b""
                self._line(tail)
        elif self._kind == _JSON and self._chunks:
            body = AnswerEvent(b"".join(self._chunks))
            self._chunks = None
            self._body = body
            for observer in self._observers:
                observer.body(body)

    def ended(self) -> bool:
        """Whether the answer's end has been relayed: its final event, all the bytes its
        ``Content-Length`` promised, or a JSON body that is complete. Call after
        ``finish``."""
        if self._end.seen:
            return True
        if self._length is not None:
            return self.relayed >= self._length
        return self._body is not None and self._body.json() is not None


def _kind_of(content_type: bytes | None, content_encoding: bytes | None) -> int:
    if content_type is None or (content_encoding and content_encoding.lower() != b"identity"):
        return _BYTES
    ctype = content_type.lower()
    if ctype.startswith(b"text/event-stream"):
        return _SSE
    if ctype.startswith(b"application/json"):
        return _JSON
    return _BYTES
