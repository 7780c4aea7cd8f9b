"""Operator actions on a feed (reindex, suspend, resume, set the mode) from the API and the
dashboard, each recorded in the audit log with the key's name; on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from config.settings import Settings
from feeds.context import Context
from feeds.definitions import Feed, IndexerMode, IndexerStatus
from feeds.errors import LockedError
from feeds.state import indexer_state
from tests.api.test_dashboard import csrf, login
from tests.conftest import bearer, make_api_key
from worker.api.app import create_app
from worker.sync_requests import REINDEX, RequestedSync, SyncKind


class RecordingTrigger:
    """The sync trigger of the API (a parameter of create_app): records, or refuses as locked."""

    def __init__(self) -> None:
        self.feeds: list[str] = []
        self.jobs: list[RequestedSync] = []
        self.locked = False

    def __call__(self, ctx: Context, feed: Feed, job: RequestedSync = REINDEX) -> None:
        if self.locked:
            raise LockedError(f"{feed.title} index is locked by another process.")
        self.feeds.append(feed.name)
        self.jobs.append(job)


@pytest.fixture
def trigger() -> RecordingTrigger:
    return RecordingTrigger()


@pytest.fixture
def client(settings: Settings, trigger: RecordingTrigger) -> Iterator[TestClient]:
    with TestClient(create_app(settings, trigger=trigger)) as test_client:
        ctx: Context = test_client.app.state.ctx  # type: ignore[attr-defined]
        test_client.headers.update(bearer(make_api_key(ctx, "sync.admin", name="ops-alice")))
        yield test_client


def ctx_of(client: TestClient) -> Context:
    ctx: Context = client.app.state.ctx  # type: ignore[attr-defined]
    return ctx


def status_of(client: TestClient, feed: str) -> IndexerStatus:
    ctx = ctx_of(client)
    with ctx.db.connect() as conn:
        return indexer_state.get_state(conn, ctx.registry.get(feed).indexer_id).status


def test_suspend_and_resume_change_the_indexer_status_and_are_audited(client: TestClient) -> None:
    answer = client.post("/sync/feeds/prices/actions", json={"action": "suspend"})
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    assert (body["action"], body["feed"], body["key_name"]) == ("suspend", "prices", "ops-alice")
    assert body["outcome"] == (
        "Index status for Indexer 'Prices Feed' was changed from 'invalid' to 'suspended'."
    )
    assert status_of(client, "prices") is IndexerStatus.SUSPENDED
    [prices] = [f for f in client.get("/sync/feeds").json()["results"] if f["feed"] == "prices"]
    assert prices["suspended"] and prices["status"] == "Suspended"
    again = client.post("/sync/feeds/prices/actions", json={"action": "suspend"}).json()
    assert again["outcome"] == "Indexer 'Prices Feed' is already suspended; nothing changed."
    # Never built: resumed as Reindex required, so that the reindex job still builds it.
    resumed = client.post("/sync/feeds/prices/actions", json={"action": "resume"}).json()
    assert resumed["outcome"].endswith("from 'suspended' to 'invalid'.")
    assert status_of(client, "prices") is IndexerStatus.INVALID
    not_suspended = client.post("/sync/feeds/prices/actions", json={"action": "resume"}).json()
    assert not_suspended["outcome"] == (
        "Indexer 'Prices Feed' is not suspended (invalid); nothing changed."
    )
    log = client.get("/sync/audit").json()
    assert log["total"] == 4
    assert [(e["action"], e["feed"], e["key_name"]) for e in log["results"]] == [
        ("resume", "prices", "ops-alice"),
        ("resume", "prices", "ops-alice"),
        ("suspend", "prices", "ops-alice"),
        ("suspend", "prices", "ops-alice"),
    ]


def test_set_mode_switches_the_indexer_as_indexer_set_mode_does(client: TestClient) -> None:
    from feeds.commerce import demo

    missing = client.post(
        "/sync/feeds/products/actions", json={"action": "set_mode", "mode": "realtime"}
    )
    assert missing.status_code == 400  # no source tables to put triggers on: refused, audited
    assert client.get("/sync/audit").json()["results"][0]["outcome"].startswith("Refused: ")
    demo.seed(ctx_of(client).source, 20)
    answer = client.post(
        "/sync/feeds/products/actions", json={"action": "set_mode", "mode": "realtime"}
    ).json()
    assert answer["outcome"] == (
        "Index mode for Indexer Product Feed was changed from 'Update by Schedule' to "
        "'Update on Save'"
    )
    assert answer["detail"] == "realtime"
    ctx = ctx_of(client)
    with ctx.db.connect() as conn:
        assert indexer_state.get_state(conn, "catalog_data_exporter_products").mode is (
            IndexerMode.REALTIME
        )


def test_reindex_queues_a_sync_and_a_held_feed_is_refused_and_audited(
    client: TestClient, trigger: RecordingTrigger
) -> None:
    queued = client.post("/sync/feeds/products/actions", json={"action": "reindex"}).json()
    assert trigger.feeds == ["products"]
    assert queued["outcome"].startswith("A reindex of Product Feed was queued")
    trigger.locked = True
    refused = client.post("/sync/feeds/products/actions", json={"action": "reindex"})
    assert refused.status_code == 409
    assert refused.json() == {"message": "Product Feed index is locked by another process."}
    [last, _] = client.get("/sync/audit").json()["results"]
    assert last["outcome"] == "Refused: Product Feed index is locked by another process."


def test_resync_queues_a_full_resync_of_the_feed_and_is_audited(
    client: TestClient, trigger: RecordingTrigger
) -> None:
    queued = client.post("/sync/feeds/prices/actions", json={"action": "resync"})
    assert queued.status_code == 200
    assert trigger.jobs == [RequestedSync(SyncKind.RESYNC)] and trigger.feeds == ["prices"]
    assert queued.json()["outcome"].startswith(
        "A full resync of Prices Feed was queued (every item is sent again, as "
        "saas:resync --feed prices does)"
    )
    trigger.locked = True
    refused = client.post("/sync/feeds/prices/actions", json={"action": "resync"})
    assert refused.status_code == 409
    assert client.get("/sync/audit").json()["results"][0]["outcome"].startswith("Refused: ")


def add_errors(ctx: Context, feed: str, category: str, n: int) -> None:
    """`n` current errors of one category, as a run that the destination partly rejected leaves."""
    from feeds.clock import utcnow
    from feeds.state.tables import sync_errors, sync_runs

    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(
            sync_runs.insert(),
            [
                {
                    "id": f"r-{category}",
                    "feed": feed,
                    "operation": "full_sync",
                    "status": "partial",
                    "started_at": now,
                    "finished_at": now,
                }
            ],
        )
        conn.execute(
            sync_errors.insert(),
            [
                {
                    "run_id": f"r-{category}",
                    "feed": feed,
                    "item_id": f"item-{i}",
                    "category": category,
                    "code": "X",
                    "message": "m",
                    "first_seen": now,
                    "last_seen": now,
                    "attempts": 1,
                    "resolved": False,
                }
                for i in range(n)
            ],
        )


def test_resync_errors_queues_every_current_error_of_one_category(
    client: TestClient, trigger: RecordingTrigger
) -> None:
    add_errors(ctx_of(client), "prices", "associations", 250)
    add_errors(ctx_of(client), "prices", "picklists", 2)
    body = {"action": "resync_errors", "category": "associations"}
    queued = client.post("/sync/feeds/prices/actions", json=body).json()
    assert trigger.jobs == [RequestedSync(SyncKind.RESYNC_ERRORS, "associations")]
    assert queued["detail"] == "associations"
    assert queued["outcome"] == (
        "A resync of the 250 current associations errors of prices was queued: 3 resync_errors "
        "runs of at most 100; they show in Sync runs as they start."
    )
    none = client.post(
        "/sync/feeds/categories/actions", json={"action": "resync_errors", "category": "picklists"}
    )
    assert none.status_code == 400
    assert (
        none.json()["message"] == "categories has no current picklists errors; nothing to resync."
    )
    assert len(trigger.jobs) == 1


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/sync/feeds/nope/actions", {"action": "suspend"}, "feed 'nope' is not a feed"),
        (
            "/sync/feeds/prices/actions",
            {"action": "delete"},
            "The request body 'action' = 'delete'",
        ),
        ("/sync/feeds/prices/actions", {"action": "set_mode"}, "set_mode needs a mode; accepted"),
        (
            "/sync/feeds/prices/actions",
            {"action": "set_mode", "mode": "fast"},
            "The request body 'mode' = 'fast'",
        ),
        ("/sync/feeds/prices/actions", {}, "The request body 'action' is not accepted"),
        (
            "/sync/feeds/prices/actions",
            {"action": "resync_errors"},
            "resync_errors needs a category; accepted: associations, custom_code",
        ),
        (
            "/sync/feeds/prices/actions",
            {"action": "resync_errors", "category": "typos"},
            "The request body 'category' = 'typos'",
        ),
    ],
)
def test_a_bad_action_gets_one_sentence(
    client: TestClient, path: str, body: dict[str, str], message: str
) -> None:
    answer = client.post(path, json=body)
    assert answer.status_code == 400 and answer.json()["message"].startswith(message)


def test_actions_and_the_audit_need_sync_admin(client: TestClient) -> None:
    lister = bearer(make_api_key(ctx_of(client), "cdi.integration_list"))
    assert (
        client.post(
            "/sync/feeds/prices/actions", json={"action": "suspend"}, headers=lister
        ).status_code
        == 403
    )
    assert client.get("/sync/audit", headers=lister).status_code == 403
    assert client.get("/sync/audit", params={"since": "x"}).status_code == 400
    assert status_of(client, "prices") is IndexerStatus.INVALID


def test_the_dashboard_form_suspends_a_feed_with_a_token_and_shows_the_audit(
    settings: Settings, trigger: RecordingTrigger
) -> None:
    with TestClient(create_app(settings, trigger=trigger)) as client:
        login(client, ctx_of(client))
        page = client.get("/dashboard").text
        assert 'aria-label="Action on prices"' in page
        refused = client.post(
            "/dashboard/feeds/prices/action", data={"csrf_token": "0" * 32, "action": "suspend"}
        )
        assert refused.status_code == 403 and status_of(client, "prices") is IndexerStatus.INVALID
        done = client.post(
            "/dashboard/feeds/prices/action", data={"csrf_token": csrf(page), "action": "suspend"}
        )
        assert done.status_code == 200  # after the redirect to /dashboard?acted=<id>
        assert "was changed from &#39;invalid&#39; to &#39;suspended&#39;." in done.text
        row = re.search(r'<tr data-feed="prices" class="health-row">(.*?)</tr>', done.text, re.S)
        assert row and '<span class="suspended">Suspended</span>' in row.group(1)
        assert 'value="resume"' in row.group(1)
        bad = client.post(
            "/dashboard/feeds/prices/action", data={"csrf_token": csrf(page), "action": "drop"}
        )
        assert bad.status_code == 400
        audit = client.get("/dashboard/audit").text
        assert re.findall(r'<td class="action">(\w+)', audit) == ["suspend"]
        assert "admin" in audit and "1 action" in audit
        # The notice is read from the audit log by id: a URL cannot put words on the page.
        assert "acted" not in client.get("/dashboard?acted=999").text.split("<main>")[1][:300]


def test_the_error_card_resyncs_every_error_of_its_category_per_feed(
    settings: Settings, trigger: RecordingTrigger
) -> None:
    with TestClient(create_app(settings, trigger=trigger)) as client:
        login(client, ctx_of(client))
        add_errors(ctx_of(client), "prices", "associations", 3)
        page = client.get("/dashboard").text
        card = re.search(
            r'<article class="card" id="card-associations">(.*?)</article>', page, re.S
        )
        assert card and "Resync all 3 associations errors of prices" in card.group(1)
        assert 'value="resync"' in page  # the health row's full resync
        form = {"csrf_token": csrf(page), "action": "resync_errors", "category": "associations"}
        refused = client.post("/dashboard/feeds/prices/action", data={**form, "csrf_token": "0"})
        assert refused.status_code == 403 and trigger.jobs == []
        unknown = client.post("/dashboard/feeds/prices/action", data={**form, "category": "x"})
        assert unknown.status_code == 400 and "no error category" in unknown.text
        done = client.post("/dashboard/feeds/prices/action", data=form)
        assert done.status_code == 200
        assert "A resync of the 3 current associations errors of prices was queued" in done.text
        assert trigger.jobs == [RequestedSync(SyncKind.RESYNC_ERRORS, "associations")]
        audit = client.get("/dashboard/audit").text
        assert re.findall(r'<td class="action">(\w+)', audit) == ["resync_errors"]
