"""The assistant's text, read from the answer's events (``router.answer``), and whether
the answer ended well enough to store.

One observer per API, each reading both its stream events and its JSON body. It never
raises, keeps the text up to a cap, and says the answer is complete only when it ended
normally:

* chat completions: ``data: [DONE]``, with ``finish_reason`` ``stop`` (or none given)
  and no tool calls; the text is ``choices[0].delta.content`` (JSON:
  ``choices[0].message.content`` with ``finish_reason: stop``);
* Anthropic messages: ``message_stop`` after ``stop_reason: end_turn``, no tool use;
  the text is the ``text_delta`` deltas (JSON: the text blocks);
* Responses API: ``response.completed`` whose response has ``status: completed`` and no
  tool call among its output items; the text is the output messages' ``output_text``
  (JSON: the response itself);
* Gemini: a first candidate whose ``finishReason`` is ``STOP``, without function calls;
  the text is its parts' ``text``, thoughts left out.

Anything else (an aborted stream, an error event, tool use, a length stop, an empty
reply, a line or body over the bounds) is not storable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.answer import AnswerEvent, Observer
from router.apis import ApiFormat

MAX_TEXT_CHARS = 32_000

_ANTHROPIC_TOOLS = ("tool_use", "server_tool_use")


@dataclass(frozen=True, slots=True)
class TextResult:
    """What was read: the text, and whether the answer ended normally."""

    text: str
    complete: bool
    truncated: bool = False

    @property
    def storable(self) -> bool:
        return self.complete and bool(self.text.strip())


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


class AnswerText(Observer):
    """The text of one answer; subclasses read one API's events and body."""

    __slots__ = ("_lost", "_text")

    def __init__(self, max_text: int = MAX_TEXT_CHARS) -> None:
        self._text = _Text(max_text)
        self._lost = False

    def lost(self) -> None:
        self._lost = True

    def _ended_well(self) -> bool:
        raise NotImplementedError

    def result(self) -> TextResult:
        """What was read, once the answer is over (or was cut off)."""
        complete = self._ended_well() and not self._lost
        return TextResult(self._text.value(), complete, self._text.truncated)


class ChatText(AnswerText):
    """Chat completions: ``chat.completion.chunk`` events up to ``[DONE]``, or a
    ``chat.completion`` body."""

    __slots__ = ("_done", "_failed", "_finish", "_tools")

    def __init__(self, max_text: int = MAX_TEXT_CHARS) -> None:
        super().__init__(max_text)
        self._done = False
        self._finish: str | None = None  # a stream may name none; a body must
        self._tools = False
        self._failed = False

    def _ended_well(self) -> bool:
        return (
            self._done and not self._failed and not self._tools and self._finish in (None, "stop")
        )

    def event(self, event: AnswerEvent) -> None:
        if event.data == b"[DONE]":
            self._done = True
            return
        value = event.json()
        if not isinstance(value, dict):
            return
        if "error" in value:
            self._failed = True
            return
        choices = value.get("choices")
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

    def body(self, event: AnswerEvent) -> None:
        answer = event.json()
        if not isinstance(answer, dict):
            return
        choices = answer.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            return
        content = message.get("content")
        if isinstance(content, str):
            self._text.add(content)
        self._tools = bool(message.get("tool_calls") or message.get("function_call"))
        finish = choice.get("finish_reason")
        self._finish = finish if isinstance(finish, str) else ""
        self._done = True


class MessagesText(AnswerText):
    """Anthropic messages: ``text_delta`` deltas, ``stop_reason``, ``message_stop``; or a
    ``message`` body."""

    __slots__ = ("_failed", "_stop_reason", "_stopped", "_tools")

    def __init__(self, max_text: int = MAX_TEXT_CHARS) -> None:
        super().__init__(max_text)
        self._stop_reason: str | None = None
        self._stopped = False
        self._tools = False
        self._failed = False

    def _ended_well(self) -> bool:
        return (
            self._stopped
            and self._stop_reason == "end_turn"
            and not self._failed
            and not self._tools
        )

    def event(self, event: AnswerEvent) -> None:
        value = event.json()
        if not isinstance(value, dict):
            return
        kind = value.get("type")
        if kind == "content_block_delta":
            delta = value.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                text = delta.get("text")
                if isinstance(text, str):
                    self._text.add(text)
        elif kind == "content_block_start":
            block = value.get("content_block")
            if isinstance(block, dict) and block.get("type") in _ANTHROPIC_TOOLS:
                self._tools = True
        elif kind == "message_delta":
            delta = value.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self._stop_reason = delta["stop_reason"]
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":
            self._failed = True

    def body(self, event: AnswerEvent) -> None:
        answer = event.json()
        if not isinstance(answer, dict):
            return
        content = answer.get("content")
        if answer.get("type") == "error" or not isinstance(content, list):
            return
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                self._text.add(block["text"])
            elif block.get("type") in _ANTHROPIC_TOOLS:
                self._tools = True
        stop_reason = answer.get("stop_reason")
        self._stop_reason = stop_reason if isinstance(stop_reason, str) else None
        self._stopped = True


