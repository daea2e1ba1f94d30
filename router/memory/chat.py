"""Pure functions over chat request bodies: which API, which turn, what to search, where
memories go. Nothing here does I/O or mutates its input.

Understood (``router.apis``): OpenAI chat completions (``messages``), Anthropic messages
(``messages``), OpenAI's Responses API (``input``: a string, or a list of items) and
Gemini's ``generateContent`` and ``streamGenerateContent`` (``contents``). Any other
path, a body that is not JSON, or JSON that is not a chat gives ``None`` from
``parse_chat``: the caller forwards the body untouched. Each of these lists is called
the chat's messages below.

The turn is found the way real clients send it: the last user message with text a
person typed, passing over what clients put after it or around it (``system`` and
``developer`` messages, user messages that hold only context blocks such as Claude
Code's ``<system-reminder>``, Gemini CLI's ``<session_context>`` or Codex's
``<environment_context>``). When that message is followed by tool results, the request
continues its turn (a tool loop).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from router.apis import ApiFormat, api_of, gemini_model

OPEN_TAG = "<memory-router-memories>"
CLOSE_TAG = "</memory-router-memories>"
BLOCK_INTRO = (
    "Memories from earlier conversations with this user, found by the memory router. "
    "They may be incomplete or out of date; use them only where relevant."
)
MAX_MEMORY_CHARS = 2000
MAX_BLOCK_CHARS = 8000

# Context a client adds to what the user typed: never the user's words. An unclosed block
# runs to the end of its text.
_CONTEXT = re.compile(
    r"<(system-reminder|session_context|environment_context)>.*?(?:</\1>|\Z)", re.DOTALL
)
# Where each API keeps the conversation.
_MESSAGES_KEY: dict[ApiFormat, str] = {
    "openai": "messages",
    "anthropic": "messages",
    "responses": "input",
    "gemini": "contents",
}
# Roles that speak for the client or the system, never for the user.
_ASIDE_ROLES = frozenset({"system", "developer"})
_TAG_LIKE = re.compile(r"<(/?)(memory-router-memories)", re.IGNORECASE)
_LEGACY_SESSION = re.compile(r"_session_([0-9A-Za-z-]{1,128})$")
_CONVERSATION_ID = re.compile(r"[\x21-\x7e]{1,128}")


@dataclass(frozen=True, slots=True)
class Chat:
    """A parsed chat request. ``body`` is the caller's own copy: never mutate it.
    ``model`` is the model a Gemini path names (the body does not)."""

    format: ApiFormat
    body: dict[str, Any]
    model: str | None = None

    @property
    def messages(self) -> list[Any]:
        """The conversation: ``messages``, ``input`` or ``contents``. A Responses API
        ``input`` given as a string reads as one user message."""
        messages = self.body[_MESSAGES_KEY[self.format]]
        if isinstance(messages, str):
            return [{"role": "user", "content": messages}]
        assert isinstance(messages, list)
        return messages


@dataclass(frozen=True, slots=True)
class TurnInfo:
    """Where the conversation stands.

    ``new_turn``: the last message, once trailing system and developer messages and
    context-only user messages are passed over, is a user message that is not tool
    results, so this request starts a turn; ``query`` is its typed text and ``index`` its
    position (None, with an empty query, when it holds no text, say an image alone).
    Otherwise (tool results, an assistant prefill) the request continues the turn whose
    user message is at ``index``, and ``query`` is that message's typed text; ``index``
    is None when no user message has typed text.
    """

    new_turn: bool
    query: str
    index: int | None


def parse_chat(path: str, body: bytes) -> Chat | None:
    """The chat in ``body``, or None when it should pass untouched."""
    fmt = api_of(path)
    if fmt is None or not body:
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    messages = data.get(_MESSAGES_KEY[fmt])
    if fmt == "responses" and isinstance(messages, str) and messages:
        return Chat(fmt, data)
    if not isinstance(messages, list) or not messages:
        return None
    return Chat(fmt, data, gemini_model(path) if fmt == "gemini" else None)


def _parts(fmt: ApiFormat, message: Any) -> list[Any] | str | None:
    """A user message's content: a string, a list of parts, or None (not a user message,
    or no content it could have)."""
    if not isinstance(message, dict) or message.get("role") != "user":
        return None
    content = message.get("parts") if fmt == "gemini" else message.get("content")
    return content if isinstance(content, str | list) else None


def _text_of(fmt: ApiFormat, part: Any) -> str | None:
    """The text of one part of a user message, or None when it is no text part."""
    if not isinstance(part, dict):
        return None
    text = part.get("text")
    if not isinstance(text, str):
        return None
    if fmt == "gemini":
        return None if part.get("thought") else text
    kind = part.get("type")
    if kind == "text" or (fmt == "responses" and kind == "input_text"):
        return text
    return None


def typed_text(message: Any, fmt: ApiFormat = "openai") -> str:
    """The text a person wrote in a user message: string content or text parts, with
    context blocks (``<system-reminder>`` and the like) removed. Tool results, images and
    files are not text."""
    content = _parts(fmt, message)
    if content is None:
        return ""
    if isinstance(content, str):
        pieces = [content]
    else:
        pieces = [t for t in (_text_of(fmt, part) for part in content) if t is not None]
    texts = (_CONTEXT.sub("", piece).strip() for piece in pieces)
    return "\n\n".join(t for t in texts if t)


def _is_aside(fmt: ApiFormat, message: Any) -> bool:
    """A message a client puts around the user's: a system or developer message, or a
    user message that holds nothing but context blocks."""
    if not isinstance(message, dict):
        return False
    if message.get("role") in _ASIDE_ROLES:
        return True
    content = _parts(fmt, message)
    if content is None:
        return False
    pieces = [content] if isinstance(content, str) else [_text_of(fmt, p) for p in content]
    if not pieces or any(piece is None for piece in pieces):
        return False  # not only text: an image, a tool result, ...
    texts = [piece for piece in pieces if piece is not None]
    return any(_CONTEXT.search(t) for t in texts) and not any(
        _CONTEXT.sub("", t).strip() for t in texts
    )


def _is_tool_result(fmt: ApiFormat, part: Any) -> bool:
    if not isinstance(part, dict):
        return False
    if fmt == "gemini":
        return "functionResponse" in part
    return part.get("type") == "tool_result"


def _starts_turn(fmt: ApiFormat, message: Any) -> bool:
    """A user message without typed text that still starts a turn: it holds no tool
    result (an image alone, say)."""
    content = _parts(fmt, message)
    if content is None:
        return False
    if isinstance(content, str):
        return True
    return not any(_is_tool_result(fmt, part) for part in content)


def turn_of(chat: Chat) -> TurnInfo:
    """Whether ``chat`` starts a new user turn, and which message holds that turn's text."""
    fmt = chat.format
    messages = chat.messages
    last = len(messages) - 1
    while last >= 0 and _is_aside(fmt, messages[last]):
        last -= 1
    if last < 0:
        return TurnInfo(new_turn=False, query="", index=None)
    text = typed_text(messages[last], fmt)
    if text:
        return TurnInfo(new_turn=True, query=text, index=last)
    if _starts_turn(fmt, messages[last]):
        return TurnInfo(new_turn=True, query="", index=None)
    for index in range(last - 1, -1, -1):
        text = typed_text(messages[index], fmt)
        if text:
            return TurnInfo(new_turn=False, query=text, index=index)
    return TurnInfo(new_turn=False, query="", index=None)


