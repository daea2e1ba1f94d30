"""A tiny paced SSE upstream for the benchmark (raw asyncio, uvloop when installed).

nginx cannot pace chunks, so streaming measurements use this server instead.

``POST /v1/chat/completions`` with ``"stream": true`` in the JSON body answers an
OpenAI-format SSE stream (``chat.completion.chunk`` events, then ``data: [DONE]``),
chunked, one event per write, the first event at once and the rest ``gap`` apart.
Without ``"stream": true`` it answers a static chat completion.

Knobs, as request headers (the router forwards them untouched; LiteLLM forwards
``x-`` headers when ``forward_client_headers_to_llm_api`` is on):
- ``x-bench-chunks: N``  events in the stream, ``[DONE]`` included (default ``--chunks``)
- ``x-bench-gap-ms: N``  gap between events (default ``--gap-ms``)
- ``x-bench-hold: 1``    send the first event, then hold the stream open until
                         ``POST /_release`` (or ``--max-hold`` seconds), then finish

Control: ``GET /health``; ``POST /_release`` (release every held stream);
``GET /_last`` (the last streamed request's headers, as JSON); ``GET /_stats``.

Run: ``python bench/stream_upstream.py --port 9000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

CREATED = 1_700_000_000
COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the bench upstream."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    },
    separators=(",", ":"),
).encode()


def chunk_event(i: int, last: bool) -> bytes:
    delta: dict[str, Any] = {"content": f"tok{i} "}
    if i == 0:
        delta["role"] = "assistant"
    obj = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "bench",
        "choices": [{"index": 0, "delta": delta, "finish_reason": "stop" if last else None}],
    }
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def sse_events(n: int) -> list[bytes]:
    """``n`` events: ``n - 1`` chunks (the last with finish_reason) and ``[DONE]``."""
    n = max(1, n)
    events = [chunk_event(i, i == n - 2) for i in range(n - 1)]
    events.append(b"data: [DONE]\n\n")
    return events


def _framed(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Upstream:
    def __init__(self, chunks: int, gap_ms: float, max_hold: float) -> None:
        self.chunks = chunks
        self.gap = gap_ms / 1000.0
        self.max_hold = max_hold
        self.release = asyncio.Event()
        self.last_headers: dict[str, str] = {}
        self.streams_open = 0
        self.streams_total = 0
        self.held = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = b""
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(parts)
        keep = headers.get("connection", "").lower() != "close"
        path = target.split("?", 1)[0]

        if path == "/v1/chat/completions" and method == "POST":
            try:
                wants_stream = bool(json.loads(body or b"{}").get("stream"))
            except ValueError:
                wants_stream = False
            if wants_stream:
                await self._stream(writer, headers)
                return keep
            await self._reply(writer, 200, COMPLETION, keep)
        elif path == "/_release" and method == "POST":
            released = self.held
            self.release.set()
            self.release = asyncio.Event()
            await self._reply(writer, 200, json.dumps({"released": released}).encode(), keep)
        elif path == "/_last":
            await self._reply(writer, 200, json.dumps(self.last_headers).encode(), keep)
        elif path == "/_stats":
            stats = {"open": self.streams_open, "total": self.streams_total, "held": self.held}
            await self._reply(writer, 200, json.dumps(stats).encode(), keep)
        elif path in ("/health", "/health/liveliness", "/health/readiness"):
            await self._reply(writer, 200, b'{"status":"ok"}', keep)
        else:
            await self._reply(writer, 404, b'{"error":"not found"}', keep)
        return keep

    async def _reply(
        self, writer: asyncio.StreamWriter, status: int, body: bytes, keep: bool
    ) -> None:
        reason = "OK" if status == 200 else "Not Found"
        writer.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: %s\r\n\r\n%s"
            % (status, reason.encode(), len(body), b"keep-alive" if keep else b"close", body)
        )
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter, headers: dict[str, str]) -> None:
        self.last_headers = headers
        n = int(headers.get("x-bench-chunks", self.chunks))
        gap = float(headers.get("x-bench-gap-ms", self.gap * 1000.0)) / 1000.0
        hold = headers.get("x-bench-hold") == "1"
        events = sse_events(n)
        self.streams_open += 1
        self.streams_total += 1
        try:
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
                + _framed(events[0])
            )
            await writer.drain()
            for i, event in enumerate(events[1:], start=1):
                if hold and i == 1:
                    self.held += 1
                    try:
                        await asyncio.wait_for(self.release.wait(), self.max_hold)
                    except TimeoutError:
                        pass
                    finally:
                        self.held -= 1
                elif gap > 0:
                    await asyncio.sleep(gap)
                writer.write(_framed(event))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            self.streams_open -= 1


async def serve(host: str, port: int, upstream: Upstream) -> None:
    server = await asyncio.start_server(upstream.handle, host, port, backlog=4096)
    print(f"stream upstream on http://{host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--gap-ms", type=float, default=10.0)
    parser.add_argument("--max-hold", type=float, default=120.0)
    args = parser.parse_args()
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - plain asyncio works too
        runner = asyncio.run

    async def go() -> None:
        await serve(args.host, args.port, Upstream(args.chunks, args.gap_ms, args.max_hold))

    with contextlib.suppress(KeyboardInterrupt):
        runner(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())
