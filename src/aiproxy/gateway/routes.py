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
    model: str = ""  # from the path (Gemini native)
    action: str = ""  # generateContent | streamGenerateContent | countTokens
    version: str = "v1beta"


_STATIC = {
    "/claude/v1/messages": Endpoint(CLAUDE, "messages"),
    "/claude/messages": Endpoint(CLAUDE, "messages"),
    "/claude/v1/messages/count_tokens": Endpoint(CLAUDE, "count_tokens"),
    "/claude/v1/models": Endpoint(CLAUDE, "models"),
    "/openai/v1/chat/completions": Endpoint(OPENAI, "chat"),
    "/openai/chat/completions": Endpoint(OPENAI, "chat"),
    "/openai/v1/models": Endpoint(OPENAI, "models"),
    "/gemini/v1/chat": Endpoint(GEMINI, "gemini_chat"),
    "/gemini/v1beta/models": Endpoint(GEMINI, "models"),
    "/gemini/v1/models": Endpoint(GEMINI, "models"),
    "/responses": Endpoint(RESPONSES, "responses"),
    "/v1/responses": Endpoint(RESPONSES, "responses"),
    "/openai/responses": Endpoint(RESPONSES, "responses"),
    "/openai/v1/responses": Endpoint(RESPONSES, "responses"),
}
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
    return None


def is_gateway_path(path: str) -> bool:
    return path.startswith(GATEWAY_PREFIXES)


def family_of_path(path: str) -> str:
    """The protocol to answer an unknown path in, judged by its prefix."""
    if path.startswith("/claude/"):
        return CLAUDE
    if path.startswith("/gemini/"):
        return GEMINI
    return OPENAI
