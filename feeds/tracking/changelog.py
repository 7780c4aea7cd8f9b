"""Change tracking in the source database (Magento's mview): changelog tables, triggers, backlog.

Every source table a feed watches gets INSERT/UPDATE/DELETE triggers that write the affected
entity ids into the feed's changelog `<indexer_id>_cl` (version_id, entity_id, changed_at), in both
indexer modes. An UPDATE that changes no column writes nothing. The version processed so far is
kept in the worker database (`indexer_state.version_id`), and advanced only once the work it covers
is committed. For `realtime` indexers on PostgreSQL the changelog itself also gets a statement
trigger that NOTIFYs `CHANNEL` on each write, so a listener syncs the feed at once; the changelog
stays the durable record, so nothing is lost when no listener is running.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Table,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from feeds.definitions import Feed, Watch
from feeds.errors import SourceSchemaError

OPERATIONS = ("insert", "update", "delete")
CHANNEL = "feedsync_changes"  # PostgreSQL NOTIFY channel of realtime indexers
# When a row was logged, in UTC, to the millisecond (what the lag metric measures from).
_NOW = {
    "postgresql": "statement_timestamp()",
    "sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now')",
}


def changelog_name(feed: Feed) -> str:
    return f"{feed.indexer_id}_cl"


def changelog_table(feed: Feed) -> Table:
    return Table(
        changelog_name(feed),
        MetaData(),
        # AUTOINCREMENT on SQLite: versions must never be reused after rows are cleaned.
        Column(
            "version_id",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("entity_id", BigInteger, nullable=False),
        # Set by the writers (triggers, realtime.notify); NULL in rows logged before it existed.
        Column("changed_at", DateTime(timezone=True), nullable=True),
        sqlite_autoincrement=True,
    )


def trigger_name(feed: Feed, table: str, operation: str) -> str:
    name = f"fsync_{feed.name}_{table}_{operation}"
    if len(name) <= 60:
        return name
    # PostgreSQL cuts identifiers at 63 bytes: keep names unique and recognisable.
    suffix = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[:50]}_{suffix}"


def notify_trigger_name(feed: Feed) -> str:
    return trigger_name(feed, "cl", "notify")


def missing_tables(conn: Connection, feed: Feed) -> list[str]:
    present = set(inspect(conn).get_table_names())
    return [t for t in feed.tables if t not in present]


def require_tables(conn: Connection, feed: Feed) -> None:
    """Raise SourceSchemaError when the source lacks a table the feed reads."""
    missing = missing_tables(conn, feed)
    if missing:
        raise SourceSchemaError(
            f"Feed {feed.name!r} watches source tables that do not exist: {', '.join(missing)}; "
            "create the application schema first (for the sample catalog: python -m worker demo:seed)."
        )


def subscribe(engine: Engine, feed: Feed, *, notify: bool = False) -> int:
    """Create the changelog and install the triggers; returns the current changelog version.

    `notify` (realtime indexers) also signals every changelog write on `CHANNEL` (PostgreSQL only;
    on SQLite the listener polls the changelog instead).
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes may subscribe the same feed at once (a fleet's first jobs): one at a
            # time, or the second CREATE TABLE fails on PostgreSQL's catalog unique index.
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                {"name": f"feedsync:subscribe:{changelog_name(feed)}"},
            )
        require_tables(conn, feed)
        changelog_table(feed).create(conn, checkfirst=True)
        _add_changed_at(conn, feed)
        _drop_triggers(conn, feed)
        for table, watches in _by_table(feed).items():
            for statement in _trigger_sql(conn, feed, table, watches):
                conn.exec_driver_sql(statement)
        if notify and conn.dialect.name == "postgresql":
            for statement in _notify_sql(conn, feed):
                conn.exec_driver_sql(statement)
        return _max_version(conn, feed)


def installed_triggers(conn: Connection, feed: Feed) -> set[str]:
    expected = {trigger_name(feed, t, op) for t in feed.tables for op in OPERATIONS}
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text(
                "SELECT DISTINCT trigger_name FROM information_schema.triggers WHERE trigger_schema = current_schema()"
            )
        )
    else:
        rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
    return {r[0] for r in rows} & expected


