"""Token usage read from responses as they stream past.

A tap sees each chunk after it has been sent to the client, keeps only what it
needs (the tail of an unfinished SSE line, or a bounded copy of a JSON body) and
never raises: a response that is not JSON or carries no usage counts no tokens.

Understood shapes:
- OpenAI chat/completions/embeddings JSON, and SSE whose final chunk has ``usage``;
- OpenAI Responses API ``response.completed`` events (``response.usage``);
- Anthropic ``/v1/messages`` JSON, and SSE with usage in ``message_start``
  (``message.usage``) and ``message_delta`` (``usage``, cumulative).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

_USAGE = b'"usage"'
_MAX_LINE = 1024 * 1024
_MAX_JSON = 8 * 1024 * 1024


@dataclass(slots=True)
class Usage:
    prompt: int = 0
    completion: int = 0
    model: str | None = None
    seen: bool = False

    def absorb(self, obj: Any) -> None:
        """Fold one parsed JSON object (a body or one SSE event) into the totals."""
        if not isinstance(obj, dict):
            return
        for holder in (obj, obj.get("message"), obj.get("response")):
            if not isinstance(holder, dict):
                continue
            usage = holder.get("usage")
            if isinstance(usage, dict):
                self._absorb_usage(usage)
            model = holder.get("model")
            if self.model is None and isinstance(model, str):
                self.model = model

    def _absorb_usage(self, usage: dict[str, Any]) -> None:
        prompt = _int(usage.get("prompt_tokens"))
        if prompt is None:
            parts = [
                _int(usage.get(k))
                for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
            ]
            if any(p is not None for p in parts):
                prompt = sum(p or 0 for p in parts)
        completion = _int(usage.get("completion_tokens"))
        if completion is None:
            completion = _int(usage.get("output_tokens"))
        # Streams repeat cumulative counts (Anthropic's message_delta): keep the largest.
        if prompt is not None:
            self.prompt = max(self.prompt, prompt)
            self.seen = True
        if completion is not None:
            self.completion = max(self.completion, completion)
            self.seen = True


def _int(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


class SSEUsageTap:
    """Finds usage in ``data:`` lines of a server-sent event stream."""

    __slots__ = ("_tail", "usage")

    def __init__(self) -> None:
        self._tail = b""
        self.usage = Usage()

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk if self._tail else chunk
        if _USAGE not in data:
            cut = data.rfind(b"\n")
            tail = data[cut + 1 :] if cut >= 0 else data
            self._tail = tail if len(tail) <= _MAX_LINE else b""
            return
        lines = data.split(b"\n")
        tail = lines.pop()
        self._tail = tail if len(tail) <= _MAX_LINE else b""
        for line in lines:
            if line.startswith(b"data:") and _USAGE in line:
                try:
                    self.usage.absorb(json.loads(line[5:]))
                except ValueError:
                    continue

    def finish(self) -> Usage:
        if self._tail:
            self.feed(b"\n")
        return self.usage


class JSONUsageTap:
    """Keeps a bounded copy of a JSON body and reads usage from it at the end."""

    __slots__ = ("_chunks", "_size", "usage")

    def __init__(self) -> None:
        self._chunks: list[bytes] | None = []
        self._size = 0
        self.usage = Usage()

    def feed(self, chunk: bytes) -> None:
        if self._chunks is None:
            return
        self._size += len(chunk)
        if self._size > _MAX_JSON:
            self._chunks = None
            return
        self._chunks.append(chunk)

    def finish(self) -> Usage:
        if self._chunks:
            body = b"".join(self._chunks)
            self._chunks = None
            read_json_usage(body, self.usage)
        return self.usage


_DECODER = json.JSONDecoder()
_MODEL_KEY = b'"model"'
_MODEL_VALUE = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')


def find_model(body: bytes) -> str | None:
    """The first ``"model": "..."`` in a JSON body, found without parsing it all."""
    start = body.find(_MODEL_KEY)
    while start >= 0:
        match = _MODEL_VALUE.match(body, start)
        if match:
            return match.group(1).decode("utf-8", "replace")
        start = body.find(_MODEL_KEY, start + 1)
    return None


def read_json_usage(body: bytes, usage: Usage) -> None:
    """Fold the ``usage`` object of a JSON body into ``usage``.

    Parses only that object, found from the end of the body (where OpenAI and
    Anthropic put it), not the whole answer. A ``"usage"`` inside a string value
    is escaped (``\\"usage\\"``), so every match is a key or a bare string; a
    match that does not hold a usage object is skipped.
    """
    end = len(body)
    while True:
        at = body.rfind(_USAGE, 0, end)
        if at < 0:
            return
        end = at
        colon = body.find(b":", at + len(_USAGE))
        if colon < 0:
            continue
        try:
            obj, _ = _DECODER.raw_decode(body[colon + 1 :].decode("utf-8").lstrip())
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(obj, dict):
            usage.absorb({"usage": obj})
            if usage.seen:
                if usage.model is None:
                    usage.model = find_model(body)
                return


UsageTap = SSEUsageTap | JSONUsageTap


def tap_for(content_type: bytes | None, content_encoding: bytes | None) -> UsageTap | None:
    """A tap that fits the response, or None when usage cannot be read from it."""
    if content_type is None or (content_encoding and content_encoding != b"identity"):
        return None
    ctype = content_type.lower()
    if ctype.startswith(b"text/event-stream"):
        return SSEUsageTap()
    if ctype.startswith(b"application/json"):
        return JSONUsageTap()
    return None
