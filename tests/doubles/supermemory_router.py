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
  text chunk after the first only when ``POST /_double/allow/{marker}`` allows one
  (``formats.Holds``).

Run it as a process::

    SUPERMEMORY_DOUBLE_API_KEY=... python -m tests.doubles.supermemory_router --port 9000
"""

from __future__ import annotations

import json
import re
import secrets
import time
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
    openai_completion,
    openai_stream,
    pieces,
    record,
    recorder_routes,
    run,
)

# /v3/<provider base>/<provider path>. Both "https://" and a collapsed "https:/" are accepted,
# since some HTTP stacks squash the double slash inside a path.
_ANTHROPIC_PATH = re.compile(r"^/v3/https?:/+api\.anthropic\.com/v1/messages/?$")
_OPENAI_PATH = re.compile(r"^/v3/https?:/+api\.openai\.com/v1/chat/completions/?$")

ANSWER_PREFIX = "Supermemory double answering."
NO_MEMORIES = "(no memories)"


@dataclass
class DoubleState:
    """Everything the double remembers. One instance per app, nothing global."""

    api_key: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    memories: dict[str, list[str]] = field(default_factory=dict)
    holds: Holds = field(default_factory=Holds)


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
        seen = record(request, raw_body, body, len(state.requests))
        state.requests.append(seen)

        path = request.url.path
        if _ANTHROPIC_PATH.match(path):
            provider = "anthropic"
        elif _OPENAI_PATH.match(path):
            provider = "openai"
        else:
            seen["outcome"] = "unknown path"
            return error(404, "not_found_error", f"no provider route for {path}")
        seen["provider"] = provider

        given = request.headers.get("x-supermemory-api-key")
        if not given or not secrets.compare_digest(given.encode(), state.api_key.encode()):
            seen["outcome"] = "bad supermemory key"
            return error(
                401,
                "authentication_error",
                "missing or invalid x-supermemory-api-key",
            )

        # The provider key travels in its usual header; Supermemory passes it on untouched.
        if provider == "anthropic" and not request.headers.get("x-api-key"):
            seen["outcome"] = "no provider key"
            return error(401, "authentication_error", "x-api-key header is required")
        if provider == "openai" and not request.headers.get("authorization"):
            seen["outcome"] = "no provider key"
            return error(401, "invalid_request_error", "Authorization header is required")

        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            seen["outcome"] = "bad body"
            return error(400, "invalid_request_error", "JSON body with messages[] required")

        user_id = (
            request.headers.get("x-sm-user-id")
            or (body.get("user") if isinstance(body.get("user"), str) else None)
            or request.query_params.get("userId")
        )
        if not user_id:
            seen["outcome"] = "no user id"
            return error(400, "invalid_request_error", "no x-sm-user-id, body user or ?userId=")

        question = _last_user_text(body["messages"])
        memories = list(state.memories.get(user_id, []))
        if question:
            state.memories.setdefault(user_id, []).append(question)
        prompt = "\n".join([*(f"[memory] {m}" for m in memories), question])
        seen.update(
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
        hold = state.holds.for_text(question)
        if provider == "anthropic":
            message_id = f"msg_{uuid.uuid4().hex[:24]}"
            if stream:
                events = anthropic_stream(
                    model,
                    pieces(text),
                    message_id=message_id,
                    input_tokens=usage_in,
                    final_usage={"input_tokens": usage_in, "output_tokens": usage_out},
                    ping=True,
                )
                return StreamingResponse(
                    held(events, hold), media_type="text/event-stream", headers=headers
                )
            usage = {"input_tokens": usage_in, "output_tokens": usage_out}
            return JSONResponse(
                anthropic_message(model, text, message_id=message_id, usage=usage),
                headers=headers,
            )
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if stream:
            events = openai_stream(
                model,
                pieces(text),
                completion_id=completion_id,
                created=created,
                usage=(usage_in, usage_out),
            )
            return StreamingResponse(
                held(events, hold), media_type="text/event-stream", headers=headers
            )
        answer = openai_completion(
            model, text, completion_id=completion_id, created=created, usage=(usage_in, usage_out)
        )
        return JSONResponse(answer, headers=headers)

    async def list_memories(request: Request) -> JSONResponse:
        return JSONResponse(state.memories)

    return Starlette(
        routes=[
            *recorder_routes(lambda: state.requests),
            Route("/_double/memories", list_memories, methods=["GET"]),
            *state.holds.routes(),
            Route("/v3/{rest:path}", proxy, methods=["POST"]),
        ]
    )


if __name__ == "__main__":
    run(__doc__.splitlines()[0], create_app, "SUPERMEMORY_DOUBLE_API_KEY")
