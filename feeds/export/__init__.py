"""Destinations: where changed feed items go, and what each said about every item."""

from feeds.export.destination import Destination, open_destination
from feeds.export.protocol import BatchOutcome, ErrorCategory, ItemResult

__all__ = ["BatchOutcome", "Destination", "ErrorCategory", "ItemResult", "open_destination"]
