"""Every exception class nats-py defines lands on one of ours (like the httpx table)."""

from __future__ import annotations

import inspect

import nats.errors
import nats.js.errors
import pytest

from harmony_fleet.adapters.nats.errors import NATS_ERROR_MAP, wrap_nats_error
from harmony_fleet.errors import (
    Conflict,
    FleetError,
    OutcomeUnknown,
    PermanentError,
    Refused,
    TemporaryError,
    Timeout,
)

NATS_ERRORS = sorted(
    {
        obj
        for module in (nats.errors, nats.js.errors)
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__.startswith("nats")
    },
    key=lambda c: f"{c.__module__}.{c.__name__}",
)


def test_every_nats_error_class_is_in_the_table() -> None:
    handled = {cls for cls, _, _ in NATS_ERROR_MAP}
    assert set(NATS_ERRORS) <= handled, set(NATS_ERRORS) - handled
    assert len(NATS_ERRORS) >= 50  # the walk below really walks something


def test_the_table_is_ordered_most_specific_first() -> None:
    for i, (cls, _, _) in enumerate(NATS_ERROR_MAP):
        for earlier, _, _ in NATS_ERROR_MAP[:i]:
            assert not issubclass(cls, earlier) or cls is earlier, (
                f"{cls.__name__} comes after its base {earlier.__name__}: it can never match"
            )


def _make(cls: type[BaseException]) -> BaseException:
    """An instance, with a dummy for every required ``__init__`` argument (a sid, a sub...)."""
    params = [
        p
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self"
        and p.default is inspect.Parameter.empty
        and p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    return cls(**{p.name: "boom" for p in params})


@pytest.mark.parametrize("nats_cls", NATS_ERRORS, ids=lambda c: c.__name__)
def test_each_nats_error_is_wrapped_by_what_the_caller_should_do(
    nats_cls: type[BaseException],
) -> None:
    expected = next(ours for cls, ours, _ in NATS_ERROR_MAP if issubclass(nats_cls, cls))
    ours = wrap_nats_error(_make(nats_cls), "get fleet_devices/dev-1")
    assert type(ours) is expected
    assert isinstance(ours, PermanentError | TemporaryError)
    assert str(ours).startswith("get fleet_devices/dev-1: ")


def test_a_timed_out_write_is_an_unknown_outcome_and_a_read_a_timeout() -> None:
    exc = nats.errors.TimeoutError()
    assert type(wrap_nats_error(exc, "put x", write=True)) is OutcomeUnknown
    assert type(wrap_nats_error(exc, "get x")) is Timeout


def test_the_cases_callers_rely_on() -> None:
    assert type(wrap_nats_error(nats.js.errors.KeyWrongLastSequenceError(), "u")) is Conflict
    refused = wrap_nats_error(nats.js.errors.BadRequestError(), "put")
    assert isinstance(refused, Refused)  # a 400 answer is not retried for ever
    ours = Timeout("already ours")
    assert wrap_nats_error(ours, "x") is ours
    assert isinstance(wrap_nats_error(RuntimeError("?"), "x"), FleetError)
