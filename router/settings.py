"""Process settings: one pydantic-settings class, read from flags, env and ``.env``.

Precedence: command-line flags (passed as init arguments) > environment > ``.env``
> defaults. Nothing is read at import time: call ``load_settings``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from router.exceptions import SettingsError
from router.logs import MIN_SECRET_LENGTH

LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="MEMORY_ROUTER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=1, le=65535)
    litellm_url: str = Field(
        "http://localhost:4000", validation_alias=_env("LITELLM_URL", "MEMORY_ROUTER_LITELLM_URL")
    )
    config: Path | None = Field(
        None, validation_alias=_env("MEMORY_ROUTER_CONFIG", "MEMORY_ROUTER_CONFIG_PATH")
    )
    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL", "MEMORY_ROUTER_LOG_LEVEL"))
    supermemory_api_key: SecretStr | None = Field(
        None, validation_alias=_env("SUPERMEMORY_API_KEY", "MEMORY_ROUTER_SUPERMEMORY_API_KEY")
    )
    # LiteLLM's key: the router never uses it. It is read only to warn about the
    # placeholder from .env.example, and to keep it out of the logs.
    litellm_master_key: SecretStr | None = Field(
        None, validation_alias=_env("LITELLM_MASTER_KEY")
    )

    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1)
    max_header_bytes: int = Field(32 * 1024, ge=1024)
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(600.0, gt=0)
    pool_timeout: float = Field(10.0, gt=0)
    max_connections: int = Field(4096, ge=1)
    # Below uvicorn's 5 s keep-alive (LiteLLM runs on it): an idle connection is
    # dropped here before the upstream can close it under a request being written.
    keepalive_expiry: float = Field(4.0, ge=0)
    max_user_id_labels: int = Field(100, ge=1)
    litellm_end_user_header: bool = True

    redis_url: SecretStr | None = Field(
        None, validation_alias=_env("REDIS_URL", "MEMORY_ROUTER_REDIS_URL")
    )
    rate_limit_fail_open: bool = True

    watch_config: bool = True
    watch_force_polling: bool = False
    drain_seconds: float = Field(30.0, ge=0)
    control_access: Literal["open", "loopback", "token"] = "open"
    control_token: SecretStr | None = None

    @model_validator(mode="after")
    def _check_control(self) -> Settings:
        if self.control_access == "token" and self.control_token is None:
            raise ValueError("control_access=token needs MEMORY_ROUTER_CONTROL_TOKEN to be set")
        return self

    @field_validator("config", mode="before")
    @classmethod
    def _blank_config(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("litellm_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")) or value[-3:] == "://":
            raise ValueError("must be an http:// or https:// URL, e.g. http://localhost:4000")
        if "?" in value or "#" in value:
            raise ValueError("must not contain a query or fragment")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("supermemory_api_key", "control_token")
    @classmethod
    def _check_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value().strip()
        if not raw:
            return None
        # The key goes into a header: refuse anything that could break one.
        if any(not (0x21 <= ord(c) <= 0x7E) for c in raw):
            raise ValueError("contains whitespace, control or non-ASCII characters")
        # A secret this short is a mistake, and one the log filter could not scrub
        # without mangling every line that holds its characters.
        if len(raw) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"is {len(raw)} character{'s' if len(raw) != 1 else ''} long: too short "
                f"to be a real key (at least {MIN_SECRET_LENGTH})"
            )
        return SecretStr(raw)

    @field_validator("litellm_master_key")
    @classmethod
    def _blank_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return SecretStr(value.get_secret_value().strip())

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @property
    def supermemory_key(self) -> str | None:
        return self.supermemory_api_key.get_secret_value() if self.supermemory_api_key else None

    @property
    def secrets(self) -> list[str]:
        """Values that must never appear in a log line or an answer: those long enough
        to scrub (``router.logs.MIN_SECRET_LENGTH``; the router's own keys are refused
        when shorter)."""
        held = (
            self.supermemory_api_key,
            self.control_token,
            self.redis_url,
            self.litellm_master_key,
        )
        return [
            s.get_secret_value()
            for s in held
            if s is not None and len(s.get_secret_value()) >= MIN_SECRET_LENGTH
        ]

    @property
    def log_level_number(self) -> int:
        return int(logging.getLevelName(self.log_level))

    # --- Memory (issue 14) -------------------------------------------------------------
    # Which backend retrieves and stores memories. supermemory-router: Supermemory's proxy
    # does it (headers only, as before); supermemory-api: the router calls Supermemory's
    # v5 API itself; local: one SQLite file; off: identity and metrics only.
    memory_backend: Literal["supermemory-router", "supermemory-api", "local", "off"] = (
        "supermemory-router"
    )
    memory_api_url: str = "https://api.supermemory.ai"
    memory_api_timeout: float = Field(10.0, gt=0)
    memory_local_path: Path = Path("memory-router.sqlite3")
    memory_budget_seconds: float = Field(0.3, gt=0, le=10)
    memory_search_limit: int = Field(5, ge=1, le=50)
    memory_queue_size: int = Field(1000, ge=1)
    memory_store_attempts: int = Field(4, ge=1, le=20)
    memory_store_backoff_seconds: float = Field(0.5, ge=0)

    @field_validator("memory_api_url")
    @classmethod
    def _check_memory_api_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")) or value[-3:] == "://":
            raise ValueError("must be an http:// or https:// URL, e.g. http://localhost:6767")
        if "?" in value or "#" in value:
            raise ValueError("must not contain a query or fragment")
        return value

    @property
    def memory_in_router(self) -> bool:
        """Whether the router itself retrieves and stores (``supermemory-api``, ``local``)."""
        return self.memory_backend in ("supermemory-api", "local")

    @property
    def supermemory_headers(self) -> bool:
        """Whether requests carry ``x-sm-user-id`` and the key: only for Supermemory's
        memory router, which applies the memory itself."""
        return self.memory_backend == "supermemory-router"

    @model_validator(mode="after")
    def _check_memory(self) -> Settings:
        if self.memory_backend == "supermemory-api" and self.supermemory_api_key is None:
            raise ValueError("memory_backend=supermemory-api needs SUPERMEMORY_API_KEY to be set")
        return self


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, with ``overrides`` (CLI flags) winning.

    ``None`` overrides are ignored, so unset flags fall through to env and defaults.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ())) or "settings"
            problems.append(f"{where}: {error.get('msg', 'invalid')}".replace("Value error, ", ""))
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
