"""URLs as Feedsync takes and shows them: http(s) URLs with a host, file destinations, passwords hidden."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx


def is_http_url(url: str) -> bool:
    """An absolute http(s) URL with a host (webhooks)."""
    return http_url_problem(url) is None


def http_url_problem(url: str) -> str | None:
    """Why `url` is not an absolute http(s) URL with a host and a port from 1 to 65535; None if it is."""
    if any(char.isspace() or not char.isprintable() for char in url):
        return "it contains a space or a control character"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return url_parse_problem(exc)
    if parts.scheme not in ("http", "https"):
        return "it does not start with http:// or https://"
    if not parts.hostname:
        return "it has no host"
    if port == 0:
        return "its port is not a number from 1 to 65535"
    try:
        httpx.URL(url)  # what the exporter and the webhook client will parse
    except httpx.InvalidURL as exc:
        return f"it does not parse ({exc})"
    return None


def url_parse_problem(exc: ValueError) -> str:
    if "Port" in str(exc):  # "Port out of range 0-65535", "Port could not be cast to integer…"
        return "its port is not a number from 1 to 65535"
    if "IPv6" in str(exc):
        return "its host is not a complete [IPv6] address"
    return f"it does not parse ({exc})"


def hide_password(url: str) -> str:
    """`scheme://user:secret@host…` → `scheme://user:***@host…`: URLs as shown in messages and logs."""
    return _PASSWORD.sub(r"\1***@", url, count=1)


_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^:/@]*:)[^/?#]*@", re.IGNORECASE)


def file_destination_path(url: str) -> Path:
    """`file:///abs/dir` → /abs/dir, `file://./rel/dir` → ./rel/dir."""
    return Path(url[len("file://") :])


def host_of(url: str) -> str:
    """The host only: a webhook's path often holds a secret token."""
    return urlsplit(url).netloc
