"""The vendors' public OAuth clients, as observed in their own CLIs (see ../shared/OAUTH.md).

These are not secrets of this relay: they identify the vendors' command-line tools, whose users
the subscription flows were built for. They change when the vendors change their tools, so every
observed value lives here and nowhere else. The vendor URLs are settings (`config.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

# The three OAuth flows; `AccountType.oauth` names one of them.
CLAUDE = "claude"
OPENAI = "openai"
GEMINI = "gemini"
FLOWS = (CLAUDE, OPENAI, GEMINI)


@dataclass(frozen=True, slots=True)
class Client:
    flow: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    # Google's installed-app secret is published in the Gemini CLI source; the others have none.
    client_secret: str = ""


CLAUDE_CLIENT = Client(
    CLAUDE,
    client_id="9d1c250a-e61b-44d9-88ed-5944d1962f5e",
    # The manual-paste page: it shows the code as CODE#STATE for the admin to copy.
    redirect_uri="https://platform.claude.com/oauth/code/callback",
    scopes=(
        "org:create_api_key",
        "user:profile",
        "user:inference",
        "user:sessions:claude_code",
        "user:mcp_servers",
        "user:file_upload",
    ),
)
# The cookie flow cannot be granted `org:create_api_key` (only a browser login can).
CLAUDE_COOKIE_SCOPES = tuple(s for s in CLAUDE_CLIENT.scopes if s != "org:create_api_key")
# A "setup token" is inference only, and asks the token endpoint for a one-year lifetime.
CLAUDE_SETUP_SCOPES = ("user:inference",)
CLAUDE_SETUP_EXPIRES_IN = 31_536_000

OPENAI_CLIENT = Client(
    OPENAI,
    client_id="app_EMoamEEZ73f0CkXaXp7hrann",
    # Codex's loopback listener; nothing listens there for the relay, so the admin pastes the
    # URL the browser ends on (it fails to load, the code is in its query).
    redirect_uri="http://localhost:1455/auth/callback",
    scopes=("openid", "profile", "email", "offline_access"),
)
OPENAI_REFRESH_SCOPE = "openid profile email"
# Extra authorize parameters the Codex CLI sends: organisations in the id_token, the short consent.
OPENAI_AUTHORIZE_EXTRA = (
    ("id_token_add_organizations", "true"),
    ("codex_cli_simplified_flow", "true"),
    ("originator", "codex_cli_rs"),
)
# The id_token claim object holding the ChatGPT account facts.
OPENAI_AUTH_CLAIM = "https://api.openai.com/auth"

GEMINI_CLIENT = Client(
    GEMINI,
    client_id="681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com",
    client_secret="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",
    # Code Assist's manual page: it shows the code for the admin to copy.
    redirect_uri="https://codeassist.google.com/authcode",
    scopes=(
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/userinfo.email",
        "https://www.googleapis.com/auth/userinfo.profile",
    ),
)

CLIENTS = {CLAUDE: CLAUDE_CLIENT, OPENAI: OPENAI_CLIENT, GEMINI: GEMINI_CLIENT}

# User-Agents sent to the token endpoints. Claude's is the axios client Claude Code uses; a token
# endpoint behind a bot filter may refuse requests without one.
CLAUDE_TOKEN_USER_AGENT = "axios/1.15.2"
OPENAI_TOKEN_USER_AGENT = "codex_cli_rs/0.46.0"
GEMINI_TOKEN_USER_AGENT = "google-api-nodejs-client/9.15.1"
TOKEN_USER_AGENTS = {
    CLAUDE: CLAUDE_TOKEN_USER_AGENT,
    OPENAI: OPENAI_TOKEN_USER_AGENT,
    GEMINI: GEMINI_TOKEN_USER_AGENT,
}

# claude.ai's web API (cookie flow) sits behind Cloudflare: it wants a browser's headers.
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)

# Code Assist client metadata, as the Gemini CLI sends it.
CODE_ASSIST_METADATA = {
    "ideType": "IDE_UNSPECIFIED",
    "platform": "PLATFORM_UNSPECIFIED",
    "pluginType": "GEMINI",
}
CODE_ASSIST_LEGACY_TIER = "legacy-tier"
CODE_ASSIST_USER_AGENT = "GeminiCLI/0.1.5 (linux; x64)"
