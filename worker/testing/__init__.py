"""Tools for testing Feedsync against the real thing: a protocol v1 destination server with
switchable faults (`python -m worker.testing.destination_server`), and the reconciliation that
compares what a destination holds with a fresh build of the source."""
