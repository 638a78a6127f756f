"""packages.allowed_clients; api_keys.user_package_id (a key bound to one of its owner's packages)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 22:22:15.628062
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# On SQLite a batch operation may copy the table into a new one; reflection does not see
# AUTOINCREMENT, so it is restated, or ids of deleted rows would be handed out again.
_KEEP_AUTOINCREMENT = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("packages", schema=None, table_kwargs=_KEEP_AUTOINCREMENT) as batch_op:
        batch_op.add_column(
            sa.Column("allowed_clients", sa.String(length=255), server_default="", nullable=False)
        )

    with op.batch_alter_table("api_keys", schema=None, table_kwargs=_KEEP_AUTOINCREMENT) as batch_op:
        batch_op.add_column(
            sa.Column("user_package_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_api_keys_user_package_id"), ["user_package_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_api_keys_user_package_id_user_packages"),
            "user_packages",
            ["user_package_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None, table_kwargs=_KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_api_keys_user_package_id_user_packages"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_api_keys_user_package_id"))
        batch_op.drop_column("user_package_id")

    with op.batch_alter_table("packages", schema=None, table_kwargs=_KEEP_AUTOINCREMENT) as batch_op:
        batch_op.drop_column("allowed_clients")
