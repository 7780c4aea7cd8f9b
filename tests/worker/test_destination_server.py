"""The test destination speaks protocol v1 (SPEC §5) and its faults do what they say, over real HTTP."""

from __future__ import annotations

import gzip
import http.client
import subprocess
import sys
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from worker.testing.destination_server import MALFORMED_BODY, RESET, DestinationServer

ROOT = Path(__file__).resolve().parents[2]


def envelope(item_id: str, *, deleted: bool = False, **data: Any) -> dict[str, Any]:
    return {
        "id": item_id,
        "deleted": deleted,
        "modifiedAt": "2026-11-22T10:00:00Z",
        "hash": f"hash-{item_id}",
        "data": None if deleted else {"name": item_id, **data},
    }


def batch(*ids: str) -> bytes:
    return orjson.dumps({"items": [envelope(item_id) for item_id in ids]})


def statuses(response: httpx.Response) -> dict[str, str]:
    return {result["id"]: result["status"] for result in response.json()["results"]}


@pytest.fixture
def client(destination: DestinationServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=destination.url, timeout=5) as http:
        yield http


def test_accepts_items_and_records_them(
    destination: DestinationServer, client: httpx.Client
) -> None:
    response = client.post(
        "/feeds/products", content=batch("a", "b"), headers={"Idempotency-Key": "k1"}
    )

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "results": [{"id": "a", "status": "accepted"}, {"id": "b", "status": "accepted"}]
    }
    assert destination.accepted_ids("products") == {"a", "b"}
    assert destination.accepted["products"]["a"] == envelope("a")
    assert destination.count("products") == 2
    [request] = destination.requests
    assert (request.feed, request.ids, request.idempotency_key, request.status) == (
        "products",
        ("a", "b"),
        "k1",
        200,
    )
    assert not request.gzip and not request.replayed and request.authorization is None


def test_a_redelivery_counts_again_and_keeps_the_last_envelope(
    destination: DestinationServer, client: httpx.Client
) -> None:
    client.post("/feeds/products", content=batch("a"))
    deleted = orjson.dumps({"items": [envelope("a", deleted=True)]})
    client.post("/feeds/products", content=deleted)

    assert destination.count("products") == 2
    assert destination.accepted_ids("products") == {"a"}
    assert destination.accepted["products"]["a"]["deleted"] is True


def test_gzip_body_is_decompressed(destination: DestinationServer, client: httpx.Client) -> None:
    body = gzip.compress(batch("a", "b", "c"))
    response = client.post("/feeds/orders", content=body, headers={"Content-Encoding": "gzip"})

    assert statuses(response) == {"a": "accepted", "b": "accepted", "c": "accepted"}
    assert destination.requests[0].gzip
    assert destination.accepted_ids("orders") == {"a", "b", "c"}


def test_keep_alive_reuses_one_connection(destination: DestinationServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", destination.port, timeout=5)
    try:
        sockets = []
        for item_id in ("a", "b", "c"):
            connection.request("POST", "/feeds/products", body=batch(item_id))
            response = connection.getresponse()
            assert response.status == 200 and response.read()
            sockets.append(connection.sock)
    finally:
        connection.close()
    assert sockets[0] is not None and sockets.count(sockets[0]) == 3


def test_a_token_requires_the_bearer_header() -> None:
    with (
        DestinationServer(token="s3cret") as destination,
        httpx.Client(base_url=destination.url) as http,
    ):
        missing = http.post("/feeds/products", content=batch("a"))
        wrong = http.post(
            "/feeds/products", content=batch("a"), headers={"Authorization": "Bearer nope"}
        )
        right = http.post(
            "/feeds/products", content=batch("a"), headers={"Authorization": "Bearer s3cret"}
        )

        assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
        assert "message" in missing.json()
        assert destination.count("products") == 1
        assert destination.requests[2].authorization == "Bearer s3cret"


def test_fail_next_answers_503_then_recovers(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.fail_next(2)

    codes = [client.post("/feeds/products", content=batch("a")).status_code for _ in range(3)]

    assert codes == [503, 503, 200]
    assert destination.count("products") == 1
    assert [r.status for r in destination.requests] == [503, 503, 200]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 500, 502])
def test_fail_next_answers_the_chosen_status_with_a_message(
    destination: DestinationServer, client: httpx.Client, status: int
) -> None:
    destination.fail_next(1, status=status)

    response = client.post("/feeds/products", content=batch("a"))

    assert response.status_code == status
    assert response.json()["message"]
    assert destination.accepted_ids("products") == set()


