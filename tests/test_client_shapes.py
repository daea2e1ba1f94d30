"""The router over the requests real clients send, as recorded in tests/clients/shapes/
(one file per program, two calls each: a fact told, then a question about it). For
each recorded request: the id the shipped rules give it, the API its path speaks, the
turn (the user's own words, whatever the client puts around them), where memories
would go, and which reader takes its answer's text. A client whose recorded shape
changes in a way the router does not follow fails here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from router.apis import ApiFormat, api_of
from router.config_source import packaged_config_path
from router.memory.answer_text import (
    AnswerText,
    ChatText,
    GeminiText,
    MessagesText,
    ResponsesText,
    answer_text,
)
from router.memory.chat import OPEN_TAG, inject, parse_chat, turn_of
from router.memory_router import MemoryRouter

SHAPES = Path(__file__).parent / "clients" / "shapes"
PROMPTS = ("My favourite colour is teal.", "What is my favourite colour?")
BLOCK = f"{OPEN_TAG}\n- a memory\n</memory-router-memories>"


@dataclass(frozen=True)
class Expected:
    user_id: str
    api: ApiFormat
    reader: type[AnswerText]
    after_prompt: str = ""  # what the client itself adds to the user's words


EXPECTED = {
    "claude-code": Expected("claude-code-cli", "anthropic", MessagesText),
    "codex": Expected("codex-cli", "responses", ResponsesText),
    "gemini-cli": Expected("gemini-cli", "gemini", GeminiText),
    "aider": Expected("default-dev", "openai", ChatText, "\n\nReply in English."),
    "llm": Expected("default-dev", "openai", ChatText),
    "java-http-client": Expected("default-dev", "openai", ChatText),
}


def _requests() -> list[tuple[str, int, dict[str, Any]]]:
    out = []
    for name in EXPECTED:
        recorded = json.loads((SHAPES / f"{name}.json").read_text())
        out += [(name, n, request) for n, request in enumerate(recorded)]
    return out


REQUESTS = _requests()


def test_every_recorded_client_is_covered() -> None:
    assert {p.stem for p in SHAPES.glob("*.json")} == set(EXPECTED)


@pytest.fixture(scope="module")
def shipped() -> MemoryRouter:
    return MemoryRouter(packaged_config_path())


@pytest.mark.parametrize(
    ("name", "n", "request_"), REQUESTS, ids=[f"{r[0]}-{r[1]}" for r in REQUESTS]
)
def test_the_router_follows_each_recorded_request(
    shipped: MemoryRouter, name: str, n: int, request_: dict[str, Any]
) -> None:
    expected = EXPECTED[name]
    headers = {k.lower(): v for k, v in request_["headers"]}
    assert shipped.decide(headers).user_id == expected.user_id

    path = request_["path"].split("?", 1)[0]
    assert api_of(path) == expected.api
    raw = json.dumps(request_["body"]).encode()
    chat = parse_chat(path, raw)
    assert chat is not None

    turn = turn_of(chat)
    assert (turn.new_turn, turn.query) == (True, PROMPTS[n] + expected.after_prompt)
    assert turn.index is not None

    injected = inject(chat, turn.index, BLOCK)
    assert injected is not None
    before, after = chat.messages, parse_chat(path, injected)
    assert after is not None
    changed = [i for i, (a, b) in enumerate(zip(before, after.messages, strict=True)) if a != b]
    assert changed == [turn.index]
    assert turn_of(after).query.startswith(BLOCK)  # the block leads the user's message

    reader = answer_text(expected.api, status=200, content_type=b"text/event-stream")
    assert type(reader) is expected.reader
