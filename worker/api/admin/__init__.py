"""The admin endpoints of SPEC §7 (`sync.admin`): run history, errors by category, CSV export,
resync of selected errors, API-call usage, notification settings."""

from fastapi import APIRouter, Depends

from worker.api.admin import notifications, runs, sync_errors, usage
from worker.api.auth import known_query_only

router = APIRouter(prefix="/sync", tags=["sync admin"], dependencies=[Depends(known_query_only)])
# In the order the OpenAPI document lists them.
for part in (runs, sync_errors, usage, notifications):
    router.include_router(part.router)
