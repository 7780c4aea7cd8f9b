"""The red/amber/green rules of feed health (docs/dashboard.md), as pure functions of a snapshot."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from feeds.definitions import ExportMode, IndexerMode, IndexerStatus, RunStatus
from feeds.history.health import (
    STATUS_KEYS,
    FeedSnapshot,
    Health,
    HealthRules,
    LastRun,
    age,
    assess,
    lag_text,
    status_key,
    status_of_key,
)

NOW = datetime(2026, 11, 24, 12, 0)


def run(status: RunStatus, minutes_ago: float) -> LastRun:
    end = NOW - timedelta(minutes=minutes_ago)
    return LastRun("r1", status, end - timedelta(seconds=30), end, None)


HEALTHY = FeedSnapshot(
    feed="books",
    indexer_id="library_books",
    title="Book Feed",
    status=IndexerStatus.VALID,
    mode=IndexerMode.SCHEDULE,
    view_status="idle",
    backlog=0,
    lag_s=None,
    export_mode=ExportMode.IMMEDIATE,
    last_success=run(RunStatus.SUCCESS, 1),
    last_finished=run(RunStatus.SUCCESS, 1),
    items={200: 12},
)


def test_a_feed_synced_a_minute_ago_with_nothing_pending_is_green() -> None:
    assert assess(HEALTHY, NOW) == assess(HEALTHY, NOW, HealthRules())
    verdict = assess(HEALTHY, NOW)
    assert (verdict.health, verdict.reasons) == (Health.GREEN, ())


@pytest.mark.parametrize(
    ("lag_s", "health"),
    [(60, Health.GREEN), (5 * 60, Health.AMBER), (29 * 60, Health.AMBER), (30 * 60, Health.RED)],
)
def test_lag_turns_amber_at_5_minutes_and_red_at_30(lag_s: float, health: Health) -> None:
    verdict = assess(replace(HEALTHY, backlog=3, lag_s=lag_s), NOW)
    assert verdict.health is health


@pytest.mark.parametrize("status", [RunStatus.ERROR, RunStatus.CONFIG_ERROR, RunStatus.ROLLED_BACK])
def test_a_last_run_that_failed_is_red(status: RunStatus) -> None:
    verdict = assess(replace(HEALTHY, last_finished=run(status, 2)), NOW)
    assert verdict.health is Health.RED
    assert verdict.reasons[0] == f"The last run ended {status.value}."


def test_a_partial_last_run_and_rejected_items_are_amber() -> None:
    snap = replace(HEALTHY, last_finished=run(RunStatus.PARTIAL, 2), items={200: 9, 400: 3})
    verdict = assess(snap, NOW)
    assert verdict.health is Health.AMBER
    assert verdict.reasons == (
        "3 items rejected by the destination (400).",
        "The last run ended partial: some items failed.",
    )


def test_items_stuck_in_2_or_0_past_the_threshold_are_amber() -> None:
    verdict = assess(replace(HEALTHY, items={200: 10, 2: 1, 0: 2}, stuck={2: 1, 0: 2}), NOW)
    assert verdict.health is Health.AMBER
    assert verdict.reasons == (
        "1 item in status 2 waited for a resend over 15 min.",
        "2 items in status 0 waited for a rebuild over 15 min.",
    )
    fresh = assess(replace(HEALTHY, items={200: 10, 2: 1}), NOW)  # not waiting long yet
    assert fresh.health is Health.GREEN


def test_a_backlog_with_no_successful_sync_for_an_hour_is_red() -> None:
    stale = replace(HEALTHY, backlog=4, last_success=run(RunStatus.SUCCESS, 61))
    assert assess(stale, NOW).reasons == ("4 changes wait and no sync succeeded for 1 h 1 min.",)
    never = replace(HEALTHY, backlog=4, last_success=None, last_finished=None)
    assert assess(never, NOW).reasons == ("4 changes wait and no sync succeeded yet.",)
    assert assess(replace(stale, backlog=0), NOW).health is Health.GREEN


def test_a_suspended_indexer_is_amber_whatever_waits_and_reindex_required_is_amber() -> None:
    suspended = replace(HEALTHY, status=IndexerStatus.SUSPENDED, backlog=9, last_success=None)
    verdict = assess(suspended, NOW)
    assert verdict.health is Health.AMBER and suspended.suspended
    assert verdict.reasons == ("The indexer is suspended: partial syncs leave it alone.",)
    invalid = assess(replace(HEALTHY, status=IndexerStatus.INVALID), NOW)
    assert invalid.reasons == ("Reindex required: the next reindex job rebuilds the feed.",)


def test_red_reasons_come_before_amber_ones() -> None:
    snap = replace(HEALTHY, last_finished=run(RunStatus.ERROR, 1), items={400: 1})
    assert assess(snap, NOW).reasons == (
        "The last run ended error.",
        "1 item rejected by the destination (400).",
    )


def test_thresholds_are_arguments() -> None:
    strict = HealthRules(lag_amber=timedelta(seconds=10))
    assert assess(replace(HEALTHY, backlog=1, lag_s=20), NOW, strict).health is Health.AMBER


def test_labels_are_those_of_indexer_status() -> None:
    snap = replace(HEALTHY, status=IndexerStatus.INVALID, mode=IndexerMode.REALTIME)
    assert (snap.status_label, snap.update_on, snap.mode_label) == (
        "Reindex required",
        "Save",
        "Update on Save",
    )


def test_item_status_keys_round_trip_and_never_means_null() -> None:
    assert STATUS_KEYS == ("200", "400", "2", "0", "-1", "never")
    assert [status_of_key(status_key(status_of_key(k))) for k in STATUS_KEYS] == [
        200,
        400,
        2,
        0,
        -1,
        None,
    ]
    with pytest.raises(ValueError, match="'3' is not an item status"):
        status_of_key("3")


def test_durations_read_as_people_say_them() -> None:
    assert [lag_text(s) for s in (None, 42, 12 * 60, 3 * 3600 + 300, 50 * 3600)] == [
        None,
        "42 s",
        "12 min",
        "3 h 5 min",
        "2 d 2 h",
    ]
    assert age(NOW + timedelta(seconds=5), NOW) == "0 s"  # a clock a little ahead is not negative
