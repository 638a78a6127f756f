"""The relay's OAuth settings pointed at the fake providers of `aiproxy mock-upstream`."""

from __future__ import annotations

from aiproxy.config import Settings, load_settings


def oauth_urls(base: str) -> dict[str, str]:
    """{setting name: URL on the mock at `base`} for every OAuth vendor URL."""
    return {
        "oauth_claude_authorize_url": f"{base}/claude/oauth/authorize",
        "oauth_claude_token_url": f"{base}/claude/v1/oauth/token",
        "oauth_claude_web_url": f"{base}/claude",
        "oauth_openai_authorize_url": f"{base}/openai/oauth/authorize",
        "oauth_openai_token_url": f"{base}/openai/oauth/token",
        "oauth_gemini_authorize_url": f"{base}/google/o/oauth2/v2/auth",
        "oauth_gemini_token_url": f"{base}/google/token",
        "gemini_code_assist_url": base,
    }


def oauth_env(base: str) -> dict[str, str]:
    """The same as `AIPROXY_*` environment variables, for a relay process."""
    return {f"AIPROXY_{name.upper()}": url for name, url in oauth_urls(base).items()}


def oauth_settings(base: str) -> Settings:
    return load_settings(**oauth_urls(base))
