"""Checks of the URLs and secrets in the environment: each problem is one sentence naming the setting and what is accepted."""

from __future__ import annotations

from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from feeds.errors import ConfigError
from feeds.urls import hide_password, http_url_problem, url_parse_problem

DESTINATION_FORMS = "file:///path/to/dir, file://./relative/dir or http(s)://host[:port][/path]"


WEBHOOK_FORM = "an http(s):// URL with a host, such as https://hooks.example.com/feedsync"


def normalise_database_url(url: str, setting: str) -> str:
    """Check an SQLAlchemy URL; plain `postgresql://` means psycopg 3, the driver Feedsync ships."""
    accepted = (
        "an SQLAlchemy URL such as sqlite:///./var/feedsync.db or postgresql://user@host:5432/db"
    )
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"{setting} {hide_password(url)!r} is not a database URL; accepted: {accepted}."
        ) from None
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise ConfigError(
            f"{setting} names port {parsed.port}; accepted: {accepted}, with a port from 1 to 65535."
        )
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        # Each connection (each thread, each worker process) would get a database of its own.
        raise ConfigError(
            f"{setting} {url!r} is an in-memory database, which every connection sees empty; "
            f"accepted: {accepted}."
        )
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"{setting} uses {parsed.get_backend_name()!r}, which is not supported; accepted: sqlite or postgresql URLs."
        )
    return parsed.render_as_string(hide_password=False)


def check_export_url(url: str, setting: str) -> str:
    """A destination URL as the exporter uses it; a ConfigError naming `setting` when it is not one."""
    problem = _destination_problem(url)
    if problem is not None:
        because = f": {problem}" if problem else ""
        raise ConfigError(
            f"{setting} {hide_password(url)!r} is not a destination{because}; "
            f"accepted: {DESTINATION_FORMS}."
        )
    return _without_trailing_slash(url)


def _destination_problem(url: str) -> str | None:
    """Why `url` is not a destination ("" when it is no file:// or http(s):// URL at all); None if it is."""
    if url.startswith("file://"):
        return None if len(url) > len("file://") else "it names no directory"
    if not url.startswith(("http://", "https://")):
        return ""
    problem = http_url_problem(url)
    parts = urlsplit(url) if problem is None else None
    if parts is not None and (parts.query or parts.fragment):
        return "it has a query or fragment, and the worker appends /feeds/<feed> to it"
    return problem


def _without_trailing_slash(url: str) -> str:
    return url.rstrip("/") if url.startswith(("http://", "https://")) else url


def _check_token(token: str | None) -> str | None:
    if not token:
        return None
    if any(char.isspace() or not char.isprintable() for char in token):
        # A token pasted with its line end would fail every request, as a connection error.
        raise ConfigError(
            "EXPORT_TOKEN contains a space or a control character, which an HTTP header cannot "
            "carry; accepted: the token as the destination issued it."
        )
    return token


def _check_broker_url(url: str | None) -> str | None:
    if not url:
        return None
    accepted = "accepted: unset (embedded mode) or redis://host:6379/0"
    if url.split("://", 1)[0] not in ("redis", "rediss", "amqp", "memory"):
        raise ConfigError(f"BROKER_URL {hide_password(url)!r} is not a broker URL; {accepted}.")
    problem = _broker_url_problem(url)
    if problem is not None:
        raise ConfigError(
            f"BROKER_URL {hide_password(url)!r} is not a broker URL: {problem}; {accepted}."
        )
    return url


def _broker_url_problem(url: str) -> str | None:
    """Why a redis:// (or amqp://) URL cannot be used; its host may be left out (localhost)."""
    if any(char.isspace() or not char.isprintable() for char in url):
        return "it contains a space or a control character"
    try:
        port = urlsplit(url).port
    except ValueError as exc:
        return url_parse_problem(exc)
    if port == 0:
        return "its port is not a number from 1 to 65535"
    return None
