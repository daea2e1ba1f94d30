"""Raw-socket HTTP/1.1 clients for the streaming measurements.

No HTTP library sits between the socket and the clock: every ``recv`` is
timestamped, the body is de-chunked by hand, and SSE events (``\\n\\n``-ended)
are counted per read, so a proxy that batches chunks shows up as a read that
completes more than one event.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import statistics
from dataclasses import dataclass, field
from time import perf_counter


class BenchError(Exception):
    """A measurement could not be made (a bench failure, not a slow result)."""


class StaleConnection(BenchError):
    """A kept-alive connection was closed by the server before this request was answered."""


class Body:
    """Incremental response body decoder: chunked, Content-Length or until close.

    ``feed`` returns the number of SSE events completed by the bytes given.
    """

    def __init__(self, headers: dict[str, str]) -> None:
        self.chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        length = headers.get("content-length")
        self.remaining = int(length) if length is not None and not self.chunked else None
        self.raw = b""
        self.pending = b""
        self.data = bytearray()
        self.need = -1  # chunked: bytes of chunk data still expected; -1 = size line next
        self.done = self.remaining == 0
        self.events = 0

    def _events(self, data: bytes) -> int:
        self.data += data
        self.pending += data
        count = 0
        while True:
            idx = self.pending.find(b"\n\n")
            if idx < 0:
                break
            count += 1
            self.pending = self.pending[idx + 2 :]
        self.events += count
        return count

    def feed(self, chunk: bytes) -> int:
        if not self.chunked:
            if self.remaining is not None:
                self.remaining -= len(chunk)
                self.done = self.remaining <= 0
            return self._events(chunk)
        self.raw += chunk
        out = []
        while not self.done:
            if self.need < 0:
                idx = self.raw.find(b"\r\n")
                if idx < 0:
                    break
                size = int(self.raw[:idx].split(b";")[0], 16)
                if size == 0:
                    # Last chunk: done at the empty line that ends the (absent) trailers.
                    if self.raw.find(b"\r\n\r\n", idx) >= 0:
                        self.done = True
                        self.raw = b""
                    break
                self.raw = self.raw[idx + 2 :]
                self.need = size
            else:
                if len(self.raw) < self.need + 2:
                    break
                out.append(self.raw[: self.need])
                self.raw = self.raw[self.need + 2 :]
                self.need = -1
        return self._events(b"".join(out)) if out else 0


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise BenchError(f"bad status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def build_request(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class StreamResult:
    status: int
    ttfc: float  # seconds from the request's last byte sent to the first event completed
    event_times: list[float] = field(default_factory=list)  # when each event completed
    events_per_read: list[int] = field(default_factory=list)  # reads that completed events
    events: int = 0
    done_seen: bool = False

    @property
    def gaps(self) -> list[float]:
        t = self.event_times
        return [b - a for a, b in itertools.pairwise(t)]

    @property
    def batched_reads(self) -> int:
        return sum(1 for n in self.events_per_read if n > 1)


class StreamConn:
    """One keep-alive connection, driven with blocking sockets for clean timings."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.sock: socket.socket | None = None
        self.leftover = b""

    def _connect(self) -> socket.socket:
        if self.sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = sock
            self.leftover = b""
        return self.sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def stream(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> StreamResult:
        """One request on the kept-alive connection, read to the end of the response.

        Like any HTTP client, it retries once on a fresh connection when the server had
        already closed the idle one (uvicorn's keep-alive timeout is 5 s).
        """
        reused = self.sock is not None
        try:
            return self._stream(path, body, headers)
        except StaleConnection:
            self.close()
            if not reused:
                raise
        except (OSError, BenchError):
            self.close()
            raise
        try:
            return self._stream(path, body, headers)
        except (OSError, BenchError):
            self.close()
            raise

    def _stream(self, path: str, body: bytes, headers: dict[str, str] | None) -> StreamResult:
        sock = self._connect()
        try:
            sock.sendall(build_request(self.host, self.port, path, body, headers))
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise StaleConnection(str(exc)) from exc
        t0 = perf_counter()
        buf = self.leftover
        while b"\r\n\r\n" not in buf:
            try:
                data = sock.recv(65536)
            except ConnectionResetError as exc:
                raise StaleConnection(str(exc)) from exc
            if not data:
                if not buf:
                    raise StaleConnection("connection closed before the response head")
                raise BenchError("connection closed inside the response head")
            buf += data
        head, _, rest = buf.partition(b"\r\n\r\n")
        status, resp_headers = _parse_head(head)
        decoder = Body(resp_headers)
        result = StreamResult(status=status, ttfc=-1.0)
        now = perf_counter()
        pending = rest
        while True:
            if pending:
                completed = decoder.feed(pending)
                pending = b""
                if completed:
                    if result.ttfc < 0:
                        result.ttfc = now - t0
                    result.events_per_read.append(completed)
                    result.event_times.extend([now] * completed)
            if decoder.done:
                break
            data = sock.recv(65536)
            now = perf_counter()
            if not data:
                if decoder.chunked or decoder.remaining is not None:
                    raise BenchError(f"connection closed mid-body after {decoder.events} events")
                break
            pending = data
        self.leftover = b""
        result.events = decoder.events
        result.done_seen = b"data: [DONE]" in decoder.data
        if resp_headers.get("connection", "").lower() == "close":
            self.close()
        return result


def summarize(values: list[float], scale: float = 1000.0) -> dict[str, float | None]:
    """p50/p90/p99/max/mean of ``values`` (seconds), in milliseconds by default."""
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)

    def pct(p: float) -> float:
        k = max(0, min(len(ordered) - 1, round(p / 100.0 * (len(ordered) - 1))))
        return ordered[k] * scale

    return {
        "n": len(values),
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "max": ordered[-1] * scale,
        "mean": statistics.fmean(values) * scale,
    }


