"""The admin dashboard at /dashboard (SPEC §7): feed health, sync runs and their details, errors by
category, resync, CSV, API usage, item lookup, trends, actions on a feed and their audit list,
the settings (API-call allocation, notifications).

Server-rendered with Jinja2, no JavaScript framework. A browser logs in once with an API key that
holds `sync.admin` and then carries a signed session cookie (key id, expiry, signature), never the
key.
"""

from worker.api.dashboard.actions import router as actions_router
from worker.api.dashboard.drilldown import router as drilldown_router
from worker.api.dashboard.filters import RunFilters, parse_filters
from worker.api.dashboard.queries import RUNS_PER_PAGE
from worker.api.dashboard.routes import router
from worker.api.dashboard.settings import router as settings_router
from worker.api.dashboard.trends import router as trends_router

__all__ = [
    "RUNS_PER_PAGE",
    "actions_router",
    "RunFilters",
    "drilldown_router",
    "parse_filters",
    "router",
    "settings_router",
    "trends_router",
]
