"""A contract double of Supermemory's memory router, for the end-to-end tier.

It stands where ``https://api.supermemory.ai/v3/<provider URL>`` would, and behaves the way
that proxy is documented to:

* ``x-supermemory-api-key`` must carry the expected key, or the answer is a 401 with a JSON
  error body;
* the user whose memory is used comes from ``x-sm-user-id``, else from ``user`` in the JSON
  body, else from the ``userId`` query parameter;
* every user message is stored under that user, and the user's earlier messages are prepended
  to the prompt "given to the model";
* the answer has the provider's shape: Anthropic ``/v1/messages`` or OpenAI
  ``/chat/completions``, plain JSON or SSE, each with a usage block, plus the
  ``x-supermemory-*`` response headers.

Instead of a model, the answer text repeats the memories that were injected, so a test can see
what the model was given.  Streams come in six text chunks.

Test-only endpoints (not part of Supermemory's contract):

* ``GET /_double/requests``: every request received so far, in order, with its headers, query
  and body, the user id decided and the prompt built for the model;
* ``GET /_double/memories``: the stored memories per user;
* ``GET /_double/health``: liveness;
* ``POST /_double/hold/{marker}``: streams whose question contains ``marker`` send each
  text chunk after the first only when ``POST /_double/allow/{marker}`` allows one. A test
  that allows the next chunk once it has read one proves that nothing on the way held a
  chunk back: a buffering hop stalls the stream until ``HOLD_TIMEOUT``, and it breaks off.

Run it as a process::

    SUPERMEMORY_DOUBLE_API_KEY=... python tests/doubles/supermemory_router.py --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
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

# /v3/<provider base>/<provider path>. Both "https://" and a collapsed "https:/" are accepted,
# since some HTTP stacks squash the double slash inside a path.
_ANTHROPIC_PATH = re.compile(r"^/v3/https?:/+api\.anthropic\.com/v1/messages/?$")
_OPENAI_PATH = re.compile(r"^/v3/https?:/+api\.openai\.com/v1/chat/completions/?$")

ANSWER_PREFIX = "Supermemory double answering."
NO_MEMORIES = "(no memories)"
HOLD_TIMEOUT = 20.0  # seconds a held stream waits for its next chunk to be allowed


@dataclass
class DoubleState:
    """Everything the double remembers. One instance per app, nothing global."""

    api_key: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    memories: dict[str, list[str]] = field(default_factory=dict)
    holds: dict[str, asyncio.Semaphore] = field(default_factory=dict)

    def hold_for(self, question: str) -> asyncio.Semaphore | None:
        """The hold whose marker the question mentions, if any."""
        return next((sem for marker, sem in self.holds.items() if marker in question), None)


def _text_of(content: Any) -> str:
    """Plain text of a message's content: a string, or a list of typed blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            block.get("text", "")
            for block in content
            if isinstance(block, dict) and block.get("type") in ("text", "input_text")
        ]
        return "\n".join(p for p in parts if p)
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _answer_text(user_id: str, memories: list[str], question: str) -> str:
    injected = " | ".join(memories) if memories else NO_MEMORIES
    return f"{ANSWER_PREFIX} Memories injected for this user: [{injected}]. You asked: {question}"


