"""The six built-in feeds of the sample commerce schema.

Each builder reads one batch of entities with a handful of set-based queries (the entity rows, then
the related rows of the whole batch) and yields one document per feed item, in entity order.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from feeds.commerce.schema import (
    attribute_options,
    attributes,
    categories,
    customer_groups,
    order_items,
    orders,
    product_attribute_values,
    product_categories,
    product_prices,
    products,
)
from feeds.definitions import Document, Feed, Keys, Watch

_children = products.alias("child")
_parents = products.alias("parent")


def _iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC to the second with a Z (naive datetimes are UTC)."""
    return None if moment is None else moment.isoformat(timespec="seconds") + "Z"


def _float(value: float | None) -> float | None:
    # SQLite hands back NUMERIC 10.0 as the integer 10: money is always a float in documents.
    return None if value is None else float(value)


def build_products(conn: Connection, keys: Keys) -> Iterator[Document]:
    """One document per product row (variant children included), id = product id."""
    codes = dict(conn.execute(select(attributes.c.id, attributes.c.code)).all())
    links: dict[int, list[int]] = {}
    for product_id, category_id in conn.execute(
        select(product_categories.c.product_id, product_categories.c.category_id)
        .where(keys.match(product_categories.c.product_id))
        .order_by(product_categories.c.product_id, product_categories.c.category_id)
    ):
        if product_id in links:
            links[product_id].append(category_id)
        else:
            links[product_id] = [category_id]
    values: dict[int, list[tuple[str, str]]] = {}
    for product_id, attribute_id, value in conn.execute(
        select(
            product_attribute_values.c.product_id,
            product_attribute_values.c.attribute_id,
            product_attribute_values.c.value,
        ).where(keys.match(product_attribute_values.c.product_id))
    ):
        pair = (codes[attribute_id], value)
        if product_id in values:
            values[product_id].append(pair)
        else:
            values[product_id] = [pair]
    p = products.c
    rows = conn.execute(
        select(
            p.id, p.sku, p.name, p.type, p.parent_id, p.status, p.description, p.weight,
            p.created_at, p.updated_at,
        )
        .where(keys.match(p.id))
        .order_by(p.id)
    )
    for id_, sku, name, type_, parent_id, status, description, weight, created_at, updated_at in rows:
        pairs = values.get(id_)
        yield Document(
            id_,
            str(id_),
            {
                "id": id_,
                "sku": sku,
                "name": name,
                "type": type_,
                "status": status,
                "parentId": parent_id,
                "description": description,
                "weight": _float(weight),
                "categories": links.get(id_, []),
                "attributes": dict(sorted(pairs)) if pairs else {},
                "createdAt": created_at.isoformat(timespec="seconds") + "Z",
                "updatedAt": updated_at.isoformat(timespec="seconds") + "Z",
            },
            updated_at,
        )


def build_product_attributes(conn: Connection, keys: Keys) -> Iterator[Document]:
    """One document per attribute, id = attribute code, with its option values by position."""
    options: dict[int, list[str]] = {}
    for attribute_id, value in conn.execute(
        select(attribute_options.c.attribute_id, attribute_options.c.value)
        .where(keys.match(attribute_options.c.attribute_id))
        .order_by(attribute_options.c.attribute_id, attribute_options.c.position, attribute_options.c.id)
    ):
        options.setdefault(attribute_id, []).append(value)
    a = attributes.c
    for id_, code, label, type_ in conn.execute(
        select(a.id, a.code, a.label, a.type).where(keys.match(a.id)).order_by(a.id)
    ):
        data = {"id": id_, "code": code, "label": label, "type": type_, "options": options.get(id_, [])}
        yield Document(id_, code, data)


def build_categories(conn: Connection, keys: Keys) -> Iterator[Document]:
    """One document per category, id = category id."""
    c = categories.c
    for id_, parent_id, name, url_key, position, updated_at in conn.execute(
        select(c.id, c.parent_id, c.name, c.url_key, c.position, c.updated_at)
        .where(keys.match(c.id))
        .order_by(c.id)
    ):
        data = {
            "id": id_,
            "parentId": parent_id,
            "name": name,
            "urlKey": url_key,
            "position": position,
            "updatedAt": _iso(updated_at),
        }
        yield Document(id_, str(id_), data, updated_at)


def build_prices(conn: Connection, keys: Keys) -> Iterator[Document]:
    """One document per (product, customer group) price row, id = "<product id>-<group id>"."""
    groups = dict(conn.execute(select(customer_groups.c.id, customer_groups.c.code)).all())
    pp = product_prices.c
    rows = conn.execute(
        select(pp.product_id, pp.customer_group_id, pp.price, pp.special_price, products.c.sku, products.c.updated_at)
        .join(products, products.c.id == pp.product_id)
        .where(keys.match(pp.product_id))
        .order_by(pp.product_id, pp.customer_group_id)
    )
    for product_id, group_id, price, special_price, sku, updated_at in rows:
        yield Document(
            product_id,
            f"{product_id}-{group_id}",
            {
                "productId": product_id,
                "sku": sku,
                "customerGroupId": group_id,
                "customerGroup": groups.get(group_id),
                "price": float(price),
                "specialPrice": None if special_price is None else float(special_price),
            },
            updated_at,
        )