def is_subscribed(conn: Connection, feed: Feed) -> bool:
    return len(installed_triggers(conn, feed)) == len(feed.tables) * len(OPERATIONS)


def notifies(conn: Connection, feed: Feed) -> bool:
    """Whether changelog writes of this feed are signalled on `CHANNEL` (PostgreSQL)."""
    if conn.dialect.name != "postgresql":
        return False
    query = text(
        "SELECT 1 FROM information_schema.triggers "
        "WHERE trigger_schema = current_schema() AND trigger_name = :name"
    )
    return conn.execute(query, {"name": notify_trigger_name(feed)}).first() is not None


def is_tracked(conn: Connection, feed: Feed, *, notify: bool) -> bool:
    """The triggers are installed, with the notify trigger where `notify` asks for it."""
    wants_notify = notify and conn.dialect.name == "postgresql"
    return is_subscribed(conn, feed) and notifies(conn, feed) is wants_notify


def record(conn: Connection, feed: Feed, entity_ids: Sequence[int]) -> None:
    """Log entity ids in the changelog, as the triggers do (in the caller's transaction)."""
    if not entity_ids:
        return
    now = _NOW.get(conn.dialect.name, "CURRENT_TIMESTAMP")
    conn.execute(
        text(f'INSERT INTO "{changelog_name(feed)}" (entity_id, changed_at) VALUES (:e, {now})'),
        [{"e": int(e)} for e in entity_ids],
    )


def oldest_pending_age(conn: Connection, feed: Feed, after: int) -> float | None:
    """Seconds since the oldest change logged after version `after` (None when nothing is pending)."""
    if not inspect(conn).has_table(changelog_name(feed)):
        return None
    cl = changelog_table(feed)
    age: ColumnElement[Any]
    if conn.dialect.name == "postgresql":
        age = func.extract("epoch", func.clock_timestamp() - cl.c.changed_at)
    else:
        age = (func.julianday("now") - func.julianday(cl.c.changed_at)) * 86400.0
    # Versions grow with time: the first dated row after the pointer is the oldest pending change.
    query = (
        select(age)
        .where(cl.c.version_id > after, cl.c.changed_at.is_not(None))
        .order_by(cl.c.version_id)
        .limit(1)
    )
    value = conn.scalar(query)
    return None if value is None else max(0.0, float(value))


def current_version(conn: Connection, feed: Feed) -> int:
    """The newest version in the changelog (0 when there is none yet)."""
    if not inspect(conn).has_table(changelog_name(feed)):
        return 0
    return _max_version(conn, feed)


# How long a run waits for the application's transactions that are writing the changelog to end
# (they usually take milliseconds) before it covers only the changes that surely are final.
WRITERS_WAIT_S = 1.0
_WRITERS_POLL_S = 0.02


def safe_version(conn: Connection, feed: Feed, after: int) -> int:
    """The newest version a run may cover, the pointer being at `after`: every change logged up
    to it is committed (or rolled back for good).

    PostgreSQL hands versions out when a trigger writes the row, not when its transaction
    commits: an open transaction may hold a version below one already committed, and a pointer
    moved past it would skip that change for good. So the versions handed out so far are read
    first, then the transactions writing the changelog now (every one that holds such a version
    is among them); once they have ended, all those versions are final. When one stays open
    longer than WRITERS_WAIT_S, only the unbroken run of versions after `after` is covered.
    (Versions come from a sequence with the default CACHE 1, so they are handed out in order.)
    SQLite runs one writing transaction at a time: every version it shows is final.
    """
    newest = current_version(conn, feed)
    if conn.dialect.name != "postgresql" or newest <= after:
        return newest
    table = f'"{changelog_name(feed)}"'
    handed_out = conn.scalar(
        text("SELECT pg_sequence_last_value(pg_get_serial_sequence(:t, 'version_id')::regclass)"),
        {"t": table},
    )
    writers = list(
        conn.scalars(
            text(
                "SELECT virtualtransaction FROM pg_locks WHERE relation = CAST(:t AS regclass) "
                "AND mode = 'RowExclusiveLock' AND granted AND pid <> pg_backend_pid()"
            ),
            {"t": table},
        )
    )
    if handed_out is None or (writers and not _ended(conn, writers)):
        return _unbroken_run_end(conn, feed, after)
    cl = changelog_table(feed)
    query = select(func.coalesce(func.max(cl.c.version_id), 0)).where(
        cl.c.version_id <= int(handed_out)
    )
    return int(conn.scalar(query) or 0)


