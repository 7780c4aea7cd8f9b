"""The pipeline: build documents, compare them with the feed table, deliver, record (runs, batches, indexers, resync, fan-out)."""
