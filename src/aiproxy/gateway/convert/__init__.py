"""Protocol translators between vendor wire formats: pure functions (and incremental stream converters).

No I/O and no pydantic: they run on the relay's hot path over decoded JSON and raw SSE bytes.
"""

from __future__ import annotations

from .gemini_chat import chat_request_to_gemini, gemini_usage
from .openai_claude import (
    ClaudeToChatStream,
    chat_request_to_claude,
    claude_error_to_openai,
    claude_response_to_chat,
    wants_stream_usage,
)
from .sse import SSEParser

__all__ = [
    "ClaudeToChatStream",
    "SSEParser",
    "chat_request_to_claude",
    "chat_request_to_gemini",
    "claude_error_to_openai",
    "claude_response_to_chat",
    "gemini_usage",
    "wants_stream_usage",
]
