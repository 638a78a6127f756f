"""Which client sent a request (Claude Code, Codex CLI, an official SDK, …) and whether it may.

A client type is a User-Agent pattern, optionally a path pattern (the paths the client really
calls), and rules on headers, body fields and the system prompt. Simple mode identifies by UA
(and path) alone; strict mode also applies the type's rules to requests that carry a
conversation (model lists and token counts carry none, so they are judged on UA and path).
Patterns are regular expressions matched with `search` (anchor them with `^`), so a version
number is matched by pattern, never by a list: a newer client release keeps passing.

Rules: a required rule's field must be present and match; an optional one must match when the
field is present. Body fields are dotted paths (`metadata.user_id`, `input.0.role`). A `system`
rule passes when any block of the system prompt matches (Claude `system`, Responses
`instructions` and developer/system input items, Chat system/developer messages, Gemini
`systemInstruction`). Values are matched on their first `VALUE_CAP` characters, which keeps the
check to a few microseconds on a 30 KB system prompt.

Three lists decide: the global filter (when enabled: identified clients in `allowed_clients`,
every enabled type when that list is empty; unidentified clients per `default_allow`), and the
key's and the paying package's `allowed_clients` (when set, the client must be identified as one
of them, filter enabled or not). The compiled filter is rebuilt from the database when the
pool version moves, so an admin change holds on every instance.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from . import errors as e
from .auth import Caller
from .errors import GatewayError

VALUE_CAP = 2048  # characters of a header, field or system block that rules look at
_SYSTEM_ITEMS = 4  # leading messages/input items searched for system and developer text
RULE_TYPES = ("header", "body", "system")
# Endpoint kinds without a conversation: checked on UA and path only, even in strict mode.
BODYLESS_KINDS = frozenset({"models", "count_tokens", "input_tokens"})


class PatternError(ValueError):
    """A pattern that does not compile (refused when saved, never met at request time)."""


def compile_pattern(pattern: str, what: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise PatternError(f"{what}: invalid regular expression ({exc})") from None


@dataclass(frozen=True, slots=True)
class RuleSpec:
    id: int
    kind: str  # header | body | system
    field: str  # header name (lower case) or dotted body path; unused for system
    pattern: re.Pattern[str]
    required: bool
    header: bytes = b""
    path: tuple[str, ...] = ()

    @classmethod
    def build(cls, *, id: int, kind: str, field: str, pattern: str, required: bool) -> RuleSpec:
        if kind not in RULE_TYPES:
            raise PatternError(f"rule_type: must be one of {', '.join(RULE_TYPES)}")
        field = field.strip()
        if kind != "system" and not field:
            raise PatternError("field_name: required for header and body rules")
        compiled = compile_pattern(pattern, "pattern")
        name = field.lower() if kind == "header" else field
        return cls(
            id,
            kind,
            name,
            compiled,
            required,
            header=name.encode("latin-1", "replace") if kind == "header" else b"",
            path=tuple(name.split(".")) if kind == "body" else (),
        )

    def describe(self) -> str:
        return "system prompt" if self.kind == "system" else f"{self.kind} {self.field}"


@dataclass(frozen=True, slots=True)
class ClientTypeSpec:
    id: int
    name: str
    display_name: str
    ua: re.Pattern[str]
    paths: re.Pattern[str] | None
    rules: tuple[RuleSpec, ...]


@dataclass(frozen=True, slots=True)
class Identification:
    """Who the client is (None: no enabled type matched) and, for the test route, why."""

    client: str | None
    ua_matched: bool = False
    headers_valid: bool = False
    body_valid: bool = False
    rule_id: int | None = None  # the rule that failed, when one did
    reason: str = ""  # why the UA-matched type was not confirmed


UNIDENTIFIED = Identification(None, reason="User-Agent matches no enabled client type")


def _field(payload: Any, path: tuple[str, ...]) -> Any:
    value = payload
    for step in path:
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return None
    return value


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value[:VALUE_CAP]
    try:
        return orjson.dumps(value).decode()[:VALUE_CAP]
    except orjson.JSONEncodeError:
        return ""


def _block_texts(content: Any) -> Iterator[str]:
    """Text of a message's content: a string, or text parts (`text` / `input_text`)."""
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    yield text
    elif isinstance(content, dict):  # Gemini systemInstruction: {"parts": [{"text": …}]}
        yield from _block_texts(content.get("parts"))


