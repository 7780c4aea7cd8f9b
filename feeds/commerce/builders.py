"""The built-in feeds' documents built in Python: the reference the queries are held to byte for byte, and an example for custom feeds that need Python."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Connection

from feeds.commerce.schema import (
    attribute_options,
    attributes,
    categories,
    child_products,
    customer_groups,
    order_items,
    orders,
    parent_products,
    product_attribute_values,
    product_categories,
    product_overrides,
    product_prices,
    products,
)
from feeds.definitions import Document, Keys


def _iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC to the second with a Z (naive datetimes are UTC)."""
    # isoformat() always starts with YYYY-MM-DDTHH:MM:SS; slicing is faster than timespec="seconds".
    return None if moment is None else moment.isoformat()[:19] + "Z"


def _attribute_codes(conn: Connection, select_only: bool = False) -> tuple[dict[int, str], bool]:
    """Attribute codes by id, and whether id order is code order (then no per-document sort is needed)."""
    query = select(attributes.c.id, attributes.c.code)
    if select_only:
        query = query.where(attributes.c.type == "select")
    codes: dict[int, str] = dict(conn.execute(query).all())
    return codes, sorted(codes) == sorted(codes, key=codes.__getitem__)


def _values_by_product(
    rows: Iterable[tuple[int, int, str]], codes: dict[int, str], in_code_order: bool
) -> dict[int, dict[str, str]]:
    """{product id: {code: value}} with sorted codes, from (product id, attribute id, value) rows in id order."""
    values: dict[int, dict[str, str]] = {}
    for product_id, attribute_id, value in rows:
        code = codes.get(attribute_id)
        if code is None:
            continue
        pairs = values.get(product_id)
        if pairs is None:
            values[product_id] = {code: value}
        else:
            pairs[code] = value
    if not in_code_order:
        values = {product_id: dict(sorted(pairs.items())) for product_id, pairs in values.items()}
    return values


def build_products(conn: Connection, keys: Keys) -> Iterator[Document]:
    """One document per product row (variant children included), id = product id."""
    pc = product_categories.c
    links: dict[int, list[int]] = {}
    for product_id, category_id in conn.execute(
        select(pc.product_id, pc.category_id)
        .where(keys.match(pc.product_id))
        .order_by(pc.product_id, pc.category_id)
    ).all():
        categories_of = links.get(product_id)
        if categories_of is None:
            links[product_id] = [category_id]
        else:
            categories_of.append(category_id)
    codes, in_code_order = _attribute_codes(conn)
    v = product_attribute_values.c
    values = _values_by_product(
        conn.execute(
            select(v.product_id, v.attribute_id, v.value)
            .where(keys.match(v.product_id))
            .order_by(v.product_id, v.attribute_id)
        ).all(),
        codes,
        in_code_order,
    )
    p = products.c
    rows = conn.execute(
        select(
            p.id,
            p.sku,
            p.name,
            p.type,
            p.parent_id,
            p.status,
            p.description,
            p.weight,
            p.created_at,
            p.updated_at,
        )
        .where(keys.match(p.id))
        .order_by(p.id)
    ).all()
    for id_, sku, name, type_, parent_id, status, description, weight, created, updated in rows:
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
                # SQLite hands NUMERIC 3.0 back as the integer 3: numbers stay floats in documents.
                "weight": None if weight is None else float(weight),
                "categories": links.get(id_, []),
                "attributes": values.get(id_, {}),
                "createdAt": _iso(created),
                "updatedAt": _iso(updated),
            },
            updated,
        )


def build_product_attributes(conn: Connection, keys: Keys) -> Iterator[Document]:
    """One document per attribute, id = attribute code, with its option values by position."""
    options: dict[int, list[str]] = {}
    for attribute_id, value in conn.execute(
        select(attribute_options.c.attribute_id, attribute_options.c.value)
        .where(keys.match(attribute_options.c.attribute_id))
        .order_by(
            attribute_options.c.attribute_id, attribute_options.c.position, attribute_options.c.id
        )
    ).all():
        options.setdefault(attribute_id, []).append(value)
    a = attributes.c
    for id_, code, label, type_ in conn.execute(
        select(a.id, a.code, a.label, a.type).where(keys.match(a.id)).order_by(a.id)
    ).all():
        data = {
            "id": id_,
            "code": code,
            "label": label,
            "type": type_,
            "options": options.get(id_, []),
        }
        yield Document(id_, code, data)


