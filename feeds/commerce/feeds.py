"""The seven built-in feeds of the sample commerce schema.

Each is a query (`queries.py`): the database builds every document and its hash. The Python
builders (`builders.py`) give the same bytes; they are the reference the queries are tested against.
"""

from __future__ import annotations

from feeds.commerce.queries import (
    query_categories,
    query_orders,
    query_prices,
    query_product_attributes,
    query_product_overrides,
    query_products,
    query_variants,
)
from feeds.definitions import Feed, Watch

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
