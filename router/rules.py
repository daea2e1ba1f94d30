"""The routing config: its YAML format, validation, compiled rules and the decision.

Everything here is pure: loading turns a file into an immutable ``RoutingRules``
value, and ``decide`` maps request headers to a ``Decision`` without side effects.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

USER_ID_PATTERN = r"[A-Za-z0-9_:-]{1,100}"
USER_ID_RULE = "1-100 characters of A-Z a-z 0-9 _ : -"
_USER_ID_RE = re.compile(USER_ID_PATTERN)
# RFC 9110 token characters: what a header name may be made of.
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

Source = Literal["custom_header", "pattern", "default", "custom_code"]


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


class HeaderPattern(BaseModel):
    """One rule: if ``pattern`` is found in header ``header``, the caller is ``user_id``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    header: HeaderName
    pattern: Regex
    user_id: UserId


class UserIdMappings(BaseModel):
    """The ``user_id_mappings`` section of the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    custom_header: HeaderName = "x-memory-user-id"
    header_patterns: list[HeaderPattern] = Field(default_factory=list)
    default_user_id: UserId


class ConfigError(Exception):
    """The routing config cannot be used. The message names the file and the problem."""


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
        if self.source == "custom_code":
            return f"custom detect_user_id -> {self.user_id}"
        return f"no rule matched -> default {self.user_id}"


class InvalidCustomHeader(Exception):
    """The caller named its own user id, but the value is not a valid id."""

    def __init__(self, header: str, problem: str) -> None:
        super().__init__(f"header {header}: {problem}")
        self.header = header
        self.problem = problem


@dataclass(frozen=True, slots=True, eq=False)
class RoutingRules:
    """Compiled, immutable routing rules. Build with ``load_rules`` or ``compile_rules``."""

    mappings: UserIdMappings
    patterns: tuple[CompiledPattern, ...]
    source: str = "<memory>"
    digest: str = ""
    header_names: tuple[str, ...] = field(default=())

    @property
    def custom_header(self) -> str:
        return self.mappings.custom_header

    @property
    def default_user_id(self) -> str:
        return self.mappings.default_user_id

    def known_user_ids(self) -> frozenset[str]:
        """Every id the config itself can produce."""
        return frozenset([self.default_user_id, *(p.rule.user_id for p in self.patterns)])


def compile_rules(
    mappings: UserIdMappings, *, source: str = "<memory>", digest: str = ""
) -> RoutingRules:
    patterns = tuple(
        CompiledPattern(i, rule, re.compile(rule.pattern, re.IGNORECASE))
        for i, rule in enumerate(mappings.header_patterns)
    )
    names = dict.fromkeys([mappings.custom_header, *(p.rule.header for p in patterns)])
    return RoutingRules(mappings, patterns, source, digest, tuple(names))


def decide(rules: RoutingRules, headers: Mapping[str, str]) -> Decision:
    """Decide the user id for a request. ``headers`` must have lower-case names.

    The custom header wins; then the first pattern, in file order, found in its
    header; then the default. An invalid custom header raises
    ``InvalidCustomHeader``: falling back to another id would mix two tenants.
    """
    claimed = headers.get(rules.custom_header)
    if claimed is not None:
        if not claimed:
            raise InvalidCustomHeader(rules.custom_header, f"is empty; it must be {USER_ID_RULE}")
        if not is_valid_user_id(claimed):
            raise InvalidCustomHeader(
                rules.custom_header, f"is not a valid user id; it must be {USER_ID_RULE}"
            )
        return Decision(claimed, "custom_header")
    for compiled in rules.patterns:
        value = headers.get(compiled.rule.header)
        if value is not None and compiled.regex.search(value):
            return Decision(compiled.rule.user_id, "pattern", compiled, value)
    return Decision(rules.default_user_id, "default")


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


def parse_rules(text: str, *, source: str = "<memory>") -> RoutingRules:
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
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return compile_rules(mappings, source=source, digest=digest)


def load_rules(path: str | Path) -> RoutingRules:
    """Read, validate and compile the routing rules in ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config is not UTF-8 text") from None
    return parse_rules(text, source=str(path))


def _describe(error: Mapping[str, Any]) -> str:
    loc = list(error.get("loc", ()))
    where = "user_id_mappings"
    if len(loc) >= 2 and loc[0] == "header_patterns" and isinstance(loc[1], int):
        where += f".header_patterns[{loc[1]}] (rule {loc[1] + 1})"
        loc = loc[2:]
    field_path = ".".join(str(p) for p in loc)
    message = str(error.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown key"
    elif error.get("type") == "missing":
        message = "required field is missing"
    return f"{where}: {field_path}: {message}" if field_path else f"{where}: {message}"
