"""OpenAI Chat Completions: openai accounts on the chat route (and Claude-model chat via them)."""

from __future__ import annotations

from ..errors import OPENAI
from ..pool import PoolAccount
from .base import _FORWARD_ANY, Provider, UpstreamRequest, vendor_root


class OpenAIChatProvider(Provider):
    wire = OPENAI
    forward = _FORWARD_ANY | {b"openai-beta", b"x-client-request-id"}
    forward_prefixes = (b"x-stainless-",)

    def target(self, account: PoolAccount, request: UpstreamRequest, headers: dict[str, str]) -> str:
        headers["authorization"] = f"Bearer {account.credentials.get('api_key', '')}"
        if account.organization_id:
            headers["openai-organization"] = account.organization_id
        return vendor_root(account.base_url, "/v1") + "/v1/chat/completions"
