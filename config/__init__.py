"""Settings: one object, parsed and validated once."""

from config.settings import FeedSettings, JobSettings, Settings, load_settings

__all__ = ["FeedSettings", "JobSettings", "Settings", "load_settings"]
