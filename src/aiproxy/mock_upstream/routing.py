"""Maps a request path to a vendor endpoint.

Matching is by path suffix, so vendor prefixes are optional: ``/v1/messages`` and ``/messages``,
``/v1/chat/completions`` and ``/openai/deployments/{d}/chat/completions``, ``/v1/responses`` and
``/backend-api/codex/responses``, ``/v1beta/models/{m}:generateContent`` and ``/v1/models/{m}:...``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from . import anthropic, bedrock, code_assist, gemini, openai, responses, responses_stored
from .common import Call

Handler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Vendor:
    name: str
    extract_key: Callable[[web.Request], str | None]
    error: Callable[..., web.Response]
    missing_key_message: str


ANTHROPIC = Vendor("anthropic", anthropic.extract_key, anthropic.error, anthropic.MISSING_KEY_MESSAGE)
OPENAI = Vendor("openai", openai.extract_key, openai.error, openai.MISSING_KEY_MESSAGE)
GEMINI = Vendor("gemini", gemini.extract_key, gemini.error, gemini.MISSING_KEY_MESSAGE)
BEDROCK = Vendor("bedrock", bedrock.extract_key, bedrock.error, bedrock.MISSING_KEY_MESSAGE)


@dataclass(frozen=True, slots=True)
class Route:
    vendor: Vendor
    endpoint: str
    handler: Handler
    model: str = ""  # model named by the path (Gemini, Azure deployment, GET /models/{id})


# Order matters: count_tokens must win over messages.
_POST_SUFFIXES: tuple[tuple[str, Vendor, str, Handler], ...] = (
    ("/messages/count_tokens", ANTHROPIC, "messages.count_tokens", anthropic.count_tokens),
    ("/messages", ANTHROPIC, "messages", anthropic.messages),
    ("/chat/completions", OPENAI, "chat.completions", openai.chat_completions),
    ("/responses/compact", OPENAI, "responses.compact", responses_stored.compact),
    ("/responses/input_tokens", OPENAI, "responses.input_tokens", responses_stored.input_tokens),
    ("/responses", OPENAI, "responses", responses.create),
)
# Calls on one stored response: (method, suffix after the id) → endpoint, handler.
_STORED_RESPONSE = re.compile(r"/responses/([A-Za-z0-9_-]+)(/cancel|/input_items)?$")
_STORED_CALLS: dict[tuple[str, str], tuple[str, Handler]] = {
    ("GET", ""): ("responses.retrieve", responses_stored.retrieve),
    ("DELETE", ""): ("responses.delete", responses_stored.delete),
    ("POST", "/cancel"): ("responses.cancel", responses_stored.cancel),
    ("GET", "/input_items"): ("responses.input_items", responses_stored.list_input_items),
}
_GEMINI_ACTIONS: dict[str, Handler] = {
    "generateContent": gemini.generate_content,
    "streamGenerateContent": gemini.stream_generate_content,
    "countTokens": gemini.count_tokens,
}
_CODE_ASSIST_ACTIONS: dict[str, Handler] = {
    "generateContent": code_assist.generate_content,
    "streamGenerateContent": code_assist.stream_generate_content,
    "countTokens": code_assist.count_tokens,
}
_LIST_MODELS = {ANTHROPIC: anthropic.list_models, OPENAI: openai.list_models, GEMINI: gemini.list_models}
_GET_MODEL = {ANTHROPIC: anthropic.get_model, OPENAI: openai.get_model, GEMINI: gemini.get_model}


def classify(request: web.Request) -> Route | None:
    path = request.path.rstrip("/")
    stored = _STORED_RESPONSE.search(path)
    if stored and stored.group(1) not in ("compact", "input_tokens"):
        found = _STORED_CALLS.get((request.method, stored.group(2) or ""))
        # The response id stands in for the model (it is what the path names).
        return Route(OPENAI, *found, stored.group(1)) if found else None
    if request.method == "POST":
        return _classify_post(path)
    if request.method == "GET":
        return _classify_get(request, path)
    return None


def _classify_post(path: str) -> Route | None:
    aws = bedrock.route(path)  # /model/{modelId}/invoke...: the model id may hold ":" and "/"
    if aws is not None:
        return Route(BEDROCK, *aws)
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        return _classify_gemini(path)
    for suffix, vendor, endpoint, handler in _POST_SUFFIXES:
        if path.endswith(suffix):
            return Route(vendor, endpoint, handler, _azure_deployment(path))
    return None


def _classify_gemini(path: str) -> Route | None:
    target, _, action = path.rpartition(":")
    if target.endswith("/v1internal"):  # Code Assist: the model is in the wrapped body
        assist = _CODE_ASSIST_ACTIONS.get(action)
        return Route(GEMINI, f"codeassist.{action}", assist) if assist else None
    handler = _GEMINI_ACTIONS.get(action)
    marker = target.rfind("/models/")
    if handler is None or marker < 0:
        return None
    return Route(GEMINI, action, handler, target[marker + len("/models/") :])


def _azure_deployment(path: str) -> str:
    # /openai/deployments/{deployment}/chat/completions: the deployment stands in for the model.
    _, found, rest = path.partition("/deployments/")
    return rest.split("/", 1)[0] if found else ""


def _classify_get(request: web.Request, path: str) -> Route | None:
    vendor = _vendor_of_get(request, path)
    if path.endswith("/models"):
        return Route(vendor, "models.list", _LIST_MODELS[vendor])
    _, found, model = path.rpartition("/models/")
    if found and model:
        return Route(vendor, "models.get", _GET_MODEL[vendor], model)
    return None


def _vendor_of_get(request: web.Request, path: str) -> Vendor:
    # GET /v1/models is shared by Anthropic and OpenAI; the auth style tells the clients apart.
    headers = request.headers
    if "x-goog-api-key" in headers or "key" in request.query or "/v1beta" in path:
        return GEMINI
    if "anthropic-version" in headers or "x-api-key" in headers:
        return ANTHROPIC
    return OPENAI
