"""Fixtures of the resilience scenarios: the deployments they run, i.e. the feeds of one module
(TOML `feed_modules`, no built-in feeds) on a database URL, sending to the test destination, on
default settings otherwise."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from config.context import open_context
from config.settings import load_settings
from feeds.commerce import demo
from feeds.context import Context
from tests.resilience import products_feed
from worker.testing.destination_server import DestinationServer

Deploy = Callable[..., Context]


@pytest.fixture
def deploy(destination: DestinationServer, tmp_path: Path) -> Iterator[Deploy]:
    """`deploy(url, module, env={})`: a context for the feeds of `module`, closed afterwards."""
    opened: list[Context] = []

    def open_(url: str, module: ModuleType, env: dict[str, str] | None = None) -> Context:
        config = tmp_path / f"{module.__name__}.toml"
        config.write_text(f'feed_modules = ["{module.__name__}"]\nbuiltin_feeds = false\n')
        settings = load_settings(
            {
                "DATABASE_URL": url,
                "EXPORT_URL": destination.url,
                "FEEDSYNC_CONFIG": str(config),
                "LOG_FORMAT": "json",
                **(env or {}),
            }
        )
        ctx = open_context(settings)
        opened.append(ctx)
        return ctx

    yield open_
    for ctx in opened:
        ctx.close()


@pytest.fixture
def open_catalog(deploy: Deploy) -> Deploy:
    """`open_catalog(url, products, env={})`: the products feed alone (the other built-in feeds
    would only add minutes) on a sample catalog of `products` products."""

    def open_(url: str, products: int, env: dict[str, str] | None = None) -> Context:
        ctx = deploy(url, products_feed, env)
        demo.seed(ctx.source, products)
        return ctx

    return open_