def system_blocks(payload: Mapping[str, Any]) -> Iterator[str]:
    """The system prompt's blocks in any of the four protocols, in order (lazily: a rule usually
    matches the first one)."""
    for name in ("system", "instructions", "systemInstruction", "system_instruction"):
        value = payload.get(name)
        if value:
            yield from _block_texts(value)
    for name in ("messages", "input"):
        items = payload.get(name)
        if isinstance(items, list):
            for item in items[:_SYSTEM_ITEMS]:
                if isinstance(item, dict) and item.get("role") in ("system", "developer"):
                    yield from _block_texts(item.get("content"))


def _rule_fails(rule: RuleSpec, headers: Mapping[bytes, bytes], payload: Mapping[str, Any]) -> str:
    """Why the rule fails: "missing", "does not match", or "" when it holds."""
    if rule.kind == "header":
        raw = headers.get(rule.header)
        if raw is None:
            return "missing" if rule.required else ""
        return "" if rule.pattern.search(raw[:VALUE_CAP].decode("latin-1")) else "does not match"
    if rule.kind == "body":
        value = _field(payload, rule.path)
        if value is None:
            return "missing" if rule.required else ""
        return "" if rule.pattern.search(_text(value)) else "does not match"
    seen = False
    for block in system_blocks(payload):
        if rule.pattern.search(block[:VALUE_CAP]):
            return ""
        seen = True
    return "does not match" if seen else "missing" if rule.required else ""


@dataclass(frozen=True, slots=True, eq=False)
class ClientFilter:
    """The compiled client filter of one pool version (immutable: swapped whole on reload)."""

    enabled: bool = False
    strict: bool = False
    allowed: frozenset[str] = frozenset()  # empty: every enabled type
    default_allow: bool = False
    types: tuple[ClientTypeSpec, ...] = ()

    @property
    def mode(self) -> str:
        return "strict" if self.strict else "simple"

    def identify(
        self,
        user_agent: str,
        path: str | None,
        headers: Mapping[bytes, bytes],
        payload: Mapping[str, Any] | None,
        *,
        strict: bool | None = None,
    ) -> Identification:
        """The first enabled type whose UA and path match and, in strict mode with a conversation
        (`payload` given), whose rules hold. `path` None skips the path patterns (the test route)."""
        strict = self.strict if strict is None else strict
        user_agent = user_agent[:VALUE_CAP]
        if not strict:
            return _identify_simple(self, user_agent, path)
        first_failure: Identification | None = None
        for spec in self.types:
            if not spec.ua.search(user_agent):
                continue
            if spec.paths is not None and path is not None and not spec.paths.search(path):
                first_failure = first_failure or Identification(
                    None, ua_matched=True, reason=f"{spec.name}: path {path} is not one of its paths"
                )
                continue
            failure = self._check_rules(spec, headers, payload)
            if failure is None:
                return Identification(spec.name, ua_matched=True, headers_valid=True, body_valid=True)
            first_failure = first_failure or failure
        return first_failure or UNIDENTIFIED

    @staticmethod
    def _check_rules(
        spec: ClientTypeSpec, headers: Mapping[bytes, bytes], payload: Mapping[str, Any] | None
    ) -> Identification | None:
        headers_valid = True
        for rule in spec.rules:
            if rule.kind != "header" and payload is None:
                continue  # no conversation to check the body against
            why = _rule_fails(rule, headers, payload or {})
            if why:
                if rule.kind == "header":
                    headers_valid = False
                return Identification(
                    None,
                    ua_matched=True,
                    headers_valid=headers_valid,
                    body_valid=rule.kind == "header",
                    rule_id=rule.id,
                    reason=f"{spec.name}: {rule.describe()} {why}",
                )
        return None

    def admits(self, found: Identification) -> bool:
        """The global filter's verdict, were it enabled."""
        if found.client is None:
            return self.default_allow
        return not self.allowed or found.client in self.allowed

    def globally_allows(self, found: Identification) -> bool:
        return not self.enabled or self.admits(found)


