"""Settings changed at runtime for every worker, from the API and the dashboard: the daily API-call
allocation (`PUT /sync/usage`) and the notifications (`PUT /sync/notifications`, a test send to a
real webhook), each recorded in the audit list; on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from feeds.context import Context
from feeds.export import allocation
from tests.api.test_dashboard import csrf, login
from tests.conftest import bearer, library_context, make_api_key
from tests.notify.test_notifications import WebhookReceiver
from worker.api.app import create_app
from worker.testing.destination_server import DestinationServer


@pytest.fixture
def ctx(db_url: str, destination: DestinationServer, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(db_url, destination.url, tmp_path, EXPORT_DAILY_CALL_ALLOCATION="20")
    yield ctx
    ctx.close()


@pytest.fixture
def client(ctx: Context) -> Iterator[TestClient]:
    with TestClient(create_app(ctx.settings)) as test_client:
        yield test_client


@pytest.fixture
def api(client: TestClient, ctx: Context) -> TestClient:
    client.headers.update(bearer(make_api_key(ctx, "sync.admin", name="ops-alice")))
    return client


def app_ctx(client: TestClient) -> Context:
    ctx: Context = client.app.state.ctx  # type: ignore[attr-defined]
    return ctx


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def test_put_usage_sets_the_allocation_for_every_worker_and_default_restores_the_env(
    api: TestClient, ctx: Context
) -> None:
    before = api.get("/sync/usage").json()
    assert before["allocation"] == {
        "calls": 20,
        "source": "environment",
        "default": 20,
        "updated_at": None,
        "updated_by": None,
    }
    assert before["results"][0]["allocation"] == 20
    changed = api.put("/sync/usage", json={"allocation": 500}).json()
    assert changed["allocation"]["calls"] == 500 and changed["allocation"]["source"] == "database"
    assert changed["allocation"]["updated_by"] == "ops-alice"
    assert changed["results"][0]["allocation"] == 500 and changed["results"][0]["cap"] == 500
    assert allocation.calls(app_ctx(api)) == 500  # what the budget of the API process reads
    unlimited = api.put("/sync/usage", json={"allocation": None}).json()
    assert unlimited["results"][0]["allocation"] is None
    back = api.put("/sync/usage", json={"allocation": "default"}).json()
    assert back["allocation"]["source"] == "environment" and back["allocation"]["calls"] == 20
    entries = api.get("/sync/audit").json()["results"]
    assert [(e["action"], e["detail"], e["key_name"]) for e in entries] == [
        ("set_allocation", "default", "ops-alice"),
        ("set_allocation", "unlimited", "ops-alice"),
        ("set_allocation", "500", "ops-alice"),
    ]
    assert (
        entries[2]["outcome"]
        == "The daily API-call allocation is now 500 calls a day, for every worker."
    )


@pytest.mark.parametrize("value", [0, -1, "lots", 1.5, 10**10])
def test_a_bad_allocation_is_a_400_that_says_what_is_accepted(
    api: TestClient, value: object
) -> None:
    answer = api.put("/sync/usage", json={"allocation": value})
    assert answer.status_code == 400
    assert "accepted: a whole number of calls from 1 to 1,000,000,000" in answer.json()["message"]
    assert api.get("/sync/usage").json()["allocation"]["source"] == "environment"


def test_settings_need_sync_admin(api: TestClient, ctx: Context) -> None:
    lister = bearer(make_api_key(ctx, "cdi.integration_list"))
    assert api.put("/sync/usage", json={"allocation": 5}, headers=lister).status_code == 403
    assert api.post("/sync/notifications/test", headers=lister).status_code == 403
    assert allocation.current(ctx).source == "environment"


def test_a_test_notification_reaches_the_webhook_or_says_why_not(
    api: TestClient, webhook: WebhookReceiver
) -> None:
    none = api.post("/sync/notifications/test")
    assert none.status_code == 400 and none.json()["message"].startswith("No webhook URL is set")
    api.put("/sync/notifications", json={"frequency": "off", "webhook_url": webhook.url})
    sent = api.post("/sync/notifications/test")
    assert sent.status_code == 200
    assert (
        sent.json()["message"]
        == f"A test notification was sent to {webhook.url.split('/')[2]}, which answered 2xx."
    )
    [body] = webhook.bodies
    assert body["type"] == "test" and "test notification from Feedsync" in body["text"]
    webhook.fail_left = 1
    failed = api.post("/sync/notifications/test")
    assert failed.status_code == 502
    assert failed.json()["message"].endswith("failed: HTTP 500 from the webhook.")
    [audited] = api.get("/sync/audit").json()["results"]
    assert audited["action"] == "set_notifications" and "feedsync-secret-token" not in str(audited)


def test_the_dashboard_forms_change_the_allocation_and_the_notifications(
    client: TestClient, ctx: Context, webhook: WebhookReceiver
) -> None:
    login(client, ctx)
    page = client.get("/dashboard").text
    assert '<label for="allocation">' in page and 'id="allocation" name="allocation"' in page
    assert 'value="20"' in page and "from EXPORT_DAILY_CALL_ALLOCATION" in page
    token = csrf(page)
    forged = client.post(
        "/dashboard/settings/allocation", data={"csrf_token": "0", "allocation": "5"}
    )
    assert forged.status_code == 403 and allocation.calls(app_ctx(client)) == 20
    bad = client.post(
        "/dashboard/settings/allocation", data={"csrf_token": token, "allocation": "ten"}
    )
    assert bad.status_code == 400
    assert "The daily API-call allocation &#39;ten&#39; is not accepted; accepted:" in bad.text
    done = client.post(
        "/dashboard/settings/allocation", data={"csrf_token": token, "allocation": "1,000"}
    )
    assert done.status_code == 200 and allocation.calls(app_ctx(client)) == 1000
    assert "The daily API-call allocation is now 1,000 calls a day, for every worker." in done.text
    assert 'class="allocation-now">1,000<' in done.text and "Back to the default" in done.text
    reset = client.post("/dashboard/settings/allocation", data={"csrf_token": token, "reset": "1"})
    assert "back to EXPORT_DAILY_CALL_ALLOCATION: 20 calls a day" in reset.text

    wrong = client.post(
        "/dashboard/settings/notifications",
        data={"csrf_token": token, "frequency": "daily", "webhook_url": "ftp://x"},
    )
    assert wrong.status_code == 400 and "accepted: an http(s):// URL with a host" in wrong.text
    saved = client.post(
        "/dashboard/settings/notifications",
        data={"csrf_token": token, "frequency": "immediately", "webhook_url": webhook.url},
    )
    assert "Notification settings saved: immediately to 127.0.0.1" in saved.text
    assert re.search(r'<option value="immediately" selected>', saved.text)
    tested = client.post("/dashboard/settings/notifications/test", data={"csrf_token": token})
    assert "A test notification was sent to 127.0.0.1" in tested.text
    assert [b["type"] for b in webhook.bodies] == ["test"]
    audit = client.get("/dashboard/audit").text
    assert re.findall(r'<td class="action">(\w+)', audit) == [
        "test_notification",
        "set_notifications",
        "set_allocation",
        "set_allocation",
    ]
