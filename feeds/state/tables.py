"""Every table of the worker database (the feed tables' changelogs excepted: they are made per feed)."""

from __future__ import annotations

from datetime import date, datetime
from typing import cast

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
    case,
    func,
    type_coerce,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from feeds.definitions import ItemStatus


class Base(DeclarativeBase):
    pass


class ResyncCheckpoint(Base):
    """Where an interrupted `saas:resync` stands, for `--continue-resync`."""

    __tablename__ = "resync_checkpoints"

    feed: Mapped[str] = mapped_column(String(100), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    last_key: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class IndexerState(Base):
    __tablename__ = "indexer_state"

    indexer_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    mode: Mapped[str] = mapped_column(String(20))
    # Changelog version processed up to (Magento's mview_state.version_id).
    version_id: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    mode_updated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Digest(TypeDecorator[str]):
    """A 128-bit hash kept as its 16 bytes (half of hex text) and handled as hex everywhere else."""

    impl = LargeBinary(16)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> bytes | None:
        return None if value is None else bytes.fromhex(value)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> str | None:
        return None if value is None else bytes(value).hex()


class FeedItemRow(Base):
    """The feed table: one row per feed item id, with its last hash and export status.

    Laid out small (docs/concepts.md): fixed-width columns first, widest first, so PostgreSQL
    pads nothing; hashes as 16 bytes; `sent_hash` only while it differs from what the status
    implies — an item in status 200 holds the version it was last sent, so its sent hash is its
    hash and is not stored (read it through `sent_hash_of`).
    """

    __tablename__ = "feed_items"
    __table_args__ = (
        Index("ix_feed_items_entity", "feed", "entity_key"),
        Index("ix_feed_items_status", "feed", "status"),
    )

    entity_key: Mapped[int] = mapped_column(BigInteger)
    modified_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[int | None] = mapped_column(SmallInteger, nullable=True)
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    feed: Mapped[str] = mapped_column(String(100), primary_key=True)
    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    hash: Mapped[str] = mapped_column(Digest)
    # The hash the destination last accepted, kept only when the status does not imply it.
    sent_hash: Mapped[str | None] = mapped_column(Digest, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    error_category: Mapped[str | None] = mapped_column(String(40), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Legacy export mode only: the canonical JSON of `data`, kept until sent.
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class FeedRebuild(Base):
    """An entity whose document could not be built: rebuilt with backoff until it builds."""

    __tablename__ = "feed_rebuilds"
    __table_args__ = (Index("ix_feed_rebuilds_due", "feed", "next_attempt_at"),)

    feed: Mapped[str] = mapped_column(String(100), primary_key=True)
    entity_key: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    attempts: Mapped[int] = mapped_column(Integer)
    # None once `max_attempts` is reached: it waits for a change of the entity or a resync.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    first_failed_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class LockRow(Base):
    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(DateTime)
    expires_at: Mapped[datetime] = mapped_column(DateTime)


states = cast(Table, IndexerState.__table__)


items = cast(Table, FeedItemRow.__table__)


def sent_hash_of() -> ColumnElement[str]:
    """The hash the destination last accepted: stored, or the item's own hash in status 200."""
    c = items.c
    implied = case((c.status == int(ItemStatus.SENT), c.hash), else_=None)
    return type_coerce(func.coalesce(c.sent_hash, implied), Digest()).label("sent_hash")


locks = cast(Table, LockRow.__table__)


checkpoints = cast(Table, ResyncCheckpoint.__table__)


rebuilds = cast(Table, FeedRebuild.__table__)


class ResyncRangeRow(Base):
    __tablename__ = "resync_ranges"

    feed: Mapped[str] = mapped_column(String(100), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    lo: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    hi: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    entities: Mapped[int] = mapped_column(Integer)
    done_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


ranges = cast(Table, ResyncRangeRow.__table__)


class DestinationPauseRow(Base):
    __tablename__ = "destination_pauses"

    destination: Mapped[str] = mapped_column(String(500), primary_key=True)
    paused_until: Mapped[datetime] = mapped_column(DateTime)


pauses = cast(Table, DestinationPauseRow.__table__)


class SyncRun(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        Index("ix_sync_runs_started", "started_at"),
        Index("ix_sync_runs_feed", "feed", "started_at"),
        Index("ix_sync_runs_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    feed: Mapped[str] = mapped_column(String(100))
    operation: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    new: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    rows_synced: Mapped[int] = mapped_column(Integer, default=0)
    rows_failed_with_errors: Mapped[int] = mapped_column(Integer, default=0)
    last_timestamp_synced: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The lock owner of the process running it: a `running` run whose owner no longer holds the
    # feed's lock is abandoned (its process died) and is closed as `error`.
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)


class SyncError(Base):
    __tablename__ = "sync_errors"
    __table_args__ = (
        Index("ix_sync_errors_item", "feed", "item_id"),
        Index("ix_sync_errors_category", "resolved", "category"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(String(32))
    feed: Mapped[str] = mapped_column(String(100))
    item_id: Mapped[str] = mapped_column(String(255))
    category: Mapped[str] = mapped_column(String(40))
    code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    first_seen: Mapped[datetime] = mapped_column(DateTime)
    last_seen: Mapped[datetime] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    resolved: Mapped[bool] = mapped_column(Boolean, default=False)
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # The field the destination named (picklist, property errors) and the value: the rejected
    # one, or the record a missing association points to.
    field: Mapped[str | None] = mapped_column(String(200), nullable=True)
    value: Mapped[str | None] = mapped_column(String(500), nullable=True)


sync_runs = cast(Table, SyncRun.__table__)


sync_errors = cast(Table, SyncError.__table__)


class CallBucket(Base):
    __tablename__ = "api_call_buckets"

    destination: Mapped[str] = mapped_column(String(500), primary_key=True)
    minute: Mapped[datetime] = mapped_column(DateTime, primary_key=True)
    calls: Mapped[int] = mapped_column(Integer)


class DestinationLimit(Base):
    __tablename__ = "destination_limits"

    destination: Mapped[str] = mapped_column(String(500), primary_key=True)
    daily_limit: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[datetime] = mapped_column(DateTime)


buckets = cast(Table, CallBucket.__table__)


limits = cast(Table, DestinationLimit.__table__)


class NotificationSettingsRow(Base):
    __tablename__ = "notification_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    frequency: Mapped[str] = mapped_column(String(20))
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class OpenCategory(Base):
    __tablename__ = "notification_categories"

    feed: Mapped[str] = mapped_column(String(100), primary_key=True)
    category: Mapped[str] = mapped_column(String(40), primary_key=True)
    opened_at: Mapped[datetime] = mapped_column(DateTime)


class Notice(Base):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_pending", "sent_at", "kind"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    claimed_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Mark(Base):
    __tablename__ = "notification_marks"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime)


class DailyStats(Base):
    __tablename__ = "notification_daily_stats"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    feed: Mapped[str] = mapped_column(String(100), primary_key=True)
    stats: Mapped[str] = mapped_column(Text)


settings_table = cast(Table, NotificationSettingsRow.__table__)


open_categories = cast(Table, OpenCategory.__table__)


notices = cast(Table, Notice.__table__)


marks = cast(Table, Mark.__table__)


daily_stats = cast(Table, DailyStats.__table__)


class JobRunRow(Base):
    __tablename__ = "job_runs"
    __table_args__ = (
        Index("ix_job_runs_job", "job", "started_at"),
        Index("ix_job_runs_task", "task_id"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job: Mapped[str] = mapped_column(String(200))
    tick: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    worker: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    summary: Mapped[str | None] = mapped_column(Text, nullable=True)


job_runs = cast(Table, JobRunRow.__table__)


class AuditRow(Base):
    """One operator action (dashboard or API): when, by which key, on which feed, with what outcome."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(DateTime)
    key_id: Mapped[int] = mapped_column(BigInteger)
    key_name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40))
    feed: Mapped[str] = mapped_column(String(100))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    outcome: Mapped[str] = mapped_column(Text)


audit_log = cast(Table, AuditRow.__table__)


class RuntimeSettingRow(Base):
    """A setting changed at runtime for the whole fleet (e.g. the daily API-call allocation): its
    JSON value, when and by which key. No row: the environment's value is in force."""

    __tablename__ = "runtime_settings"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    updated_by: Mapped[str | None] = mapped_column(String(200), nullable=True)


runtime_settings = cast(Table, RuntimeSettingRow.__table__)
