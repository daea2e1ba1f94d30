"""The assistant's text, read from a response as it streams past, and whether it ended well.

A tap is fed each chunk after the chunk has gone to the client; it never holds one back
and never raises. It keeps only the tail of an unfinished SSE line, the text (up to a
cap) and, for JSON answers, a bounded copy of the body.

What counts as an answer that ended normally:

* OpenAI SSE: ``data: [DONE]``, with ``finish_reason`` ``stop`` (or none given) and no
  tool calls; the text is ``choices[0].delta.content``;
* Anthropic SSE: ``message_stop`` after ``stop_reason: end_turn``; the text is the
  ``text_delta`` deltas;
* JSON: OpenAI ``choices[0].message.content`` with ``finish_reason: stop``; Anthropic text
  blocks with ``stop_reason: end_turn``.

Anything else (an aborted stream, an error event, tool use, ``length``, an empty reply, a
line or body over the bounds) is not storable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from router.memory.chat import ApiFormat

MAX_TEXT_CHARS = 32_000
MAX_LINE_BYTES = 1024 * 1024
MAX_JSON_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TapResult:
    """What a tap saw: the text, and whether the answer ended normally."""

    text: str
    complete: bool
    truncated: bool = False

    @property
    def storable(self) -> bool:
        return self.complete and bool(self.text.strip())


class TextTap(Protocol):
    def feed(self, chunk: bytes) -> None:
        """Look at one chunk that has already been sent on."""
        ...

    def result(self) -> TapResult:
        """What the tap saw, once the response has ended (or was cut off)."""
        ...


class _Text:
    """Text pieces up to a character cap."""

    __slots__ = ("_left", "parts", "truncated")

    def __init__(self, cap: int) -> None:
        self.parts: list[str] = []
        self._left = cap
        self.truncated = False

    def add(self, piece: str) -> None:
        if not piece:
            return
        if len(piece) > self._left:
            piece = piece[: self._left]
            self.truncated = True
        if piece:
            self.parts.append(piece)
            self._left -= len(piece)

    def value(self) -> str:
        return "".join(self.parts)


def _loads(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError):
        return None


class _SSETap:
    """Splits a server-sent event stream into ``data:`` payloads."""

    def __init__(self, max_text: int, max_line: int) -> None:
        self._tail = b""
        self._max_line = max_line
        self._text = _Text(max_text)
        self.broken = False

    def feed(self, chunk: bytes) -> None:
        if self.broken or not chunk:
            return
        data = self._tail + chunk if self._tail else chunk
        lines = data.split(b"\n")
        tail = lines.pop()
        if len(tail) > self._max_line:
            self.broken, self._tail = True, b""  # text would go missing: not storable
            return
        self._tail = tail
        for line in lines:
            if line.startswith(b"data:"):
                self._on_data(line[5:].strip())

    def _on_data(self, payload: bytes) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        if self._tail and not self.broken:
            tail, self._tail = self._tail, b""
            if tail.startswith(b"data:"):
                self._on_data(tail[5:].strip())


class OpenAISSETap(_SSETap):
    """``chat.completion.chunk`` events up to ``data: [DONE]``."""

    def __init__(self, max_text: int = MAX_TEXT_CHARS, max_line: int = MAX_LINE_BYTES) -> None:
        super().__init__(max_text, max_line)
        self._done = False
        self._finish: str | None = None
        self._tools = False
        self._failed = False

    def _on_data(self, payload: bytes) -> None:
        if payload == b"[DONE]":
            self._done = True
            return
        event = _loads(payload)
        if not isinstance(event, dict):
            return
        if "error" in event:
            self._failed = True
            return
        choices = event.get("choices")
        if not isinstance(choices, list):
            return
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                if isinstance(content, str):
                    self._text.add(content)
                if delta.get("tool_calls") or delta.get("function_call"):
                    self._tools = True
            finish = choice.get("finish_reason")
            if isinstance(finish, str):
                self._finish = finish

    def result(self) -> TapResult:
        self._flush()
        complete = (
            self._done
            and not self.broken
            and not self._failed
            and not self._tools
            and self._finish in (None, "stop")
        )
        return TapResult(self._text.value(), complete, self._text.truncated)


class AnthropicSSETap(_SSETap):
    """Messages API events: ``text_delta`` text, ``stop_reason``, ``message_stop``."""

    def __init__(self, max_text: int = MAX_TEXT_CHARS, max_line: int = MAX_LINE_BYTES) -> None:
        super().__init__(max_text, max_line)
        self._stop_reason: str | None = None
        self._stopped = False
        self._tools = False
        self._failed = False

    def _on_data(self, payload: bytes) -> None:
        event = _loads(payload)
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                text = delta.get("text")
                if isinstance(text, str):
                    self._text.add(text)
        elif kind == "content_block_start":
            block = event.get("content_block")
            if isinstance(block, dict) and block.get("type") in ("tool_use", "server_tool_use"):
                self._tools = True
        elif kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self._stop_reason = delta["stop_reason"]
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":
            self._failed = True

    def result(self) -> TapResult:
        self._flush()
        complete = (
            self._stopped
            and self._stop_reason == "end_turn"
            and not self.broken
            and not self._failed
            and not self._tools
        )
        return TapResult(self._text.value(), complete, self._text.truncated)


class JSONTap:
    """A bounded copy of a JSON answer, read when it has ended."""

    def __init__(
        self, fmt: ApiFormat, max_text: int = MAX_TEXT_CHARS, max_body: int = MAX_JSON_BYTES
    ) -> None:
        self._format = fmt
        self._chunks: list[bytes] | None = []
        self._size = 0
        self._max_body = max_body
        self._max_text = max_text

    def feed(self, chunk: bytes) -> None:
        if self._chunks is None:
            return
        self._size += len(chunk)
        if self._size > self._max_body:
            self._chunks = None
            return
        self._chunks.append(chunk)

    def result(self) -> TapResult:
        if self._chunks is None:
            return TapResult("", complete=False)
        answer = _loads(b"".join(self._chunks))
        text = _Text(self._max_text)
        if not isinstance(answer, dict):
            return TapResult("", complete=False)
        if self._format == "openai":
            complete = _read_openai(answer, text)
        else:
            complete = _read_anthropic(answer, text)
        return TapResult(text.value(), complete, text.truncated)


def _read_openai(answer: dict[str, Any], text: _Text) -> bool:
    choices = answer.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return False
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        return False
    content = message.get("content")
    if isinstance(content, str):
        text.add(content)
    if message.get("tool_calls") or message.get("function_call"):
        return False
    return bool(choice.get("finish_reason") == "stop")


def _read_anthropic(answer: dict[str, Any], text: _Text) -> bool:
    content = answer.get("content")
    if answer.get("type") == "error" or not isinstance(content, list):
        return False
    tools = False
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            text.add(block["text"])
        elif block.get("type") in ("tool_use", "server_tool_use"):
            tools = True
    return answer.get("stop_reason") == "end_turn" and not tools


def _header(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return (value.decode("latin-1") if isinstance(value, bytes) else value).strip().lower()


def text_tap(
    fmt: ApiFormat,
    *,
    status: int,
    content_type: bytes | str | None,
    content_encoding: bytes | str | None = None,
) -> TextTap | None:
    """A tap for this response, or None when its text cannot be stored (not a 2xx, an
    encoded body, or neither SSE nor JSON)."""
    if not 200 <= status < 300:
        return None
    if _header(content_encoding) not in ("", "identity"):
        return None
    ctype = _header(content_type)
    if ctype.startswith("text/event-stream"):
        return OpenAISSETap() if fmt == "openai" else AnthropicSSETap()
    if ctype.startswith("application/json"):
        return JSONTap(fmt)
    return None
