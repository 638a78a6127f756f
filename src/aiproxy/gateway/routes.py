"""Which proxy endpoint a path is, in the forms clients really send.

Clients are configured with a base URL and append their own paths: `/claude/v1/messages`,
`/openai/v1/chat/completions`, `/gemini/v1beta/models/{m}:streamGenerateContent`, and the
Responses API under several prefixes. Anything else is not the gateway's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import CLAUDE, GEMINI, OPENAI, RESPONSES


@dataclass(frozen=True, slots=True)
class Endpoint:
    family: str  # the protocol the client speaks
    kind: str  # messages | count_tokens | chat | gemini_chat | gemini_native | responses | models
    # | compact | input_tokens (Responses sub-paths with a model) | a STORED_KINDS kind
    model: str = ""  # from the path (Gemini native)
    action: str = ""  # generateContent | streamGenerateContent | countTokens
    version: str = "v1beta"
    methods: tuple[str, ...] = ("POST",)
    response_id: str = ""  # a stored response the path names (STORED_KINDS)


_STATIC = {
    "/claude/v1/messages": Endpoint(CLAUDE, "messages"),
    "/claude/messages": Endpoint(CLAUDE, "messages"),
    "/claude/v1/messages/count_tokens": Endpoint(CLAUDE, "count_tokens"),
    "/claude/v1/models": Endpoint(CLAUDE, "models", methods=("GET",)),
    "/openai/v1/chat/completions": Endpoint(OPENAI, "chat"),
    "/openai/chat/completions": Endpoint(OPENAI, "chat"),
    "/openai/v1/models": Endpoint(OPENAI, "models", methods=("GET",)),
    "/gemini/v1/chat": Endpoint(GEMINI, "gemini_chat"),
    "/gemini/v1beta/models": Endpoint(GEMINI, "models", methods=("GET",)),
    "/gemini/v1/models": Endpoint(GEMINI, "models", methods=("GET",)),
}
RESPONSES_PREFIXES = ("/responses", "/v1/responses", "/openai/responses", "/openai/v1/responses")
for _prefix in RESPONSES_PREFIXES:
    _STATIC[_prefix] = Endpoint(RESPONSES, "responses")
    _STATIC[_prefix + "/compact"] = Endpoint(RESPONSES, "compact")  # Codex's remote compaction
    _STATIC[_prefix + "/input_tokens"] = Endpoint(RESPONSES, "input_tokens")
# Model calls on a Responses sub-path, and that path on the upstream (after its `/responses`).
UPSTREAM_SUBPATHS = {"compact": "/compact", "input_tokens": "/input_tokens"}
# Free to call (neither limited nor billed) but logged like any request.
FREE_KINDS = frozenset({"count_tokens", "input_tokens"})
# Calls on one stored response, answered by the account that made it (see response_owners.py).
STORED_KINDS = frozenset({"response", "response_cancel", "response_input_items"})
_STORED_SUFFIXES = {
    "": ("response", ("GET", "DELETE")),
    "/cancel": ("response_cancel", ("POST",)),
    "/input_items": ("response_input_items", ("GET",)),
}
_STORED = re.compile(r"^(?:/openai)?(?:/v1)?/responses/([A-Za-z0-9_-]{1,200})(/cancel|/input_items)?/?$")
_GEMINI_NATIVE = re.compile(
    r"^/gemini/(v1beta|v1)/models/([^/:]+):(generateContent|streamGenerateContent|countTokens)$"
)
PREFLIGHT_PATHS = frozenset({"/", "/claude", "/claude/", "/openai", "/openai/", "/gemini", "/gemini/"})
GATEWAY_PREFIXES = ("/claude/", "/openai/", "/gemini/", "/responses", "/v1/responses")


def match(path: str) -> Endpoint | None:
    found = _STATIC.get(path)
    if found is not None:
        return found
    if path.endswith("/") and path[:-1] in _STATIC:
        return _STATIC[path[:-1]]
    native = _GEMINI_NATIVE.match(path)
    if native:
        version, model, action = native.groups()
        return Endpoint(GEMINI, "gemini_native", model=model, action=action, version=version)
    stored = _STORED.match(path)
    if stored:
        kind, methods = _STORED_SUFFIXES[stored.group(2) or ""]
        return Endpoint(RESPONSES, kind, methods=methods, response_id=stored.group(1))
    return None


def is_gateway_path(path: str) -> bool:
    return path.startswith(GATEWAY_PREFIXES)


def family_of_path(path: str) -> str:
    """The protocol to answer an unknown path in, judged by its prefix."""
    if path.startswith("/claude/"):
        return CLAUDE
    if path.startswith("/gemini/"):
        return GEMINI
    if path.startswith(RESPONSES_PREFIXES):
        return RESPONSES
    return OPENAI
