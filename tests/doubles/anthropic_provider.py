"""A fake Anthropic provider that echoes what it was given, for the end-to-end tier's memory
backends (``supermemory-api``, ``local``, ``off``), where LiteLLM calls the provider directly.

It answers ``POST /v1/messages`` as Anthropic's Messages API does:

* ``x-api-key`` must carry the expected key, else 401 ``authentication_error``;
* the body must be a JSON object with ``model``, ``max_tokens`` and a non-empty
  ``messages`` list, else 400 ``invalid_request_error``;
* the answer is a ``message`` (JSON) or the event stream (``message_start``,
  ``content_block_start``, ``content_block_delta`` text deltas, ``content_block_stop``,
  ``message_delta`` with ``stop_reason: end_turn``, ``message_stop``), with usage.

Instead of a model, the answer echoes the text of the last user message it received, so a
test sees exactly what reached the model, memories included. Streams come in six text
chunks.

Test-only endpoints, the same as the Supermemory router double's (``formats``):

* ``GET /_double/requests``: every request so far, with headers and body;
* ``GET /_double/health``: liveness;
* ``POST /_double/hold/{marker}`` and ``POST /_double/allow/{marker}``: a stream whose last
  user message mentions ``marker`` sends each text chunk after the first only once allowed,
  so a test that allows the next chunk after reading one proves no hop held one back.

Run it as a process::

    FAKE_PROVIDER_API_KEY=... python -m tests.doubles.anthropic_provider --port 9100
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.doubles.formats import (
    Holds,
    anthropic_message,
    anthropic_stream,
    held,
    pieces,
    record,
    recorder_routes,
    run,
)

ECHO_PREFIX = "Provider echo. You said:"


@dataclass
class ProviderState:
    api_key: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    holds: Holds = field(default_factory=Holds)


def last_user_text(messages: list[Any]) -> str:
    """The text of the last user message: a string, or its text blocks joined."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "\n".join(
                    b["text"]
                    for b in content
                    if isinstance(b, dict)
                    and b.get("type") == "text"
                    and isinstance(b.get("text"), str)
                )
    return ""


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"type": "error", "error": {"type": kind, "message": message}}, status_code=status
    )


def create_app(*, api_key: str) -> Starlette:
    state = ProviderState(api_key=api_key)

    async def messages(request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        state.requests.append(record(request, raw, body, len(state.requests)))
        given = request.headers.get("x-api-key", "")
        if not secrets.compare_digest(given.encode(), state.api_key.encode()):
            return _error(401, "authentication_error", "invalid x-api-key")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "the body must be a JSON object")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return _error(400, "invalid_request_error", f"{name}: Field required")
        if not isinstance(body["messages"], list) or not body["messages"]:
            return _error(400, "invalid_request_error", "messages: at least one message required")

        said = last_user_text(body["messages"])
        text = f"{ECHO_PREFIX} {said}"
        model = str(body["model"])
        usage_in, usage_out = max(1, len(said.split())), max(1, len(text.split()))
        message_id = f"msg_{uuid.uuid4().hex[:24]}"
        if body.get("stream") is True:
            stream = anthropic_stream(
                model,
                pieces(text),
                message_id=message_id,
                input_tokens=usage_in,
                final_usage={"output_tokens": usage_out},
            )
            return StreamingResponse(
                held(stream, state.holds.for_text(said)), media_type="text/event-stream"
            )
        usage = {"input_tokens": usage_in, "output_tokens": usage_out}
        return JSONResponse(anthropic_message(model, text, message_id=message_id, usage=usage))

    return Starlette(
        routes=[
            Route("/v1/messages", messages, methods=["POST"]),
            *recorder_routes(lambda: state.requests),
            *state.holds.routes(),
        ]
    )


if __name__ == "__main__":
    run(__doc__.splitlines()[0], create_app, "FAKE_PROVIDER_API_KEY")