def _is_tool_call(item: dict[str, Any]) -> bool:
    """A Responses API output item that asks for a tool: ``function_call``,
    ``custom_tool_call``, ``local_shell_call``, ``mcp_approval_request`` and the like."""
    kind = item.get("type")
    return isinstance(kind, str) and kind.endswith(("_call", "_request"))


class ResponsesText(AnswerText):
    """Responses API: the ``response`` of ``response.completed``, or a response body.
    The deltas before it are not read: the completed response holds the whole text."""

    __slots__ = ("_completed", "_failed")
    marks = (b'"response.completed"', b'"error"')

    def __init__(self, max_text: int = MAX_TEXT_CHARS) -> None:
        super().__init__(max_text)
        self._completed = False
        self._failed = False

    def _ended_well(self) -> bool:
        return self._completed and not self._failed

    def event(self, event: AnswerEvent) -> None:
        data = event.data
        if b'"response.completed"' not in data and b'"error"' not in data:
            return
        value = event.json()
        if not isinstance(value, dict):
            return
        kind = value.get("type")
        if kind == "response.completed":
            self._read(value.get("response"))
        elif kind == "error":
            self._failed = True

    def body(self, event: AnswerEvent) -> None:
        self._read(event.json())

    def _read(self, response: Any) -> None:
        if not isinstance(response, dict) or not isinstance(response.get("output"), list):
            return
        tools = False
        for item in response["output"]:
            if not isinstance(item, dict):
                continue
            if _is_tool_call(item):
                tools = True
            elif item.get("type") == "message" and isinstance(item.get("content"), list):
                for part in item["content"]:
                    if (
                        isinstance(part, dict)
                        and part.get("type") == "output_text"
                        and isinstance(part.get("text"), str)
                    ):
                        self._text.add(part["text"])
        self._completed = response.get("status") == "completed" and not tools


class GeminiText(AnswerText):
    """Gemini: ``GenerateContentResponse`` events, a body, or a body that is a list of
    them; only the first candidate counts."""

    __slots__ = ("_finish", "_tools")

    def __init__(self, max_text: int = MAX_TEXT_CHARS) -> None:
        super().__init__(max_text)
        self._finish: str | None = None
        self._tools = False

    def _ended_well(self) -> bool:
        return self._finish == "STOP" and not self._tools

    def event(self, event: AnswerEvent) -> None:
        self._read(event.json())

    def body(self, event: AnswerEvent) -> None:
        value = event.json()
        for item in value if isinstance(value, list) else [value]:
            self._read(item)

    def _read(self, value: Any) -> None:
        if not isinstance(value, dict):
            return
        candidates = value.get("candidates")
        if not isinstance(candidates, list):
            return
        for candidate in candidates:
            if not isinstance(candidate, dict) or candidate.get("index", 0) != 0:
                continue
            content = candidate.get("content")
            parts = content.get("parts") if isinstance(content, dict) else None
            for part in parts if isinstance(parts, list) else ():
                if not isinstance(part, dict):
                    continue
                if part.get("functionCall"):
                    self._tools = True
                elif isinstance(part.get("text"), str) and not part.get("thought"):
                    self._text.add(part["text"])
            finish = candidate.get("finishReason")
            if isinstance(finish, str):
                self._finish = finish


_READERS: dict[ApiFormat, type[AnswerText]] = {
    "openai": ChatText,
    "anthropic": MessagesText,
    "responses": ResponsesText,
    "gemini": GeminiText,
}


def _header(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return (value.decode("latin-1") if isinstance(value, bytes) else value).strip().lower()


def answer_text(
    fmt: ApiFormat,
    *,
    status: int,
    content_type: bytes | str | None,
    content_encoding: bytes | str | None = None,
) -> AnswerText | None:
    """A reader for this answer's text, or None when its text cannot be stored (not a
    2xx, an encoded body, or neither an event stream nor JSON)."""
    if not 200 <= status < 300:
        return None
    if _header(content_encoding) not in ("", "identity"):
        return None
    ctype = _header(content_type)
    if not ctype.startswith(("text/event-stream", "application/json")):
        return None
    return _READERS[fmt]()
