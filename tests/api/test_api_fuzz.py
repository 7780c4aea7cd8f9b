"""Schemathesis over the API's own OpenAPI document: generated requests (valid and invalid) with a
valid key never get a 5xx, and every answer matches the documented status codes and schemas."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig

from config.settings import Settings
from feeds.context import Context
from feeds.definitions import Feed
from tests.conftest import bearer, make_api_key
from worker.api.app import create_app
from worker.sync_requests import REINDEX, RequestedSync


def _no_sync(ctx: Context, feed: Feed, job: RequestedSync = REINDEX) -> None:
    """Accept the sync request without running one: the fuzzer triggers many."""


@pytest.fixture
def app_and_key(settings: Settings) -> Iterator[tuple[object, str]]:
    app = create_app(settings, trigger=_no_sync)
    yield app, make_api_key(app.state.ctx)
    app.state.ctx.close()


@pytest.fixture
def api_schema(app_and_key: tuple[object, str]) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", app_and_key[0], config=FUZZ_CONFIG)


# Bounded and repeatable: a fixed seed, 12 generated examples per operation besides the coverage
# phase's boundary cases (which found an error id beyond BIGINT answered 500), no stateful phase.
FUZZ_CONFIG = SchemathesisConfig.from_str(
    """
seed = 20261123
[phases.stateful]
enabled = false
"""
)

schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_generated_requests_get_no_server_error(
    case: schemathesis.Case, app_and_key: tuple[object, str]
) -> None:
    case.call_and_validate(
        headers=bearer(app_and_key[1]),
        checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
    )


def test_the_openapi_document_describes_every_endpoint(api_schema: schemathesis.BaseSchema) -> None:
    paths = set(api_schema.raw_schema["paths"])
    assert paths == {
        "/cdi/integrations",
        "/cdi/integrations/{integration_id}/sync",
        "/cdi/integrations/{integration_id}/job_sync_status",
        "/sync/feeds",
        "/sync/feeds/{feed}/items",
        "/sync/feeds/{feed}/actions",
        "/sync/audit",
        "/sync/items",
        "/sync/runs",
        "/sync/runs/{run_id}",
        "/sync/trends",
        "/sync/errors",
        "/sync/errors.csv",
        "/sync/errors/resync",
        "/sync/usage",
        "/sync/notifications",
        "/sync/notifications/test",
    }
    schemes = api_schema.raw_schema["components"]["securitySchemes"]
    assert schemes == {
        "ApiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": schemes["ApiKey"]["description"],
        }
    }
