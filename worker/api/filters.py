"""The run filters, read once for the admin API (`GET /sync/runs`) and the dashboard: the feed
against the registry, operation, status and sort against their enums, dates and moments, and the
`feeds.runs.RunFilter` they make.

A refusal is worded by its surface: the API answers 400 with one sentence, the dashboard shows the
problem and ignores the value. So a check here says what is wrong (an exception with the value and
what is accepted) and the caller says it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated

from pydantic import BeforeValidator, WithJsonSchema

from feeds.definitions import Operation, RunStatus
from feeds.history import read_model
from feeds.history.read_model import RunSort
from worker.api.errors import sentence

OPERATIONS = [o.value for o in Operation]
STATUSES = [s.value for s in RunStatus]
SORTS = [s.value for s in RunSort]


class NotAccepted(ValueError):
    """`value` of the filter `name` is none of `accepted`."""

    def __init__(self, name: str, value: str, accepted: Sequence[str]) -> None:
        super().__init__(f"{name} {value!r} is not one of {', '.join(accepted)}")
        self.name = name
        self.value = value
        self.accepted = list(accepted)


def choice(name: str, value: str | None, accepted: Sequence[str]) -> str | None:
    """`value` when it is one of `accepted` (None when not given); NotAccepted otherwise."""
    if value is None or value in accepted:
        return value
    raise NotAccepted(name, value, accepted)


def _moment(*, end_of_day: bool) -> BeforeValidator:
    def parse(value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return read_model.parse_moment(value, end_of_day=end_of_day)
        except ValueError as exc:
            raise sentence(str(exc)) from None

    return BeforeValidator(parse)


# Query parameters of the API: `YYYY-MM-DD` or an ISO 8601 time, as naive UTC; a bare date as the
# end of a range includes that day. Documented as the strings they are sent as.
StartMoment = Annotated[datetime, _moment(end_of_day=False), WithJsonSchema({"type": "string"})]
EndMoment = Annotated[datetime, _moment(end_of_day=True), WithJsonSchema({"type": "string"})]