def _neutralise(text: str) -> str:
    """Memory text cannot open or close the block it sits in: ``<`` of a look-alike tag
    becomes U+2039 (single left-pointing angle quotation mark)."""
    return _TAG_LIKE.sub(lambda m: f"\u2039{m.group(1)}{m.group(2)}", text)


def memory_block(
    memories: Sequence[str],
    *,
    max_each: int = MAX_MEMORY_CHARS,
    max_total: int = MAX_BLOCK_CHARS,
) -> str | None:
    """One delimited text block listing ``memories``; None when there is nothing to say."""
    lines: list[str] = []
    used = 0
    for memory in memories:
        text = _neutralise(memory.strip())
        if not text:
            continue
        if len(text) > max_each:
            text = text[: max_each - 1] + "…"
        entry = "- " + text.replace("\n", "\n  ")
        if lines and used + len(entry) > max_total:
            break
        lines.append(entry)
        used += len(entry)
    if not lines:
        return None
    return "\n".join([OPEN_TAG, BLOCK_INTRO, *lines, CLOSE_TAG])


def _with_block(fmt: ApiFormat, content: Any, block: str) -> Any:
    if fmt == "gemini":
        return [{"text": block}, *content] if isinstance(content, list) else None
    kind = "input_text" if fmt == "responses" else "text"
    leading = {"type": kind, "text": block}
    if isinstance(content, list):
        return [leading, *content]
    if isinstance(content, str):
        if fmt != "anthropic":
            return f"{block}\n\n{content}"
        return [leading, {"type": "text", "text": content}]
    return None


