"""Feedsync delivery: the CLI (`python -m worker …`), the cron jobs and the embedded runner."""
