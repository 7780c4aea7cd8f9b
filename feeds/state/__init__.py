"""The worker database's state: every table, the feed-table and indexer queries, leases, the database itself."""