# Simple mode depends on the UA and path alone, which clients repeat: remembered per filter.
@functools.lru_cache(maxsize=4096)
def _identify_simple(spec: ClientFilter, user_agent: str, path: str | None) -> Identification:
    path_failure: Identification | None = None
    for client in spec.types:
        if not client.ua.search(user_agent):
            continue
        if client.paths is not None and path is not None and not client.paths.search(path):
            path_failure = path_failure or Identification(
                None, ua_matched=True, reason=f"{client.name}: path {path} is not one of its paths"
            )
            continue
        return Identification(client.name, ua_matched=True, headers_valid=True, body_valid=True)
    return path_failure or UNIDENTIFIED


def build_filter(config: Any, types: Iterable[Any], rules: Iterable[Any]) -> ClientFilter:
    """The compiled filter from stored rows (settings row or None, client types, rules); disabled
    types and rules are left out. Stored patterns were checked on save; one that still fails to
    compile (written around the API) leaves its type out rather than failing every request."""
    by_type: dict[int, list[RuleSpec]] = {}
    broken: set[int] = set()
    for rule in rules:
        if not rule.enabled:
            continue
        try:
            spec = RuleSpec.build(
                id=rule.id,
                kind=rule.rule_type,
                field=rule.field_name,
                pattern=rule.pattern,
                required=rule.required,
            )
        except PatternError:
            broken.add(rule.client_type_id)
            continue
        by_type.setdefault(rule.client_type_id, []).append(spec)
    compiled = []
    for row in types:
        if not row.enabled or row.id in broken:
            continue
        try:
            ua = compile_pattern(row.ua_pattern, "ua_pattern")
            paths = compile_pattern(row.path_pattern, "path_pattern") if row.path_pattern else None
        except PatternError:
            continue
        # Header rules first: the cheapest, and a failed one then says "headers" unambiguously.
        specs = sorted(by_type.get(row.id, ()), key=lambda rule: (rule.kind != "header", rule.id))
        compiled.append(ClientTypeSpec(row.id, row.name, row.display_name, ua, paths, tuple(specs)))
    if config is None:
        return ClientFilter(types=tuple(compiled))
    return ClientFilter(
        enabled=bool(config.filter_enabled),
        strict=config.filter_mode == "strict",
        allowed=frozenset(config.allowed_clients or ()),
        default_allow=bool(config.default_allow),
        types=tuple(compiled),
    )


def check_client(
    spec: ClientFilter,
    caller: Caller,
    headers: Mapping[bytes, bytes],
    path: str,
    payload: Mapping[str, Any] | None,
) -> str | None:
    """The client type of a request (None: unidentified or not asked), refusing it with 403 when the
    global filter or the key does not allow it. Costs nothing when no filter and no list applies.
    `payload` is None for calls without a conversation (model lists, token counts)."""
    if not (spec.enabled or caller.allowed_clients is not None or caller.package_clients):
        return None
    user_agent = headers.get(b"user-agent", b"").decode("latin-1")
    found = spec.identify(user_agent, path, headers, payload)
    if not spec.globally_allows(found):
        raise GatewayError(403, e.CLIENT_FORBIDDEN, detail=_why(found))
    if caller.allowed_clients is not None and found.client not in caller.allowed_clients:
        raise GatewayError(403, e.KEY_CLIENT_FORBIDDEN, detail=_why(found))
    return found.client


def _why(found: Identification) -> str:
    if found.client is None:
        return f"client filter: {found.reason}"
    return f"client filter: client {found.client} not allowed"
