"""Waiting on a condition with a bound, never on a fixed sleep.

``wait_for`` is the one loop: it polls a condition until it gives something truthy,
optionally counting given exceptions as "not yet" (a service that is still starting).
``until_passes`` retries a check that asserts; ``await_until`` is the loop for async code,
whose condition may be a plain function or a coroutine function."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _timed_out(what: str, timeout: float, last_error: BaseException | None) -> AssertionError:
    detail = f" (last error: {last_error!r})" if last_error is not None else ""
    return AssertionError(f"{what or 'condition'} not met within {timeout:g} s{detail}")


def wait_for(
    condition: Callable[[], T | None],
    timeout: float = 5.0,
    interval: float = 0.01,
    what: str = "",
    errors: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``condition`` until it returns something truthy, and return that.

    An exception of a type in ``errors`` counts as "not yet" (the last one is named in the
    failure). Fails (AssertionError) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
        except errors as exc:
            last_error = exc
        else:
            if value:
                return value
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout, last_error)
        time.sleep(interval)


def until_passes(
    check: Callable[[], object], timeout: float = 5.0, interval: float = 0.25, what: str = ""
) -> None:
    """Retry ``check``, which asserts, until it passes; fails after ``timeout`` seconds."""

    def passes() -> bool:
        check()
        return True

    wait_for(passes, timeout, interval, what, errors=(AssertionError,))


async def await_until(
    condition: Callable[[], T | None] | Callable[[], Awaitable[T | None]],
    seconds: float = 5.0,
    interval: float = 0.01,
    what: str = "",
) -> T:
    """The async form of ``wait_for``: yields to the event loop between polls; the
    condition may be a coroutine function. Returns the truthy value."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise _timed_out(what, seconds, None)
        await asyncio.sleep(interval)
