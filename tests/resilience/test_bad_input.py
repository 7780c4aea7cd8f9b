"""Bad input at every edge: settings, the TOML file, cron expressions, URLs, command-line arguments
and ids, API cursors, parameters and bodies. Each is refused with one sentence (no traceback), the
right exit or status code, and nothing written: no database file created when the settings are
refused, and otherwise no row of any table changed (runs, feed table, errors, keys, changelogs …)
and nothing exported.

One table per edge; the one-by-one tests of each message live with their module (test_settings,
test_cli, test_resync_cli, test_api_*): this walks every edge at once, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, MetaData, create_engine, select, text
from sqlalchemy.engine import make_url

from config.settings import ENV_VARIABLES, load_settings
from feeds.context import Context
from feeds.definitions import Feed
from feeds.history.integrations import integration_id
from tests.conftest import POSTGRES_URL, bearer, make_api_key, require_postgres
from worker.api.app import create_app
from worker.cli import main

pytestmark = [pytest.mark.resilience]

SETTINGS = ENV_VARIABLES
UNKNOWN_INDEXER = "The following requested index types are not supported: "


def one_sentence(text: str, lines: int = 1) -> None:
    """A message for people: one line (two where SPEC §4 adds the supported ids), no traceback, no
    bare exception name."""
    assert text.strip(), "no message at all"
    assert "Traceback" not in text, text
    assert len(text.rstrip("\n").split("\n")) == lines, text
    assert not re.match(r"^\w*(Error|Exception)\b", text), text


def cli(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    """Run the command line in-process: exit code, stdout, stderr (argparse exits by itself)."""
    try:
        code = main(argv)
    except SystemExit as exited:
        code = int(exited.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# --- settings, TOML, cron, URLs: refused at start, before any database is opened ----------------


@dataclass(frozen=True)
class Start:
    """Settings that stop every command at start: environment variables, and a TOML file's text."""

    id: str
    env: dict[str, str] = field(default_factory=dict)
    toml: str | bytes | None = None
    says: str = ""  # what the sentence contains

    def __str__(self) -> str:
        return self.id


def cron(expression: str, says: str) -> Start:
    return Start(
        f"cron {expression!r}",
        toml=f"[jobs.indexer_update_all_views]\ncron = {expression!r}\n",
        says=says,
    )


