"""The built-in feeds as queries: per item its entity, id, `updated_at` and its document as canonical JSON text, built by the database (byte for byte what the builders give)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, Subquery, null, select

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
from feeds.definitions import Keys
from feeds.documents import Json


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
        rows = rows.join(child_products, child_products.c.id == v.product_id).where(
            a.type == "select"
        )
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
    child, parent = child_products.c, parent_products.c
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
            child_products.join(parent_products, parent.id == child.parent_id).outerjoin(
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
