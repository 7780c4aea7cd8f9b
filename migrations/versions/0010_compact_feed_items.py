"""A compact feed table: hashes as 16 bytes instead of 32 hex characters, small integers for the
status and attempts, fixed-width columns first, and no stored sent hash where status 200 implies
it. Every hash keeps its value, so no unchanged item is sent again after the upgrade.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SENT = 200
COLUMNS = (
    "entity_key, modified_at, updated_at, next_attempt_at, status, attempts, deleted, feed, id, "
    "hash, sent_hash, error_code, error_category, error_message, payload"
)
_CHUNK = 20_000


def upgrade() -> None:
    _create("feed_items_new", hash_type=sa.LargeBinary(16), small=True)
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"INSERT INTO feed_items_new ({COLUMNS}) SELECT entity_key, modified_at, updated_at, "
            "next_attempt_at, status, attempts, deleted, feed, id, decode(hash, 'hex'), "
            f"CASE WHEN status = {SENT} THEN NULL ELSE decode(sent_hash, 'hex') END, "
            "error_code, error_category, error_message, payload FROM feed_items"
        )
    else:  # SQLite before 3.41 has no unhex(): convert in Python, a chunk at a time
        for rows in _chunks(conn):
            conn.exec_driver_sql(
                f"INSERT INTO feed_items_new ({COLUMNS}) VALUES ({', '.join('?' * 15)})",
                [_compact(row) for row in rows],
            )
    _swap()


def downgrade() -> None:
    _create("feed_items_new", hash_type=sa.String(32), small=False)
    hex_of = (
        "encode({}, 'hex')"
        if op.get_bind().dialect.name == "postgresql"
        else "CASE WHEN {0} IS NOT NULL THEN lower(hex({0})) END"  # hex(NULL) is ''
    )
    op.get_bind().exec_driver_sql(
        f"INSERT INTO feed_items_new ({COLUMNS}) SELECT entity_key, modified_at, updated_at, "
        f"next_attempt_at, status, attempts, deleted, feed, id, {hex_of.format('hash')}, "
        f"CASE WHEN status = {SENT} THEN {hex_of.format('hash')} "
        f"ELSE {hex_of.format('sent_hash')} END, "
        "error_code, error_category, error_message, payload FROM feed_items"
    )
    _swap()


def _create(name: str, *, hash_type: sa.types.TypeEngine, small: bool) -> None:
    number = sa.SmallInteger if small else sa.Integer
    op.create_table(
        name,
        sa.Column("entity_key", sa.BigInteger, nullable=False),
        sa.Column("modified_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=True),
        sa.Column("status", number, nullable=True),
        sa.Column("attempts", number, nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("feed", sa.String(100), nullable=False),
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("hash", hash_type, nullable=False),
        sa.Column("sent_hash", hash_type, nullable=True),
        sa.Column("error_code", sa.String(100), nullable=True),
        sa.Column("error_category", sa.String(40), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("payload", sa.LargeBinary, nullable=True),
        sa.PrimaryKeyConstraint("feed", "id"),
    )


def _swap() -> None:
    """Put the new table in the old one's place, with the old one's names and indexes."""
    op.drop_index("ix_feed_items_status", table_name="feed_items")
    op.drop_index("ix_feed_items_entity", table_name="feed_items")
    op.drop_table("feed_items")
    op.rename_table("feed_items_new", "feed_items")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER INDEX feed_items_new_pkey RENAME TO feed_items_pkey")
    op.create_index("ix_feed_items_entity", "feed_items", ["feed", "entity_key"])
    op.create_index("ix_feed_items_status", "feed_items", ["feed", "status"])


def _chunks(conn: sa.Connection) -> Iterator[list[tuple[object, ...]]]:
    last = 0
    while True:
        rows = conn.exec_driver_sql(
            f"SELECT rowid, {COLUMNS} FROM feed_items WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (last, _CHUNK),
        ).all()
        if not rows:
            return
        last = rows[-1][0]
        yield [tuple(row[1:]) for row in rows]


def _compact(row: tuple[object, ...]) -> tuple[object, ...]:
    values = list(row)
    hashed, sent, status = values[9], values[10], values[4]
    values[9] = bytes.fromhex(str(hashed))
    values[10] = None if status == SENT or not sent else bytes.fromhex(str(sent))
    return tuple(values)