def build_variants(conn: Connection, keys: Keys) -> Iterator[Document]:
    """One document per variant child of a configurable parent (the entity), id = "<parent>-<child>"."""
    select_codes = dict(
        conn.execute(select(attributes.c.id, attributes.c.code).where(attributes.c.type == "select")).all()
    )
    options: dict[int, list[tuple[str, str]]] = {}
    for child_id, attribute_id, value in conn.execute(
        select(
            product_attribute_values.c.product_id,
            product_attribute_values.c.attribute_id,
            product_attribute_values.c.value,
        )
        .join(_children, _children.c.id == product_attribute_values.c.product_id)
        .where(keys.match(_children.c.parent_id))
    ):
        code = select_codes.get(attribute_id)
        if code is not None:
            options.setdefault(child_id, []).append((code, value))
    rows = conn.execute(
        select(
            _children.c.parent_id, _children.c.id, _parents.c.sku, _children.c.sku,
            _children.c.updated_at, _parents.c.updated_at,
        )
        .join(_parents, _parents.c.id == _children.c.parent_id)
        .where(keys.match(_children.c.parent_id))
        .order_by(_children.c.parent_id, _children.c.id)
    )
    for parent_id, child_id, parent_sku, sku, child_updated, parent_updated in rows:
        pairs = options.get(child_id)
        id_ = f"{parent_id}-{child_id}"
        yield Document(
            parent_id,
            id_,
            {
                "id": id_,
                "parentId": parent_id,
                "productId": child_id,
                "parentSku": parent_sku,
                "sku": sku,
                "optionValues": dict(sorted(pairs)) if pairs else {},
            },
            # The document shows both rows: it changed when either of them did.
            max(child_updated, parent_updated),
        )


def build_orders(conn: Connection, keys: Keys) -> Iterator[Document]:
    """One document per order with its items by item id, id = the order's increment id."""
    items: dict[int, list[dict[str, object]]] = {}
    i = order_items.c
    for order_id, sku, product_id, qty, price in conn.execute(
        select(i.order_id, i.sku, i.product_id, i.qty, i.price)
        .where(keys.match(i.order_id))
        .order_by(i.order_id, i.id)
    ):
        item = {"sku": sku, "productId": product_id, "qty": qty, "price": float(price)}
        if order_id in items:
            items[order_id].append(item)
        else:
            items[order_id] = [item]
    o = orders.c
    for id_, increment_id, status, email, grand_total, created_at, updated_at in conn.execute(
        select(o.id, o.increment_id, o.status, o.customer_email, o.grand_total, o.created_at, o.updated_at)
        .where(keys.match(o.id))
        .order_by(o.id)
    ):
        yield Document(
            id_,
            increment_id,
            {
                "id": id_,
                "incrementId": increment_id,
                "status": status,
                "customerEmail": email,
                "grandTotal": float(grand_total),
                "createdAt": _iso(created_at),
                "updatedAt": _iso(updated_at),
                "items": items.get(id_, []),
            },
            updated_at,
        )


FEEDS: list[Feed] = [
    Feed(
        name="products",
        indexer_id="catalog_data_exporter_products",
        title="Product Feed",
        key_table="products",
        build=build_products,
        watches=(
            Watch("products", "id"),
            Watch("product_categories", "product_id"),
            Watch("product_attribute_values", "product_id"),
        ),
        description="Every product row (variant children included) with its categories and attributes.",
    ),
    Feed(
        name="productAttributes",
        indexer_id="catalog_data_exporter_product_attributes",
        title="Product Attributes Feed",
        key_table="attributes",
        build=build_product_attributes,
        watches=(Watch("attributes", "id"), Watch("attribute_options", "attribute_id")),
        description="Product attributes with their options.",
    ),
    Feed(
        name="categories",
        indexer_id="catalog_data_exporter_categories",
        title="Category Feed",
        key_table="categories",
        build=build_categories,
        watches=(Watch("categories", "id"),),
        description="The category tree, one item per category.",
    ),
    Feed(
        name="prices",
        indexer_id="catalog_data_exporter_product_prices",
        title="Prices Feed",
        key_table="products",
        build=build_prices,
        watches=(Watch("product_prices", "product_id"), Watch("products", "id")),
        description="One item per product and customer group price.",
    ),
    Feed(
        name="variants",
        indexer_id="catalog_data_exporter_product_variants",
        title="Product Variant Feed",
        key_table="products",
        build=build_variants,
        watches=(
            Watch("products", "parent_id"),
            Watch("products", "id"),
            Watch("product_attribute_values", "(SELECT parent_id FROM products WHERE id = {row}.product_id)"),
        ),
        description="The variant children of configurable products, keyed by parent.",
    ),
    Feed(
        name="orders",
        indexer_id="sales_data_exporter_orders",
        title="Sales Order Feed",
        key_table="orders",
        build=build_orders,
        watches=(Watch("orders", "id"), Watch("order_items", "order_id")),
        sales=True,
        description="Sales orders with their items.",
    ),
]
