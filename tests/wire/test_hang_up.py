"""A client that hangs up once the answer's final event has reached it got a whole answer:
the request counts with the status it got and its tokens, and its turn is stored. A
client that hangs up before that counts as 499, and nothing is stored. Either way the
router stops reading the upstream at once.

Real clients do this: Codex closes after ``response.completed``, llm and aider after
``data: [DONE]``, each before LiteLLM has sent its last chunk. The upstream here sends
the final event, then holds its last chunk back until the router lets go of it; the
client is a raw socket that closes as soon as it has read the final event.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.polling import wait_for
from tests.wire.conftest import Router
from tests.wire.peer import Script, ScriptedUpstream, UpstreamConn

Start = Callable[[Script], ScriptedUpstream]
StartRouter = Callable[..., Router]

FACT = "my cat is called Ziggy"
ANSWER = "Noted: Ziggy."


def _sse(*events: Any) -> list[bytes]:
    return [
        b"data: " + (e.encode() if isinstance(e, str) else json.dumps(e).encode()) + b"\n\n"
        for e in events
    ]


@dataclass
class Case:
    """One API: its request, and the answer's events, the last of which ends it."""

    path: str
    body: dict[str, Any]
    events: list[bytes]
    content_type: bytes = b"text/event-stream"
    prompt_tokens: int = 11
    completion_tokens: int = 3


RESPONSE = {
    "id": "resp_1",
    "object": "response",
    "model": "m",
    "status": "completed",
    "output": [
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": ANSWER, "annotations": []}],
        }
    ],
    "usage": {"input_tokens": 11, "output_tokens": 3, "total_tokens": 14},
}

CASES = {
    "chat completions, after [DONE]": Case(
        "/v1/chat/completions",
        {"model": "m", "stream": True, "messages": [{"role": "user", "content": FACT}]},
        _sse(
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ANSWER}}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3}},
            "[DONE]",
        ),
    ),
    "anthropic messages, after message_stop": Case(
        "/v1/messages",
        {
            "model": "m",
            "max_tokens": 100,
            "stream": True,
            "messages": [{"role": "user", "content": FACT}],
        },
        _sse(
            {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 11}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": ANSWER},
            },
            {"type": "content_block_stop", "index": 0},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 3},
            },
            {"type": "message_stop"},
        ),
    ),
    "responses, after response.completed": Case(
        "/v1/responses",
        {"model": "m", "stream": True, "input": FACT},
        _sse(
            {"type": "response.created", "response": {**RESPONSE, "status": "in_progress"}},
            {"type": "response.output_text.delta", "delta": ANSWER},
            {"type": "response.completed", "response": RESPONSE},
        ),
    ),
    "gemini, after the finish reason": Case(
        "/v1beta/models/m:streamGenerateContent?alt=sse",
        {"contents": [{"role": "user", "parts": [{"text": FACT}]}]},
        _sse(
            {"candidates": [{"content": {"role": "model", "parts": [{"text": ANSWER}]}}]},
            {
                "candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": 3},
            },
        ),
    ),
    "chat completions JSON, after the whole body": Case(
        "/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": FACT}]},
        [
            json.dumps(
                {
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": ANSWER},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 3},
                }
            ).encode()
        ],
        content_type=b"application/json",
    ),
}


class HeldUpstream:
    """Sends ``events`` as chunks, then holds the chunked body's last chunk back until
    the router closes the connection: that close is ``released``."""

    def __init__(self, case: Case, send: int) -> None:
        self.case = case
        self.send = send  # how many of the events go out before the hold
        self.released = threading.Event()

    def __call__(self, conn: UpstreamConn) -> None:
        if conn.read_request() is None:
            return
        conn.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: "
            + self.case.content_type
            + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for event in self.case.events[: self.send]:
            conn.send(b"%x\r\n%s\r\n" % (len(event), event))
        conn.sock.settimeout(30)
        try:
            closed = conn.sock.recv(1) == b""
        except TimeoutError:
            closed = False
        if closed:
            self.released.set()
        else:
            conn.send(b"0\r\n\r\n")  # the router never let go: end it, the test fails


