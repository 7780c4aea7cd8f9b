"""The sample commerce catalog: its schema, demo data, application-like changes and the seven feeds."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from feeds.commerce import builders, demo, sample
from feeds.commerce.feeds import FEEDS
from feeds.commerce.schema import (
    attributes,
    categories,
    metadata,
    order_items,
    orders,
    product_attribute_values,
    product_categories,
    product_overrides,
    product_prices,
    products,
)
from feeds.definitions import Document, Feed, Keys
from feeds.documents import Json, content_hash
from feeds.errors import FeedsyncError
from feeds.pipeline.diff import canonical, digest
from feeds.state.database import create_db_engine

ISO = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$"
FEED = {feed.name: feed for feed in FEEDS}


def sqlite_engine(path: Path) -> Engine:
    return create_engine(f"sqlite:///{path}")


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every commerce table, in primary key order."""
    with engine.connect() as conn:
        return {
            table.name: [
                tuple(row)
                for row in conn.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for table in metadata.sorted_tables
        }


def build(engine: Engine, feed: Feed, keys: Keys) -> list[Document]:
    with engine.connect() as conn:
        return list(feed.build(conn, keys))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """A seeded catalog of 400 products that tests only read."""
    engine = sqlite_engine(tmp_path_factory.mktemp("catalog") / "source.db")
    demo.seed(engine, 400)
    return engine


@pytest.fixture
def fresh(tmp_path: Path) -> Engine:
    """A seeded catalog of 200 products that a test may change."""
    engine = sqlite_engine(tmp_path / "source.db")
    demo.seed(engine, 200)
    return engine


def test_seeding_twice_with_the_same_seed_gives_identical_rows(tmp_path: Path) -> None:
    first, second, other = (sqlite_engine(tmp_path / f"{name}.db") for name in "abc")
    demo.seed(first, 250, seed=7)
    demo.seed(second, 250, seed=7)
    demo.seed(other, 250, seed=8)
    assert dump(first) == dump(second)
    assert dump(first)["products"] != dump(other)["products"]


def test_topping_up_in_steps_equals_seeding_at_once(tmp_path: Path) -> None:
    at_once, in_steps = sqlite_engine(tmp_path / "once.db"), sqlite_engine(tmp_path / "steps.db")
    demo.seed(at_once, 430)
    for size in (95, 200, 430):
        demo.seed(in_steps, size)
    assert dump(in_steps) == dump(at_once)


def test_seed_reports_what_it_added_and_adds_nothing_when_full(tmp_path: Path) -> None:
    engine = sqlite_engine(tmp_path / "source.db")
    added = demo.seed(engine, 300)
    assert added["products"] == 300
    assert added["orders"] == 30
    assert added["categories"] == 12
    assert added["product_prices"] == 1200
    assert added["product_overrides"] == 95
    assert demo.seed(engine, 300) == {}
    assert demo.seed(engine, 310)["products"] == 10


def test_new_products_continue_after_the_highest_id(fresh: Engine) -> None:
    demo.change(fresh, update=0, delete=5, seed=1)
    with fresh.connect() as conn:
        top = conn.execute(select(func.max(products.c.id))).scalar_one()
    assert demo.seed(fresh, 200)["products"] == 5
    with fresh.connect() as conn:
        count, new_top = conn.execute(select(func.count(), func.max(products.c.id))).one()
    assert (count, new_top) == (200, top + 5)


def test_categories_form_a_three_level_tree(catalog: Engine) -> None:
    with catalog.connect() as conn:
        parents = dict(conn.execute(select(categories.c.id, categories.c.parent_id)).all())

    def depth(category: int) -> int:
        parent = parents[category]
        return 1 if parent is None else 1 + depth(parent)

    assert len(parents) >= 12
    assert {depth(category) for category in parents} == {1, 2, 3}


def test_about_one_product_in_ten_is_configurable_with_two_to_four_distinct_variants(
    catalog: Engine,
) -> None:
    with catalog.connect() as conn:
        rows = conn.execute(select(products.c.id, products.c.type, products.c.parent_id)).all()
        colors = conn.execute(
            select(products.c.parent_id, product_attribute_values.c.value)
            .join(products, products.c.id == product_attribute_values.c.product_id)
            .where(products.c.parent_id.is_not(None), product_attribute_values.c.attribute_id == 3)
        ).all()
    parents = {id_ for id_, type_, _ in rows if type_ == "configurable"}
    children = Counter(parent for _, _, parent in rows if parent is not None)
    assert len(parents) == 40
    assert set(children) == parents
    assert set(children.values()) <= {2, 3, 4}
    by_parent: dict[int, list[str]] = {}
    for parent, color in colors:
        by_parent.setdefault(parent, []).append(color)
    assert all(len(set(values)) == len(values) for values in by_parent.values())


def test_every_product_has_four_prices_one_or_two_categories_and_three_to_five_attributes(
    catalog: Engine,
) -> None:
    with catalog.connect() as conn:
        prices = Counter(conn.execute(select(product_prices.c.product_id)).scalars())
        links = Counter(conn.execute(select(product_categories.c.product_id)).scalars())
        values = Counter(conn.execute(select(product_attribute_values.c.product_id)).scalars())
    assert set(prices.values()) == {4}
    assert set(links.values()) == {1, 2}
    assert set(values.values()) <= {3, 4, 5}
    assert len(prices) == len(links) == len(values) == 400


def test_about_one_product_in_four_has_a_wholesale_override_and_one_in_sixteen_is_hidden_from_guests(
    catalog: Engine,
) -> None:
    with catalog.connect() as conn:
        rows = conn.execute(select(product_overrides)).all()
    wholesale = [r for r in rows if r.customer_group_id == 2]
    hidden = [r for r in rows if r.customer_group_id == 0]
    assert len(wholesale) + len(hidden) == len(rows)
    assert 70 <= len(wholesale) <= 130 and 10 <= len(hidden) <= 40  # of 400 products
    assert {r.website_code for r in wholesale} == set(sample.WEBSITES)
    assert all(r.displayable and r.price is not None for r in wholesale)
    assert all(r.website_code == "base" and not r.displayable and r.price is None for r in hidden)


def test_orders_have_one_to_four_items_of_existing_products(catalog: Engine) -> None:
    with catalog.connect() as conn:
        items = conn.execute(select(order_items.c.product_id, order_items.c.sku)).all()
        skus = dict(conn.execute(select(products.c.id, products.c.sku)).all())
        sizes = Counter(conn.execute(select(order_items.c.order_id)).scalars())
        order_ids = set(conn.execute(select(orders.c.id)).scalars())
    assert items and all(skus[product_id] == sku for product_id, sku in items)
    assert set(sizes) == order_ids and len(order_ids) == 40
    assert set(sizes.values()) <= {1, 2, 3, 4}


def test_the_seven_feeds_are_declared_with_their_indexers_and_titles() -> None:
    assert [(f.name, f.indexer_id, f.title) for f in FEEDS] == [
        ("products", "catalog_data_exporter_products", "Product Feed"),
        (
            "productAttributes",
            "catalog_data_exporter_product_attributes",
            "Product Attributes Feed",
        ),
        ("categories", "catalog_data_exporter_categories", "Category Feed"),
        ("prices", "catalog_data_exporter_product_prices", "Prices Feed"),
        (
            "productOverrides",
            "catalog_data_exporter_product_overrides",
            "Product Overrides Feed",
        ),
        ("variants", "catalog_data_exporter_product_variants", "Product Variant Feed"),
        ("orders", "sales_data_exporter_orders", "Sales Order Feed"),
    ]
    assert [f.name for f in FEEDS if f.sales] == ["orders"]


def test_product_documents_for_a_key_range(catalog: Engine) -> None:
    docs = build(catalog, FEED["products"], Keys(lo=10, hi=20))
    assert [d.id for d in docs] == [str(i) for i in range(11, 21)]
    doc = docs[0]
    assert doc.entity == 11
    assert set(doc.data) == {
        "id",
        "sku",
        "name",
        "type",
        "status",
        "parentId",
        "description",
        "weight",
        "categories",
        "attributes",
        "createdAt",
        "updatedAt",
    }
    assert doc.data["id"] == 11 and doc.data["sku"] == "SKU-00000011"
    assert doc.data["categories"] == sorted(doc.data["categories"]) and doc.data["categories"]
    assert list(doc.data["attributes"]) == sorted(doc.data["attributes"])
    assert isinstance(doc.data["weight"], float)
    assert doc.data["createdAt"] <= doc.data["updatedAt"]
    assert doc.updated_at is not None
    assert doc.data["updatedAt"] == doc.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    children = [d for d in docs if d.data["parentId"] is not None]
    assert children and all(d.data["type"] == "simple" for d in children)


def test_product_attributes_are_sorted_by_code_whatever_their_ids(fresh: Engine) -> None:
    with fresh.begin() as conn:
        conn.execute(attributes.insert().values(id=50, code="age_group", label="Age", type="text"))
        conn.execute(
            product_attribute_values.insert().values(product_id=1, attribute_id=50, value="adult")
        )
    (doc,) = build(fresh, FEED["products"], Keys(ids=(1,)))
    assert list(doc.data["attributes"])[0] == "age_group"
    assert list(doc.data["attributes"]) == sorted(doc.data["attributes"])


def test_product_documents_for_an_id_list_skip_missing_products(catalog: Engine) -> None:
    docs = build(catalog, FEED["products"], Keys(ids=(3, 150, 9999)))
    assert [d.id for d in docs] == ["3", "150"]


def test_product_attribute_documents_list_options_by_position(catalog: Engine) -> None:
    docs = build(catalog, FEED["productAttributes"], Keys(lo=0, hi=100))
    by_code = {d.id: d.data for d in docs}
    assert by_code["color"]["options"] == list(sample.COLORS)
    assert by_code["color"]["type"] == "select" and by_code["color"]["label"] == "Color"
    assert by_code["care_instructions"]["options"] == []
    assert [d.id for d in build(catalog, FEED["productAttributes"], Keys(ids=(6,)))] == ["size"]


def test_category_documents(catalog: Engine) -> None:
    docs = build(catalog, FEED["categories"], Keys(lo=0, hi=12))
    assert [d.id for d in docs] == [str(i) for i in range(1, 13)]
    assert set(docs[0].data) == {"id", "parentId", "name", "urlKey", "position", "updatedAt"}
    assert docs[0].data["parentId"] is None and docs[-1].data["parentId"] is not None
    assert docs[0].data["updatedAt"] == "2025-01-01T01:00:00Z"
    assert [d.id for d in build(catalog, FEED["categories"], Keys(ids=(5,)))] == ["5"]


def test_price_documents_one_per_customer_group(catalog: Engine) -> None:
    docs = build(catalog, FEED["prices"], Keys(ids=(1, 2)))
    assert [d.id for d in docs] == ["1-0", "1-1", "1-2", "1-3", "2-0", "2-1", "2-2", "2-3"]
    assert docs[0].data == {
        "productId": 1,
        "sku": "SKU-00000001",
        "customerGroupId": 0,
        "customerGroup": "NOT LOGGED IN",
        "price": docs[0].data["price"],
        "specialPrice": docs[0].data["specialPrice"],
    }
    assert all(isinstance(d.data["price"], float) for d in docs)
    assert len(build(catalog, FEED["prices"], Keys(lo=0, hi=10))) == 40


def test_product_override_documents_one_per_website_and_customer_group(catalog: Engine) -> None:
    with catalog.connect() as conn:
        rows = conn.execute(
            select(product_overrides).where(product_overrides.c.product_id <= 40)
        ).all()
    docs = build(catalog, FEED["productOverrides"], Keys(lo=0, hi=40))
    assert [d.id for d in docs] == sorted(
        (f"{r.product_id}-{r.website_code}-{r.customer_group_id}" for r in rows),
        key=lambda i: (int(i.split("-")[0]), i),
    )
    assert {d.entity for d in docs} == {r.product_id for r in rows}
    hidden = next(d for d in docs if d.data["customerGroupId"] == 0)
    product = hidden.entity
    assert hidden.data == {
        "productId": product,
        "sku": f"SKU-{product:08d}",
        "websiteCode": "base",
        "customerGroupId": 0,
        "customerGroupCode": "NOT LOGGED IN",
        "displayable": False,
        "price": None,
        "updatedAt": hidden.data["updatedAt"],
    }
    wholesale = next(d for d in docs if d.data["customerGroupId"] == 2)
    assert wholesale.data["customerGroupCode"] == "Wholesale" and wholesale.data["displayable"]
    assert isinstance(wholesale.data["price"], float)
    assert [d.id for d in build(catalog, FEED["productOverrides"], Keys(ids=(product,)))] == [
        d.id for d in docs if d.entity == product
    ]


def test_an_override_changes_when_its_product_does(fresh: Engine) -> None:
    with fresh.connect() as conn:
        product = conn.execute(select(func.min(product_overrides.c.product_id))).scalar_one()
    (before,) = build(fresh, FEED["productOverrides"], Keys(ids=(product,)))[:1]
    with fresh.begin() as conn:
        conn.execute(
            products.update()
            .where(products.c.id == product)
            .values(sku="RENAMED", updated_at=datetime(2030, 1, 1))
        )
    (after,) = build(fresh, FEED["productOverrides"], Keys(ids=(product,)))[:1]
    assert (before.data["sku"], after.data["sku"]) == (f"SKU-{product:08d}", "RENAMED")
    assert after.updated_at == datetime(2030, 1, 1)


def test_variant_documents_are_keyed_by_their_configurable_parent(catalog: Engine) -> None:
    with catalog.connect() as conn:
        parent = conn.execute(
            select(func.min(products.c.id)).where(products.c.type == "configurable")
        ).scalar_one()
        children = (
            conn.execute(
                select(products.c.id).where(products.c.parent_id == parent).order_by(products.c.id)
            )
            .scalars()
            .all()
        )
    docs = build(catalog, FEED["variants"], Keys(ids=(parent, children[0])))
    assert [d.id for d in docs] == [f"{parent}-{child}" for child in children]
    assert {d.entity for d in docs} == {parent}
    data = docs[0].data
    assert data["parentId"] == parent and data["productId"] == children[0]
    assert data["parentSku"] == f"SKU-{parent:08d}" and data["sku"] == f"SKU-{children[0]:08d}"
    assert {"color", "size"} <= set(data["optionValues"])
    assert "warranty_years" not in data["optionValues"]  # a number attribute, not an option
    in_range = build(catalog, FEED["variants"], Keys(lo=0, hi=400))
    product_docs = build(catalog, FEED["products"], Keys(lo=0, hi=400))
    assert len(in_range) == sum(1 for d in product_docs if d.data["parentId"] is not None)


def test_order_documents_list_items_by_item_id(catalog: Engine) -> None:
    docs = build(catalog, FEED["orders"], Keys(lo=0, hi=5))
    assert [d.id for d in docs] == ["000000001", "000000002", "000000003", "000000004", "000000005"]
    data = docs[0].data
    assert set(data) == {
        "id",
        "incrementId",
        "status",
        "customerEmail",
        "grandTotal",
        "createdAt",
        "updatedAt",
        "items",
    }
    assert data["items"] and set(data["items"][0]) == {"sku", "productId", "qty", "price"}
    assert data["grandTotal"] == pytest.approx(
        5 + sum(item["qty"] * item["price"] for item in data["items"])
    )
    assert [d.id for d in build(catalog, FEED["orders"], Keys(ids=(2,)))] == ["000000002"]


@pytest.mark.parametrize("feed", FEEDS, ids=lambda feed: feed.name)
def test_dates_in_documents_are_iso_utc_to_the_second(catalog: Engine, feed: Feed) -> None:
    for doc in build(catalog, feed, Keys(lo=0, hi=50)):
        for key in ("createdAt", "updatedAt"):
            if key in doc.data:
                assert re.match(ISO, doc.data[key]), doc.data[key]


def test_a_deleted_product_yields_no_document(fresh: Engine) -> None:
    victim = int(demo.change(fresh, update=0, delete=1, seed=3)["deleted"][0])
    for name in ("products", "prices", "productOverrides"):
        assert build(fresh, FEED[name], Keys(ids=(victim,))) == []
    assert victim not in {d.entity for d in build(fresh, FEED["products"], Keys(lo=0, hi=200))}


def test_change_updates_names_prices_and_timestamps(fresh: Engine) -> None:
    before = dump(fresh)
    affected = demo.change(fresh, update=6, delete=0, seed=5)
    updated = [int(i) for i in affected["updated"]]
    assert len(updated) == 6 and affected["deleted"] == []
    assert affected["updated"] == sorted(affected["updated"], key=int)
    after = dump(fresh)
    old_names = {row[0]: row[2] for row in before["products"]}
    new_rows = {row[0]: row for row in after["products"]}
    for product_id in updated:
        assert new_rows[product_id][2] != old_names[product_id]
        assert new_rows[product_id][2].endswith("(rev 1)")
        assert new_rows[product_id][9] > max(row[9] for row in before["products"])
    changed_prices = set(before["product_prices"]) ^ set(after["product_prices"])
    assert {row[0] for row in changed_prices} == set(updated)
    # An override with a price follows its product's new General price; the others stay.
    general = {(r[0], r[1]): r[2] for r in after["product_prices"]}
    old_general = {(r[0], r[1]): r[2] for r in before["product_prices"]}
    followed = {r[0] for r in before["product_overrides"] if r[3] is not None} & {
        p for p in updated if general[p, 1] != old_general[p, 1]
    }
    changed_overrides = set(before["product_overrides"]) - set(after["product_overrides"])
    assert {row[0] for row in changed_overrides} == followed
    demo.change(fresh, update=len(new_rows), delete=0, seed=6)
    assert all(row[2].endswith("(rev 2)") for row in dump(fresh)["products"] if row[0] in updated)


def test_change_deletes_products_with_their_rows_but_keeps_order_history(fresh: Engine) -> None:
    before = dump(fresh)
    items_before = before["order_items"]
    affected = demo.change(fresh, update=3, delete=7, seed=2)
    deleted = {int(i) for i in affected["deleted"]}
    assert len(deleted) == 7 and not deleted & {int(i) for i in affected["updated"]}
    after = dump(fresh)
    assert {row[0] for row in before["product_overrides"]} & deleted  # some had overrides
    for table in (
        "products",
        "product_prices",
        "product_overrides",
        "product_categories",
        "product_attribute_values",
    ):
        assert not {row[0] for row in after[table]} & deleted
    assert after["order_items"] == items_before


def test_change_never_deletes_a_configurable_parent(fresh: Engine) -> None:
    with fresh.connect() as conn:
        deletable = conn.execute(
            select(func.count()).select_from(products).where(products.c.type != "configurable")
        ).scalar_one()
    demo.change(fresh, update=0, delete=deletable, seed=1)
    with fresh.connect() as conn:
        types = set(conn.execute(select(products.c.type)).scalars())
    assert types == {"configurable"}


def test_change_with_a_seed_is_deterministic(tmp_path: Path) -> None:
    results = []
    for name in ("a", "b"):
        engine = sqlite_engine(tmp_path / f"{name}.db")
        demo.seed(engine, 150)
        results.append((demo.change(engine, 4, 4, seed=9), dump(engine)["products"]))
    assert results[0][0] == results[1][0]
    names = [[row[2] for row in rows] for _, rows in results]
    assert names[0] == names[1]


def test_change_refuses_more_than_is_available(fresh: Engine) -> None:
    with pytest.raises(FeedsyncError, match=r"^Only 180 products can be deleted .*, not 181\.$"):
        demo.change(fresh, update=0, delete=181)
    with pytest.raises(FeedsyncError, match=r"^Only 190 products can be updated besides the 10"):
        demo.change(fresh, update=191, delete=10)
    assert len(dump(fresh)["products"]) == 200


def test_change_without_a_catalog_says_to_seed_first(tmp_path: Path) -> None:
    with pytest.raises(FeedsyncError, match="run demo:seed first"):
        demo.change(sqlite_engine(tmp_path / "empty.db"), update=1, delete=0)


@pytest.mark.postgres
def test_postgresql_holds_the_same_catalog_and_documents(postgres_url: str, tmp_path: Path) -> None:
    postgres, sqlite = create_engine(postgres_url), sqlite_engine(tmp_path / "source.db")
    try:
        for engine in (postgres, sqlite):
            demo.seed(engine, 120)
            demo.seed(engine, 260)  # a bulk load: foreign keys checked at the end
            demo.seed(engine, 265)  # a small top-up: checked row by row
        assert dump(postgres) == dump(sqlite)
        with postgres.connect() as conn:
            foreign_keys = conn.execute(
                text(
                    "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND connamespace = "
                    "current_schema()::regnamespace"
                )
            ).scalar_one()
        assert foreign_keys == 12  # dropped for the bulk load, and back
        for feed in FEEDS:
            keys = Keys(lo=0, hi=270)
            assert build(postgres, feed, keys) == build(sqlite, feed, keys), feed.name
        affected = demo.change(postgres, update=3, delete=3, seed=4)
        with postgres.begin() as conn:
            new_id = conn.execute(
                products.insert()
                .values(
                    sku="APP-1",
                    name="Made by the app",
                    type="simple",
                    status="enabled",
                    created_at=func.now(),
                    updated_at=func.now(),
                )
                .returning(products.c.id)
            ).scalar_one()
        assert new_id == 266  # the serial sequence follows the seeded ids
        assert len(affected["deleted"]) == 3
    finally:
        postgres.dispose()


PYTHON_BUILDERS = {
    "products": builders.build_products,
    "productAttributes": builders.build_product_attributes,
    "categories": builders.build_categories,
    "prices": builders.build_prices,
    "productOverrides": builders.build_product_overrides,
    "variants": builders.build_variants,
    "orders": builders.build_orders,
}


@pytest.mark.parametrize("name", sorted(PYTHON_BUILDERS))
def test_documents_built_by_the_database_are_the_python_builders_bytes(
    db_url: str, name: str
) -> None:
    """Same items, same canonical bytes, same hash: a feed moves between a builder and a query
    without resending anything, on SQLite and on PostgreSQL."""
    engine = create_db_engine(db_url)
    try:
        demo.seed(engine, 150, seed=3)
        with engine.begin() as conn:  # values that test the JSON rendering
            conn.execute(
                products.update()
                .where(products.c.id == 2)
                .values(name='Quote " back\\slash \x01 tab\t é 😀', weight=3, description=None)
            )
        feed = FEED[name]
        keys = Keys(lo=0, hi=120)
        with engine.connect() as conn:
            expected = {
                d.id: (d.entity, canonical(d.data), d.updated_at)
                for d in PYTHON_BUILDERS[name](conn, keys)
            }
            assert feed.query is not None
            query = feed.query(keys, Json(conn.dialect.name))
            hashed = query.subquery()
            rows = conn.execute(
                select(hashed, content_hash(conn.dialect.name, hashed.c.body).label("hash"))
            ).all()
        built = {r.id: (r.entity, r.body.encode(), r.updated_at) for r in rows}
        assert expected and built == expected
        assert all(bytes(r.hash).hex() == digest(r.body.encode()) for r in rows)
    finally:
        engine.dispose()
