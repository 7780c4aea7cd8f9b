"""The seven built-in feeds of the sample commerce schema.

Each builder reads one batch of entities with a handful of set-based queries (the entity rows, then
the related rows of the whole batch) and yields one document per feed item, in entity order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Subquery, null, select
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
    product_overrides,
    product_prices,
    products,
)
from feeds.definitions import Document, Feed, Keys, Watch
from feeds.documents import Json

_children = products.alias("child")
_parents = products.alias("parent")


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
            .join(_children, _children.c.id == v.product_id)
            .where(keys.match(_children.c.parent_id))
            .order_by(v.product_id, v.attribute_id)
        ).all(),
        codes,
        in_code_order,
    )
    rows = conn.execute(
        select(
            _children.c.parent_id,
            _children.c.id,
            _parents.c.sku,
            _children.c.sku,
            _children.c.updated_at,
            _parents.c.updated_at,
        )
        .join(_parents, _parents.c.id == _children.c.parent_id)
        .where(keys.match(_children.c.parent_id))
        .order_by(_children.c.parent_id, _children.c.id)
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


# --- the same feeds as queries: the database builds each document and its hash -------------------
# Each gives, per item, the entity, the item id, the `updated_at` the run reports and the document
# as canonical JSON text: byte for byte what the builders above give (tests/test_commerce.py).


def _link_ids(keys: Keys, j: Json) -> Subquery:
    pc = product_categories.c
    return j.grouped(
        select().where(keys.match(pc.product_id)),
        pc.product_id,
        j.integer(pc.category_id),
        [pc.category_id],
    )


def _attribute_values(keys: Keys, j: Json, entity: Any, *, select_only: bool = False) -> Subquery:
    """Per product, its attribute values as a JSON object by attribute code."""
    v, a = product_attribute_values.c, attributes.c
    rows = select().select_from(product_attribute_values.join(attributes, a.id == v.attribute_id))
    if select_only:
        rows = rows.join(_children, _children.c.id == v.product_id).where(a.type == "select")
    return j.grouped(
        rows.where(keys.match(entity)),
        v.product_id,
        j.entry(a.code, j.string(v.value)),
        [j.sort_key(a.code)],
        brackets="{}",
    )


def query_products(keys: Keys, j: Json) -> Select[Any]:
    p = products.c
    links = _link_ids(keys, j)
    values = _attribute_values(keys, j, product_attribute_values.c.product_id)
    body = j.object(
        {
            "id": j.integer(p.id),
            "sku": j.string(p.sku),
            "name": j.string(p.name),
            "type": j.string(p.type),
            "status": j.string(p.status),
            "parentId": j.integer(p.parent_id),
            "description": j.string(p.description),
            "weight": j.number(p.weight),
            "categories": j.or_empty(links.c.json, "[]"),
            "attributes": j.or_empty(values.c.json, "{}"),
            "createdAt": j.timestamp(p.created_at),
            "updatedAt": j.timestamp(p.updated_at),
        }
    )
    return (
        select(
            p.id.label("entity"),
            j.text_of(p.id).label("id"),
            p.updated_at.label("updated_at"),
            body.label("body"),
        )
        .select_from(
            products.outerjoin(links, links.c.key == p.id).outerjoin(values, values.c.key == p.id)
        )
        .where(keys.match(p.id))
    )


def query_product_attributes(keys: Keys, j: Json) -> Select[Any]:
    o, a = attribute_options.c, attributes.c
    options = j.grouped(
        select().where(keys.match(o.attribute_id)),
        o.attribute_id,
        j.string(o.value),
        [o.position, o.id],
    )
    body = j.object(
        {
            "id": j.integer(a.id),
            "code": j.string(a.code),
            "label": j.string(a.label),
            "type": j.string(a.type),
            "options": j.or_empty(options.c.json, "[]"),
        }
    )
    return (
        select(
            a.id.label("entity"),
            a.code.label("id"),
            null().label("updated_at"),
            body.label("body"),
        )
        .select_from(attributes.outerjoin(options, options.c.key == a.id))
        .where(keys.match(a.id))
    )


def query_categories(keys: Keys, j: Json) -> Select[Any]:
    c = categories.c
    body = j.object(
        {
            "id": j.integer(c.id),
            "parentId": j.integer(c.parent_id),
            "name": j.string(c.name),
            "urlKey": j.string(c.url_key),
            "position": j.integer(c.position),
            "updatedAt": j.timestamp(c.updated_at),
        }
    )
    return select(
        c.id.label("entity"),
        j.text_of(c.id).label("id"),
        c.updated_at.label("updated_at"),
        body.label("body"),
    ).where(keys.match(c.id))


def query_prices(keys: Keys, j: Json) -> Select[Any]:
    pp, p, g = product_prices.c, products.c, customer_groups.c
    body = j.object(
        {
            "productId": j.integer(pp.product_id),
            "sku": j.string(p.sku),
            "customerGroupId": j.integer(pp.customer_group_id),
            "customerGroup": j.string(g.code),
            "price": j.number(pp.price),
            "specialPrice": j.number(pp.special_price),
        }
    )
    item_id = j.text_of(pp.product_id).concat("-").concat(j.text_of(pp.customer_group_id))
    return (
        select(
            pp.product_id.label("entity"),
            item_id.label("id"),
            p.updated_at.label("updated_at"),
            body.label("body"),
        )
        .select_from(
            product_prices.join(products, p.id == pp.product_id).outerjoin(
                customer_groups, g.id == pp.customer_group_id
            )
        )
        .where(keys.match(pp.product_id))
    )


def query_product_overrides(keys: Keys, j: Json) -> Select[Any]:
    po, p, g = product_overrides.c, products.c, customer_groups.c
    body = j.object(
        {
            "productId": j.integer(po.product_id),
            "sku": j.string(p.sku),
            "websiteCode": j.string(po.website_code),
            "customerGroupId": j.integer(po.customer_group_id),
            "customerGroupCode": j.string(g.code),
            "displayable": j.boolean(po.displayable),
            "price": j.number(po.price),
            "updatedAt": j.timestamp(po.updated_at),
        }
    )
    item_id = (
        j.text_of(po.product_id)
        .concat("-")
        .concat(po.website_code)
        .concat("-")
        .concat(j.text_of(po.customer_group_id))
    )
    return (
        select(
            po.product_id.label("entity"),
            item_id.label("id"),
            j.greatest(po.updated_at, p.updated_at).label("updated_at"),
            body.label("body"),
        )
        .select_from(
            product_overrides.join(products, p.id == po.product_id).outerjoin(
                customer_groups, g.id == po.customer_group_id
            )
        )
        .where(keys.match(po.product_id))
    )


def query_variants(keys: Keys, j: Json) -> Select[Any]:
    child, parent = _children.c, _parents.c
    options = _attribute_values(keys, j, child.parent_id, select_only=True)
    item_id = j.text_of(child.parent_id).concat("-").concat(j.text_of(child.id))
    body = j.object(
        {
            "id": j.string(item_id),
            "parentId": j.integer(child.parent_id),
            "productId": j.integer(child.id),
            "parentSku": j.string(parent.sku),
            "sku": j.string(child.sku),
            "optionValues": j.or_empty(options.c.json, "{}"),
        }
    )
    return (
        select(
            child.parent_id.label("entity"),
            item_id.label("id"),
            j.greatest(child.updated_at, parent.updated_at).label("updated_at"),
            body.label("body"),
        )
        .select_from(
            _children.join(_parents, parent.id == child.parent_id).outerjoin(
                options, options.c.key == child.id
            )
        )
        .where(keys.match(child.parent_id))
    )


def query_orders(keys: Keys, j: Json) -> Select[Any]:
    i, o = order_items.c, orders.c
    item = j.object(
        {
            "sku": j.string(i.sku),
            "productId": j.integer(i.product_id),
            "qty": j.integer(i.qty),
            "price": j.number(i.price),
        }
    )
    lines = j.grouped(select().where(keys.match(i.order_id)), i.order_id, item, [i.id])
    body = j.object(
        {
            "id": j.integer(o.id),
            "incrementId": j.string(o.increment_id),
            "status": j.string(o.status),
            "customerEmail": j.string(o.customer_email),
            "grandTotal": j.number(o.grand_total),
            "createdAt": j.timestamp(o.created_at),
            "updatedAt": j.timestamp(o.updated_at),
            "items": j.or_empty(lines.c.json, "[]"),
        }
    )
    return (
        select(
            o.id.label("entity"),
            o.increment_id.label("id"),
            o.updated_at.label("updated_at"),
            body.label("body"),
        )
        .select_from(orders.outerjoin(lines, lines.c.key == o.id))
        .where(keys.match(o.id))
    )


FEEDS: list[Feed] = [
    Feed(
        name="products",
        indexer_id="catalog_data_exporter_products",
        title="Product Feed",
        key_table="products",
        query=query_products,
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
        query=query_product_attributes,
        watches=(Watch("attributes", "id"), Watch("attribute_options", "attribute_id")),
        description="Product attributes with their options.",
    ),
    Feed(
        name="categories",
        indexer_id="catalog_data_exporter_categories",
        title="Category Feed",
        key_table="categories",
        query=query_categories,
        watches=(Watch("categories", "id"),),
        description="The category tree, one item per category.",
    ),
    Feed(
        name="prices",
        indexer_id="catalog_data_exporter_product_prices",
        title="Prices Feed",
        key_table="products",
        query=query_prices,
        watches=(Watch("product_prices", "product_id"), Watch("products", "id")),
        description="One item per product and customer group price.",
    ),
    Feed(
        name="productOverrides",
        indexer_id="catalog_data_exporter_product_overrides",
        title="Product Overrides Feed",
        key_table="products",
        query=query_product_overrides,
        watches=(Watch("product_overrides", "product_id"), Watch("products", "id")),
        description="Price and visibility overrides of products per website and customer group.",
    ),
    Feed(
        name="variants",
        indexer_id="catalog_data_exporter_product_variants",
        title="Product Variant Feed",
        key_table="products",
        query=query_variants,
        watches=(
            Watch("products", "parent_id"),
            Watch("products", "id"),
            Watch(
                "product_attribute_values",
                "(SELECT parent_id FROM products WHERE id = {row}.product_id)",
            ),
        ),
        description="The variant children of configurable products, keyed by parent.",
    ),
    Feed(
        name="orders",
        indexer_id="sales_data_exporter_orders",
        title="Sales Order Feed",
        key_table="orders",
        query=query_orders,
        watches=(Watch("orders", "id"), Watch("order_items", "order_id")),
        sales=True,
        description="Sales orders with their items.",
    ),
]
