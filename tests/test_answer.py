"""The answer pipeline (router/answer.py): one parse of each event for every observer,
and whether an answer's end has been relayed, API by API."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from router.answer import Answer, AnswerEvent, Observer
from router.apis import ApiFormat
from router.hints import PEEK_BYTES, Peek
from tests.support.answers import JSON, SSE, read_answer


class Recorder(Observer):
    """Keeps every event's bytes and parsed value, and every body."""

    marks = None

    def __init__(self) -> None:
        self.events: list[bytes] = []
        self.values: list[Any] = []
        self.bodies: list[bytes] = []
        self.lost_count = 0

    def event(self, event: AnswerEvent) -> None:
        self.events.append(event.data)
        self.values.append(event.json())

    def body(self, event: AnswerEvent) -> None:
        self.bodies.append(event.data)
        self.values.append(event.json())

    def lost(self) -> None:
        self.lost_count += 1


class Marked(Recorder):
    """A recorder that says it cares only about events holding ``"usage``."""

    marks = (b'"usage',)


def sse(*payloads: Any, crlf: bool = False) -> bytes:
    out = "".join(
        f"event: x\ndata: {p if isinstance(p, str) else json.dumps(p)}\n\n" for p in payloads
    )
    return (out.replace("\n", "\r\n") if crlf else out).encode()


EVENTS = [{"n": 1, "text": "Grüße 🙂"}, {"n": 2}, "[DONE]"]


@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=30), crlf=st.booleans())
def test_every_event_reaches_every_observer_once_in_order_whatever_the_chunking(
    cuts: list[int], crlf: bool
) -> None:
    raw = sse(*EVENTS, crlf=crlf)
    first, second = Recorder(), Recorder()
    answer = Answer("openai", [first, second], content_type=SSE)
    bounds = sorted({0, len(raw), *(c % (len(raw) + 1) for c in cuts)})
    for start, end in itertools.pairwise(bounds):
        answer.feed(raw[start:end])
    answer.finish()
    expected = [json.dumps(EVENTS[0]).encode(), b'{"n": 2}', b"[DONE]"]
    assert first.events == second.events == expected
    # parsed once: both observers got the very same objects
    assert all(a is b for a, b in zip(first.values[:2], second.values[:2], strict=True))


def test_a_last_line_without_its_newline_is_read_at_the_end() -> None:
    recorder = Recorder()
    read_answer(b'data: {"a": 1}\n\ndata: [DONE]', [recorder])
    assert recorder.events == [b'{"a": 1}', b"[DONE]"]


def test_only_events_holding_a_mark_reach_observers_that_all_have_marks() -> None:
    marked, other = Marked(), Marked()
    raw = sse({"choices": []}, {"choices": [], "usage": {"prompt_tokens": 1}}, "[DONE]")
    answer = Answer("openai", [marked, other], content_type=SSE)
    for piece in (raw[:30], raw[30:]):
        answer.feed(piece)
    answer.finish()
    assert marked.events == other.events == [b'{"choices": [], "usage": {"prompt_tokens": 1}}']
    # with an observer that wants every event, every event goes to all
    everything = Recorder()
    read_answer(raw, [marked, everything])
    assert len(everything.events) == 3 and len(marked.events) == 4


def test_an_overlong_line_is_skipped_and_reported() -> None:
    recorder = Recorder()
    huge = b"data: " + b"x" * (2 * 1024 * 1024) + b"\n\n"
    read_answer(huge + b"data: [DONE]\n\n", [recorder], size=256 * 1024)
    assert recorder.lost_count >= 1
    assert recorder.events[-1] == b"[DONE]"


def test_a_json_body_is_given_whole_at_the_end() -> None:
    recorder = Recorder()
    read_answer(b'{"a": [1, 2, 3]}', [recorder], content_type=JSON, size=3)
    assert (recorder.events, recorder.bodies, recorder.values) == (
        [],
        [b'{"a": [1, 2, 3]}'],
        [{"a": [1, 2, 3]}],
    )


