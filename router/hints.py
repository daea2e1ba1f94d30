"""Hints for LiteLLM's answers that point away from their cause.

The proxy relays every answer unchanged. For the few whose text misleads, it also logs
one line naming the likely cause. Both known cases are about the client's API key, as
LiteLLM 1.108.7 answers them when it runs without a database (as this stack does):

- a key LiteLLM does not know (anything but ``LITELLM_MASTER_KEY``):
  ``400 {"error": {"message": "No connected db.", "type": "no_db_connection", ...}}``,
  since it would look other keys up in a database it does not have;
- no key at all (no ``Authorization: Bearer``, ``x-api-key`` or ``api-key``, or an
  empty one): ``500 Internal Server Error`` in plain text.

Only small answers with one of these statuses are looked at (``wants_peek``), and only
the first ``PEEK_BYTES`` of them, kept by a ``Peek`` as they are relayed: a normal
answer, and any stream, costs nothing.
"""

from __future__ import annotations

HINT_STATUSES = frozenset({400, 500})
PEEK_BYTES = 1024

_NO_DB = b'"no_db_connection"'
_PLAIN_500 = b"Internal Server Error"

WRONG_KEY = (
    "LiteLLM answered 400 'No connected db.': it did not accept the client's API key. "
    "Without a database LiteLLM knows no key but LITELLM_MASTER_KEY: give the client "
    "that key (Authorization: Bearer <key>, or x-api-key: <key>)"
)
MISSING_KEY = (
    "LiteLLM answered 500 Internal Server Error to a request that carried no API key: "
    "give the client LITELLM_MASTER_KEY as its key (Authorization: Bearer <key>, or "
    "x-api-key: <key>)"
)


class Peek:
    """The first ``PEEK_BYTES`` of an answer."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        room = PEEK_BYTES - len(self.data)
        if room > 0:
            self.data += chunk[:room]


def wants_peek(
    status: int,
    content_type: bytes | None,
    content_encoding: bytes | None,
    content_length: bytes | None,
) -> bool:
    """Whether an answer could be one of the known cases: a status with a hint, not a
    stream, not compressed, and no longer than ``PEEK_BYTES`` when its length is given."""
    if status not in HINT_STATUSES or content_encoding is not None:
        return False
    if content_type is not None and content_type.lower().startswith(b"text/event-stream"):
        return False
    if content_length is None:
        return True
    return content_length.strip().isdigit() and int(content_length) <= PEEK_BYTES


def hint_for(status: int, body: bytes, *, has_key: bool) -> str | None:
    """The likely cause of an answer, when it is one of the known misleading ones."""
    if status == 400 and _NO_DB in body:
        return WRONG_KEY
    if status == 500 and not has_key and body.strip() == _PLAIN_500:
        return MISSING_KEY
    return None
