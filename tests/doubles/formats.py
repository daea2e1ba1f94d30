"""What the doubles share: the providers' wire formats, the gate that holds a stream until
a test allows it, the request record, the test-only routes and running as a process.

The formats follow Anthropic's Messages API (a ``message``, or the event stream
``message_start``, ``content_block_start``, text deltas, ``content_block_stop``,
``message_delta``, ``message_stop``) and OpenAI's chat completions (a ``chat.completion``,
or ``chat.completion.chunk`` events, a final usage chunk and ``[DONE]``). A stream is
built as three parts, ``Stream(head, deltas, tail)``: the text deltas are the events a
held stream sends one at a time.

The doubles run as processes with ``python -m tests.doubles.<name>`` from the repository
root (or from a container that holds this package), so they import this module as
``tests.doubles.formats``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

HOLD_TIMEOUT = 20.0  # seconds a held stream waits for its next chunk to be allowed


def sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    """One server-sent event; a string is sent as it is (``[DONE]``)."""
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def pieces(text: str, count: int = 6) -> list[str]:
    """``text`` in ``count`` roughly equal pieces (fewer when it is short)."""
    size = max(1, -(-len(text) // count))
    return [text[i : i + size] for i in range(0, len(text), size)]


@dataclass
class Stream:
    head: list[bytes]
    deltas: list[bytes]
    tail: list[bytes]

    def events(self) -> list[bytes]:
        return [*self.head, *self.deltas, *self.tail]


def anthropic_message(
    model: str, text: str, *, message_id: str, usage: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def anthropic_stream(
    model: str,
    texts: list[str],
    *,
    message_id: str,
    input_tokens: int,
    final_usage: dict[str, int],
    ping: bool = False,
) -> Stream:
    """The Messages API's event stream, one text delta per entry of ``texts``;
    ``final_usage`` goes in ``message_delta``."""
    start = {
        "type": "message_start",
        "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        },
    }
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    head = [sse(start, "message_start"), sse(block, "content_block_start")]
    if ping:
        head.append(sse({"type": "ping"}, "ping"))
    deltas = [
        sse(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": text},
            },
            "content_block_delta",
        )
        for text in texts
    ]
    tail = [
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": final_usage,
            },
            "message_delta",
        ),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    return Stream(head, deltas, tail)


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def openai_completion(
    model: str, text: str, *, completion_id: str, created: int, usage: tuple[int, int]
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(*usage),
    }


def openai_stream(
    model: str,
    texts: list[str],
    *,
    completion_id: str,
    created: int,
    usage: tuple[int, int],
    role_alone: bool = True,
) -> Stream:
    """Chat completion chunks, one per entry of ``texts``: the role in a chunk of its own
    (``role_alone``) or with the first text; then the stop chunk, the usage chunk (as
    OpenAI sends with ``stream_options.include_usage``) and ``[DONE]``."""

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return sse(
            {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
        )

    if role_alone:
        head = [chunk({"role": "assistant", "content": ""})]
        deltas = [chunk({"content": text}) for text in texts]
    else:
        head = []
        deltas = [chunk({"role": "assistant", "content": texts[0]})]
        deltas += [chunk({"content": text}) for text in texts[1:]]
    final = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": _usage(*usage),
    }
    tail = [chunk({}, "stop"), sse(final), sse("[DONE]")]
    return Stream(head, deltas, tail)


@dataclass
class Holds:
    """Streams held by marker: a stream whose text mentions a held marker sends each text
    delta after the first only once ``POST /_double/allow/{marker}`` allowed one. A test
    that allows the next delta once it has read one proves that no hop held one back: a
    buffering hop stalls the stream until ``HOLD_TIMEOUT``, and it breaks off."""

    markers: dict[str, asyncio.Semaphore] = field(default_factory=dict)

    def for_text(self, text: str) -> asyncio.Semaphore | None:
        return next((sem for marker, sem in self.markers.items() if marker in text), None)

    def routes(self) -> list[Route]:
        async def hold(request: Request) -> JSONResponse:
            self.markers.setdefault(request.path_params["marker"], asyncio.Semaphore(0))
            return JSONResponse({"held": request.path_params["marker"]})

        async def allow(request: Request) -> JSONResponse:
            sem = self.markers.get(request.path_params["marker"])
            if sem is None:
                return JSONResponse({"error": "no such hold"}, status_code=404)
            sem.release()
            return JSONResponse({"allowed": request.path_params["marker"]})

        return [
            Route("/_double/hold/{marker}", hold, methods=["POST"]),
            Route("/_double/allow/{marker}", allow, methods=["POST"]),
        ]


async def held(stream: Stream, hold: asyncio.Semaphore | None) -> AsyncIterator[bytes]:
    """The stream's events; with a hold, each delta after the first waits to be allowed
    (a timeout breaks the stream off)."""
    for event in stream.head:
        yield event
    for index, event in enumerate(stream.deltas):
        if hold is not None and index > 0:
            await asyncio.wait_for(hold.acquire(), HOLD_TIMEOUT)
        yield event
    for event in stream.tail:
        yield event


def record(request: Request, raw: bytes, body: Any, seq: int) -> dict[str, Any]:
    """What a double keeps of a request: headers as a list of pairs (repeats stay visible)
    and the body as JSON, or as text when it is not JSON."""
    return {
        "seq": seq,
        "time": time.time(),
        "method": request.method,
        "path": request.url.path,
        "query": dict(request.query_params),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
        "body": body if body is not None else raw.decode("utf-8", "replace"),
    }


def recorder_routes(requests: Callable[[], list[Any]]) -> list[Route]:
    """``GET /_double/health`` and ``GET /_double/requests`` (what ``requests()`` gives)."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def recorded(request: Request) -> JSONResponse:
        return JSONResponse(requests())

    return [
        Route("/_double/health", health, methods=["GET"]),
        Route("/_double/requests", recorded, methods=["GET"]),
    ]


def run(description: str, create_app: Callable[..., Starlette], key_variable: str) -> None:
    """Serve ``create_app(api_key=$key_variable)`` under uvicorn: ``--host``, ``--port``."""
    import uvicorn

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    api_key = os.environ.get(key_variable)
    if not api_key:
        parser.error(f"{key_variable} must be set")
    uvicorn.run(create_app(api_key=api_key), host=args.host, port=args.port, log_level="info")