@pytest.mark.parametrize(
    ("content_type", "encoding"),
    [(b"text/plain", None), (b"application/json", b"gzip"), (None, None)],
)
def test_other_answers_are_only_counted(content_type: bytes | None, encoding: bytes | None) -> None:
    recorder = Recorder()
    answer = Answer("openai", [recorder], content_type=content_type, content_encoding=encoding)
    answer.feed(b'data: {"a": 1}\n\n')
    answer.finish()
    assert (recorder.events, recorder.bodies) == ([], [])


def test_the_peek_keeps_only_the_start() -> None:
    peek = Peek()
    answer = Answer("openai", [], content_type=b"text/plain", peek=peek)
    for _ in range(3):
        answer.feed(b"e" * (PEEK_BYTES // 2 + 1))
    assert bytes(peek.data) == b"e" * PEEK_BYTES


# -- the end of an answer ---------------------------------------------------------------

ANTHROPIC = [
    {"type": "message_start", "message": {"id": "m"}},
    {"type": "content_block_delta", "delta": {"type": "text_delta", "text": "message_stop"}},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
    {"type": "message_stop"},
]
RESPONSES = [
    {"type": "response.created", "response": {"status": "in_progress"}},
    {"type": "response.output_text.delta", "delta": "response.completed"},
    {"type": "response.completed", "response": {"status": "completed"}},
    "[DONE]",
]
GEMINI = [
    {"candidates": [{"content": {"parts": [{"text": "finishReason"}]}, "finishReason": None}]},
    {"candidates": [{"content": {"parts": [{"text": "!"}]}, "finishReason": "STOP"}]},
]
CHAT = [{"choices": [{"delta": {"content": "[DONE]"}, "finish_reason": "stop"}]}, "[DONE]"]

# (api, events, how many events make the end)
STREAMS: list[tuple[ApiFormat | None, list[Any], int]] = [
    ("openai", CHAT, 2),
    (None, CHAT, 2),
    ("anthropic", ANTHROPIC, 4),
    ("responses", RESPONSES, 3),
    ("responses", [*RESPONSES[:2], {"type": "response.failed", "response": {}}], 3),
    ("responses", [*RESPONSES[:2], {"type": "response.incomplete", "response": {}}], 3),
    ("gemini", GEMINI, 2),
]


@pytest.mark.parametrize("size", [1, 7, 100_000])
@pytest.mark.parametrize(("api", "events", "final"), STREAMS)
def test_a_stream_has_ended_once_its_final_event_passed(
    api: ApiFormat | None, events: list[Any], final: int, size: int
) -> None:
    for count in range(len(events) + 1):
        answer = read_answer(sse(*events[:count]), [Marked()], fmt=api, size=size)
        assert answer.ended() is (count >= final), (count, events[:count])


@pytest.mark.parametrize("observers", [[], [Marked()], [Recorder()]], ids=["none", "marked", "all"])
def test_the_end_is_found_however_much_followed_and_whoever_observes(
    observers: list[Observer],
) -> None:
    """Codex hangs up after response.completed; a stream may also carry more after its
    final event ([DONE] behind it, or an empty chunk)."""
    answer = Answer("responses", observers, content_type=SSE)
    for chunk in [*sse(*RESPONSES[:3]).split(b"\n"), b"", b"\n"]:
        answer.feed(chunk + b"\n" if chunk else chunk)
    answer.finish()
    assert answer.ended()


@pytest.mark.parametrize(
    ("raw", "length", "ended"),
    [
        (b'{"id": "x", "choices": []}', None, True),
        (b'{"id": "x", "choices": [', None, False),
        (b"not json", None, False),
        (b"", None, False),
        (b'{"id": "x", "choices": [', 30, False),
        (b'{"id": "x", "choices": [', 24, True),  # all the bytes its length promised
    ],
)
def test_a_json_body_has_ended_when_it_is_whole(
    raw: bytes, length: int | None, ended: bool
) -> None:
    answer = read_answer(raw, [Marked()], content_type=JSON, content_length=length)
    assert answer.ended() is ended


def test_any_body_has_ended_when_its_length_is_all_relayed() -> None:
    answer = Answer("openai", [], content_type=b"audio/mpeg", content_length=4)
    answer.feed(b"abc")
    answer.finish()
    assert not answer.ended()
    answer.feed(b"d")
    assert answer.ended()