def test_rate_limit_answers_429_with_retry_after(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.rate_limit_next(1, retry_after=7)

    limited = client.post("/feeds/products", content=batch("a"))
    after = client.post("/feeds/products", content=batch("a"))

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    assert after.status_code == 200


def test_rate_limit_can_give_retry_after_as_an_http_date(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.rate_limit_next(1, retry_after=30, http_date=True)

    limited = client.post("/feeds/products", content=batch("a"))

    assert limited.status_code == 429
    until = parsedate_to_datetime(limited.headers["retry-after"])
    assert 29 <= (until - parsedate_to_datetime(limited.headers["date"])).total_seconds() <= 32


def test_rate_limit_window_answers_429_with_the_time_left_until_it_ends(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.rate_limit_for(0.5)

    first = client.post("/feeds/products", content=batch("a"))
    time.sleep(0.2)
    second = client.post("/feeds/products", content=batch("a"))
    time.sleep(0.4)
    after = client.post("/feeds/products", content=batch("a"))

    assert (first.status_code, second.status_code, after.status_code) == (429, 429, 200)
    assert 0 < float(second.headers["retry-after"]) < float(first.headers["retry-after"]) <= 0.5


def test_rate_limit_ratio_gives_retry_after_in_each_form_in_turn(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.rate_limit_ratio(1.0, retry_after=30, forms=(False, True))

    seconds, date = (client.post("/feeds/products", content=batch("a")) for _ in range(2))
    destination.rate_limit_ratio(0.0)
    after = client.post("/feeds/products", content=batch("a"))

    assert (seconds.status_code, date.status_code, after.status_code) == (429, 429, 200)
    assert seconds.headers["retry-after"] == "30"
    until = parsedate_to_datetime(date.headers["retry-after"])
    assert 29 <= (until - parsedate_to_datetime(date.headers["date"])).total_seconds() <= 32


def test_a_malformed_answer_is_a_200_cut_short_that_applies_nothing(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.malformed_ratio(1.0)

    response = client.post("/feeds/products", content=batch("a"))

    assert (response.status_code, response.content) == (200, MALFORMED_BODY)
    with pytest.raises(ValueError):
        response.json()
    assert destination.accepted_ids("products") == set()
    assert destination.stats()["injected"] == {"malformed": 1}


def test_a_slow_share_is_answered_too_late_yet_applied(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.slow_ratio(1.0, 0.6)

    with pytest.raises(httpx.ReadTimeout):
        client.post("/feeds/products", content=batch("late"), timeout=0.1)
    in_flight = destination.stats()["in_flight"]
    deadline = time.monotonic() + 3
    while destination.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)

    assert in_flight == 1
    assert destination.accepted_ids("products") == {"late"}
    assert destination.stats()["injected"] == {"slow": 1, "late_items": 1}


def test_a_batch_over_the_limit_is_413(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.too_large_over(2)

    too_large = client.post("/feeds/products", content=batch("a", "b", "c"))
    half = client.post("/feeds/products", content=batch("a", "b"))

    assert too_large.status_code == 413
    assert half.status_code == 200
    assert destination.accepted_ids("products") == {"a", "b"}


def test_a_body_over_the_byte_limit_is_413(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.too_large_over(None, max_bytes=len(batch("a", "b")))

    too_large = client.post(
        "/feeds/products",
        content=gzip.compress(batch("a", "b", "c")),
        headers={"Content-Encoding": "gzip"},
    )
    fits = client.post("/feeds/products", content=batch("a", "b"))

    assert too_large.status_code == 413  # measured decompressed: what the destination would store
    assert "bytes" in too_large.json()["message"]
    assert fits.status_code == 200


@pytest.mark.parametrize("apply", [False, True], ids=["not-applied", "applied"])
def test_a_garbled_answer_is_a_200_with_the_given_body(
    destination: DestinationServer, client: httpx.Client, apply: bool
) -> None:
    destination.garble_next(1, b"<html>oops</html>", headers={"X-Proxy": "1"}, apply=apply)

    garbled = client.post("/feeds/products", content=batch("a"))
    after = client.post("/feeds/products", content=batch("b"))

    assert (garbled.status_code, garbled.content) == (200, b"<html>oops</html>")
    assert garbled.headers["x-proxy"] == "1"
    assert statuses(after) == {"b": "accepted"}
    assert destination.accepted_ids("products") == ({"a", "b"} if apply else {"b"})


@pytest.mark.parametrize("apply", [False, True], ids=["not-applied", "applied"])
def test_a_reset_connection_answers_nothing_then_the_server_recovers(
    destination: DestinationServer, client: httpx.Client, apply: bool
) -> None:
    destination.reset_next(1, apply=apply)

    with pytest.raises(httpx.TransportError):
        client.post("/feeds/products", content=batch("a"))
    after = client.post("/feeds/products", content=batch("b"))

    assert statuses(after) == {"b": "accepted"}
    assert destination.accepted_ids("products") == ({"a", "b"} if apply else {"b"})
    assert [r.status for r in destination.requests] == [RESET, 200]


def test_a_slow_answer_times_the_client_out_and_others_are_served_meanwhile(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.slow_next(1, 0.6)

    with pytest.raises(httpx.ReadTimeout):
        client.post("/feeds/products", content=batch("slow"), timeout=0.1)
    started = time.monotonic()
    response = client.post("/feeds/products", content=batch("fast"))

    assert response.status_code == 200
    assert time.monotonic() - started < 0.4
    deadline = time.monotonic() + 3
    while len(destination.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    # The slow request was still handled, then its answer met a closed connection without harm.
    assert destination.accepted_ids("products") == {"slow", "fast"}
    assert client.post("/feeds/products", content=batch("after")).status_code == 200


def test_rejected_items_carry_the_rule_code(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.reject({"b"}, code="MISSING_ASSOCIATION", message="no such category")
    destination.reject(lambda item: item["id"].startswith("x"), code="DUPLICATE_VALUE")

    response = client.post("/feeds/products", content=batch("a", "b", "xy"))

    results = {result["id"]: result for result in response.json()["results"]}
    assert results["a"] == {"id": "a", "status": "accepted"}
    assert results["b"]["status"] == "rejected"
    assert results["b"]["error"] == {"code": "MISSING_ASSOCIATION", "message": "no such category"}
    assert results["xy"]["error"]["code"] == "DUPLICATE_VALUE"
    assert destination.accepted_ids("products") == {"a"}


def test_reject_ratio_is_deterministic_for_a_seed() -> None:
    ids = [f"i{n}" for n in range(200)]

    def rejected(seed: int) -> set[str]:
        with DestinationServer() as destination, httpx.Client(base_url=destination.url) as http:
            destination.reject_ratio(0.25, code="INVALID_VALUE", seed=seed)
            response = http.post("/feeds/products", content=batch(*ids))
            return {r["id"] for r in response.json()["results"] if r["status"] == "rejected"}

    first, again, other = rejected(1), rejected(1), rejected(2)
    assert first == again != other
    assert 20 < len(first) < 80


def test_reject_ratio_answers_a_resent_version_as_it_did_before(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.reject_ratio(0.5, seed=3)
    ids = [f"i{n}" for n in range(40)]

    answers = [statuses(client.post("/feeds/products", content=batch(*ids))) for _ in range(2)]
    changed = orjson.dumps({"items": [{**envelope(i), "hash": f"new-{i}"} for i in ids]})
    after_change = statuses(client.post("/feeds/products", content=changed))

    assert answers[0] == answers[1]
    assert after_change != answers[0]  # a new version is drawn anew


def test_fail_ratio_is_deterministic_for_a_seed() -> None:
    def codes(seed: int) -> list[int]:
        with DestinationServer() as destination, httpx.Client(base_url=destination.url) as http:
            destination.fail_ratio(0.5, status=502, seed=seed)
            return [http.post("/feeds/p", content=batch("a")).status_code for _ in range(30)]

    first = codes(3)
    assert first == codes(3)
    assert set(first) == {200, 502}


def test_omitted_items_are_missing_from_results(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.omit({"b"})

    response = client.post("/feeds/products", content=batch("a", "b"))

    assert statuses(response) == {"a": "accepted"}
    assert destination.accepted_ids("products") == {"a"}


def test_a_repeated_idempotency_key_replays_the_answer(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.fail_next(1)
    failed = client.post("/feeds/products", content=batch("a"), headers={"Idempotency-Key": "k"})
    first = client.post("/feeds/products", content=batch("a"), headers={"Idempotency-Key": "k"})
    destination.reject({"a"})
    replay = client.post("/feeds/products", content=batch("a"), headers={"Idempotency-Key": "k"})
    fresh = client.post("/feeds/products", content=batch("a"), headers={"Idempotency-Key": "k2"})

    assert failed.status_code == 503  # only a 200 answer is remembered
    assert replay.content == first.content
    assert statuses(fresh) == {"a": "rejected"}
    assert destination.count("products") == 1
    assert [r.replayed for r in destination.requests] == [False, False, True, False]


def test_clear_faults_restores_normal_answers(
    destination: DestinationServer, client: httpx.Client
) -> None:
    destination.fail_next(5)
    destination.reject({"a"})
    destination.clear_faults()

    response = client.post("/feeds/products", content=batch("a"))

    assert statuses(response) == {"a": "accepted"}


def test_reset_forgets_state_but_keeps_faults(
    destination: DestinationServer, client: httpx.Client
) -> None:
    client.post("/feeds/products", content=batch("a"), headers={"Idempotency-Key": "k"})
    destination.omit({"a"})
    destination.reset()

    response = client.post("/feeds/products", content=batch("a"), headers={"Idempotency-Key": "k"})

    assert statuses(response) == {}
    assert destination.count("products") == 0 and len(destination.requests) == 1


def test_the_daily_limit_header_is_on_every_answer() -> None:
    with (
        DestinationServer(daily_limit=1000) as destination,
        httpx.Client(base_url=destination.url) as http,
    ):
        destination.fail_next(1)
        answers = [
            http.post("/feeds/products", content=batch("a")),
            http.post("/feeds/products", content=batch("a")),
            http.post("/feeds/products", content=b"{"),
            http.post("/nowhere", content=batch("a")),
        ]

    assert [a.status_code for a in answers] == [503, 200, 400, 404]
    assert {a.headers["x-ratelimit-limit-day"] for a in answers} == {"1000"}


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"not json", {}, 400),
        (b'{"things": []}', {}, 400),
        (b'{"items": {}}', {}, 400),
        (b'{"items": [{"deleted": false}]}', {}, 400),
        (b"not gzip", {"Content-Encoding": "gzip"}, 400),
        (batch("a"), {"Content-Encoding": "br"}, 415),
    ],
    ids=[
        "not-json",
        "no-items",
        "items-not-a-list",
        "item-without-id",
        "bad-gzip",
        "unknown-encoding",
    ],
)
def test_a_bad_body_is_refused_with_a_message(
    destination: DestinationServer,
    client: httpx.Client,
    body: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    response = client.post("/feeds/products", content=body, headers=headers)

    assert response.status_code == status
    assert response.json()["message"]
    assert client.post("/feeds/products", content=batch("a")).status_code == 200


@pytest.mark.parametrize("path", ["/", "/feeds", "/feeds/", "/feeds/a/b", "/items/products"])
def test_an_unknown_path_is_404(client: httpx.Client, path: str) -> None:
    assert client.post(path, content=batch("a")).status_code == 404


def test_without_keep_items_only_ids_and_deletion_are_kept() -> None:
    with (
        DestinationServer(keep_items=False) as destination,
        httpx.Client(base_url=destination.url) as http,
    ):
        http.post("/feeds/products", content=orjson.dumps({"items": [envelope("a", deleted=True)]}))
        http.post("/feeds/products", content=batch("b"))

        assert destination.accepted_ids("products") == {"a", "b"}
        assert dict(destination.accepted["products"]["a"]) == {"deleted": True}
        assert dict(destination.accepted["products"]["b"]) == {"deleted": False}


def test_process_mode_prints_its_port_serves_and_stops_on_sigterm() -> None:
    command = [
        sys.executable,
        "-m",
        "worker.testing.destination_server",
        "--port",
        "0",
        "--print-port",
        "--quiet",
    ]
    command += ["--token", "t", "--reject-ratio", "1", "--reject-code", "PERMISSION_DENIED"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        assert line.startswith("PORT "), line
        url = f"http://127.0.0.1:{int(line.split()[1])}"
        with httpx.Client(base_url=url, headers={"Authorization": "Bearer t"}, timeout=5) as http:
            response = http.post(
                "/feeds/products",
                content=gzip.compress(batch("a", "b")),
                headers={"Content-Encoding": "gzip"},
            )
            stats = http.get("/_stats").json()
        assert response.json()["results"][0]["error"]["code"] == "PERMISSION_DENIED"
        assert stats["requests"] == 1 and stats["statuses"] == {"200": 1}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=5)
    assert process.returncode == 0
    assert stderr == b""


def test_process_mode_faults_from_the_command_line_until_healed() -> None:
    command = [sys.executable, "-m", "worker.testing.destination_server", "--print-port"]
    command += ["--quiet", "--rate-limit-ratio", "1", "--retry-after", "2"]
    command += ["--retry-after-form", "both"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdout is not None
        url = f"http://127.0.0.1:{int(process.stdout.readline().split()[1])}"
        with httpx.Client(base_url=url, timeout=5) as http:
            limited = [http.post("/feeds/products", content=batch("a")) for _ in range(2)]
            healed = http.post("/_heal")
            after = http.post("/feeds/products", content=batch("a"))
        assert [r.status_code for r in limited] == [429, 429]
        assert limited[0].headers["retry-after"] == "2"
        assert parsedate_to_datetime(limited[1].headers["retry-after"])
        assert (healed.status_code, after.status_code) == (200, 200)
    finally:
        process.terminate()
        process.communicate(timeout=5)
    assert process.returncode == 0
