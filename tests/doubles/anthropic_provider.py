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

Test-only endpoints, the same as the Supermemory router double's:

* ``GET /_double/requests``: every request so far, with headers and body;
* ``GET /_double/health``: liveness;
* ``POST /_double/hold/{marker}`` and ``POST /_double/allow/{marker}``: a stream whose last
  user message mentions ``marker`` sends each text chunk after the first only once allowed,
  so a test that allows the next chunk after reading one proves no hop held one back.

Run it as a process::

    FAKE_PROVIDER_API_KEY=... python tests/doubles/anthropic_provider.py --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ECHO_PREFIX = "Provider echo. You said:"
HOLD_TIMEOUT = 20.0


@dataclass
class ProviderState:
    api_key: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    holds: dict[str, asyncio.Semaphore] = field(default_factory=dict)

    def hold_for(self, text: str) -> asyncio.Semaphore | None:
        return next((sem for marker, sem in self.holds.items() if marker in text), None)


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


def _chunks(text: str, count: int = 6) -> list[str]:
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


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
        state.requests.append(
            {
                "seq": len(state.requests),
                "time": time.time(),
                "path": request.url.path,
                "headers": [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw
                ],
                "body": body if body is not None else raw.decode("utf-8", "replace"),
            }
        )
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
        if body.get("stream") is True:
            return StreamingResponse(
                _stream(state.hold_for(said), model, text, usage_in, usage_out),
                media_type="text/event-stream",
            )
        return JSONResponse(
            {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": usage_in, "output_tokens": usage_out},
            }
        )

    async def list_requests(request: Request) -> JSONResponse:
        return JSONResponse(state.requests)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def hold(request: Request) -> JSONResponse:
        state.holds.setdefault(request.path_params["marker"], asyncio.Semaphore(0))
        return JSONResponse({"held": request.path_params["marker"]})

    async def allow(request: Request) -> JSONResponse:
        sem = state.holds.get(request.path_params["marker"])
        if sem is None:
            return JSONResponse({"error": "no such hold"}, status_code=404)
        sem.release()
        return JSONResponse({"allowed": request.path_params["marker"]})

    return Starlette(
        routes=[
            Route("/v1/messages", messages, methods=["POST"]),
            Route("/_double/requests", list_requests, methods=["GET"]),
            Route("/_double/health", health, methods=["GET"]),
            Route("/_double/hold/{marker}", hold, methods=["POST"]),
            Route("/_double/allow/{marker}", allow, methods=["POST"]),
        ]
    )


async def _stream(
    hold: asyncio.Semaphore | None, model: str, text: str, usage_in: int, usage_out: int
) -> AsyncIterator[bytes]:
    yield _sse(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": usage_in, "output_tokens": 1},
            },
        },
    )
    yield _sse(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    for index, piece in enumerate(_chunks(text)):
        if hold is not None and index > 0:
            await asyncio.wait_for(hold.acquire(), HOLD_TIMEOUT)  # a timeout breaks it off
        yield _sse(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
        )
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": usage_out},
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    api_key = os.environ.get("FAKE_PROVIDER_API_KEY")
    if not api_key:
        parser.error("FAKE_PROVIDER_API_KEY must be set")
    uvicorn.run(create_app(api_key=api_key), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
