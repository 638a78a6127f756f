"""Azure OpenAI: one deployment per account, Chat Completions only (no Responses API)."""

from __future__ import annotations

from urllib.parse import quote

from ..pool import PoolAccount
from .base import UpstreamRequest
from .openai import OpenAIChatProvider

DEFAULT_API_VERSION = "2024-10-21"


class AzureProvider(OpenAIChatProvider):
    serves_responses = False

    def target(self, account: PoolAccount, request: UpstreamRequest, headers: dict[str, str]) -> str:
        deployment = account.deployment or request.model
        version = account.api_version or DEFAULT_API_VERSION
        headers["api-key"] = account.credentials.get("api_key", "")
        path = f"/openai/deployments/{quote(deployment)}/chat/completions"
        return f"{account.base_url}{path}?api-version={version}"
