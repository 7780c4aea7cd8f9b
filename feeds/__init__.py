"""The Feedsync domain: feeds, feed tables, change tracking and export. Knows nothing of Celery or HTTP servers."""
