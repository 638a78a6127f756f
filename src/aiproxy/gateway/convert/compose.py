"""Which translators serve one route: a client protocol in, an upstream protocol out, and back.

OpenAI Chat Completions is the hub: every request is made a chat request (unless it is one) and then
the upstream's request (unless that is chat); every answer is made a chat answer and then the client's.
So each protocol needs two directions to and from chat, not one per pair, and a stream is two chunk
converters chained (the chat stream between them always carries its usage chunk).

`conversion(client, upstream)` returns None for a client served in its own protocol: that path stays
untouched (the client's bytes go up, the upstream's come back).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .chat_answers_to_claude import ChatToClaudeStream, chat_error_to_claude, chat_response_to_claude
from .chat_answers_to_gemini import ChatToGeminiStream, chat_error_to_gemini, chat_response_to_gemini
from .chat_answers_to_responses import (
    ChatToResponsesStream,
    chat_error_to_responses,
    chat_response_to_responses,
)
from .claude_to_chat import claude_request_to_chat
from .gemini_answers_to_chat import GeminiToChatStream, gemini_error_to_openai, gemini_response_to_chat
from .gemini_chat import chat_request_to_gemini
from .gemini_to_chat import gemini_request_to_chat
from .openai_claude import (
    ClaudeToChatStream,
    chat_request_to_claude,
    claude_error_to_openai,
    claude_response_to_chat,
)
from .openai_responses import (
    ResponsesToChatStream,
    chat_request_to_responses,
    responses_error_to_openai,
    responses_response_to_chat,
)
from .refusal import Unconvertible
from .responses_to_chat import responses_request_to_chat

__all__ = ["CLIENT_PROTOCOLS", "Conversion", "conversion"]

CLAUDE, CHAT, RESPONSES, GEMINI = "claude", "openai", "responses", "gemini"
GEMINI_CHAT = "gemini_chat"  # /gemini/v1/chat: a chat body in, Gemini answers out
# Client protocol → (the protocol of its requests, the protocol of its answers).
CLIENT_PROTOCOLS = {
    CLAUDE: (CLAUDE, CLAUDE),
    CHAT: (CHAT, CHAT),
    RESPONSES: (RESPONSES, RESPONSES),
    GEMINI: (GEMINI, GEMINI),
    GEMINI_CHAT: (CHAT, GEMINI),
}

Json = dict[str, Any]
RequestStep = Callable[..., Json]
AnswerStep = Callable[..., Json]
ErrorStep = Callable[[int, bytes], bytes]

# A chat field a later step refuses, as the client named it (so the 400 names the client's own field).
_CLIENT_FIELDS = {
    CLAUDE: {"stop": "stop_sequences", "max_completion_tokens": "max_tokens"},
    GEMINI: {
        "stop": "generationConfig.stopSequences",
        "presence_penalty": "generationConfig.presencePenalty",
        "frequency_penalty": "generationConfig.frequencyPenalty",
    },
    RESPONSES: {"max_completion_tokens": "max_output_tokens"},
}

_TO_CHAT_REQUEST: dict[str, RequestStep] = {
    CLAUDE: claude_request_to_chat,
    RESPONSES: responses_request_to_chat,
    GEMINI: gemini_request_to_chat,
}
_FROM_CHAT_REQUEST: dict[str, RequestStep] = {
    CLAUDE: lambda body, *, model, stream: chat_request_to_claude(body, model=model),
    RESPONSES: lambda body, *, model, stream: chat_request_to_responses(body, model=model),
    GEMINI: lambda body, *, model, stream: chat_request_to_gemini(body),
}
# Upstream protocol → its answer, stream and error as chat.
_TO_CHAT_ANSWER: dict[str, tuple[AnswerStep, type, ErrorStep]] = {
    CLAUDE: (claude_response_to_chat, ClaudeToChatStream, claude_error_to_openai),
    RESPONSES: (responses_response_to_chat, ResponsesToChatStream, responses_error_to_openai),
    GEMINI: (gemini_response_to_chat, GeminiToChatStream, gemini_error_to_openai),
}
# Chat → the client's answer and error (the stream converters take different options: see `stream`).
_FROM_CHAT_ANSWER: dict[str, tuple[AnswerStep, ErrorStep]] = {
    CLAUDE: (chat_response_to_claude, chat_error_to_claude),
    RESPONSES: (chat_response_to_responses, chat_error_to_responses),
    GEMINI: (chat_response_to_gemini, chat_error_to_gemini),
}


class ChainedStream:
    """Two chunk converters in a row: the upstream's stream → chat → the client's stream."""

    __slots__ = ("content_type", "first", "second")

    def __init__(self, first: Any, second: Any) -> None:
        self.first, self.second = first, second
        self.content_type = second.content_type

    @property
    def completed(self) -> bool:
        return bool(self.second.completed)

    def feed(self, chunk: bytes) -> bytes:
        middle = self.first.feed(chunk)
        return self.second.feed(middle) if middle else b""

    def finish(self) -> bytes:
        return self.second.feed(self.first.finish()) + self.second.finish()


@dataclass(frozen=True, slots=True)
class Conversion:
    """The translators of one (client protocol, upstream protocol) pair; a step is None when the
    protocols already agree on that side (e.g. /gemini/v1/chat on a Gemini account: answers pass)."""

    client: str
    upstream: str
    request_steps: tuple[RequestStep, ...]
    answer_steps: tuple[AnswerStep, ...]
    error_steps: tuple[ErrorStep, ...]

    @property
    def converts_answers(self) -> bool:
        return bool(self.answer_steps)

    def request(self, body: Json, *, model: str, stream: bool) -> Json:
        """The upstream's request body; raises `Unconvertible` for what it cannot express."""
        for i, step in enumerate(self.request_steps):
            try:
                body = step(body, model=model, stream=stream)
            except Unconvertible as exc:
                names = _CLIENT_FIELDS.get(CLIENT_PROTOCOLS[self.client][0], {}) if i else {}
                if exc.param not in names:
                    raise
                message = str(exc).removeprefix(f"{exc.param}: ")
                raise Unconvertible(names[exc.param], message) from None
        return body

    def answer(self, body: Json, *, model: str) -> Json:
        for step in self.answer_steps:
            body = step(body, model=model)
        return body

    def error(self, status: int, body: bytes) -> bytes:
        for step in self.error_steps:
            body = step(status, body)
        return body

    def stream(self, *, model: str, chat_usage: bool, gemini_sse: bool) -> Any:
        """A chunk converter for the upstream's stream (None: it passes as it is).

        `chat_usage`: a chat client asked for the usage chunk; `gemini_sse`: a Gemini client asked for
        SSE (``alt=sse``) rather than one JSON array."""
        _, answer_protocol = CLIENT_PROTOCOLS[self.client]
        if not self.answer_steps:
            return None
        if answer_protocol == CHAT:
            return _TO_CHAT_ANSWER[self.upstream][1](model=model, include_usage=chat_usage)
        if answer_protocol == CLAUDE:
            second: Any = ChatToClaudeStream(model=model)
        elif answer_protocol == RESPONSES:
            second = ChatToResponsesStream(model=model)
        else:
            second = ChatToGeminiStream(model=model, sse=gemini_sse)
        if self.upstream == CHAT:
            return second
        return ChainedStream(_TO_CHAT_ANSWER[self.upstream][1](model=model, include_usage=True), second)


