"""A fake LiteLLM for proxy tests: records exactly what it received and answers
in OpenAI or Anthropic format, plain or streamed, as the request asks.

Test knobs travel as request headers (the router forwards them untouched):
- ``x-test-status: N``       answer with status N and an error body
- ``x-test-chunks: N``       stream N content chunks (default 3)
- ``x-test-step: name``      send each streamed event after the first only once the test
                             calls ``allow(name)``: a test that allows the next event when
                             it has read one proves that nothing held an event back
- ``x-test-set-cookie: v``   add ``Set-Cookie: v``
- ``x-test-hang: 1``         accept the request and never answer (until the client leaves)
- ``x-test-break-after: N``  stream N chunks, then drop the connection
- ``x-test-hold: 1``         stream one chunk, then hold the stream open until the client leaves
- ``x-test-echo-headers: 1`` put the received headers in the JSON answer
- ``x-test-location: url``   add ``Location: url`` (with ``x-test-status: 307``, a redirect)
- ``x-test-litellm-auth: wrong-key`` or ``no-key``
                             answer as LiteLLM 1.108.7 without a database answers a key it
                             does not know (400 "No connected db.") or a request without a
                             key (500, plain text, chunked); tests/e2e checks the real one
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.doubles.formats import (
    anthropic_message,
    anthropic_stream,
    openai_completion,
    openai_stream,
)

STEP_TIMEOUT = 10.0  # seconds a stepped stream waits for the test to allow its next event


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: list[tuple[str, str]]
    body: bytes

    def header_values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        assert len(values) <= 1, f"{name} appears {len(values)} times"
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeUpstream:
    requests: list[Received] = field(default_factory=list)
    disconnects: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    disconnected: threading.Event = field(default_factory=threading.Event)
    steps: dict[str, threading.Semaphore] = field(default_factory=dict)

    def last(self) -> Received:
        with self.lock:
            return self.requests[-1]

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.disconnects.clear()
            self.disconnected.clear()
            self.steps.clear()

    def allow(self, name: str, events: int = 1) -> None:
        """Let the stream started with ``x-test-step: name`` send ``events`` more events."""
        for _ in range(events):
            self._step(name).release()

    def _step(self, name: str) -> threading.Semaphore:
        with self.lock:
            return self.steps.setdefault(name, threading.Semaphore(0))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        got = Received(
            scope["method"], scope["path"], scope["query_string"].decode(), headers, body
        )
        with self.lock:
            self.requests.append(got)
        knobs = {k: v for k, v in headers if k.startswith("x-test-")}
        anthropic = scope["path"].startswith("/v1/messages")
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            payload = {}
        stream = isinstance(payload, dict) and payload.get("stream") is True

        if "x-test-hang" in knobs:
            await self._until_disconnect(receive)
            return
        auth = knobs.get("x-test-litellm-auth")
        if auth is not None:
            await _send_litellm_auth_failure(send, auth)
            return
        status = int(knobs.get("x-test-status", "200"))
        extra: list[tuple[bytes, bytes]] = [(b"x-upstream", b"fake")]
        if "x-test-set-cookie" in knobs:
            extra.append((b"set-cookie", knobs["x-test-set-cookie"].encode()))
        if "x-test-location" in knobs:
            extra.append((b"location", knobs["x-test-location"].encode()))
        if status != 200:
            err = {
                "error": {"message": f"upstream says {status}", "type": "upstream", "code": status}
            }
            await _send_json(send, status, err, extra)
            return
        if scope["path"] in ("/v1/models", "/models"):
            await _send_json(send, 200, {"object": "list", "data": [{"id": "fake-model"}]}, extra)
            return
        model = payload.get("model", "fake-model") if isinstance(payload, dict) else "fake-model"
        if not stream:
            answer = _anthropic_message(model) if anthropic else _openai_completion(model)
            if "x-test-echo-headers" in knobs:
                answer["received_headers"] = headers
            await _send_json(send, 200, answer, extra)
            return

        chunks = int(knobs.get("x-test-chunks", "3"))
        step = knobs.get("x-test-step")
        events = _anthropic_events(model, chunks) if anthropic else _openai_events(model, chunks)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), *extra],
            }
        )
        if "x-test-hold" in knobs:
            await send({"type": "http.response.body", "body": events[0], "more_body": True})
            await self._until_disconnect(receive)
            return
        break_after = int(knobs["x-test-break-after"]) if "x-test-break-after" in knobs else None
        for i, event in enumerate(events):
            if break_after is not None and i == break_after:
                raise ConnectionResetError("fake upstream drops the stream on purpose")
            if i and step is not None:
                allowed = await asyncio.to_thread(self._step(step).acquire, True, STEP_TIMEOUT)
                if not allowed:
                    raise ConnectionResetError(f"step {step!r}: event {i} was never allowed")
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _until_disconnect(self, receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        with self.lock:
            self.disconnects.append(time.monotonic())
        self.disconnected.set()


async def _send_json(
    send: Any, status: int, payload: Any, extra: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


# LiteLLM 1.108.7's answers, byte for byte (its security headers left out).
LITELLM_NO_DB = (
    b'{"error":{"message":"No connected db.","type":"no_db_connection",'
    b'"param":null,"code":"400"}}'
)
LITELLM_NO_KEY = b"Internal Server Error"


async def _send_litellm_auth_failure(send: Any, kind: str) -> None:
    if kind == "wrong-key":
        head = [(b"content-type", b"application/json")]
        head.append((b"content-length", str(len(LITELLM_NO_DB)).encode()))
        await send({"type": "http.response.start", "status": 400, "headers": head})
        await send({"type": "http.response.body", "body": LITELLM_NO_DB, "more_body": False})
        return
    assert kind == "no-key", kind
    head = [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 500, "headers": head})
    await send({"type": "http.response.body", "body": LITELLM_NO_KEY, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _openai_completion(model: str) -> dict[str, Any]:
    return openai_completion(
        model, "hello from fake", completion_id="chatcmpl-fake", created=1, usage=(11, 7)
    )


def _anthropic_message(model: str) -> dict[str, Any]:
    usage = {"input_tokens": 13, "output_tokens": 5}
    return anthropic_message(model, "hello from fake", message_id="msg_fake", usage=usage)


def _texts(chunks: int) -> list[str]:
    return [f"part{i} " for i in range(chunks)]


def _openai_events(model: str, chunks: int) -> list[bytes]:
    return openai_stream(
        model,
        _texts(chunks),
        completion_id="chatcmpl-fake",
        created=1,
        usage=(21, chunks),
        role_alone=False,
    ).events()


def _anthropic_events(model: str, chunks: int) -> list[bytes]:
    return anthropic_stream(
        model,
        _texts(chunks),
        message_id="msg_fake",
        input_tokens=17,
        final_usage={"output_tokens": 3 + chunks},
    ).events()
