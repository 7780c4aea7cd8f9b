"""Signed page cursors and Link headers: pure functions, no database."""

from __future__ import annotations

import base64

import orjson
import pytest

from worker.api.cursors import CURSOR_TTL_S, Cursor, CursorError, Direction, decode, encode
from worker.api.pagination import link_header, with_cursor

SECRET = b"s" * 32
NOW = 1_800_000_000.0
CURSOR = Cursor("jobs:abc", Direction.NEXT, ("2026-11-23T10:00:00.123456", "f00d"))


def test_a_cursor_decodes_to_what_was_encoded() -> None:
    token = encode(CURSOR, SECRET, NOW)
    assert decode(token, SECRET, "jobs:abc", NOW + 5) == CURSOR
    assert "=" not in token and "/" not in token and "+" not in token  # safe in a query string


def test_a_cursor_signed_with_another_secret_is_refused() -> None:
    token = encode(CURSOR, b"other secret", NOW)
    with pytest.raises(CursorError):
        decode(token, SECRET, "jobs:abc", NOW)


def test_an_altered_payload_is_refused() -> None:
    body, issued, mac = encode(CURSOR, SECRET, NOW).split(".")
    payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["k"][1] = "beef"
    altered = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()
    forged = f"{altered}.{issued}.{mac}"
    with pytest.raises(CursorError):
        decode(forged, SECRET, "jobs:abc", NOW)


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b.c", "!!!.???", "eyJ9.", ".abc", "é.é", "x" * 3000, "e30.AAAA"],
)
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(CursorError):
        decode(token, SECRET, "jobs:abc", NOW)


def test_a_cursor_of_another_list_is_refused() -> None:
    token = encode(CURSOR, SECRET, NOW)
    with pytest.raises(CursorError, match="another list"):
        decode(token, SECRET, "jobs:other", NOW)


def test_a_stale_cursor_is_refused() -> None:
    token = encode(CURSOR, SECRET, NOW)
    assert decode(token, SECRET, "jobs:abc", NOW + CURSOR_TTL_S) == CURSOR
    with pytest.raises(CursorError, match="stale"):
        decode(token, SECRET, "jobs:abc", NOW + CURSOR_TTL_S + 1)


def test_link_header_has_only_the_links_that_exist() -> None:
    url = "http://h/cdi/integrations/x/job_sync_status?cursor=old&a=1"
    assert link_header(url, None, None) is None
    assert link_header(url, None, "N") == (
        '<http://h/cdi/integrations/x/job_sync_status?a=1&cursor=N>; rel="next"'
    )
    assert link_header(url, "P", "N") == (
        '<http://h/cdi/integrations/x/job_sync_status?a=1&cursor=P>; rel="prev", '
        '<http://h/cdi/integrations/x/job_sync_status?a=1&cursor=N>; rel="next"'
    )


def test_with_cursor_replaces_the_cursor_and_keeps_other_parameters() -> None:
    assert with_cursor("http://h/p", "a.b") == "http://h/p?cursor=a.b"
    assert with_cursor("http://h/p?x=1&cursor=z", "c") == "http://h/p?x=1&cursor=c"