def _ended(conn: Connection, transactions: list[str]) -> bool:
    """Wait up to WRITERS_WAIT_S for these (virtual) transactions to end; whether they did."""
    deadline = time.monotonic() + WRITERS_WAIT_S
    query = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'virtualxid' "
        "AND virtualxid = ANY(CAST(:ids AS text[]))"
    )
    while conn.scalar(query, {"ids": transactions}):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_WRITERS_POLL_S)
    return True


def _unbroken_run_end(conn: Connection, feed: Feed, after: int) -> int:
    """The last version of the run `after + 1, after + 2, …` that the changelog shows without a gap
    (`after` when `after + 1` is not there)."""
    cl = changelog_table(feed)
    following = cl.alias("following")
    gap_before = (
        ~select(following.c.version_id)
        .where(following.c.version_id == cl.c.version_id + 1)
        .exists()
    )
    first = conn.scalar(select(cl.c.version_id).where(cl.c.version_id == after + 1))
    if first is None:
        return after
    end = conn.scalar(select(func.min(cl.c.version_id)).where(cl.c.version_id > after, gap_before))
    return int(end or after)


@dataclass(frozen=True)
class Chunk:
    """Changelog rows after a version: the distinct entity ids and the version they reach."""

    entity_ids: tuple[int, ...]
    to_version: int


def read(conn: Connection, feed: Feed, after: int, upto: int, limit: int) -> Chunk | None:
    """The next `limit` changelog rows after version `after` (up to `upto`), or None when caught up."""
    cl = changelog_table(feed)
    rows = conn.execute(
        select(cl.c.version_id, cl.c.entity_id)
        .where(cl.c.version_id > after, cl.c.version_id <= upto)
        .order_by(cl.c.version_id)
        .limit(limit)
    ).all()
    if not rows:
        return None
    return Chunk(tuple(sorted({r[1] for r in rows})), rows[-1][0])


def backlog(conn: Connection, feed: Feed, after: int) -> int:
    """How many distinct entities changed after version `after`."""
    if not inspect(conn).has_table(changelog_name(feed)):
        return 0
    cl = changelog_table(feed)
    query = select(func.count(func.distinct(cl.c.entity_id))).where(cl.c.version_id > after)
    return int(conn.scalar(query) or 0)


def clean(engine: Engine, feed: Feed, processed: int) -> int:
    """Delete processed rows, keeping the newest processed one; returns how many were removed."""
    with engine.begin() as conn:
        if not inspect(conn).has_table(changelog_name(feed)):
            return 0
        cl = changelog_table(feed)
        return conn.execute(cl.delete().where(cl.c.version_id < processed)).rowcount


def _max_version(conn: Connection, feed: Feed) -> int:
    cl = changelog_table(feed)
    return int(conn.scalar(select(func.coalesce(func.max(cl.c.version_id), 0))) or 0)


def _by_table(feed: Feed) -> dict[str, list[Watch]]:
    grouped: dict[str, list[Watch]] = defaultdict(list)
    for watch in feed.watches:
        grouped[watch.table].append(watch)
    return grouped


def _entities(watches: Sequence[Watch], rows: Sequence[str], now: str) -> str:
    """A SELECT of the distinct, non-NULL entity ids the changed row(s) point to, with the time."""
    arms = []
    for watch in watches:
        for row in rows:
            if watch.is_query:
                arms.append(
                    f"SELECT CAST(entity_id AS BIGINT) AS e FROM ({watch.expression(row)}) AS q"
                )
            else:
                arms.append(f"SELECT CAST({watch.expression(row)} AS BIGINT) AS e")
    union = " UNION ".join(arms)
    return f"SELECT e, {now} FROM ({union}) AS affected WHERE e IS NOT NULL"


