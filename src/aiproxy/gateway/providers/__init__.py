"""One module per upstream kind; `provider_for` picks the one for an account on a client route."""

from __future__ import annotations

from ..errors import CLAUDE, GEMINI, RESPONSES
from ..pool import PoolAccount
from .anthropic import AnthropicProvider
from .azure import AzureProvider
from .base import Provider, UpstreamCall, UpstreamRequest
from .bedrock import BedrockProvider
from .code_assist import CodeAssistProvider
from .gemini import GeminiProvider
from .openai import OpenAIChatProvider
from .responses import ResponsesProvider

__all__ = ["RESPONSES_INCAPABLE", "Provider", "UpstreamCall", "UpstreamRequest", "provider_for"]

ANTHROPIC = AnthropicProvider()
BEDROCK = BedrockProvider()
GEMINI_API = GeminiProvider()
CODE_ASSIST = CodeAssistProvider()
OPENAI_CHAT = OpenAIChatProvider()
AZURE = AzureProvider()
RESPONSES_API = ResponsesProvider()

# Account types whose provider cannot answer the Responses route (kept out of its candidates).
RESPONSES_INCAPABLE = frozenset({"azure-openai"})


def provider_for(account: PoolAccount, route_family: str) -> Provider:
    """The provider that talks to `account` for a client on `route_family`."""
    family = account.family
    if family == CLAUDE:
        return BEDROCK if account.type == "bedrock" else ANTHROPIC
    if family == GEMINI:
        return CODE_ASSIST if account.oauth else GEMINI_API
    if account.type == "azure-openai":
        return AZURE
    if route_family == RESPONSES or family == RESPONSES:
        return RESPONSES_API
    return OPENAI_CHAT