def build_categories(conn: Connection, keys: Keys) -> Iterator[Document]:
    """One document per category, id = category id."""
    c = categories.c
    for id_, parent_id, name, url_key, position, updated_at in conn.execute(
        select(c.id, c.parent_id, c.name, c.url_key, c.position, c.updated_at)
        .where(keys.match(c.id))
        .order_by(c.id)
    ).all():
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
        select(
            pp.product_id,
            pp.customer_group_id,
            pp.price,
            pp.special_price,
            products.c.sku,
            products.c.updated_at,
        )
        .join(products, products.c.id == pp.product_id)
        .where(keys.match(pp.product_id))
        .order_by(pp.product_id, pp.customer_group_id)
    ).all()
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


def build_product_overrides(conn: Connection, keys: Keys) -> Iterator[Document]:
    """One document per product override (website, customer group), id =
    "<product id>-<website code>-<group id>"; the entity is the product."""
    groups = dict(conn.execute(select(customer_groups.c.id, customer_groups.c.code)).all())
    po = product_overrides.c
    rows = conn.execute(
        select(
            po.product_id,
            po.website_code,
            po.customer_group_id,
            po.price,
            po.displayable,
            po.updated_at,
            products.c.sku,
            products.c.updated_at,
        )
        .join(products, products.c.id == po.product_id)
        .where(keys.match(po.product_id))
        .order_by(po.product_id, po.website_code, po.customer_group_id)
    ).all()
    for product_id, website, group_id, price, displayable, updated, sku, product_updated in rows:
        yield Document(
            product_id,
            f"{product_id}-{website}-{group_id}",
            {
                "productId": product_id,
                "sku": sku,
                "websiteCode": website,
                "customerGroupId": group_id,
                "customerGroupCode": groups.get(group_id),
                "displayable": bool(displayable),
                "price": None if price is None else float(price),
                "updatedAt": _iso(updated),
            },
            # The document shows the product's SKU too: it changed when either row did.
            max(updated, product_updated),
        )


def build_variants(conn: Connection, keys: Keys) -> Iterator[Document]:
    """One document per variant child of a configurable parent (the entity), id = "<parent>-<child>"."""
    codes, in_code_order = _attribute_codes(conn, select_only=True)
    v = product_attribute_values.c
    options = _values_by_product(
        conn.execute(
            select(v.product_id, v.attribute_id, v.value)
            .join(child_products, child_products.c.id == v.product_id)
            .where(keys.match(child_products.c.parent_id))
            .order_by(v.product_id, v.attribute_id)
        ).all(),
        codes,
        in_code_order,
    )
    rows = conn.execute(
        select(
            child_products.c.parent_id,
            child_products.c.id,
            parent_products.c.sku,
            child_products.c.sku,
            child_products.c.updated_at,
            parent_products.c.updated_at,
        )
        .join(parent_products, parent_products.c.id == child_products.c.parent_id)
        .where(keys.match(child_products.c.parent_id))
        .order_by(child_products.c.parent_id, child_products.c.id)
    ).all()
    for parent_id, child_id, parent_sku, sku, child_updated, parent_updated in rows:
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
                "optionValues": options.get(child_id, {}),
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
    ).all():
        item = {"sku": sku, "productId": product_id, "qty": qty, "price": float(price)}
        if order_id in items:
            items[order_id].append(item)
        else:
            items[order_id] = [item]
    o = orders.c
    for id_, increment_id, status, email, grand_total, created_at, updated_at in conn.execute(
        select(
            o.id,
            o.increment_id,
            o.status,
            o.customer_email,
            o.grand_total,
            o.created_at,
            o.updated_at,
        )
        .where(keys.match(o.id))
        .order_by(o.id)
    ).all():
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
