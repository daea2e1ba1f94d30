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

3. **An Upgrade is ignored.** The router serves neither WebSocket nor HTTP/2, so
   a request with ``Upgrade`` (the JDK's ``HttpClient`` sends ``Upgrade: h2c`` on
   every cleartext request, body included) is served as the HTTP/1.1 request it
   also is (RFC 9110 7.8). httptools makes llhttp skip the body of any request
   that asks to upgrade and stops parsing after its head; here the message is not
   completed there: a fresh parser reads the body, framed by the request's own
   ``Content-Length`` or ``Transfer-Encoding`` (fed to it as the head of an
   otherwise empty message), and goes on with the requests pipelined behind it.
   ``CONNECT`` is left as uvicorn handles it.

Build a class with ``guarded_protocol(limit)`` and pass it to uvicorn as ``http``.

This reaches into uvicorn's ``HttpToolsProtocol`` (its parser callbacks,
``data_received``, ``send_400_response`` and its ``parser``, ``headers``, ``cycle``
attributes): pyproject.toml pins uvicorn to the minor versions the tests in
tests/test_http_protocol.py and tests/wire/ pass on.
"""

from __future__ import annotations

from typing import Any

import httptools
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
        # The framing head a fresh parser resumes with after an ignored Upgrade, from
        # the end of the upgrading request's head until its body is read; and whether
        # that head is being fed (its callbacks belong to no request).
        self._resume_with: bytes | None = None
        self._feeding_framing = False

    def data_received(self, data: bytes) -> None:
        self._pending += len(data)
        self._feed(data)
        if self._pending > self.limit or self._trailer_bytes > self.limit:
            self._refuse()

    def _feed(self, data: bytes) -> None:
        """uvicorn's ``data_received``, except for an Upgrade, which is ignored."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade as exc:
            framing, self._resume_with = self._resume_with, None
            if framing is None:  # CONNECT: nothing follows that the router could serve
                self.logger.warning("Unsupported upgrade request.")
                return
            self._resume(framing, data[exc.args[0] :])

    def _resume(self, framing: bytes, rest: bytes) -> None:
        """Read the rest of an upgrading request's message with a fresh parser, as if
        it had not asked to upgrade, then whatever the client pipelined behind it."""
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)  # as uvicorn does
        self._feeding_framing = True
        url = self.url  # the framing head's own target must not change the request's
        try:
            self.parser.feed_data(framing)
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        finally:
            self._feeding_framing = False
            self.url = url
        if rest:
            self._feed(rest)

    def on_message_begin(self) -> None:
        if self._feeding_framing:
            return
        self._in_head = True
        self._trailer_bytes = 0
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._feeding_framing:
            return
        if self._in_head:
            super().on_header(name, value)
        else:  # a trailer field: dropped, and counted
            self._trailer_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        if self._feeding_framing:
            return
        self._in_head = False
        self._pending = 0
        parser = self.parser
        if parser.should_upgrade() and parser.get_method() != b"CONNECT":
            self._resume_with = _framing_head(self.headers, parser.get_http_version())
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._pending = 0
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._resume_with is not None:
            return  # the end httptools gives an upgrading request: its body follows
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


def _framing_head(headers: list[tuple[bytes, bytes]], version: str) -> bytes:
    """The head of an empty request that frames a body as ``headers`` do: their
    ``Content-Length`` and ``Transfer-Encoding`` fields, as received, so that the
    parser checks them as strictly as it checks any request's."""
    lines = [b"PUT / HTTP/%s\r\n" % version.encode("ascii")]
    lines += [
        name + b": " + value + b"\r\n"
        for name, value in headers
        if name in (b"content-length", b"transfer-encoding")
    ]
    lines.append(b"\r\n")
    return b"".join(lines)


def guarded_protocol(limit: int) -> type[GuardedHttpToolsProtocol]:
    """A protocol class whose bound is ``limit`` bytes."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limit": limit})
