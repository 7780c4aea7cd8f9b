"""Destinations: where changed feed items go, and what each said about every item."""

from feeds.export.destination import Destination, ItemResult, open_destination

__all__ = ["Destination", "ItemResult", "open_destination"]
