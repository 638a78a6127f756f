"""api_keys.request_count counts the requests that were billed (it counted refusals too)

The recorder now adds to a key's request_count only for requests with a usage record, like the
usage views; this recounts what earlier versions stored from those records. Accounts keep
counting every request they were given.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 23:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "UPDATE api_keys SET request_count = "
        "(SELECT count(*) FROM usage_records WHERE usage_records.api_key_id = api_keys.id)"
    )


def downgrade() -> None:
    pass  # the refusals that were counted before are not known any more; the served count stays
