"""Pure functions over chat request bodies: which API, which turn, what to search, where
memories go. Nothing here does I/O or mutates its input.

Understood: OpenAI ``/v1/chat/completions`` and ``/chat/completions``, Anthropic
``/v1/messages``. Any other path, a body that is not JSON, or JSON that is not a chat
gives ``None`` from ``parse_chat``: the caller forwards the body untouched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

ApiFormat = Literal["openai", "anthropic"]

CHAT_PATHS: dict[str, ApiFormat] = {
    "/v1/chat/completions": "openai",
    "/chat/completions": "openai",
    "/v1/messages": "anthropic",
}

OPEN_TAG = "<memory-router-memories>"
CLOSE_TAG = "</memory-router-memories>"
BLOCK_INTRO = (
    "Memories from earlier conversations with this user, found by the memory router. "
    "They may be incomplete or out of date; use them only where relevant."
)
MAX_MEMORY_CHARS = 2000
MAX_BLOCK_CHARS = 8000

_REMINDER = re.compile(r"<system-reminder>.*?(?:</system-reminder>|\Z)", re.DOTALL)
_TAG_LIKE = re.compile(r"<(/?)(memory-router-memories)", re.IGNORECASE)
_LEGACY_SESSION = re.compile(r"_session_([0-9A-Za-z-]{1,128})$")
_CONVERSATION_ID = re.compile(r"[\x21-\x7e]{1,128}")


@dataclass(frozen=True, slots=True)
class Chat:
    """A parsed chat request. ``body`` is the caller's own copy: never mutate it."""

    format: ApiFormat
    body: dict[str, Any]

    @property
    def messages(self) -> list[Any]:
        messages = self.body["messages"]
        assert isinstance(messages, list)
        return messages


@dataclass(frozen=True, slots=True)
class TurnInfo:
    """Where the conversation stands.

    ``new_turn``: the last message is a user message that is neither tool results nor
    only ``<system-reminder>`` text, so this request starts a turn; ``query`` is its typed
    text and ``index`` its position (None, with an empty query, when it holds no text, say
    an image alone). Otherwise (a tool result, a system reminder, an assistant prefill) the
    request continues the turn whose user message is at ``index``, and ``query`` is that
    message's typed text; ``index`` is None when no user message has typed text.
    """

    new_turn: bool
    query: str
    index: int | None


def api_format(path: str) -> ApiFormat | None:
    """The chat API a path belongs to, or None."""
    return CHAT_PATHS.get(path)


def parse_chat(path: str, body: bytes) -> Chat | None:
    """The chat in ``body``, or None when it should pass untouched."""
    fmt = api_format(path)
    if fmt is None or not body:
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    return Chat(fmt, data)


def typed_text(message: Any) -> str:
    """The text a person wrote in a user message: string content or text parts/blocks,
    with ``<system-reminder>`` sections removed. Tool results, images and files are not text.
    """
    if not isinstance(message, dict) or message.get("role") != "user":
        return ""
    content = message.get("content")
    if isinstance(content, str):
        pieces = [content]
    elif isinstance(content, list):
        pieces = [
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") == "text"
            and isinstance(part.get("text"), str)
        ]
    else:
        return ""
    texts = (_REMINDER.sub("", piece).strip() for piece in pieces)
    return "\n\n".join(t for t in texts if t)


def _starts_turn(message: Any) -> bool:
    """A user message without typed text that still starts a turn: not a tool result,
    not a system reminder (an image alone, say)."""
    if not isinstance(message, dict) or message.get("role") != "user":
        return False
    content = message.get("content")
    if isinstance(content, str):
        return _REMINDER.search(content) is None
    if not isinstance(content, list):
        return False
    for part in content:
        if not isinstance(part, dict) or part.get("type") == "tool_result":
            return False
        text = part.get("text")
        if part.get("type") == "text" and isinstance(text, str) and _REMINDER.search(text):
            return False
    return True


def turn_of(chat: Chat) -> TurnInfo:
    """Whether ``chat`` starts a new user turn, and which message holds that turn's text."""
    messages = chat.messages
    last = len(messages) - 1
    text = typed_text(messages[last])
    if text:
        return TurnInfo(new_turn=True, query=text, index=last)
    if _starts_turn(messages[last]):
        return TurnInfo(new_turn=True, query="", index=None)
    for index in range(last - 1, -1, -1):
        text = typed_text(messages[index])
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
    leading = {"type": "text", "text": block}
    if isinstance(content, list):
        return [leading, *content]
    if isinstance(content, str):
        if fmt == "openai":
            return f"{block}\n\n{content}"
        return [leading, {"type": "text", "text": content}]
    return None


def inject(chat: Chat, index: int, block: str) -> bytes | None:
    """A new body with ``block`` at the start of message ``index``; None if it cannot be done.

    Only that message changes: no other message, no system prompt, no ``cache_control``.
    OpenAI string content gets the block as a text prefix, list content a leading text
    part; Anthropic content gets a leading text block. Keys keep their order.
    """
    messages = chat.messages
    if not 0 <= index < len(messages):
        return None
    message = messages[index]
    if not isinstance(message, dict) or message.get("role") != "user":
        return None
    content = _with_block(chat.format, message.get("content"), block)
    if content is None:
        return None
    new_messages = list(messages)
    new_messages[index] = {**message, "content": content}
    new_body = {**chat.body, "messages": new_messages}
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
    ``metadata.conversation_id``/``session_id``/``thread_id`` or ``user`` for OpenAI.

    It is kept with a stored turn as a label only; it never scopes a search or a write.
    """
    metadata = chat.body.get("metadata")
    if chat.format == "anthropic":
        if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
            return _claude_code_session(metadata["user_id"])
        return None
    if isinstance(metadata, dict):
        for key in ("conversation_id", "session_id", "thread_id"):
            found = _clean_id(metadata.get(key))
            if found:
                return found
    return _clean_id(chat.body.get("user"))


def model_of(chat: Chat) -> str | None:
    """The requested model name, if it is a short string."""
    return _clean_id(chat.body.get("model"))
