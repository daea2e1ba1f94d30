"""Which AI API a request speaks, told from its path alone.

``openai``: chat completions (``/v1/chat/completions``, ``/chat/completions``);
``anthropic``: messages (``/v1/messages``); ``responses``: OpenAI's Responses API
(``/v1/responses``, ``/responses``); ``gemini``: Google's ``generateContent`` and
``streamGenerateContent`` (``/v1beta/models/<model>:streamGenerateContent``, and under
``/v1/``). Any other path speaks none of them (``None``).
"""

from __future__ import annotations

import re
from typing import Literal

ApiFormat = Literal["openai", "anthropic", "responses", "gemini"]

_PATHS: dict[str, ApiFormat] = {
    "/v1/chat/completions": "openai",
    "/chat/completions": "openai",
    "/v1/messages": "anthropic",
    "/v1/responses": "responses",
    "/responses": "responses",
}
_GEMINI = re.compile(
    r"/v1(?:beta)?/models/([^/:]{1,200}):(?:generateContent|streamGenerateContent)"
)


def api_of(path: str) -> ApiFormat | None:
    """The API ``path`` belongs to, or None."""
    fmt = _PATHS.get(path)
    if fmt is None and path.endswith("enerateContent") and _GEMINI.fullmatch(path):
        return "gemini"
    return fmt


def gemini_model(path: str) -> str | None:
    """The model a Gemini path names (Gemini puts it in the path, not the body)."""
    match = _GEMINI.fullmatch(path)
    return match.group(1) if match else None