def _chunks(text: str, count: int = 6) -> list[str]:
    """Split text into `count` roughly equal pieces (fewer if the text is short)."""
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _sse(event: str | None, data: dict[str, Any] | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def create_app(*, api_key: str) -> Starlette:
    state = DoubleState(api_key=api_key)

    def error(status: int, kind: str, message: str) -> JSONResponse:
        return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)

    async def proxy(request: Request) -> Response:
        raw_body = await request.body()
        try:
            body: Any = json.loads(raw_body) if raw_body else {}
        except ValueError:
            body = None
        record: dict[str, Any] = {
            "seq": len(state.requests),
            "time": time.time(),
            "method": request.method,
            "path": request.url.path,
            "query": dict(request.query_params),
            # A list of pairs, so repeated headers stay visible.
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
            "body": body if body is not None else raw_body.decode("utf-8", "replace"),
        }
        state.requests.append(record)

        path = request.url.path
        if _ANTHROPIC_PATH.match(path):
            provider = "anthropic"
        elif _OPENAI_PATH.match(path):
            provider = "openai"
        else:
            record["outcome"] = "unknown path"
            return error(404, "not_found_error", f"no provider route for {path}")
        record["provider"] = provider

        given = request.headers.get("x-supermemory-api-key")
        if not given or not secrets.compare_digest(given.encode(), state.api_key.encode()):
            record["outcome"] = "bad supermemory key"
            return error(
                401,
                "authentication_error",
                "missing or invalid x-supermemory-api-key",
            )

        # The provider key travels in its usual header; Supermemory passes it on untouched.
        if provider == "anthropic" and not request.headers.get("x-api-key"):
            record["outcome"] = "no provider key"
            return error(401, "authentication_error", "x-api-key header is required")
        if provider == "openai" and not request.headers.get("authorization"):
            record["outcome"] = "no provider key"
            return error(401, "invalid_request_error", "Authorization header is required")

        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            record["outcome"] = "bad body"
            return error(400, "invalid_request_error", "JSON body with messages[] required")

        user_id = (
            request.headers.get("x-sm-user-id")
            or (body.get("user") if isinstance(body.get("user"), str) else None)
            or request.query_params.get("userId")
        )
        if not user_id:
            record["outcome"] = "no user id"
            return error(400, "invalid_request_error", "no x-sm-user-id, body user or ?userId=")

        question = _last_user_text(body["messages"])
        memories = list(state.memories.get(user_id, []))
        if question:
            state.memories.setdefault(user_id, []).append(question)
        prompt = "\n".join([*(f"[memory] {m}" for m in memories), question])
        record.update(
            user_id=user_id,
            memories_injected=memories,
            prompt_given_to_model=prompt,
            outcome="answered",
        )

        text = _answer_text(user_id, memories, question)
        model = str(body.get("model", "unknown-model"))
        headers = {
            "x-supermemory-conversation-id": request.headers.get("x-sm-conversation-id")
            or f"conv_{uuid.uuid4().hex[:16]}",
            "x-supermemory-context-modified": "true" if memories else "false",
            "x-supermemory-tokens-processed": str(_tokens(prompt)),
            "x-supermemory-chunks-created": "1" if question else "0",
            "x-supermemory-chunks-retrieved": str(len(memories)),
        }
        stream = bool(body.get("stream"))
        usage_in, usage_out = _tokens(prompt), _tokens(text)
        if provider == "anthropic":
            if stream:
                return StreamingResponse(
                    _anthropic_stream(state.hold_for(question), model, text, usage_in, usage_out),
                    media_type="text/event-stream",
                    headers=headers,
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
                },
                headers=headers,
            )
        if stream:
            return StreamingResponse(
                _openai_stream(state.hold_for(question), model, text, usage_in, usage_out),
                media_type="text/event-stream",
                headers=headers,
            )
        return JSONResponse(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": usage_in,
                    "completion_tokens": usage_out,
                    "total_tokens": usage_in + usage_out,
                },
            },
            headers=headers,
        )

    async def list_requests(request: Request) -> JSONResponse:
        return JSONResponse(state.requests)

    async def list_memories(request: Request) -> JSONResponse:
        return JSONResponse(state.memories)

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
            Route("/_double/requests", list_requests, methods=["GET"]),
            Route("/_double/memories", list_memories, methods=["GET"]),
            Route("/_double/health", health, methods=["GET"]),
            Route("/_double/hold/{marker}", hold, methods=["POST"]),
            Route("/_double/allow/{marker}", allow, methods=["POST"]),
            Route("/v3/{rest:path}", proxy, methods=["POST"]),
        ]
    )


async def _next_allowed(hold: asyncio.Semaphore | None, index: int) -> None:
    """Before text chunk ``index`` (from 0) of a held stream, wait until one is allowed."""
    if hold is not None and index > 0:
        await asyncio.wait_for(hold.acquire(), HOLD_TIMEOUT)  # a timeout breaks the stream off


async def _anthropic_stream(
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
    yield _sse("ping", {"type": "ping"})
    for index, piece in enumerate(_chunks(text)):
        await _next_allowed(hold, index)
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
            "usage": {"input_tokens": usage_in, "output_tokens": usage_out},
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})


async def _openai_stream(
    hold: asyncio.Semaphore | None, model: str, text: str, usage_in: int, usage_out: int
) -> AsyncIterator[bytes]:
    chunk_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    yield _sse(None, chunk({"role": "assistant", "content": ""}, None))
    for index, piece in enumerate(_chunks(text)):
        await _next_allowed(hold, index)
        yield _sse(None, chunk({"content": piece}, None))
    yield _sse(None, chunk({}, "stop"))
    # Final usage chunk, as OpenAI sends with stream_options.include_usage.
    yield _sse(
        None,
        {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": {
                "prompt_tokens": usage_in,
                "completion_tokens": usage_out,
                "total_tokens": usage_in + usage_out,
            },
        },
    )
    yield _sse(None, "[DONE]")


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    api_key = os.environ.get("SUPERMEMORY_DOUBLE_API_KEY")
    if not api_key:
        parser.error("SUPERMEMORY_DOUBLE_API_KEY must be set")
    app = create_app(api_key=api_key)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
