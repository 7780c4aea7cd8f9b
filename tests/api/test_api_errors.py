"""The API's one error handler: the status of each domain error, and which invalid parameter the
one sentence names. Pure functions, no database."""

from __future__ import annotations

from feeds.errors import ConfigError, FeedsyncError, LockedError
from worker.api.errors import SENTENCE, status_for, validation_sentence


def test_a_feed_held_by_another_process_is_a_conflict_and_other_refusals_are_400() -> None:
    assert status_for(LockedError("held")) == 409
    assert status_for(ConfigError("bad")) == 400
    assert status_for(FeedsyncError("no")) == 400


def test_a_plainly_typed_parameter_is_named_before_one_whose_validator_wrote_the_sentence() -> None:
    since = {"type": SENTENCE, "loc": ("query", "since"), "msg": "'x' is not a date.", "input": "x"}
    status = {
        "type": "enum",
        "loc": ("query", "status"),
        "msg": "Input should be 'running'",
        "input": "done",
    }
    assert validation_sentence([since, status]).startswith("The query parameter 'status' = 'done'")
    assert validation_sentence([since]) == "since 'x' is not a date."
