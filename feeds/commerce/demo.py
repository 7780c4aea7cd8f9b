"""The demo catalog in the source database: seeding it (`demo:seed`) and changing it the way the
application would (`demo:change`)."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    DateTime,
    Engine,
    Numeric,
    Table,
    bindparam,
    cast,
    func,
    insert,
    inspect,
    select,
    true,
)
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.schema import AddConstraint, DropConstraint

from feeds.commerce import sample, schema
from feeds.commerce.schema import (
    attribute_options,
    attributes,
    categories,
    create_schema,
    customer_groups,
    order_items,
    orders,
    product_attribute_values,
    product_categories,
    product_overrides,
    product_prices,
    products,
)
from feeds.errors import FeedsyncError
from feeds.state import database

_CHUNK = 20_000  # products per transaction while seeding
_IN_CHUNK = 5_000  # ids per IN list (PostgreSQL takes at most 65535 parameters)
_REVISION = re.compile(r" \(rev (\d+)\)$")
_PRODUCT_TABLES = (
    products,
    product_categories,
    product_prices,
    product_overrides,
    product_attribute_values,
)


def _insert(conn: Connection, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """Insert `rows`, tuples in the table's column order, the fastest way the database offers."""
    if not rows:
        return
    columns = ", ".join(table.c.keys())
    dialect = conn.dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        # COPY is several times faster than INSERT; it runs inside the connection's transaction.
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    elif dialect.name == "sqlite":
        # SQLAlchemy's per-row parameter handling costs more than SQLite's insert itself.
        marks = ", ".join("?" * len(table.c))
        sql = f"INSERT INTO {table.name} ({columns}) VALUES ({marks})"
        conn.exec_driver_sql(sql, _with_stored_datetimes(table, dialect, rows))
    else:
        keys = table.c.keys()
        conn.execute(insert(table), [dict(zip(keys, row, strict=True)) for row in rows])


def _with_stored_datetimes(
    table: Table, dialect: Dialect, rows: list[tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    """`rows` with datetimes converted by SQLAlchemy's own processor, so they are stored as it would."""
    converters = [
        (i, column.type.dialect_impl(dialect).bind_processor(dialect))
        for i, column in enumerate(table.c)
        if isinstance(column.type, DateTime)
    ]
    if not converters:
        return rows
    converted = []
    for row in rows:
        values = list(row)
        for i, convert in converters:
            if convert is not None:
                values[i] = convert(values[i])
        converted.append(tuple(values))
    return converted


def _insert_reference_data(conn: Connection) -> dict[str, int]:
    """The customer groups and attributes with their options, those missing."""
    added: dict[str, int] = {}
    present = set(conn.execute(select(customer_groups.c.id)).scalars())
    groups = [row for row in sample.CUSTOMER_GROUPS if row[0] not in present]
    _insert(conn, customer_groups, groups)
    added["customer_groups"] = len(groups)
    present = set(conn.execute(select(attributes.c.id)).scalars())
    attrs = [
        (a, code, label, type_)
        for a, code, label, type_, _ in sample.ATTRIBUTES
        if a not in present
    ]
    options: list[tuple[Any, ...]] = []
    for a, _code, _label, _type, values in sample.ATTRIBUTES:
        if a not in present:
            options.extend((a * 100 + n, a, value, n) for n, value in enumerate(values, 1))
    _insert(conn, attributes, attrs)
    _insert(conn, attribute_options, options)
    added["attributes"] = len(attrs)
    added["attribute_options"] = len(options)
    return added


def _advance_sequences(conn: Connection) -> None:
    # Seeded rows carry explicit ids: move the serial sequences past them for the application's inserts.
    for table in (categories, products, attributes, attribute_options, orders, order_items):
        conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), max(id)) FROM {table.name} "
            "HAVING max(id) IS NOT NULL"
        )


@contextmanager
def _foreign_keys_checked_at_end(engine: Engine, bulk: bool) -> Iterator[None]:
    """On PostgreSQL, for a bulk load: drop the catalog's foreign keys, add them back afterwards."""
    if not bulk or engine.dialect.name != "postgresql":
        yield
        return
    loaded = (*_PRODUCT_TABLES, order_items)
    constraints = [fk for table in loaded for fk in table.foreign_key_constraints]
    with engine.begin() as conn:
        for constraint in constraints:
            conn.execute(DropConstraint(constraint, if_exists=True))
    try:
        yield
    finally:
        with engine.begin() as conn:
            for constraint in constraints:
                conn.execute(AddConstraint(constraint))