def inject(chat: Chat, index: int, block: str) -> bytes | None:
    """A new body with ``block`` at the start of message ``index``; None if it cannot be done.

    Only that message changes: no other message, no system prompt, no ``cache_control``.
    String content gets the block as a text prefix (Anthropic: as a leading text block),
    a list of parts a leading text part (``input_text`` on the Responses API, ``{"text"}``
    on Gemini). A Responses API ``input`` string stays a string. Keys keep their order.
    """
    messages = chat.messages
    if not 0 <= index < len(messages):
        return None
    message = messages[index]
    if not isinstance(message, dict) or message.get("role") != "user":
        return None
    key = "parts" if chat.format == "gemini" else "content"
    content = _with_block(chat.format, message.get(key), block)
    if content is None:
        return None
    holder = _MESSAGES_KEY[chat.format]
    if isinstance(chat.body[holder], str):
        new_body = {**chat.body, holder: content}
    else:
        new_messages = list(messages)
        new_messages[index] = {**message, key: content}
        new_body = {**chat.body, holder: new_messages}
    try:
        text = json.dumps(new_body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return None
    return text.encode("utf-8")


def _clean_id(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    cleaned = value.strip()
    return cleaned if _CONVERSATION_ID.fullmatch(cleaned) else None


def _claude_code_session(user_id: str) -> str | None:
    """The session id in Claude Code's ``metadata.user_id``.

    Claude Code before 2.1.78 sends ``user_<hash>_account_<uuid>_session_<uuid>``; later
    versions send a JSON string ``{"device_id", "account_uuid", "session_id"}``.
    """
    if user_id.startswith("{"):
        try:
            data = json.loads(user_id)
        except ValueError:
            return None
        return _clean_id(data.get("session_id")) if isinstance(data, dict) else None
    match = _LEGACY_SESSION.search(user_id)
    return match.group(1) if match else None


def conversation_id(chat: Chat) -> str | None:
    """The conversation the client names, if any: Claude Code's session id for Anthropic;
    ``metadata.conversation_id``/``session_id``/``thread_id`` or ``user`` for OpenAI; on
    the Responses API also ``client_metadata.thread_id`` (Codex) and ``prompt_cache_key``.

    It is kept with a stored turn as a label only; it never scopes a search or a write.
    """
    metadata = chat.body.get("metadata")
    if chat.format == "anthropic":
        if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
            return _claude_code_session(metadata["user_id"])
        return None
    if chat.format == "gemini":
        return None
    if chat.format == "responses":
        client = chat.body.get("client_metadata")
        if isinstance(client, dict) and _clean_id(client.get("thread_id")):
            return _clean_id(client.get("thread_id"))
        if _clean_id(chat.body.get("prompt_cache_key")):
            return _clean_id(chat.body.get("prompt_cache_key"))
    if isinstance(metadata, dict):
        for key in ("conversation_id", "session_id", "thread_id"):
            found = _clean_id(metadata.get(key))
            if found:
                return found
    return _clean_id(chat.body.get("user"))


def model_of(chat: Chat) -> str | None:
    """The requested model name, if it is a short string."""
    return _clean_id(chat.model if chat.format == "gemini" else chat.body.get("model"))
