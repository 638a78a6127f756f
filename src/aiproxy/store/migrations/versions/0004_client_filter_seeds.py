"""Client filter: default_allow, a client type's own paths, and the built-in client types

The built-in types and rules are what the real clients were seen to send (Claude Code 2.1.x,
Codex CLI 0.169, Gemini CLI 0.61, the official Python and JavaScript SDKs): version numbers are
matched by pattern, so newer releases keep passing. They are seeded once; an admin may edit,
disable or delete them afterwards and they do not come back.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 02:10:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEEP_AUTOINCREMENT = {"sqlite_autoincrement": True}

# The `metadata.user_id` Claude Code sends: a JSON string with a session_id (2.1.x), or the older
# flat form user_<hash>_account_<uuid>_session_<uuid>.
_CLAUDE_USER_ID = (
    r'^(\{.*"session_id"\s*:\s*"[0-9a-fA-F-]{36}".*\}'
    r"|user_[0-9a-fA-F]{64}_account_[0-9a-fA-F-]*_session_[0-9a-fA-F-]{36})$"
)

# name, display name, description, UA pattern, path pattern, rules (type, field, pattern, required, note)
BUILTIN_TYPES: tuple[tuple[str, str, str, str, str, tuple[tuple[str, str, str, bool, str], ...]], ...] = (
    (
        "claude-code",
        "Claude Code",
        "Anthropic's coding CLI (claude-cli user agent)",
        r"^claude-cli/\d+\.\d+\.\d+",
        r"/v1/(messages(/count_tokens)?|models)$",
        (
            ("header", "x-app", r"^cli$", True, "sent by the CLI on every call"),
            ("header", "anthropic-beta", r"(^|,)\s*claude-code-\d{8}\s*(,|$)", True, "the claude-code beta"),
            ("body", "metadata.user_id", _CLAUDE_USER_ID, True, "device and session ids, both formats"),
            (
                "system",
                "",
                r"^(x-anthropic-billing-header: cc_version=|You are Claude Code|You are a Claude agent"
                r"|\s*You are an interactive (agent|CLI tool) that helps users)",
                True,
                "one of the openings of Claude Code's system prompt",
            ),
        ),
    ),
    (
        "codex-cli",
        "Codex CLI",
        "OpenAI's coding CLI (codex_exec, codex_cli_rs)",
        r"^codex_[a-z_]+/\d+\.\d+",
        r"/v1/(responses(/compact)?|models)$",
        (
            ("header", "originator", r"^codex_[a-z_]+$", True, "who started the turn"),
            ("header", "x-codex-turn-metadata", r"^\{", True, "turn metadata (JSON)"),
            (
                "system",
                "",
                r"^You are (a coding agent running in the Codex CLI|Codex)",
                True,
                "the developer prompt Codex opens its input with",
            ),
        ),
    ),
    (
        "gemini-cli",
        "Gemini CLI",
        "Google's coding CLI",
        r"^GeminiCLI(-[\w-]+)?/\d+\.\d+",
        r"/(v1|v1beta)/models(/|$)",
        (("header", "x-goog-api-client", r"^google-genai-sdk/\d+", True, "the SDK bundled in the CLI"),),
    ),
    (
        "anthropic-sdk",
        "Anthropic SDK",
        "the official anthropic SDKs (Python, TypeScript)",
        r"^Anthropic/(Python|JS) \d+\.\d+",
        r"/v1/(messages(/count_tokens)?|models)$",
        (("header", "x-stainless-lang", r"^(python|js)$", True, "the SDK's language"),),
    ),
    (
        "openai-sdk",
        "OpenAI SDK",
        "the official openai SDKs (Python, TypeScript)",
        r"^OpenAI/(Python|JS) \d+\.\d+",
        "",
        (("header", "x-stainless-lang", r"^(python|js)$", True, "the SDK's language"),),
    ),
    (
        "google-genai-sdk",
        "Google GenAI SDK",
        "the official google-genai SDKs",
        r"^google-genai-sdk/\d+\.\d+",
        r"/(v1|v1beta)/models(/|$)",
        (("header", "x-goog-api-client", r"^google-genai-sdk/\d+", True, "the SDK's client header"),),
    ),
)


def upgrade() -> None:
    with op.batch_alter_table(
        "client_filter_config", schema=None, table_kwargs=_KEEP_AUTOINCREMENT
    ) as batch_op:
        batch_op.add_column(
            sa.Column("default_allow", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    with op.batch_alter_table("client_types", schema=None, table_kwargs=_KEEP_AUTOINCREMENT) as batch_op:
        batch_op.add_column(
            sa.Column("path_pattern", sa.String(length=512), server_default="", nullable=False)
        )

    now = datetime.now(UTC)
    types = sa.table(
        "client_types",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("display_name", sa.String),
        sa.column("description", sa.String),
        sa.column("ua_pattern", sa.String),
        sa.column("path_pattern", sa.String),
        sa.column("enabled", sa.Boolean),
        sa.column("is_builtin", sa.Boolean),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    rules = sa.table(
        "client_filter_rules",
        sa.column("client_type_id", sa.Integer),
        sa.column("rule_type", sa.String),
        sa.column("field_name", sa.String),
        sa.column("pattern", sa.String),
        sa.column("required", sa.Boolean),
        sa.column("enabled", sa.Boolean),
        sa.column("description", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    bind = op.get_bind()
    existing = set(bind.execute(sa.select(types.c.name)).scalars())
    for name, display, description, ua, paths, type_rules in BUILTIN_TYPES:
        if name in existing:
            continue
        bind.execute(
            types.insert().values(
                name=name,
                display_name=display,
                description=description,
                ua_pattern=ua,
                path_pattern=paths,
                enabled=True,
                is_builtin=True,
                created_at=now,
                updated_at=now,
            )
        )
        type_id = bind.execute(sa.select(types.c.id).where(types.c.name == name)).scalar_one()
        for kind, field, pattern, required, note in type_rules:
            bind.execute(
                rules.insert().values(
                    client_type_id=type_id,
                    rule_type=kind,
                    field_name=field,
                    pattern=pattern,
                    required=required,
                    enabled=True,
                    description=note,
                    created_at=now,
                    updated_at=now,
                )
            )


def downgrade() -> None:
    with op.batch_alter_table("client_types", schema=None, table_kwargs=_KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_column("path_pattern")
    with op.batch_alter_table(
        "client_filter_config", schema=None, table_kwargs=_KEEP_AUTOINCREMENT
    ) as batch_op:
        batch_op.drop_column("default_allow")
