"""The routing config: its YAML format, validation, compiled rules and the decision.

Everything here is pure: loading turns a file into an immutable ``RoutingRules``
value, and ``decide`` maps request headers to a ``Decision`` without side effects.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from router.api_keys import KEY_HEADERS, api_key_from, check_key_ref, digest, resolve_key_ref
from router.exceptions import ConfigError, InvalidCustomHeader
from router.limits import RateLimits, RateLimitsSection, compile_limits

USER_ID_PATTERN = r"[A-Za-z0-9_:-]{1,100}"
USER_ID_RULE = "1-100 characters of A-Z a-z 0-9 _ : -"
_USER_ID_RE = re.compile(USER_ID_PATTERN)
# RFC 9110 token characters: what a header name may be made of.
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

Source = Literal["custom_header", "api_key", "pattern", "default", "custom_code"]
IdentitySource = Literal["custom_header", "api_key", "header_patterns"]
DEFAULT_PRECEDENCE: tuple[IdentitySource, ...] = ("custom_header", "api_key", "header_patterns")


def is_valid_user_id(value: str) -> bool:
    return _USER_ID_RE.fullmatch(value) is not None


def _check_user_id(value: str) -> str:
    if not is_valid_user_id(value):
        raise ValueError(f"invalid user id {value!r}: must be {USER_ID_RULE}")
    return value


def _check_header_name(value: str) -> str:
    if not _HEADER_NAME_RE.fullmatch(value):
        raise ValueError(f"invalid header name {value!r}")
    return value.lower()


def _check_regex(value: str) -> str:
    try:
        re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


UserId = Annotated[str, AfterValidator(_check_user_id)]
HeaderName = Annotated[str, AfterValidator(_check_header_name)]
Regex = Annotated[str, AfterValidator(_check_regex)]
KeyRef = Annotated[str, AfterValidator(check_key_ref)]


class HeaderPattern(BaseModel):
    """One rule: if ``pattern`` is found in header ``header``, the caller is ``user_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: HeaderName
    pattern: Regex
    user_id: UserId


class CustomHeaderPolicy(BaseModel):
    """Who may name their own id with the custom header. Default: anyone, any valid id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    allowed_ids: list[UserId] | None = None
    allowed_pattern: Regex | None = None
    api_keys: list[KeyRef] | None = None


class ApiKeyMapping(BaseModel):
    """One API key (by reference) and the id its caller gets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: KeyRef
    user_id: UserId


class UserIdMappings(BaseModel):
    """The ``user_id_mappings`` section of the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    custom_header: HeaderName = "x-memory-user-id"
    custom_header_policy: CustomHeaderPolicy = Field(default_factory=CustomHeaderPolicy)
    api_keys: list[ApiKeyMapping] = Field(default_factory=list)
    precedence: list[IdentitySource] = Field(default_factory=lambda: list(DEFAULT_PRECEDENCE))
    header_patterns: list[HeaderPattern] = Field(default_factory=list)
    default_user_id: UserId

    @field_validator("precedence")
    @classmethod
    def _check_precedence(cls, value: list[IdentitySource]) -> list[IdentitySource]:
        if len(set(value)) != len(value):
            raise ValueError("lists a source twice")
        return value


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


def compile_rules(
    mappings: UserIdMappings,
    *,
    source: str = "<memory>",
    digest: str = "",
    environ: Mapping[str, str] | None = None,
) -> RoutingRules:
    """Compile validated mappings. Resolves ``env:`` key references against
    ``environ`` (default ``os.environ``); an unresolvable one raises ConfigError."""
    patterns = tuple(
        CompiledPattern(i, rule, re.compile(rule.pattern, re.IGNORECASE))
        for i, rule in enumerate(mappings.header_patterns)
    )
    raw = mappings.custom_header_policy
    try:
        policy = CompiledPolicy(
            enabled=raw.enabled,
            allowed_ids=frozenset(raw.allowed_ids) if raw.allowed_ids is not None else None,
            allowed_pattern=re.compile(raw.allowed_pattern) if raw.allowed_pattern else None,
            key_digests=(
                frozenset(resolve_key_ref(k, environ) for k in raw.api_keys)
                if raw.api_keys is not None
                else None
            ),
        )
    except ValueError as exc:
        raise ConfigError(
            f"{source}: user_id_mappings.custom_header_policy: api_keys: {exc}"
        ) from None
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
        digest,
        tuple(dict.fromkeys(names)),
        policy,
        api_key_ids,
        tuple(mappings.precedence),
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
    """Parse and validate YAML text holding a ``user_id_mappings`` section."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(document, dict) or "user_id_mappings" not in document:
        raise ConfigError(f"{source}: no 'user_id_mappings' section")
    section = document["user_id_mappings"]
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: 'user_id_mappings' must be a mapping")
    try:
        mappings = UserIdMappings.model_validate(section)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    try:
        limits = RateLimitsSection.model_validate(document.get("rate_limits") or {})
    except ValidationError as exc:
        problems = "; ".join(_describe(e, "rate_limits") for e in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None
    for user_id in limits.per_user_id:
        if not is_valid_user_id(user_id):
            raise ConfigError(
                f"{source}: rate_limits.per_user_id: invalid user id {user_id!r}: "
                f"must be {USER_ID_RULE}"
            )
    text_digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    rules = compile_rules(mappings, source=source, digest=text_digest, environ=environ)
    return dataclasses.replace(rules, limits=compile_limits(limits))


def load_rules(path: str | Path, environ: Mapping[str, str] | None = None) -> RoutingRules:
    """Read, validate and compile the routing rules in ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config is not UTF-8 text") from None
    return parse_rules(text, source=str(path), environ=environ)


def _describe(error: Mapping[str, Any], section: str = "user_id_mappings") -> str:
    loc = list(error.get("loc", ()))
    where = section
    if len(loc) >= 2 and loc[0] == "header_patterns" and isinstance(loc[1], int):
        where += f".header_patterns[{loc[1]}] (rule {loc[1] + 1})"
        loc = loc[2:]
    elif len(loc) >= 2 and loc[0] == "api_keys" and isinstance(loc[1], int):
        where += f".api_keys[{loc[1]}] (key {loc[1] + 1})"
        loc = loc[2:]
    field_path = ".".join(str(p) for p in loc)
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown key"
    elif error.get("type") == "missing":
        message = "required field is missing"
    return f"{where}: {field_path}: {message}" if field_path else f"{where}: {message}"
