"""Settings: one object, parsed and validated once."""

from config.schema import FeedSettings, JobSettings
from config.settings import Settings, load_settings

__all__ = ["FeedSettings", "JobSettings", "Settings", "load_settings"]
