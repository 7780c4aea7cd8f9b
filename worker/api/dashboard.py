"""Admin dashboard at /dashboard (server-rendered; SPEC §7). Routes are added below."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
