"""Compiled routing rules and the decision.

``compile_rules`` turns a validated config (``router.config``) into an immutable
``RoutingRules`` value: regexes compiled, API key references resolved to
digests, rate limits and the memory switches compiled, the header names the
rules read listed once.
``decide`` maps request headers to a ``Decision`` without side effects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from router.api_keys import KEY_HEADERS, api_key_from, digest, resolve_key_ref
from router.config import (
    DEFAULT_PRECEDENCE,
    ConfigFile,
    HeaderPattern,
    IdentitySource,
    UserIdMappings,
    load_config,
    parse_config,
)
from router.exceptions import ConfigError, InvalidCustomHeader
from router.memory.config import MemoryPolicy, compile_memory
from router.ratelimit.config import RateLimits, compile_limits
from router.user_ids import USER_ID_RULE, is_valid_user_id

Source = Literal["custom_header", "api_key", "pattern", "default", "custom_code"]


@dataclass(frozen=True, slots=True)
class CompiledPattern:
    index: int
    rule: HeaderPattern
    regex: re.Pattern[str]

    def describe(self, value: str) -> str:
        return f"{self.rule.header}={value!r} -> {self.rule.user_id}"


@dataclass(frozen=True, slots=True)
class Decision:
    """Which user id a request gets, and why."""

    user_id: str
    source: Source
    pattern: CompiledPattern | None = None
    matched_value: str | None = None

    @property
    def reason(self) -> str:
        if self.source == "pattern" and self.pattern is not None:
            return self.pattern.describe(self.matched_value or "")
        if self.source == "custom_header":
            return f"custom header -> {self.user_id}"
        if self.source == "api_key":
            return f"API key -> {self.user_id}"
        if self.source == "custom_code":
            return f"custom detect_user_id -> {self.user_id}"
        return f"no rule matched -> default {self.user_id}"


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    enabled: bool = True
    allowed_ids: frozenset[str] | None = None
    allowed_pattern: re.Pattern[str] | None = None
    key_digests: frozenset[str] | None = None

    def refusal(self, user_id: str, api_key: str | None) -> str | None:
        """Why ``user_id`` may not be claimed, or None when it may."""
        if self.allowed_ids is not None or self.allowed_pattern is not None:
            listed = self.allowed_ids is not None and user_id in self.allowed_ids
            matched = self.allowed_pattern is not None and bool(
                self.allowed_pattern.fullmatch(user_id)
            )
            if not (listed or matched):
                return f"names user id {user_id!r}, which the custom header policy does not allow"
        if self.key_digests is not None and (
            api_key is None or digest(api_key) not in self.key_digests
        ):
            return "may only be used with an authorized API key"
        return None


@dataclass(frozen=True, slots=True, eq=False)
class RoutingRules:
    """Compiled, immutable routing rules. Build with ``load_rules`` or ``compile_rules``."""

    mappings: UserIdMappings
    patterns: tuple[CompiledPattern, ...]
    source: str = "<memory>"
    digest: str = ""
    header_names: tuple[str, ...] = field(default=())
    policy: CompiledPolicy = field(default_factory=CompiledPolicy)
    api_key_ids: Mapping[str, str] = field(default_factory=dict)
    precedence: tuple[IdentitySource, ...] = DEFAULT_PRECEDENCE
    limits: RateLimits = field(default_factory=RateLimits)
    memory: MemoryPolicy = field(default_factory=MemoryPolicy)
    # Derived once here for the proxy, which compares raw ASGI header names (bytes).
    header_names_raw: frozenset[bytes] = field(init=False)
    custom_header_raw: bytes = field(init=False)

    def __post_init__(self) -> None:
        names = frozenset(n.encode("latin-1") for n in self.header_names)
        object.__setattr__(self, "header_names_raw", names)
        object.__setattr__(self, "custom_header_raw", self.custom_header.encode("latin-1"))

    @property
    def custom_header(self) -> str:
        return self.mappings.custom_header

    @property
    def default_user_id(self) -> str:
        return self.mappings.default_user_id

    def known_user_ids(self) -> frozenset[str]:
        """Every id the config itself can produce."""
        return frozenset(
            [
                self.default_user_id,
                *(p.rule.user_id for p in self.patterns),
                *self.api_key_ids.values(),
                *(self.policy.allowed_ids or ()),
            ]
        )


def compile_rules(file: ConfigFile, *, environ: Mapping[str, str] | None = None) -> RoutingRules:
    """Compile a validated config. Resolves ``env:`` key references against
    ``environ`` (default ``os.environ``); an unresolvable one raises ConfigError."""
    source = file.source
    mappings = file.config.user_id_mappings
    patterns = tuple(
        CompiledPattern(i, rule, re.compile(rule.pattern, re.IGNORECASE))
        for i, rule in enumerate(mappings.header_patterns)
    )
    raw = mappings.custom_header_policy
    key_digests: list[str] = []
    for i, ref in enumerate(raw.api_keys or ()):
        try:
            key_digests.append(resolve_key_ref(ref, environ))
        except ValueError as exc:
            raise ConfigError(
                f"{source}: user_id_mappings.custom_header_policy.api_keys[{i}] (key {i + 1}): "
                f"{exc}"
            ) from None
    policy = CompiledPolicy(
        enabled=raw.enabled,
        allowed_ids=frozenset(raw.allowed_ids) if raw.allowed_ids is not None else None,
        allowed_pattern=re.compile(raw.allowed_pattern) if raw.allowed_pattern else None,
        key_digests=frozenset(key_digests) if raw.api_keys is not None else None,
    )
    api_key_ids: dict[str, str] = {}
    for i, entry in enumerate(mappings.api_keys):
        try:
            api_key_ids.setdefault(resolve_key_ref(entry.key, environ), entry.user_id)
        except ValueError as exc:
            raise ConfigError(
                f"{source}: user_id_mappings.api_keys[{i}] (key {i + 1}): key: {exc}"
            ) from None
    names = [p.rule.header for p in patterns]
    if policy.enabled:
        names.insert(0, mappings.custom_header)
    if api_key_ids or policy.key_digests is not None:
        names.extend(KEY_HEADERS)
    return RoutingRules(
        mappings,
        patterns,
        source,
        file.digest,
        tuple(dict.fromkeys(names)),
        policy,
        api_key_ids,
        tuple(mappings.precedence),
        compile_limits(file.config.rate_limits),
        compile_memory(file.config.memory),
    )


def decide(rules: RoutingRules, headers: Mapping[str, str]) -> Decision:
    """Decide the user id for a request. ``headers`` must have lower-case names.

    Sources are tried in ``precedence`` order (by default: the custom header,
    then API keys, then header patterns in file order), then the default.
    A custom header that is invalid or not allowed raises ``InvalidCustomHeader``:
    falling back to another id would mix two tenants' memories.
    """
    for source in rules.precedence:
        if source == "custom_header":
            decision = _from_custom_header(rules, headers)
        elif source == "api_key":
            decision = _from_api_key(rules, headers)
        else:
            decision = _from_patterns(rules, headers)
        if decision is not None:
            return decision
    return Decision(rules.default_user_id, "default")


def _from_custom_header(rules: RoutingRules, headers: Mapping[str, str]) -> Decision | None:
    if not rules.policy.enabled:
        return None
    claimed = headers.get(rules.custom_header)
    if claimed is None:
        return None
    if not claimed:
        raise InvalidCustomHeader(rules.custom_header, f"is empty; it must be {USER_ID_RULE}")
    if not is_valid_user_id(claimed):
        raise InvalidCustomHeader(
            rules.custom_header, f"is not a valid user id; it must be {USER_ID_RULE}"
        )
    refusal = rules.policy.refusal(claimed, api_key_from(headers))
    if refusal is not None:
        raise InvalidCustomHeader(rules.custom_header, refusal, kind="not_allowed")
    return Decision(claimed, "custom_header")


def _from_api_key(rules: RoutingRules, headers: Mapping[str, str]) -> Decision | None:
    if not rules.api_key_ids:
        return None
    key = api_key_from(headers)
    if key is None:
        return None
    user_id = rules.api_key_ids.get(digest(key))
    return Decision(user_id, "api_key") if user_id is not None else None


def _from_patterns(rules: RoutingRules, headers: Mapping[str, str]) -> Decision | None:
    for compiled in rules.patterns:
        value = headers.get(compiled.rule.header)
        if value is not None and compiled.regex.search(value):
            return Decision(compiled.rule.user_id, "pattern", compiled, value)
    return None


def make_cached_decider(
    rules: RoutingRules, maxsize: int = 4096
) -> Callable[[tuple[str | None, ...]], Decision]:
    """A memoised ``decide`` keyed on the values of the headers the rules read."""

    @lru_cache(maxsize=maxsize)
    def _cached(values: tuple[str | None, ...]) -> Decision:
        return decide(
            rules, {n: v for n, v in zip(rules.header_names, values, strict=True) if v is not None}
        )

    return _cached


def parse_rules(
    text: str, *, source: str = "<memory>", environ: Mapping[str, str] | None = None
) -> RoutingRules:
    """Parse, validate and compile config text (YAML with a ``user_id_mappings`` section)."""
    return compile_rules(parse_config(text, source=source), environ=environ)


def load_rules(path: str | Path, environ: Mapping[str, str] | None = None) -> RoutingRules:
    """Read, validate and compile the routing rules in ``path``."""
    return compile_rules(load_config(path), environ=environ)