def _trigger_sql(conn: Connection, feed: Feed, table: str, watches: Sequence[Watch]) -> list[str]:
    cl = changelog_name(feed)
    rows_of = {"insert": ("NEW",), "update": ("NEW", "OLD"), "delete": ("OLD",)}
    now = _NOW[conn.dialect.name]
    if conn.dialect.name == "postgresql":
        statements = []
        for operation in OPERATIONS:
            name = trigger_name(feed, table, operation)
            statements.append(
                f'CREATE OR REPLACE FUNCTION "{name}"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
                f'INSERT INTO "{cl}" (entity_id, changed_at) {_entities(watches, rows_of[operation], now)}; RETURN NULL; END $$'
            )
            when = " WHEN (OLD.* IS DISTINCT FROM NEW.*)" if operation == "update" else ""
            statements.append(
                f'CREATE TRIGGER "{name}" AFTER {operation.upper()} ON "{table}" FOR EACH ROW{when} '
                f'EXECUTE FUNCTION "{name}"()'
            )
        return statements
    columns = [c["name"] for c in inspect(conn).get_columns(table)]
    changed = " OR ".join(f'NEW."{c}" IS NOT OLD."{c}"' for c in columns)
    statements = []
    for operation in OPERATIONS:
        when = f" WHEN {changed}" if operation == "update" else ""
        statements.append(
            f'CREATE TRIGGER "{trigger_name(feed, table, operation)}" AFTER {operation.upper()} ON "{table}" '
            f'FOR EACH ROW{when} BEGIN INSERT INTO "{cl}" (entity_id, changed_at) {_entities(watches, rows_of[operation], now)}; END'
        )
    return statements


def _notify_sql(conn: Connection, feed: Feed) -> list[str]:
    """One statement-level trigger on the changelog: every write of it signals the feed (once per transaction)."""
    schema = conn.scalar(text("SELECT current_schema()"))
    # The schema is part of the payload: schemas of one database share its channels.
    payload = json.dumps({"schema": schema, "feed": feed.name}).replace("'", "''")
    name = notify_trigger_name(feed)
    return [
        f'CREATE OR REPLACE FUNCTION "{name}"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
        f"PERFORM pg_notify('{CHANNEL}', '{payload}'); RETURN NULL; END $$",
        f'CREATE TRIGGER "{name}" AFTER INSERT ON "{changelog_name(feed)}" FOR EACH STATEMENT '
        f'EXECUTE FUNCTION "{name}"()',
    ]


def _add_changed_at(conn: Connection, feed: Feed) -> None:
    """Changelogs created before `changed_at` existed get the column (older rows stay NULL)."""
    columns = {c["name"] for c in inspect(conn).get_columns(changelog_name(feed))}
    if "changed_at" not in columns:
        kind = "TIMESTAMP WITH TIME ZONE" if conn.dialect.name == "postgresql" else "DATETIME"
        conn.exec_driver_sql(f'ALTER TABLE "{changelog_name(feed)}" ADD COLUMN changed_at {kind}')


def _drop_triggers(conn: Connection, feed: Feed) -> None:
    present = set(inspect(conn).get_table_names())
    if conn.dialect.name == "postgresql":
        name = notify_trigger_name(feed)
        if changelog_name(feed) in present:
            conn.exec_driver_sql(f'DROP TRIGGER IF EXISTS "{name}" ON "{changelog_name(feed)}"')
        conn.exec_driver_sql(f'DROP FUNCTION IF EXISTS "{name}"()')
    for table in feed.tables:
        for operation in OPERATIONS:
            name = trigger_name(feed, table, operation)
            if conn.dialect.name == "postgresql":
                if table in present:
                    conn.exec_driver_sql(f'DROP TRIGGER IF EXISTS "{name}" ON "{table}"')
                conn.exec_driver_sql(f'DROP FUNCTION IF EXISTS "{name}"()')
            else:
                conn.exec_driver_sql(f'DROP TRIGGER IF EXISTS "{name}"')
