"""The upstream's answer, read once as it is relayed: one parser, several observers.

The proxy hands each chunk to ``Answer.feed`` after the chunk has gone to the client,
and calls ``Answer.finish`` when the answer is over. The answer is split into events
once: each ``data:`` line of a server-sent event stream is one ``AnswerEvent``, a JSON
body is one ``AnswerEvent`` at the end (kept up to ``MAX_JSON_BYTES``). Every event goes
to the observers in turn, and is parsed as JSON at most once, by the first that asks.

Observers: token usage (``router.usage``) and the assistant's text for memory
(``router.memory.answer_text``). ``EndOfAnswer`` here tells whether the answer's final
event has been relayed; it reads the latest events only when asked (``Answer.ended``).
A small error answer's first bytes are also kept for ``router.hints``. Nothing here
raises on a malformed answer or holds a chunk back.

An observer may name the byte strings an event must contain for it to care
(``marks``). When no observer wants every event, a chunk holding none of them is not
split at all, and only the events holding one become ``AnswerEvent``s. That keeps a
stream the router only counts tokens on as cheap as a scan of each chunk.
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


# The mark and the ``type`` values of a stream's last event, for each API.
_FINAL: dict[ApiFormat | None, tuple[bytes, tuple[str, ...]]] = {
    "anthropic": (b'"message_stop"', ("message_stop",)),
    "responses": (
        b'"response.',
        ("response.completed", "response.failed", "response.incomplete"),
    ),
    "gemini": (b'"finishReason"', ()),
}
_DONE = (b"[DONE]", ())


class EndOfAnswer(Observer):
    """Whether a stream's final event has passed: ``data: [DONE]`` (chat completions and
    most OpenAI-style streams), ``message_stop`` (Anthropic), ``response.completed``,
    ``.failed`` or ``.incomplete`` (Responses API), a candidate's ``finishReason``
    (Gemini)."""

    __slots__ = ("_gemini", "_types", "mark", "seen")

    def __init__(self, fmt: ApiFormat | None) -> None:
        self.mark, self._types = _FINAL.get(fmt, _DONE)
        self._gemini = fmt == "gemini"
        self.seen = False

    def event(self, event: AnswerEvent) -> None:
        if self.seen:
            return
        if event.data == b"[DONE]":
            self.seen = True
            return
        if self.mark not in event.data:
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


_SSE, _JSON, _BYTES = "sse", "json", "bytes"


class Answer:
    """One answer, from its first byte to its end."""

    __slots__ = (
        "_body",
        "_chunks",
        "_finished",
        "_fmt",
        "_last",
        "_length",
        "_mark",
        "_marks",
        "_observers",
        "_prev",
        "_relayed",
        "_size",
        "_sse",
        "_tail",
        "peek",
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
        kind = _kind_of(content_type, content_encoding)
        self._sse = kind == _SSE
        self._fmt = fmt
        self._observers: tuple[Observer, ...] = tuple(observers)
        self._length = content_length
        self.peek = peek
        self._body: AnswerEvent | None = None
        self._finished = False
        # Only what this kind of answer uses is set: a stream's or a body's.
        if self._sse:
            # What a chunk must hold to be split into events: any of ``_marks``
            # (``_mark`` when there is one); None: every chunk is split.
            self._marks: tuple[bytes, ...] | None = None
            self._mark: bytes | None = None
            marks: list[bytes] = []
            for observer in observers:
                if observer.marks is None:
                    break
                marks += observer.marks
            else:
                self._marks = tuple(marks)
                if len(marks) == 1:
                    self._mark = marks[0]
            self._tail = b""
            # The latest two pieces that completed lines (all but their last line):
            # the final event, when it has passed, is among them.
            self._prev = b""
            self._last = b""
            self._chunks: list[bytes] | None = None
        else:
            self._relayed = 0
            self._chunks = [] if kind == _JSON else None
            self._size = 0

    def feed(self, chunk: bytes) -> None:
        """Read one chunk, already sent to the client."""
        if self._sse:
            data = self._tail + chunk if self._tail else chunk
            mark = self._mark
            if mark is not None:
                skip = mark not in data
            elif self._marks is not None:
                skip = not _holds_any(data, self._marks)
            else:
                skip = False
            if not skip:
                self._events(data)
                return
            # Nothing any observer cares about: keep only the unfinished line.
            cut = data.rfind(b"\n")
            if cut < 0:
                tail = data
            else:
                tail = data[cut + 1 :]
                self._prev = self._last
                self._last = data
            self._tail = tail if len(tail) <= MAX_LINE_BYTES else b""
            return
        self._relayed += len(chunk)
        if self.peek is not None:
            self.peek.feed(chunk)
        if self._chunks is not None:
            self._size += len(chunk)
            if self._size > MAX_JSON_BYTES:
                self._chunks = None
            else:
                self._chunks.append(chunk)

    def _events(self, data: bytes) -> None:
        lines = data.split(b"\n")
        tail = lines.pop()
        if len(tail) > MAX_LINE_BYTES:
            tail = b""
            for observer in self._observers:
                observer.lost()
        self._tail = tail
        observers = self._observers
        mark, marks = self._mark, self._marks
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            # Only events some observer cares about become events (a chunk may hold many).
            if mark is not None:
                if mark not in line:
                    continue
            elif marks is not None and not _holds_any(line, marks):
                continue
            event = AnswerEvent(line[5:].strip())
            for observer in observers:
                observer.event(event)
        if lines:
            self._prev = self._last
            self._last = data

    def _line(self, line: bytes) -> bool:
        """Give a ``data:`` line's event to the observers; whether it was one."""
        if not line.startswith(b"data:"):
            return False
        event = AnswerEvent(line[5:].strip())
        for observer in self._observers:
            observer.event(event)
        return True

    def finish(self) -> None:
        """The answer is over (or the client left): read what is left. Idempotent."""
        if self._finished:
            return
        self._finished = True
        if self._sse:
            if self._tail:
                tail, self._tail = self._tail, b""
                self._line(tail)
        elif self._chunks:
            body = AnswerEvent(b"".join(self._chunks))
            self._chunks = None
            self._body = body
            for observer in self._observers:
                observer.body(body)

    def ended(self) -> bool:
        """Whether the answer's end has been relayed: a stream whose latest complete
        events hold its final one (``EndOfAnswer``), all the bytes a ``Content-Length``
        promised, or a JSON body that is complete. Call after ``finish``.

        The final event is the last a stream sends, so only the lines completed by the
        latest two pieces are read (two, for a piece that only ends the event's blank
        line), and only when asked (a client that hung up): while a stream flows this
        costs two stores per chunk."""
        if self._sse:
            end = EndOfAnswer(self._fmt)
            for data in (self._prev, self._last):
                for line in data.split(b"\n")[:-1]:
                    if line.startswith(b"data:"):
                        end.event(AnswerEvent(line[5:].strip()))
            return end.seen
        if self._length is not None:
            return self._relayed >= self._length
        return self._body is not None and self._body.json() is not None


def _holds_any(data: bytes, marks: tuple[bytes, ...]) -> bool:
    """Whether ``data`` holds any of ``marks``."""
    return any(mark in data for mark in marks)


def _kind_of(content_type: bytes | None, content_encoding: bytes | None) -> str:
    if content_type is None or (content_encoding and content_encoding.lower() != b"identity"):
        return _BYTES
    ctype = content_type.lower()
    if ctype.startswith(b"text/event-stream"):
        return _SSE
    if ctype.startswith(b"application/json"):
        return _JSON
    return _BYTES
