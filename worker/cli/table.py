"""The one place that renders a CLI table (Symfony-console style, as `bin/magento` prints them)."""

from __future__ import annotations

from collections.abc import Sequence


def render(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [
        [str(h) for h in headers],
        *[["" if c is None else str(c) for c in row] for row in rows],
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(row: list[str]) -> str:
        return "|" + "|".join(f" {cell:<{w}} " for cell, w in zip(row, widths, strict=True)) + "|"

    return "\n".join([rule, line(cells[0]), rule, *(line(r) for r in cells[1:]), rule])
