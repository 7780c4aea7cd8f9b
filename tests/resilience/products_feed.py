"""A deployment that syncs the sample catalog's products alone (TOML `feed_modules`, with
`builtin_feeds = false`): the other feeds would only add minutes to the scenarios."""

from feeds.commerce.feeds import FEEDS as COMMERCE_FEEDS

FEEDS = [feed for feed in COMMERCE_FEEDS if feed.name == "products"]
