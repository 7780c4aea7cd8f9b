"""The sample catalog's rows, each a pure function of (seed, row id).

The same seed gives the same rows however the catalog is cut into batches or top-ups, so a catalog
seeded at once and one seeded in steps are identical. Rows are tuples in their table's column order.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

_BLOCK = 10  # each block of 10 product ids holds one configurable parent and its 2-4 children
_BASE = datetime(2025, 1, 1)
_MASK = (1 << 64) - 1

CUSTOMER_GROUPS = ((0, "NOT LOGGED IN"), (1, "General"), (2, "Wholesale"), (3, "Retailer"))
WEBSITES = ("base", "b2b")
_GUESTS, _WHOLESALE = 0, 2
_GROUP_FACTORS = (1.0, 1.0, 0.85, 0.95)

COLORS = ("Black", "White", "Red", "Blue", "Green", "Grey", "Navy", "Beige", "Yellow", "Purple")
SIZES = ("XS", "S", "M", "L", "XL", "XXL")
MATERIALS = ("Cotton", "Wool", "Linen", "Leather", "Denim", "Canvas", "Fleece", "Nylon")
BRANDS = ("Acme", "Northwind", "Fabrikam", "Contoso", "Tailspin", "Litware", "Wingtip", "Proseware")
PATTERNS = ("Solid", "Striped", "Checked", "Dotted", "Floral", "Camouflage")
CARE = ("Machine wash cold.", "Hand wash only.", "Dry clean only.", "Wipe with a damp cloth.")
ADJECTIVES = ("Classic", "Essential", "Urban", "Vintage", "Summit", "Coastal", "Nordic", "Alpine")
NOUNS = ("Shirt", "Jacket", "Hoodie", "Backpack", "Sneaker", "Scarf", "Jeans", "Parka", "Boot")
TAGLINES = (
    "Made to last.",
    "Light, warm and easy to pack.",
    "A wardrobe staple for every season.",
    "Designed for the city, ready for the trail.",
    "Soft to the touch and built for every day.",
)
CATEGORY_WORDS = ("Women", "Men", "Kids", "Gear", "Outdoor", "Home", "Tops", "Outerwear", "Shoes")
ORDER_STATUSES = ("pending", "processing", "complete", "complete", "complete", "canceled", "closed")

# (id, code, label, type, options): ids follow code order, option ids are fixed.
ATTRIBUTES: tuple[tuple[int, str, str, str, tuple[str, ...]], ...] = (
    (1, "brand", "Brand", "select", BRANDS),
    (2, "care_instructions", "Care Instructions", "text", ()),
    (3, "color", "Color", "select", COLORS),
    (4, "material", "Material", "select", MATERIALS),
    (5, "pattern", "Pattern", "select", PATTERNS),
    (6, "size", "Size", "select", SIZES),
    (7, "warranty_years", "Warranty (years)", "number", ()),
)
_BRAND, _CARE, _COLOR, _MATERIAL, _PATTERN, _SIZE, _WARRANTY = range(1, 8)


def _mix(seed: int, key: int, salt: int) -> int:
    """A 64-bit hash of (seed, key, salt): splitmix64's finaliser, fast enough to call per row."""
    x = (seed * 0x9E3779B97F4A7C15 + key * 0xBF58476D1CE4E5B9 + salt * 0x94D049BB133111EB) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def category_count(max_product_id: int) -> int:
    """How many categories a catalog whose product ids reach `max_product_id` has (about 1 per 1000)."""
    return max(12, max_product_id // 1000)


def category_rows(seed: int, count: int) -> list[tuple[Any, ...]]:
    """Categories 1..count: a 3-level tree (roots, their children, leaves), each a function of its id."""
    rows: list[tuple[Any, ...]] = []
    roots: list[int] = []
    middles: list[int] = []
    siblings: dict[int | None, int] = {}
    for cid in range(1, count + 1):
        h = _mix(seed, cid, 11)
        # The first 12 make a complete small tree; later ones are mostly leaves, some new branches.
        if cid <= 2 or (cid > 12 and h % 64 == 0):
            parent, level = None, 1
        elif cid <= 6 or (cid > 12 and h % 64 < 12):
            parent, level = (roots[cid % 2] if cid <= 6 else roots[(h >> 8) % len(roots)]), 2
        else:
            parent, level = (middles[cid % 4] if cid <= 12 else middles[(h >> 8) % len(middles)]), 3
        if level == 1:
            roots.append(cid)
        elif level == 2:
            middles.append(cid)
        siblings[parent] = position = siblings.get(parent, 0) + 1
        name = CATEGORY_WORDS[(h >> 16) % len(CATEGORY_WORDS)]
        url_key = f"{name.lower().replace(' ', '-')}-{cid}"
        rows.append((cid, parent, name, url_key, position, _BASE + timedelta(hours=cid)))
    return rows


def _block(seed: int, product_id: int) -> tuple[int, int]:
    """(parent id, number of children) of the configurable in `product_id`'s block of ids."""
    block = (product_id - 1) // _BLOCK
    h = _mix(seed, block, 3)
    children = 2 + h % 3
    return block * _BLOCK + 1 + (h >> 4) % (_BLOCK - children), children


def _base_price(h: int) -> float:
    return 5 + ((h >> 32) % 49_500) / 100


def _sku(product_id: int) -> str:
    return f"SKU-{product_id:08d}"


def _product_name(h: int) -> str:
    return f"{ADJECTIVES[h % 8]} {MATERIALS[(h >> 8) % 8]} {NOUNS[(h >> 4) % 9]}"


def product_rows(seed: int, first: int, last: int) -> dict[str, list[tuple[Any, ...]]]:
    """All rows of products first..last: the products, category links, prices, price and visibility
    overrides, and attribute values."""
    rows: list[tuple[Any, ...]] = []
    links: list[tuple[Any, ...]] = []
    prices: list[tuple[Any, ...]] = []
    overrides: list[tuple[Any, ...]] = []
    values: list[tuple[Any, ...]] = []
    block_parent, block_children, block_end = 0, 0, 0
    for pid in range(first, last + 1):
        if pid > block_end:
            block_parent, block_children = _block(seed, pid)
            block_end = (pid - 1) // _BLOCK * _BLOCK + _BLOCK
        h = _mix(seed, pid, 1)
        g = _mix(seed, pid, 2)
        parent_id = None
        if pid == block_parent:
            type_ = "configurable"
            name = _product_name(h)
            values.append((pid, _BRAND, BRANDS[(h >> 12) % 8]))
            values.append((pid, _MATERIAL, MATERIALS[(h >> 8) % 8]))
            values.append((pid, _CARE, CARE[(g >> 8) % 4]))
            if g >> 12 & 1:
                values.append((pid, _PATTERN, PATTERNS[(g >> 13) % 6]))
        elif block_parent < pid <= block_parent + block_children:
            type_ = "simple"
            parent_id = block_parent
            ph = _mix(seed, block_parent, 1)
            # Siblings take consecutive colors, so no two children of a parent look the same.
            color = COLORS[((ph >> 16) + pid - block_parent) % 10]
            size = SIZES[(h >> 20) % 6]
            name = f"{_product_name(ph)} {color} {size}"
            values.append((pid, _BRAND, BRANDS[(ph >> 12) % 8]))
            values.append((pid, _COLOR, color))
            values.append((pid, _MATERIAL, MATERIALS[(ph >> 8) % 8]))
            values.append((pid, _SIZE, size))
            if g >> 12 & 1:
                values.append((pid, _WARRANTY, str(1 + (g >> 13) % 3)))
        else:
            type_ = "simple"
            name = _product_name(h)
            values.append((pid, _BRAND, BRANDS[(h >> 12) % 8]))
            values.append((pid, _COLOR, COLORS[(h >> 16) % 10]))
            values.append((pid, _MATERIAL, MATERIALS[(h >> 8) % 8]))
            if g >> 12 & 1:
                values.append((pid, _PATTERN, PATTERNS[(g >> 13) % 6]))
            if g >> 16 & 1:
                values.append((pid, _SIZE, SIZES[(h >> 20) % 6]))
        created_at = _BASE + timedelta(seconds=pid * 20)
        rows.append(
            (
                pid,
                _sku(pid),
                name,
                type_,
                parent_id,
                "disabled" if (h >> 24) % 25 == 0 else "enabled",
                f"{name} by {BRANDS[(h >> 12) % 8]}. {TAGLINES[(g >> 20) % 5]}",
                round(0.1 + (g >> 24) % 5000 / 1000, 3),
                created_at,
                created_at + timedelta(seconds=(g >> 32) % 2_592_000),
            )
        )
        # Category links only reach the categories that exist once the catalog has `pid` products.
        reach = category_count(pid)
        first_category = 1 + g % reach
        links.append((pid, first_category, 1 + (g >> 44) % 100))
        if g >> 40 & 1:
            second = 1 + (g >> 48) % reach
            if second != first_category:
                links.append((pid, second, 1 + (g >> 56) % 100))
        base = _base_price(h)
        special = (h >> 28) % 8 == 0
        for group, factor in enumerate(_GROUP_FACTORS):
            price = round(base * factor, 2)
            prices.append(
                (pid, group, price, round(price * 0.8, 2) if special and group < 2 else None)
            )
        overrides.extend(_override_rows(seed, pid, base, rows[-1][9]))
    return {
        "products": rows,
        "product_categories": links,
        "product_prices": prices,
        "product_overrides": overrides,
        "product_attribute_values": values,
    }


def _override_rows(seed: int, pid: int, base: float, updated: datetime) -> list[tuple[Any, ...]]:
    """About one product in four has a wholesale price on one website; one in sixteen is hidden
    from guests (NOT LOGGED IN) on the base website. Rows in primary key order."""
    o = _mix(seed, pid, 6)
    rows: list[tuple[Any, ...]] = []
    if o % 16 == 0:
        rows.append((pid, "base", _GUESTS, None, False, updated + timedelta(hours=1)))
    if (o >> 4) % 4 == 0:
        website = WEBSITES[(o >> 8) & 1]
        price = round(base * (0.7 + (o >> 12) % 11 / 100), 2)
        rows.append((pid, website, _WHOLESALE, price, True, updated + timedelta(hours=2)))
    return sorted(rows, key=lambda row: (row[1], row[2]))


def order_rows(
    seed: int, first: int, last: int, first_item: int
) -> dict[str, list[tuple[Any, ...]]]:
    """Orders first..last and their items (ids from `first_item`); order n buys among products 1..10n."""
    rows: list[tuple[Any, ...]] = []
    items: list[tuple[Any, ...]] = []
    item_id = first_item
    for oid in range(first, last + 1):
        h = _mix(seed, oid, 4)
        total = 5.0  # shipping
        for line in range(1 + h % 4):
            x = _mix(seed, oid * 4 + line, 5)
            pid = 1 + x % (oid * 10)
            if _block(seed, pid)[0] == pid:
                pid += 1  # a configurable is bought as one of its children (ids are block-aligned)
            qty = 1 + (x >> 20) % 3
            price = round(_base_price(_mix(seed, pid, 1)), 2)
            total += qty * price
            items.append((item_id, oid, pid, _sku(pid), qty, price))
            item_id += 1
        created_at = _BASE + timedelta(minutes=oid * 7)
        rows.append(
            (
                oid,
                f"{oid:09d}",
                f"customer{1 + (h >> 8) % 5000}@example.com",
                ORDER_STATUSES[(h >> 24) % 7],
                round(total, 2),
                created_at,
                created_at + timedelta(seconds=(h >> 32) % 259_200),
            )
        )
    return {"orders": rows, "order_items": items}