# --- many open streams at once (memory test) -------------------------------------------------


@dataclass
class HeldStreams:
    total: int
    opened: int = 0  # got status 200 and a first event
    finished: int = 0  # read to the end, [DONE] included
    resolved: int = 0  # opened, or failed before opening
    errors: dict[str, int] = field(default_factory=dict)
    all_resolved: asyncio.Event = field(default_factory=asyncio.Event)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def resolve(self) -> None:
        self.resolved += 1
        if self.resolved >= self.total:
            self.all_resolved.set()

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


async def _held_stream(
    host: str,
    port: int,
    request: bytes,
    state: HeldStreams,
    gate: asyncio.Semaphore,
    open_timeout: float,
) -> None:
    """One stream: open it, wait for its first event, then read it to the end.

    Reading the rest has no timeout of its own: the caller releases the upstream
    and then cancels whatever has not finished in time.
    """
    opened = False
    writer: asyncio.StreamWriter | None = None
    try:
        async with gate:
            reader, opened_writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), open_timeout
            )
            writer = opened_writer
            opened_writer.write(request)
            await opened_writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), open_timeout)
            status, headers = _parse_head(head[:-4])
            if status != 200:
                state.error(f"status_{status}")
                return
            decoder = Body(headers)
            while decoder.events == 0 and not decoder.done:
                data = await asyncio.wait_for(reader.read(65536), open_timeout)
                if not data:
                    break
                decoder.feed(data)
            if decoder.events == 0:
                state.error("no_first_event")
                return
        opened = True
        state.opened += 1
        state.resolve()
        while not decoder.done:
            data = await reader.read(65536)
            if not data:
                break
            decoder.feed(data)
        if not decoder.done or b"data: [DONE]" not in decoder.data:
            state.error("incomplete")
            return
        state.finished += 1
    except asyncio.CancelledError:
        state.error("not_finished_after_release" if opened else "cancelled_opening")
        raise
    except TimeoutError:
        state.error("timeout_opening")
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        state.error(type(exc).__name__)
    except BenchError:
        state.error("bad_response")
    finally:
        if not opened:
            state.resolve()
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()


def start_held_streams(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    count: int,
    *,
    opening_concurrency: int = 50,
    open_timeout: float = 30.0,
) -> tuple[HeldStreams, list[asyncio.Task[None]]]:
    """Open ``count`` streams that the upstream holds after their first event.

    Returns at once; ``state.all_resolved`` is set when every stream has either
    received its first event or failed. ``open_timeout`` bounds each step of
    opening (connect, response head, first event).
    """
    state = HeldStreams(total=count)
    gate = asyncio.Semaphore(opening_concurrency)
    request = build_request(host, port, path, body, headers)
    tasks = [
        asyncio.create_task(_held_stream(host, port, request, state, gate, open_timeout))
        for _ in range(count)
    ]
    return state, tasks