START = [
    Start("database URL", {"DATABASE_URL": "not a url"}, says="is not a database URL"),
    Start("database kind", {"DATABASE_URL": "mysql://x@y/z"}, says="which is not supported"),
    Start(
        "database port",
        {"DATABASE_URL": "postgresql://postgres@127.0.0.1:70000/test"},
        says="names port 70000",
    ),
    Start("database in memory", {"DATABASE_URL": "sqlite://"}, says="is an in-memory database"),
    Start("source database", {"SOURCE_DATABASE_URL": "mysql://x@y/z"}, says="SOURCE_DATABASE_URL"),
    Start("destination scheme", {"EXPORT_URL": "ftp://example"}, says="is not a destination"),
    Start("destination IPv6", {"EXPORT_URL": "http://[::1"}, says="not a complete [IPv6]"),
    Start("destination query", {"EXPORT_URL": "https://x.example/v1?k=1"}, says="a query"),
    Start("destination host", {"EXPORT_URL": "http:///v1"}, says="it has no host"),
    Start("destination empty", {"EXPORT_URL": ""}, says="is not a destination"),
    Start("token", {"EXPORT_TOKEN": "s3cret\n"}, says="EXPORT_TOKEN contains a space"),
    Start("timeout inf", {"EXPORT_TIMEOUT_S": "inf"}, says="a finite number"),
    Start("timeout negative", {"EXPORT_TIMEOUT_S": "-1"}, says="greater than 0"),
    Start("batch size word", {"EXPORT_BATCH_SIZE": "lots"}, says="EXPORT_BATCH_SIZE = 'lots'"),
    Start("batch size 0", {"EXPORT_BATCH_SIZE": "0"}, says="greater than or equal to 1"),
    Start("allocation", {"EXPORT_DAILY_CALL_ALLOCATION": "0"}, says="ALLOCATION = '0'"),
    Start("log format", {"LOG_FORMAT": "xml"}, says="'console' or 'json'"),
    Start("broker", {"BROKER_URL": "kafka://x"}, says="is not a broker URL"),
    Start("broker port", {"BROKER_URL": "redis://127.0.0.1:70000/0"}, says="its port"),
    Start("poll", {"REALTIME_POLL_S": "0"}, says="REALTIME_POLL_S = '0'"),
    Start("metrics port", {"METRICS_PORT": "70000"}, says="METRICS_PORT = '70000'"),
    Start("config missing", {"FEEDSYNC_CONFIG": "nope.toml"}, says="which does not exist"),
    Start("TOML syntax", toml="[feeds.products\n", says="is not valid TOML"),
    Start("TOML encoding", toml=b"[feeds.products]\n# \xb5\n", says="is not UTF-8 text"),
    Start("TOML key", toml="[feeds.products]\nexport_mod = 'legacy'\n", says="is unknown"),
    Start("TOML feed", toml="[feeds.shoes]\nbatch_size = 5\n", says="names an unknown feed"),
    Start("TOML job", toml="[jobs.make_coffee]\ncron = '* * * * *'\n", says="unknown job"),
    Start("TOML mode", toml="[feeds.products]\nexport_mode = 'fast'\n", says="'immediate' or"),
    Start(
        "TOML indexer mode",
        toml="[feeds.products]\nindexer_mode = 'nightly'\n",
        says="'realtime' or 'schedule'",
    ),
    Start("TOML batch 0", toml="[feeds.products]\nbatch_size = 0\n", says="batch_size = 0"),
    Start("TOML batch 1.5", toml="[feeds.products]\nbatch_size = 1.5\n", says="a valid integer"),
    Start("TOML batch true", toml="[feeds.products]\nbatch_size = true\n", says="a valid integer"),
    Start("TOML flag", toml="builtin_feeds = 'yes'\n", says="builtin_feeds = 'yes'"),
    Start(
        "TOML backoff order",
        toml="[retry]\nbackoff_base_s = 600\nbackoff_max_s = 60\n",
        says="backoff_max_s (60) is below backoff_base_s (600)",
    ),
    Start("TOML attempts", toml="[retry]\nmax_attempts = 0\n", says="retry.max_attempts = 0"),
    Start("TOML backoff inf", toml="[retry]\nbackoff_max_s = inf\n", says="a finite number"),
    Start("TOML retention", toml="[retention]\ndays = 0\n", says="retention.days = 0"),
    Start("TOML frequency", toml="[notifications]\nfrequency = 'hourly'\n", says="'off',"),
    Start("TOML webhook unset", toml="[notifications]\nfrequency = 'daily'\n", says="is not set"),
    Start(
        "TOML webhook URL",
        toml="[notifications]\nfrequency = 'daily'\nwebhook_url = 'ftp://x'\n",
        says="does not start with http",
    ),
    Start(
        "TOML destination",
        toml="[feeds.products]\ndestination = 'sftp://files.example.com'\n",
        says="is neither a file:// nor an http(s):// URL",
    ),
    Start(
        "TOML feed module", toml="feed_modules = ['no.such.module']\n", says="cannot be imported"
    ),
    Start("TOML job without cron", toml="[jobs.sync_history_cleanup]\n", says="is not set"),
    cron("every minute", "is not a cron expression"),
    cron("61 * * * *", "is not a cron expression"),
    cron("* * * *", "is not a cron expression"),
    cron("", "is not a cron expression"),
    cron("* * * * * 0 2030", "it has 7 fields"),
    cron("0 0 30 2 *", "it never fires"),
]