def _build(client: str, upstream: str) -> Conversion | None:
    request_protocol, answer_protocol = CLIENT_PROTOCOLS[client]
    request_steps: list[RequestStep] = []
    if request_protocol != upstream:
        if request_protocol != CHAT:
            request_steps.append(_TO_CHAT_REQUEST[request_protocol])
        if upstream != CHAT:
            request_steps.append(_FROM_CHAT_REQUEST[upstream])
    answer_steps: list[AnswerStep] = []
    error_steps: list[ErrorStep] = []
    if answer_protocol != upstream:
        if upstream != CHAT:
            answer_steps.append(_TO_CHAT_ANSWER[upstream][0])
            error_steps.append(_TO_CHAT_ANSWER[upstream][2])
        if answer_protocol != CHAT:
            answer_steps.append(_FROM_CHAT_ANSWER[answer_protocol][0])
            error_steps.append(_FROM_CHAT_ANSWER[answer_protocol][1])
    if not request_steps and not answer_steps:
        return None
    return Conversion(client, upstream, tuple(request_steps), tuple(answer_steps), tuple(error_steps))


_UPSTREAMS = (CLAUDE, CHAT, RESPONSES, GEMINI)
_TABLE = {(c, u): _build(c, u) for c in CLIENT_PROTOCOLS for u in _UPSTREAMS}


def conversion(client: str, upstream: str) -> Conversion | None:
    """The translators for a client protocol served by an upstream protocol; None: nothing to convert."""
    return _TABLE[(client, upstream)]