def is_seeded(engine: Engine) -> bool:
    """Whether the source already holds sample products (then `run --demo` leaves it as it is)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(schema.products.name):
            return False
        return conn.execute(select(schema.products.c.id).limit(1)).first() is not None


def seed(engine: Engine, products: int, seed: int = 1) -> dict[str, int]:
    """Create the schema if missing and top the catalog up to `products` product rows.

    Existing rows are kept and new ids continue after the highest one; categories (about one per
    1000 products, at least 12) and orders (one per 10 products) grow with the catalog. Returns
    the number of rows added per table, leaving out the tables that got none.
    """
    if products < 0:
        raise FeedsyncError(f"The number of products must be zero or more, not {products}.")
    create_schema(engine)
    added: Counter[str] = Counter()
    catalog = schema.products  # the `products` argument is a count
    with engine.begin() as conn:
        added.update(_insert_reference_data(conn))
        count, top = conn.execute(
            select(func.count(), func.coalesce(func.max(catalog.c.id), 0))
        ).one()
        last = top + max(0, products - count)
        have = conn.execute(select(func.coalesce(func.max(categories.c.id), 0))).scalar_one()
        new_categories = sample.category_rows(seed, sample.category_count(last))[have:]
        _insert(conn, categories, new_categories)
        added["categories"] += len(new_categories)
    # Checking foreign keys once at the end beats checking them row by row when the load is large.
    with _foreign_keys_checked_at_end(engine, bulk=last > top and (last - top) * 10 >= last):
        _add_products(engine, seed, top + 1, last, added)
        _add_orders(engine, seed, products // 10, added)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            _advance_sequences(conn)
    database.refresh_statistics(engine, sorted(added))  # as an application's tables have them
    return {table: count for table, count in added.items() if count}


def _add_products(engine: Engine, seed: int, first: int, last: int, added: Counter[str]) -> None:
    for start in range(first, last + 1, _CHUNK):
        rows = sample.product_rows(seed, start, min(start + _CHUNK - 1, last))
        with engine.begin() as conn:
            for table in _PRODUCT_TABLES:
                _insert(conn, table, rows[table.name])
                added[table.name] += len(rows[table.name])


def _add_orders(engine: Engine, seed: int, target: int, added: Counter[str]) -> None:
    with engine.begin() as conn:
        count, top = conn.execute(
            select(func.count(orders.c.id), func.coalesce(func.max(orders.c.id), 0))
        ).one()
        item_top = conn.execute(select(func.coalesce(func.max(order_items.c.id), 0))).scalar_one()
    last = top + max(0, target - count)
    for start in range(top + 1, last + 1, _CHUNK):
        rows = sample.order_rows(seed, start, min(start + _CHUNK - 1, last), item_top + 1)
        with engine.begin() as conn:
            _insert(conn, orders, rows["orders"])
            _insert(conn, order_items, rows["order_items"])
        item_top += len(rows["order_items"])
        added["orders"] += len(rows["orders"])
        added["order_items"] += len(rows["order_items"])


def _chunks(ids: Sequence[int], size: int = _IN_CHUNK) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def _choose(
    conn: Connection, rng: random.Random, count: int, condition: Any, exclude: set[int]
) -> list[int]:
    """`count` distinct product ids matching `condition`, not in `exclude`, drawn with `rng`."""
    chosen: list[int] = []
    if count == 0:
        return chosen
    low, high = conn.execute(select(func.min(products.c.id), func.max(products.c.id))).one()
    taken = set(exclude)
    # Draw ids at random and keep those that exist: a few small queries even on a large catalog.
    for _ in range(20):
        candidates = []
        for _ in range(2 * (count - len(chosen)) + 16):
            candidate = rng.randint(low, high)
            if candidate not in taken:
                taken.add(candidate)
                candidates.append(candidate)
        found: set[int] = set()
        for part in _chunks(candidates):
            found.update(
                conn.execute(
                    select(products.c.id).where(products.c.id.in_(part), condition)
                ).scalars()
            )
        chosen.extend(c for c in candidates if c in found)
        if len(chosen) >= count:
            return chosen[:count]
    # A sparse or small catalog: sample from the full list of what is left.
    rest = [
        i
        for i in conn.execute(
            select(products.c.id).where(condition).order_by(products.c.id)
        ).scalars()
        if i not in exclude and i not in chosen
    ]
    return chosen + rng.sample(rest, count - len(chosen))


def change(
    engine: Engine, update: int, delete: int, seed: int | None = None
) -> dict[str, list[str]]:
    """Update `update` products and delete `delete` others as the application would, in one transaction.

    Plain UPDATE/DELETE on the catalog tables (order items stay, as history). Returns the affected
    `products` feed item ids, sorted: {"updated": [...], "deleted": [...]}. Configurable parents are
    never deleted; the choice is deterministic when `seed` is given.
    """
    if update < 0 or delete < 0:
        raise FeedsyncError("The numbers of products to update and delete must be zero or more.")
    if not inspect(engine).has_table(products.name):
        raise FeedsyncError("The source database holds no sample catalog; run demo:seed first.")
    rng = random.Random(seed)
    deletable = products.c.type != "configurable"
    with engine.begin() as conn:
        total = conn.execute(select(func.count()).select_from(products)).scalar_one()
        can_delete = conn.execute(
            select(func.count()).select_from(products).where(deletable)
        ).scalar_one()
        if delete > can_delete:
            raise FeedsyncError(
                f"Only {can_delete} products can be deleted (configurable parents are kept), not {delete}."
            )
        if update > total - delete:
            besides = f" besides the {delete} to delete" if delete else ""
            raise FeedsyncError(
                f"Only {total - delete} products can be updated{besides}, not {update}."
            )
        deleted = sorted(_choose(conn, rng, delete, deletable, set()))
        updated = sorted(_choose(conn, rng, update, true(), set(deleted)))
        _update_products(conn, rng, updated)
        for part in _chunks(deleted):
            for table in (
                product_prices,
                product_overrides,
                product_categories,
                product_attribute_values,
            ):
                conn.execute(table.delete().where(table.c.product_id.in_(part)))
            conn.execute(products.delete().where(products.c.id.in_(part)))
    return {"updated": [str(i) for i in updated], "deleted": [str(i) for i in deleted]}


def _update_products(conn: Connection, rng: random.Random, ids: list[int]) -> None:
    """A new name (revision counter + 1), a new price for one or two customer groups, updated_at = now;
    a product's price overrides follow its new price."""
    now = datetime.now(UTC).replace(tzinfo=None)
    names: dict[int, str] = {}
    prices: dict[tuple[int, int], float] = {}
    for part in _chunks(ids):
        names.update(
            conn.execute(
                select(products.c.id, products.c.name).where(products.c.id.in_(part))
            ).all()
        )
        for product_id, group, price in conn.execute(
            select(
                product_prices.c.product_id,
                product_prices.c.customer_group_id,
                product_prices.c.price,
            ).where(product_prices.c.product_id.in_(part))
        ):
            prices[product_id, group] = price
    renames = []
    reprices = []
    general: dict[int, float] = {}  # new General (group 1) prices, which overrides follow
    for product_id in ids:
        name = names[product_id]
        match = _REVISION.search(name)
        revision = int(match.group(1)) + 1 if match else 1
        words = name[: match.start()].split(" ") if match else name.split(" ")
        words[0] = rng.choice(sample.ADJECTIVES)
        renames.append(
            {"pid": product_id, "new_name": f"{' '.join(words)} (rev {revision})", "now": now}
        )
        for group in rng.sample(range(len(sample.CUSTOMER_GROUPS)), rng.randint(1, 2)):
            old = prices.get((product_id, group))
            if old is None:
                continue
            new = round(old * rng.uniform(0.8, 1.2), 2)
            new = new if new != old else round(old + 0.01, 2)
            reprices.append({"pid": product_id, "gid": group, "new_price": new})
            if group == 1:
                general[product_id] = new
    if renames:
        conn.execute(
            products.update()
            .where(products.c.id == bindparam("pid"))
            .values(name=bindparam("new_name"), updated_at=bindparam("now")),
            renames,
        )
    if reprices:
        # An override keeps its ratio to the General price (group 1), when that one changes.
        reoverrides = [
            {"pid": pid, "ratio": price / prices[pid, 1], "now": now}
            for pid, price in general.items()
            if prices.get((pid, 1))
        ]
        if reoverrides:
            conn.execute(
                product_overrides.update()
                .where(
                    product_overrides.c.product_id == bindparam("pid"),
                    product_overrides.c.price.is_not(None),
                )
                .values(
                    price=func.round(
                        cast(product_overrides.c.price * bindparam("ratio"), Numeric), 2
                    ),
                    updated_at=bindparam("now"),
                ),
                reoverrides,
            )
        conn.execute(
            product_prices.update()
            .where(
                product_prices.c.product_id == bindparam("pid"),
                product_prices.c.customer_group_id == bindparam("gid"),
            )
            .values(price=bindparam("new_price")),
            reprices,
        )
