"""The house plan holds: imports point down (config → feeds; worker → feeds), never in a circle.

Read from the code's own top-level imports (imports inside functions and under TYPE_CHECKING are
deferred, so they neither order the layers nor make a cycle at import time).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("config", "feeds", "worker")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _module_of(name: str) -> str | None:
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in MODULES else None


def _top_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node) if isinstance(node, ast.If | ast.Try) else [node]:
            if isinstance(inner, ast.Import | ast.ImportFrom):
                yield inner


def _imports(path: Path, *, deferred: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = (
        [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
        if deferred
        else list(_top_level_imports(tree))
    )
    targets: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                target = _module_of(f"{node.module}.{alias.name}") or _module_of(node.module)
                if target:
                    targets.add(target)
        elif isinstance(node, ast.Import):
            targets |= {t for alias in node.names if (t := _module_of(alias.name))}
    return targets


def _graph(*, deferred: bool) -> dict[str, set[str]]:
    return {name: _imports(path, deferred=deferred) - {name} for name, path in MODULES.items()}


def test_the_domain_imports_neither_the_settings_nor_the_delivery() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph(deferred=True).items()
        if module.startswith("feeds")
        for target in targets
        if target.split(".")[0] in ("config", "worker")
    ]
    assert wrong == []


def test_celery_tasks_and_the_http_api_do_not_import_each_other() -> None:
    graph = _graph(deferred=False)
    wrong = [
        f"worker.tasks imports {t}" for t in graph["worker.tasks"] if t.startswith("worker.api")
    ]
    wrong += [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.startswith("worker.api")
        for target in targets
        if target in ("worker.app", "worker.tasks")
    ]
    assert wrong == []


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles = []
    for start in graph:
        seen, stack = set(), [(start, [start])]
        while stack:
            node, path = stack.pop()
            for target in graph[node]:
                if target == start:
                    cycles.append(" → ".join([*path, start]))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, target]))
    return cycles


def test_no_two_modules_import_each_other_even_through_others() -> None:
    assert _cycles(_graph(deferred=False)) == []


def test_a_cycle_through_a_third_module_is_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert "a → b → c → a" in _cycles(graph) and not any(c.startswith("d") for c in _cycles(graph))


@pytest.mark.parametrize("folder", ["benchmarks", "worker", "feeds", "config"])
def test_nothing_outside_the_tests_imports_them(folder: str) -> None:
    wrong = [
        str(path.relative_to(ROOT))
        for path in (ROOT / folder).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom | ast.Import)
        and any(
            name.split(".")[0] == "tests"
            for name in (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
            )
        )
    ]
    assert wrong == []


def test_every_module_stays_one_idea_of_at_most_a_few_hundred_lines() -> None:
    # ~400 is the aim; the margin keeps a small addition from failing CI.
    long = {
        name: lines
        for name, path in MODULES.items()
        if (lines := len(path.read_text().splitlines())) > 450
    }
    assert long == {}
