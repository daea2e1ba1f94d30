"""Token usage, read from the answer's events as they pass (``router.answer``).

``UsageReader`` is an answer observer: it never raises, and an answer that is not JSON
or carries no usage counts no tokens. On a stream it parses only the events that hold
``"usage`` (usually one or two); on a JSON body it parses only the usage object, found
from the end of the body, unless another observer has parsed the body already.

Understood shapes:
- OpenAI chat/completions/embeddings JSON, and SSE whose final chunk has ``usage``;
- OpenAI Responses API JSON (``usage``), and SSE ``response.completed`` events
  (``response.usage``);
- Anthropic ``/v1/messages`` JSON, and SSE with usage in ``message_start``
  (``message.usage``) and ``message_delta`` (``usage``, cumulative);
- Gemini ``generateContent`` JSON and ``streamGenerateContent`` SSE or JSON array
  (``usageMetadata``, cumulative).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from router.answer import AnswerEvent, Observer

_USAGE = b'"usage"'
_USAGE_METADATA = b'"usageMetadata"'
_EITHER = b'"usage'  # the start of both keys


@dataclass(slots=True)
class Usage:
    prompt: int = 0
    completion: int = 0
    model: str | None = None
    seen: bool = False

    def absorb(self, obj: Any) -> None:
        """Fold one parsed JSON value (a body, one SSE event, or a list of them) into the
        totals."""
        if isinstance(obj, list):
            for item in obj:
                self.absorb(item)
            return
        if not isinstance(obj, dict):
            return
        for holder in (obj, obj.get("message"), obj.get("response")):
            if not isinstance(holder, dict):
                continue
            usage = holder.get("usage")
            if isinstance(usage, dict):
                self._absorb_usage(usage)
            else:
                metadata = holder.get("usageMetadata")
                if isinstance(metadata, dict):
                    self._absorb_gemini(metadata)
            if self.model is None:
                model = holder.get("model") or holder.get("modelVersion")
                if isinstance(model, str):
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
        self._count(prompt, completion)

    def _absorb_gemini(self, metadata: dict[str, Any]) -> None:
        candidates = _int(metadata.get("candidatesTokenCount"))
        thoughts = _int(metadata.get("thoughtsTokenCount"))
        completion = None
        if candidates is not None or thoughts is not None:
            completion = (candidates or 0) + (thoughts or 0)
        self._count(_int(metadata.get("promptTokenCount")), completion)

    def _count(self, prompt: int | None, completion: int | None) -> None:
        # Streams repeat cumulative counts (Anthropic's message_delta, Gemini's every
        # chunk): keep the largest.
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


class UsageReader(Observer):
    """The answer observer that totals its tokens."""

    __slots__ = ("usage",)
    marks = (_EITHER,)

    def __init__(self) -> None:
        self.usage = Usage()

    def event(self, event: AnswerEvent) -> None:
        if _EITHER in event.data:
            self.usage.absorb(event.json())

    def body(self, event: AnswerEvent) -> None:
        if event.parsed:
            self.usage.absorb(event.json())
        else:
            read_json_usage(event.data, self.usage)


_DECODER = json.JSONDecoder()
_KEYS = ((_USAGE, "usage"), (_USAGE_METADATA, "usageMetadata"))
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
    """Fold the ``usage`` (or Gemini's ``usageMetadata``) object of a JSON body into
    ``usage``.

    Parses only that object, found from the end of the body (where OpenAI, Anthropic
    and Gemini put it; in a Gemini stream sent as a JSON array the last one is the
    total), not the whole answer. A key inside a string value is escaped
    (``\\"usage\\"``), so every match is a key or a bare string; a match that does not
    hold an object is skipped.
    """
    for key, name in _KEYS:
        end = len(body)
        while True:
            at = body.rfind(key, 0, end)
            if at < 0:
                break
            end = at
            colon = body.find(b":", at + len(key))
            if colon < 0:
                continue
            try:
                obj, _ = _DECODER.raw_decode(body[colon + 1 :].decode("utf-8").lstrip())
            except (ValueError, UnicodeDecodeError):
                continue
            if isinstance(obj, dict):
                usage.absorb({name: obj})
                if usage.seen:
                    if usage.model is None:
                        usage.model = find_model(body)
                    return
