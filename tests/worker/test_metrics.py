"""The Prometheus endpoint, scraped over HTTP: counters, job durations, backlog and lag per feed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from feeds.context import Context
from feeds.tracking import realtime
from tests.conftest import library_context
from worker import metrics
from worker.jobs import run_job


@pytest.fixture
def library(db_url: str, export_dir: Path, tmp_path: Path) -> Iterator[Context]:
    ctx = library_context(db_url, f"file://{export_dir}", tmp_path, books=6, batch_size=50)
    yield ctx
    ctx.close()


@pytest.fixture
def endpoint(library: Context) -> Iterator[metrics.Endpoint]:
    served = metrics.serve(library, port=0, addr="127.0.0.1")
    yield served
    served.stop()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint on `port`: (name, sorted labels) → value."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    """The sample's value; a KeyError when the scrape does not have it (never a silent 0)."""
    return samples[(name, tuple(sorted(labels.items())))]


def sql(ctx: Context, statement: str) -> None:
    with ctx.source.begin() as conn:
        conn.execute(text(statement))


def test_backlog_and_lag_per_feed_are_read_from_the_database(
    library: Context, endpoint: metrics.Endpoint
) -> None:
    run_job(library, "indexer_reindex_all_invalid")
    samples = scrape(endpoint.port)
    assert value(samples, "feedsync_backlog", feed="books") == 0
    assert value(samples, "feedsync_lag_seconds", feed="books") == 0
    sql(library, "UPDATE books SET title = 'x' WHERE book_no = 1")
    sql(library, "UPDATE books SET title = 'y' WHERE book_no = 2")
    sql(library, "UPDATE books SET title = 'z' WHERE book_no = 1")
    time.sleep(1.2)
    samples = scrape(endpoint.port)
    assert value(samples, "feedsync_backlog", feed="books") == 2  # distinct entities
    assert 1.0 <= value(samples, "feedsync_lag_seconds", feed="books") < 10
    run_job(library, "indexer_update_all_views")
    samples = scrape(endpoint.port)
    assert value(samples, "feedsync_backlog", feed="books") == 0
    assert value(samples, "feedsync_lag_seconds", feed="books") == 0


def test_items_sent_failed_and_skipped_are_counted_per_feed(
    library: Context, endpoint: metrics.Endpoint
) -> None:
    before = scrape(endpoint.port)
    run_job(library, "indexer_reindex_all_invalid")  # 6 new books sent
    sql(library, "UPDATE books SET title = 'Changed' WHERE book_no = 1")  # sent
    sql(library, "UPDATE books SET title = '\ufffdbroken' WHERE book_no = 2")  # cannot be built
    realtime.notify(library, "books", [3])  # rebuilt, unchanged: skipped
    run_job(library, "indexer_update_all_views")
    after = scrape(endpoint.port)

    def delta(name: str) -> float:
        return value(after, name, feed="books") - value(before, name, feed="books")

    assert delta("feedsync_items_sent_total") == 7
    assert delta("feedsync_items_failed_total") == 1
    assert delta("feedsync_items_skipped_total") == 1
    jobs = "feedsync_job_duration_seconds_count"
    assert (
        value(after, jobs, job="indexer_update_all_views")
        - value(before, jobs, job="indexer_update_all_views")
        == 1
    )


CHILDREN_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, sys
    from config.settings import load_settings
    from config.context import open_context
    from feeds.pipeline.indexer import Outcome
    from feeds.history.runs import Counts
    from worker import logs, metrics

    logs.configure("json")  # logs on stderr: stdout carries the port
    metrics.enable_multiprocess()  # what the Celery worker does before its pool forks
    ctx = open_context(load_settings({"DATABASE_URL": sys.argv[1], "EXPORT_URL": "file:///tmp/x"}))
    feed = ctx.registry.get("products")

    def child(sent):
        metrics.observe_outcome(Outcome(feed, Counts(rows_synced=sent, skipped=1), 0.1))

    if __name__ == "__main__":
        multiprocessing.set_start_method("fork")
        for sent in (3, 4):
            p = multiprocessing.Process(target=child, args=(sent,))
            p.start()
            p.join()
        endpoint = metrics.serve(ctx, port=0, addr="127.0.0.1")
        print(endpoint.port, flush=True)
        sys.stdin.readline()
        endpoint.stop()
    """
)


def test_counters_of_forked_worker_processes_are_summed(tmp_path: Path) -> None:
    script = tmp_path / "children.py"
    script.write_text(CHILDREN_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script), f"sqlite:///{tmp_path / 'w.db'}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus")},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.strip().isdigit():
            process.kill()
            pytest.fail(f"the script did not serve: {process.communicate()[1][-2000:]}")
        port = int(line)
        samples = scrape(port)
        assert value(samples, "feedsync_items_sent_total", feed="products") == 7
        assert value(samples, "feedsync_items_skipped_total", feed="products") == 2
        assert ("feedsync_backlog", (("feed", "products"),)) in samples  # DB gauges too
    finally:
        if process.stdin is not None:
            process.stdin.close()
        process.wait(10)
