"""The HTTP API (FastAPI): `cdi` endpoints, admin endpoints, and the dashboard (SPEC §7)."""
