"""The admin dashboard at /dashboard (SPEC §7): sync runs, errors by category, resync, CSV, API usage.

Server-rendered with Jinja2, no JavaScript framework. A browser logs in once with an API key that
holds `sync.admin` and then carries a signed session cookie (key id, expiry, signature), never the
key.
"""

from worker.api.dashboard.filters import RunFilters, parse_filters
from worker.api.dashboard.queries import RUNS_PER_PAGE
from worker.api.dashboard.routes import router

__all__ = ["RUNS_PER_PAGE", "RunFilters", "parse_filters", "router"]
