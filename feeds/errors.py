"""The errors Feedsync raises for people: each message is one sentence the CLI and API print as is."""


class FeedsyncError(Exception):
    """Base of every error Feedsync reports to a user."""


class ConfigError(FeedsyncError):
    """A setting has a value that is not accepted."""


class UnknownIndexerError(FeedsyncError):
    """An indexer id or feed name that is not defined."""

    def __init__(self, unknown: list[str], supported: list[str]) -> None:
        self.unknown = unknown
        self.supported = supported
        names = ", ".join(f"'{name}'" for name in unknown)
        super().__init__(
            f"The following requested index types are not supported: {names}.\n"
            f"Supported types: {', '.join(supported)}"
        )


class FeedDefinitionError(FeedsyncError):
    """A feed definition is inconsistent (duplicate name, bad watch, ...)."""


class SourceSchemaError(FeedsyncError):
    """The source database lacks a table a feed depends on."""


class DatabaseUnavailableError(FeedsyncError):
    """A database cannot be reached, refuses the login, or is not a database."""


class DestinationError(FeedsyncError):
    """The destination cannot be used (bad URL, unwritable directory, ...)."""


def one_line(exc: BaseException) -> str:
    """An exception as one line for a person: its type and first line, without the SQL statement
    and links SQLAlchemy appends (the driver's own error when there is one)."""
    original = getattr(exc, "orig", None)  # sqlalchemy.exc.DBAPIError wraps the driver's error
    shown = original if isinstance(original, BaseException) else exc
    text = str(shown).strip().splitlines()
    return f"{type(shown).__name__}: {text[0]}" if text else type(shown).__name__


class StopRequested(FeedsyncError):
    """The process was asked to stop; the work done so far is committed."""


class NotifyError(FeedsyncError):
    """`notify()` was given ids it cannot record."""


class WebhookError(FeedsyncError):
    """The notification webhook did not take a POST (a test send); the sentence says why."""


class LockedError(FeedsyncError):
    """The lock is held by another process."""


class LockLostError(FeedsyncError):
    """The lock expired and another process took it: the holder must stop."""