def _ask(router: Router, case: Case, until: bytes) -> bytes:
    """Send the request as ``alice``; read until ``until`` has arrived, then hang up."""
    body = json.dumps(case.body).encode()
    head = (
        f"POST {case.path} HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
        f"x-memory-user-id: alice\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    raw = b""
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        sock.sendall(head + body)
        while until not in raw:
            chunk = sock.recv(65536)
            assert chunk, raw
            raw += chunk
    return raw


def _get(router: Router, path: str) -> str:
    with socket.create_connection(("127.0.0.1", router.port), timeout=10) as sock:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: router\r\nx-memory-user-id: alice\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        raw = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                raw += chunk
    return raw.partition(b"\r\n\r\n")[2].decode()


def _samples(router: Router, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric in the router's /metrics."""
    out: dict[str, float] = {}
    for line in _get(router, "/metrics").splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line.rpartition(" ")
            out[labels[len(name) :]] = float(value)
    return out


def _statuses(router: Router) -> dict[str, float]:
    return {
        labels.split('status="')[1].split('"')[0]: value
        for labels, value in _samples(router, "memory_router_requests_total").items()
        if 'user_id="alice"' in labels
    }


def _tokens(router: Router) -> tuple[float, float]:
    samples = _samples(router, "memory_router_tokens_total")
    return (
        sum(v for k, v in samples.items() if 'user_id="alice"' in k and 'kind="prompt"' in k),
        sum(v for k, v in samples.items() if 'user_id="alice"' in k and 'kind="completion"' in k),
    )


def _memories(router: Router) -> list[str]:
    return [m["text"] for m in json.loads(_get(router, "/memory-routing/memories"))["memories"]]


def _start(upstream: Start, router: StartRouter, tmp_path: Path, script: Script) -> Router:
    return router(
        upstream(script),
        MEMORY_ROUTER_MEMORY_BACKEND="local",
        MEMORY_ROUTER_MEMORY_LOCAL_PATH=str(tmp_path / "memories.sqlite3"),
    )


@pytest.mark.parametrize("name", list(CASES))
def test_a_hang_up_right_after_the_final_event_is_a_success(
    upstream: Start, router: StartRouter, tmp_path: Path, name: str
) -> None:
    case = CASES[name]
    held = HeldUpstream(case, send=len(case.events))
    r = _start(upstream, router, tmp_path, held)

    _ask(r, case, until=case.events[-1])

    assert held.released.wait(10), "the router kept reading the upstream"
    assert wait_for(lambda: _statuses(r), what="the request counted") == {"200": 1}
    assert _tokens(r) == (case.prompt_tokens, case.completion_tokens)
    stored = wait_for(lambda: _memories(r), what="the turn stored", timeout=10, interval=0.05)
    assert stored == [f"User: {FACT}\nAssistant: {ANSWER}"]


@pytest.mark.parametrize("name", list(CASES))
def test_a_hang_up_before_the_final_event_is_499_and_stores_nothing(
    upstream: Start, router: StartRouter, tmp_path: Path, name: str
) -> None:
    case = CASES[name]
    if len(case.events) == 1:  # a JSON body: hang up on its first half
        whole = case.events[0]
        case = Case(case.path, case.body, [whole[:40], whole[40:]], case.content_type)
    held = HeldUpstream(case, send=len(case.events) - 1)
    r = _start(upstream, router, tmp_path, held)

    _ask(r, case, until=case.events[-2])

    assert held.released.wait(10), "the router kept reading the upstream"
    assert wait_for(lambda: _statuses(r), what="the request counted") == {"499": 1}
    assert _tokens(r) == (0, 0)
    assert _memories(r) == []
