"""Feed health: what one feed looks like right now (`FeedSnapshot`) and the red/amber/green
verdict of the rules in docs/dashboard.md (`assess`). Pure: the clock and the thresholds are
arguments, so every rule is tested without a database."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from feeds.definitions import ExportMode, IndexerMode, IndexerStatus, ItemStatus, RunStatus

# What `indexer:status` prints (Magento's wording), for the CLI and the dashboard alike.
STATUS_LABEL = {
    IndexerStatus.VALID: "Ready",
    IndexerStatus.INVALID: "Reindex required",
    IndexerStatus.WORKING: "Processing",
    IndexerStatus.SUSPENDED: "Suspended",
}
MODE_LABEL = {IndexerMode.REALTIME: "Update on Save", IndexerMode.SCHEDULE: "Update by Schedule"}
UPDATE_ON = {IndexerMode.REALTIME: "Save", IndexerMode.SCHEDULE: "Schedule"}

# The item statuses of the feed table in the order they are shown; None is "never sent".
ITEM_STATUSES: tuple[int | None, ...] = (
    int(ItemStatus.SENT),
    int(ItemStatus.REJECTED),
    int(ItemStatus.RETRYABLE),
    int(ItemStatus.APP_ERROR),
    int(ItemStatus.SKIPPED),
    None,
)
NEVER_SENT = "never"
ITEM_STATUS_LABEL: dict[int | None, str] = {
    int(ItemStatus.SENT): "sent",
    int(ItemStatus.REJECTED): "rejected",
    int(ItemStatus.RETRYABLE): "retryable",
    int(ItemStatus.APP_ERROR): "application error",
    int(ItemStatus.SKIPPED): "skipped",
    None: "never sent",
}


def status_key(status: int | None) -> str:
    """An item status as written in URLs and JSON: the code, or `never` for never sent."""
    return NEVER_SENT if status is None else str(status)


STATUS_KEYS = tuple(status_key(s) for s in ITEM_STATUSES)


def status_of_key(key: str) -> int | None:
    """The item status a key names; ValueError when it names none."""
    if key not in STATUS_KEYS:
        raise ValueError(f"{key!r} is not an item status; accepted: {', '.join(STATUS_KEYS)}")
    return None if key == NEVER_SENT else int(key)


FAILED_RUN = frozenset({RunStatus.ERROR, RunStatus.CONFIG_ERROR, RunStatus.ROLLED_BACK})


class Health(StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"


@dataclass(frozen=True)
class HealthRules:
    """The thresholds of the verdict (docs/dashboard.md lists the rules they feed)."""

    lag_amber: timedelta = timedelta(minutes=5)
    lag_red: timedelta = timedelta(minutes=30)
    # An item still waiting for a resend (2) or a rebuild (0) this long after its last attempt.
    stuck_after: timedelta = timedelta(minutes=15)
    # No successful sync for this long while changes wait in the backlog.
    silent_red: timedelta = timedelta(hours=1)


DEFAULT_RULES = HealthRules()


@dataclass(frozen=True)
class LastRun:
    id: str
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None
    message: str | None


@dataclass(frozen=True)
class FeedSnapshot:
    """One feed as the health rules see it: the indexer, the changelog, the runs, the feed table."""

    feed: str
    indexer_id: str
    title: str
    status: IndexerStatus
    mode: IndexerMode
    view_status: str  # idle, working or suspended, as `indexer:status` shows it
    backlog: int
    lag_s: float | None  # age of the oldest pending change; None when nothing is pending
    export_mode: ExportMode
    last_success: LastRun | None  # the newest run that ended success or partial
    last_finished: LastRun | None  # the newest run that ended, whatever its status
    items: dict[int | None, int] = field(default_factory=dict)  # feed-table rows per item status
    stuck: dict[int, int] = field(
        default_factory=dict
    )  # status 2 and 0 rows older than stuck_after

    @property
    def suspended(self) -> bool:
        return self.status is IndexerStatus.SUSPENDED

    @property
    def status_label(self) -> str:
        return STATUS_LABEL[self.status]

    @property
    def mode_label(self) -> str:
        return MODE_LABEL[self.mode]

    @property
    def update_on(self) -> str:
        return UPDATE_ON[self.mode]

    def count(self, status: int | None) -> int:
        return self.items.get(status, 0)


@dataclass(frozen=True)
class Verdict:
    health: Health
    reasons: tuple[str, ...]  # one sentence per rule that fired, the worst first


def assess(snap: FeedSnapshot, now: datetime, rules: HealthRules = DEFAULT_RULES) -> Verdict:
    """Red when the feed is failing or far behind, amber when it needs a look, else green."""
    red: list[str] = []
    amber: list[str] = []
    if snap.last_finished is not None and snap.last_finished.status in FAILED_RUN:
        red.append(f"The last run ended {snap.last_finished.status.value}.")
    if snap.lag_s is not None:
        lag = timedelta(seconds=snap.lag_s)
        if lag >= rules.lag_red:
            red.append(f"The oldest pending change is {_span(lag)} old.")
        elif lag >= rules.lag_amber:
            amber.append(f"The oldest pending change is {_span(lag)} old.")
    if snap.backlog and not snap.suspended:
        since = snap.last_success.finished_at if snap.last_success else None
        if since is None or now - since >= rules.silent_red:
            red.append(
                f"{snap.backlog} changes wait and no sync succeeded "
                + (f"for {_span(now - since)}." if since else "yet.")
            )
    if snap.suspended:
        amber.append("The indexer is suspended: partial syncs leave it alone.")
    elif snap.status is IndexerStatus.INVALID:
        amber.append("Reindex required: the next reindex job rebuilds the feed.")
    for status, what in ((ItemStatus.RETRYABLE, "a resend"), (ItemStatus.APP_ERROR, "a rebuild")):
        if stuck := snap.stuck.get(int(status), 0):
            amber.append(
                f"{stuck} item{'s' if stuck != 1 else ''} in status {int(status)} "
                f"waited for {what} over {_span(rules.stuck_after)}."
            )
    if rejected := snap.count(int(ItemStatus.REJECTED)):
        amber.append(
            f"{rejected} item{'s' if rejected != 1 else ''} rejected by the destination (400)."
        )
    if snap.last_finished is not None and snap.last_finished.status is RunStatus.PARTIAL:
        amber.append("The last run ended partial: some items failed.")
    if red:
        return Verdict(Health.RED, tuple(red + amber))
    return Verdict(Health.AMBER if amber else Health.GREEN, tuple(amber))


def _span(delta: timedelta) -> str:
    """A duration as people say it: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def age(moment: datetime | None, now: datetime) -> str | None:
    """How long ago `moment` was, as people say it (None when there is none)."""
    return None if moment is None else _span(max(timedelta(0), now - moment))


def lag_text(lag_s: float | None) -> str | None:
    """A lag in seconds as people say it (None when nothing is pending)."""
    return None if lag_s is None else _span(timedelta(seconds=lag_s))
