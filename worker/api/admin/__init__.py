"""The admin endpoints of SPEC §7 (`sync.admin`): feed health, items and actions (audited), run
history and run detail, trends, errors by category, CSV export, resync of selected errors,
API-call usage, notification settings."""

from fastapi import APIRouter, Depends

from worker.api.admin import actions, feeds, notifications, runs, sync_errors, trends, usage
from worker.api.auth import known_query_only

router = APIRouter(prefix="/sync", tags=["sync admin"], dependencies=[Depends(known_query_only)])
# In the order the OpenAPI document lists them.
for part in (feeds, actions, runs, sync_errors, trends, usage, notifications):
    router.include_router(part.router)
