"""The sample commerce schema of the source database (SQLAlchemy Core; SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
)

# Named constraints, so that a bulk load can drop and re-add foreign keys by name.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _money(name: str, nullable: bool = False) -> Column:
    return Column(name, Numeric(12, 2, asdecimal=False), nullable=nullable)


categories = Table(
    "categories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("parent_id", Integer, ForeignKey("categories.id"), nullable=True, index=True),
    Column("name", String(255), nullable=False),
    Column("url_key", String(255), nullable=False),
    Column("position", Integer, nullable=False, default=0),
    Column("updated_at", DateTime, nullable=False),
)

products = Table(
    "products",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("sku", String(64), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("type", String(16), nullable=False),  # simple | configurable
    Column("parent_id", Integer, ForeignKey("products.id"), nullable=True),
    Column("status", String(16), nullable=False),  # enabled | disabled
    Column("description", Text, nullable=True),
    Column("weight", Numeric(10, 3, asdecimal=False), nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Index("ix_products_parent_id", "parent_id"),
)

# The product link tables are WITHOUT ROWID in SQLite, i.e. clustered on their primary key: builders
# read them by product id range, which then is one contiguous scan instead of index lookups.
product_categories = Table(
    "product_categories",
    metadata,
    Column("product_id", Integer, ForeignKey("products.id"), primary_key=True),
    Column("category_id", Integer, ForeignKey("categories.id"), primary_key=True),
    Column("position", Integer, nullable=False, default=0),
    sqlite_with_rowid=False,
)

customer_groups = Table(
    "customer_groups",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("code", String(64), nullable=False, unique=True),
)

product_prices = Table(
    "product_prices",
    metadata,
    Column("product_id", Integer, ForeignKey("products.id"), primary_key=True),
    Column("customer_group_id", Integer, ForeignKey("customer_groups.id"), primary_key=True),
    _money("price"),
    _money("special_price", nullable=True),
    sqlite_with_rowid=False,
)

# Per website and customer group, a product's price and visibility differ from the catalog's (as
# B2B shared catalogs and category permissions make them in Adobe Commerce). Deleting a product
# deletes its overrides, as the application's own foreign keys would.
product_overrides = Table(
    "product_overrides",
    metadata,
    Column("product_id", Integer, ForeignKey("products.id", ondelete="CASCADE"), primary_key=True),
    Column("website_code", String(32), primary_key=True),
    Column("customer_group_id", Integer, ForeignKey("customer_groups.id"), primary_key=True),
    _money("price", nullable=True),  # NULL: the catalog price applies
    Column("displayable", Boolean, nullable=False),  # False: hidden from that group there
    Column("updated_at", DateTime, nullable=False),
    sqlite_with_rowid=False,
)

attributes = Table(
    "attributes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("label", String(255), nullable=False),
    Column("type", String(16), nullable=False),  # select | text | number
)

attribute_options = Table(
    "attribute_options",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("attribute_id", Integer, ForeignKey("attributes.id"), nullable=False),
    Column("value", String(255), nullable=False),
    Column("position", Integer, nullable=False, default=0),
    Index("ix_attribute_options_attribute_id", "attribute_id"),
)

product_attribute_values = Table(
    "product_attribute_values",
    metadata,
    Column("product_id", Integer, ForeignKey("products.id"), primary_key=True),
    Column("attribute_id", Integer, ForeignKey("attributes.id"), primary_key=True),
    Column("value", String(255), nullable=False),
    sqlite_with_rowid=False,
)

orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("increment_id", String(32), nullable=False, unique=True),
    Column("customer_email", String(255), nullable=False),
    Column("status", String(32), nullable=False),
    _money("grand_total"),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

order_items = Table(
    "order_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("order_id", Integer, ForeignKey("orders.id"), nullable=False),
    # Not a foreign key: an order keeps its items (sku, product id) as history when a product is deleted.
    Column("product_id", Integer, nullable=True),
    Column("sku", String(64), nullable=False),
    Column("qty", Integer, nullable=False),
    _money("price"),
    Index("ix_order_items_order_id", "order_id"),
)


def create_schema(engine: Engine) -> None:
    """Create the commerce tables that are missing (existing tables and rows are left alone)."""
    metadata.create_all(engine, checkfirst=True)


# A configurable product and its variants are rows of the same table: the two sides of that join.
child_products = products.alias("child")
parent_products = products.alias("parent")
