"""The server side of the wire: uvicorn's httptools protocol with two guards.

uvicorn's httptools protocol (the fast one: about four times the requests per
second of its h11 protocol on this workload, see bench/README.md) has no bound
on what it buffers while it parses, and it appends a chunked request's trailer
fields to the very list the application received as the request's headers.
This subclass changes exactly that, and leaves parsing to httptools (llhttp):

1. **A bound on unparsed bytes.** It counts the bytes received since the parser
   last handed the application something (the end of the head, a piece of body,
   the end of the message). A request head, or a trailer section, that grows past
   ``limit`` bytes is answered ``431`` (in the caller's API format) and the
   connection is closed. Memory per connection stays within the limit plus one
   socket read.
2. **Trailer fields are dropped.** Fields after the body are never added to the
   request's headers, so nothing that arrives after the head can change what the
   router decided from it. A trailer section over ``limit`` bytes is refused the
   same way, even when it arrives in one read with the rest of the request: the
   request is then never completed, so nothing is forwarded.

Build a class with ``guarded_protocol(limit)`` and pass it to uvicorn as ``http``.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from router.errors import api_format, headers_too_large

# Room for the request line on top of the header limit the proxy enforces itself.
REQUEST_LINE_ALLOWANCE = 8 * 1024


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limit = 32 * 1024 + REQUEST_LINE_ALLOWANCE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending = 0
        self._in_head = True
        self._trailer_bytes = 0

    def data_received(self, data: bytes) -> None:
        self._pending += len(data)
        super().data_received(data)
        if self._pending > self.limit or self._trailer_bytes > self.limit:
            self._refuse()

    def on_message_begin(self) -> None:
        self._in_head = True
        self._trailer_bytes = 0
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            super().on_header(name, value)
        else:  # a trailer field: dropped, and counted
            self._trailer_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._pending = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._pending = 0
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._pending = 0
        self._in_head = True
        if self._trailer_bytes <= self.limit:  # else left incomplete, and refused
            super().on_message_complete()

    def _refuse(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            url = getattr(self, "url", b"") or b"/"
            path = url.split(b"?", 1)[0].decode("latin-1")
            error = headers_too_large(self.limit)
            body = error.body(api_format(path))
            transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: application/json\r\n"
                b"content-length: %d\r\n"
                b"connection: close\r\n\r\n%s" % (len(body), body)
            )
        transport.close()


def guarded_protocol(limit: int) -> type[GuardedHttpToolsProtocol]:
    """A protocol class whose bound is ``limit`` bytes."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limit": limit})
