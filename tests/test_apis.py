"""Which API a path speaks (router/apis.py)."""

from __future__ import annotations

import pytest

from router.apis import api_of, gemini_model


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1/chat/completions", "openai"),
        ("/chat/completions", "openai"),
        ("/v1/messages", "anthropic"),
        ("/v1/responses", "responses"),
        ("/responses", "responses"),
        ("/v1beta/models/gemini-2.5-pro:streamGenerateContent", "gemini"),
        ("/v1beta/models/claude-sonnet-5.5:generateContent", "gemini"),
        ("/v1/models/m:generateContent", "gemini"),
        ("/v1beta/models/m:countTokens", None),
        ("/v1beta/models/a/b:generateContent", None),
        ("/v1/messages/count_tokens", None),
        ("/v1/responses/resp_1", None),
        ("/v1/completions", None),
        ("/v1/embeddings", None),
        ("/v1/chat/completions/", None),
        ("/V1/MESSAGES", None),
    ],
)
def test_api_of(path: str, expected: str | None) -> None:
    assert api_of(path) == expected


def test_the_model_of_a_gemini_path() -> None:
    assert gemini_model("/v1beta/models/claude-haiku-4.5:streamGenerateContent") == (
        "claude-haiku-4.5"
    )
    assert gemini_model("/v1/chat/completions") is None
