"""Change tracking: the changelog triggers per dialect and the realtime change signals."""