@pytest.fixture
def bare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty folder as the working directory, and no Feedsync setting but the defaults."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.chdir(tmp_path)  # the default database (./var/feedsync.db) would be made here
    return tmp_path


@pytest.mark.parametrize("case", START, ids=str)
def test_a_setting_is_refused_at_start_with_one_sentence_and_nothing_created(
    bare: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], case: Start
) -> None:
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    made: list[str] = []
    if case.toml is not None:
        path = bare / "feedsync.toml"
        path.write_bytes(case.toml if isinstance(case.toml, bytes) else case.toml.encode())
        monkeypatch.setenv("FEEDSYNC_CONFIG", str(path))
        made.append(path.name)

    code, out, err = cli(capsys, ["indexer:reindex"])

    assert (code, out) == (1, ""), err
    one_sentence(err)
    assert case.says in err
    assert "s3cret" not in err
    assert sorted(p.name for p in bare.iterdir()) == made  # no database, no export folder


# --- commands of a deployment: refused before they change anything ----------------------------


@dataclass
class Deployment:
    url: str
    folder: Path
    engine: Engine | None = None  # a connection of the test's own, to compare what is stored
    tables: MetaData = field(default_factory=MetaData)

    @property
    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.url,
            "EXPORT_URL": f"file://{self.folder / 'export'}",
            "LOG_FORMAT": "json",
        }


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """A sample catalog synced once to a file destination, with an API key: on SQLite, or in a
    PostgreSQL schema of its own (module-wide: every case must leave it as it was)."""
    folder = tmp_path_factory.mktemp("deployment")
    schema = None
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'feedsync.db'}"
    else:
        require_postgres()
        schema = f"t_{uuid.uuid4().hex[:12]}"
        admin = create_engine(POSTGRES_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = (
            make_url(POSTGRES_URL)
            .update_query_dict({"options": f"-csearch_path={schema}"})
            .render_as_string(hide_password=False)
        )
    deployed = Deployment(url, folder)
    with pytest.MonkeyPatch.context() as patch:
        for name in SETTINGS:
            patch.delenv(name, raising=False)
        for name, value in deployed.env.items():
            patch.setenv(name, value)
        patch.chdir(folder)
        assert main(["demo:seed", "--products", "60"]) == 0
        assert main(["indexer:reindex", "catalog_data_exporter_products"]) == 0
        assert main(["apikey:create", "--name", "admin", "--permission", "sync.admin"]) == 0
    deployed.engine = create_engine(url)
    deployed.tables.reflect(deployed.engine)  # once: reflecting PostgreSQL takes a while
    yield deployed
    deployed.engine.dispose()
    if schema is not None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def deployed(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Deployment]:
    """The deployment's settings in force; it must be left exactly as it was."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in deployment.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(deployment.folder)
    capsys.readouterr()
    before = contents(deployment)
    yield deployment
    assert contents(deployment) == before, "a refused input changed the deployment"


# Written on every request by design: the API's per-key rate-limit windows, a key's last use.
NOT_COMPARED = {"api_rate_limits": None, "api_keys": {"last_used_at"}}


def contents(deployment: Deployment) -> dict[str, str]:
    """A digest of every table of the database (worker and source) and of the export folder."""
    assert deployment.engine is not None
    found: dict[str, str] = {}
    with deployment.engine.connect() as conn:
        for table in deployment.tables.sorted_tables:
            if table.name in NOT_COMPARED and NOT_COMPARED[table.name] is None:
                continue
            skipped = NOT_COMPARED.get(table.name) or set()
            columns = [c for c in table.columns if c.name not in skipped]
            rows = conn.execute(select(*columns).order_by(*columns)).all()
            found[table.name] = hashlib.sha1(repr(rows).encode()).hexdigest()
    export = deployment.folder / "export"
    for path in sorted(export.iterdir()) if export.exists() else []:
        found[f"export/{path.name}"] = str(path.stat().st_size)
    return found


@dataclass(frozen=True)
class Command:
    argv: list[str]
    says: str  # how the sentence starts
    lines: int = 1

    def __str__(self) -> str:
        return " ".join(self.argv) or "(nothing)"


def unknown(*argv: str) -> Command:
    return Command(list(argv), UNKNOWN_INDEXER, lines=2)


COMMANDS = [
    Command(["nosuch"], "Argument <command>: invalid choice: 'nosuch'"),
    unknown("indexer:reindex", "catalog_data_exporter_products", "foo"),
    unknown("indexer:reset", "foo"),
    unknown("indexer:status", "foo"),
    unknown("indexer:set-mode", "realtime", "foo"),
    Command(["indexer:set-mode", "sometimes"], "Accepted values for mode are 'realtime' or"),
    Command(["indexer:set-status", "bogus"], 'Invalid status "bogus".'),
    unknown("saas:resync", "--feed", "shoes"),
    Command(["saas:resync"], "The following arguments are required: --feed."),
    Command(["saas:resync", "--feed", "products", "--by-ids="], "--by-ids needs at least one"),
    Command(["saas:resync", "--feed", "products", "--by-ids=7,,8"], "--by-ids '7,,8' has an"),
    Command(
        ["saas:resync", "--feed", "products", "--by-ids=99999,abc"],
        "Feed 'products' has no items with these ids: 99999, abc",
    ),
    Command(["saas:resync", "--feed", "products", "--continue-resync"], "There is no interrupted"),
    Command(["saas:resync", "--feed", "products", "--no-reindex"], "--no-reindex resends"),
    Command(["saas:resync", "--feed", "products", "--fleet"], "--fleet sends the resync to"),
    Command(["saas:resync", "--feed", "products", "--batch-size", "0"], "Argument --batch-size:"),
    Command(["saas:resync", "--feed", "products", "--thread-count", "x"], "Argument --thread-"),
    unknown("sync:status", "--feed", "shoes"),
    Command(["sync:status", "--limit", "-1"], "Argument --limit: expected a positive number"),
    Command(["sync:status", "--since", "yesterday"], "Argument --since: 'yesterday' is not a"),
    Command(["sync:status", "--operation", "nap"], "Argument --operation: invalid choice"),
    unknown("sync:errors", "--feed", "shoes"),
    Command(["sync:errors", "--category", "bogus"], "Argument --category: invalid choice"),
    Command(["cron:run", "make_coffee"], "Unknown job 'make_coffee'; accepted jobs: "),
    Command(["cron:run"], "cron:run runs one job or one group: give a job name, or --group"),
    Command(["cron:run", "--group", "bogus"], "Unknown group 'bogus'; accepted groups: index, "),
    Command(["cron:list", "--group", "bogus"], "Unknown group 'bogus'; accepted groups: index, "),
    Command(
        ["saas:resync", "--feed", "products", "--by-ids", "1", "--id-type", "ean"],
        "--id-type 'ean' is not a type of id",
    ),
    Command(
        ["indexer:set-dimensions-mode", "catalog_data_exporter_products", "website"],
        "Invalid value for 'indexer' argument: Product Feed",
    ),
    unknown("indexer:set-dimensions-mode", "catalog_product_price", "website"),
    Command(["demo:seed", "--products", "0"], "Argument --products: expected a positive"),
    Command(["demo:change", "--update", "-1"], "Argument --update: expected zero or"),
    Command(["demo:change", "--delete", "100000"], "Only "),
    Command(
        ["apikey:create", "--name", "x", "--permission", "bogus"], "'bogus' is not a permission"
    ),
    Command(["apikey:create", "--name", "", "--permission", "sync.admin"], "An API key needs"),
    Command(["apikey:revoke", "999"], "There is no active API key with id 999"),
    Command(["apikey:revoke", "x"], "Argument id: invalid int value: 'x'."),
    Command(["indexer:notify", "--feed", "products", "--ids", "a,b"], "'a' is not an entity id"),
    Command(["indexer:notify", "--feed", "products", "--ids", ""], "--ids needs at least one"),
    Command(["indexer:notify", "--feed", "products", "--ids", ","], "--ids needs at least one"),
    Command(["indexer:notify", "--feed", "products", "--ids", str(2**70)], f"'{2**70}' is not"),
    unknown("indexer:notify", "--feed", "shoes", "--ids", "1"),
    Command(["api", "--port", "70000"], "Argument --port: '70000' is not a port"),
    Command(["run", "--port", "http"], "Argument --port: 'http' is not a port"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_a_command_refuses_bad_arguments_with_one_sentence_and_changes_nothing(
    deployed: Deployment, capsys: pytest.CaptureFixture[str], command: Command
) -> None:
    code, out, err = cli(capsys, command.argv)
    assert (code, out) == (1, ""), err
    one_sentence(err, command.lines)
    assert err.startswith(command.says), err


# --- the HTTP API: a status code, {"message": one sentence}, nothing changed ---------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # {products}: the integration id of the products feed
    status: int
    says: str
    json: object = None
    body: str | None = None  # sent as is, as application/json
    key: str = "all"  # all permissions, "cdi" (no sync.admin), or "none"

    def __str__(self) -> str:
        sent = f" {self.body or self.json}" if self.body is not None or self.json else ""
        return f"{self.method} {self.path}{sent}"[:90]


ADMIN_403 = "This API key lacks the permission sync.admin."
CALLS = [
    Call("GET", "/sync/runs", 401, "Missing API key", key="none"),
    Call("GET", "/sync/runs", 403, ADMIN_403, key="cdi"),
    Call("GET", "/cdi/integrations?cursor=nonsense", 400, "Invalid cursor"),
    Call("GET", "/cdi/integrations?cursor=", 400, "Invalid cursor"),
    Call("GET", "/cdi/integrations?page=2", 400, "Unknown query parameter 'page'"),
    Call("GET", "/cdi/integrations/not-a-uuid/job_sync_status", 400, "Invalid integration ID"),
    Call("GET", "/cdi/integrations/{products}/job_sync_status?cursor=a.b", 400, "Invalid cursor"),
    Call("POST", f"/cdi/integrations/{uuid.UUID(int=7)}/sync", 400, "Invalid integration ID"),
    Call("POST", "/cdi/integrations/%00/sync", 400, "Invalid integration ID"),
    Call("DELETE", "/cdi/integrations", 405, "Method Not Allowed"),
    Call("GET", "/nowhere", 404, "Not Found"),
    Call("GET", "/sync/runs?since=yesterday", 400, "since 'yesterday' is not a date"),
    Call("GET", "/sync/runs?until=2026-13-45", 400, "until '2026-13-45' is not a date"),
    Call("GET", "/sync/runs?limit=0", 400, "The query parameter 'limit' = '0' is not"),
    Call("GET", "/sync/runs?offset=-1", 400, "The query parameter 'offset' = '-1' is not"),
    Call("GET", "/sync/runs?status=done", 400, "The query parameter 'status' = 'done'"),
    Call("GET", "/sync/runs?feed=shoes", 400, "feed 'shoes' is not a feed"),
    Call("GET", "/sync/runs?runid=x", 400, "Unknown query parameter 'runid'"),
    Call("GET", "/sync/errors?category=bogus", 400, "The query parameter 'category' = 'bogus'"),
    Call("GET", "/sync/errors.csv?feed=shoes", 400, "feed 'shoes' is not a feed"),
    Call("GET", "/sync/errors?run_id=" + "x" * 40, 400, "The query parameter 'run_id' = "),
    Call("GET", "/sync/usage?x=1", 400, "Unknown query parameter 'x'"),
    Call("POST", "/sync/errors/resync", 400, "Select at least one", json={"error_ids": []}),
    Call(
        "POST",
        "/sync/errors/resync",
        400,
        "At most 100 sync errors",
        json={"error_ids": list(range(1, 102))},
    ),
    Call(
        "POST",
        "/sync/errors/resync",
        400,
        "The request body 'error_ids' = 'all'",
        json={"error_ids": "all"},
    ),
    Call(
        "POST",
        "/sync/errors/resync",
        400,
        "The request body 'error_ids.0' = 0",
        json={"error_ids": [0]},
    ),
    Call(
        "POST",
        "/sync/errors/resync",
        400,
        "The request body 'error_ids.0' = 1.5",
        json={"error_ids": [1.5]},
    ),
    Call(
        "POST",
        "/sync/errors/resync",
        400,
        "The request body 'error_ids.0' = True",
        json={"error_ids": [True]},
    ),
    Call(
        "POST",
        "/sync/errors/resync",
        400,
        "There are no sync errors with these ids: 999.",
        json={"error_ids": [999]},
    ),
    Call(
        "POST", "/sync/errors/resync", 400, "The request body 'error_ids' is not", json={"ids": [1]}
    ),
    Call("POST", "/sync/errors/resync", 400, "The request body = [1, 2] is not", json=[1, 2]),
    Call("POST", "/sync/errors/resync", 400, "The request body is not valid JSON", body="{"),
    Call("POST", "/sync/errors/resync", 400, "The request body is missing", body=""),
    Call(
        "PUT",
        "/sync/notifications",
        400,
        "Notification frequency 'hourly'",
        json={"frequency": "hourly"},
    ),
    Call(
        "PUT",
        "/sync/notifications",
        400,
        "Notification frequency 'daily' needs a webhook",
        json={"frequency": "daily"},
    ),
    Call(
        "PUT",
        "/sync/notifications",
        400,
        "Webhook URL 'ftp://x' is not accepted",
        json={"frequency": "daily", "webhook_url": "ftp://x"},
    ),
    Call(
        "PUT", "/sync/notifications", 400, "The request body 'frequency' = 5", json={"frequency": 5}
    ),
    Call("PUT", "/sync/notifications", 400, "The request body is not valid JSON", body="not json"),
]


class Recorder:
    """A sync trigger that records what it was asked to sync."""

    def __init__(self) -> None:
        self.feeds: list[str] = []

    def __call__(self, ctx: Context, feed: Feed) -> None:
        self.feeds.append(feed.name)


@pytest.fixture(scope="module")
def api(deployment: Deployment) -> Iterator[tuple[TestClient, Recorder, dict[str, dict[str, str]]]]:
    settings = load_settings(deployment.env)
    recorder = Recorder()
    with TestClient(create_app(settings, trigger=recorder)) as client:
        ctx: Context = client.app.state.ctx  # type: ignore[attr-defined]
        keys = {
            "all": bearer(make_api_key(ctx)),
            "cdi": bearer(make_api_key(ctx, "cdi.integration_list", "cdi.integration_sync")),
            "none": {},
        }
        yield client, recorder, keys


@pytest.mark.parametrize("call", CALLS, ids=str)
def test_the_api_refuses_bad_input_with_one_sentence_and_changes_nothing(
    api: tuple[TestClient, Recorder, dict[str, dict[str, str]]], deployed: Deployment, call: Call
) -> None:
    client, recorder, keys = api
    path = call.path.format(products=integration_id("products", deployed.env["EXPORT_URL"]))
    headers = dict(keys[call.key])
    if call.body is not None:
        headers["Content-Type"] = "application/json"
    answer = client.request(call.method, path, headers=headers, json=call.json, content=call.body)
    assert answer.status_code == call.status, answer.text
    body = answer.json()
    assert set(body) == {"message"}, body
    one_sentence(body["message"])
    assert body["message"].startswith(call.says), body["message"]
    assert recorder.feeds == []  # no sync was queued
