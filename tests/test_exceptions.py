"""The exception tree (router/exceptions.py): where each exception sits under the one
root."""

from __future__ import annotations

from router.exceptions import (
    ConfigError,
    DetectUserIdError,
    Forbidden,
    InvalidCustomHeader,
    InvalidLimit,
    InvalidUserId,
    MemoryBackendError,
    MemoryConfigError,
    MemoryNotFound,
    MemoryOff,
    MemoryRouterError,
    MemorySetupError,
    RequestRefused,
    SetupError,
    TransientMemoryError,
)


def test_the_memory_part_of_the_tree() -> None:
    assert issubclass(MemoryConfigError, ConfigError)
    assert issubclass(MemorySetupError, SetupError)
    assert all(issubclass(e, RequestRefused) for e in (MemoryOff, MemoryNotFound, InvalidLimit))
    assert issubclass(TransientMemoryError, MemoryBackendError)
    assert issubclass(MemoryBackendError, MemoryRouterError)
    assert issubclass(InvalidUserId, MemoryRouterError) and issubclass(InvalidUserId, ValueError)


def test_the_tree() -> None:
    assert issubclass(ConfigError, SetupError) and issubclass(SetupError, MemoryRouterError)
    assert issubclass(InvalidCustomHeader, RequestRefused) and issubclass(Forbidden, RequestRefused)
    # a custom detect_user_id's bad answer is still a ValueError for callers that expect one
    assert issubclass(DetectUserIdError, ValueError)
