"""Trace ids: their format, which incoming ones are reused, and the logging filter."""

from __future__ import annotations

import logging
import os
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mnemo_obs import TraceIdFilter, current_trace_id
from mnemo_obs.tracing import _current, new_trace_id, valid_trace_id

from .recording import UUID4


def test_new_ids_are_distinct_lower_case_version_4_uuids() -> None:
    ids = {new_trace_id() for _ in range(20_000)}
    assert len(ids) == 20_000
    for value in list(ids)[:2000]:
        assert UUID4.fullmatch(value), value
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == value


def test_a_well_formed_uuid_is_kept_and_lower_cased() -> None:
    assert valid_trace_id("0AF7651916CD43DD8448EB211C80319C") is None  # hyphens required
    assert valid_trace_id("0AF76519-16CD-43DD-8448-EB211C80319C") == (
        "0af76519-16cd-43dd-8448-eb211c80319c"
    )
    v7 = "01890a5d-ac96-774b-bcce-b302099a8057"  # any version is a UUID
    assert valid_trace_id(v7) == v7


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "not-a-uuid",
        "0af76519-16cd-43dd-8448-eb211c80319c\n",
        "0af76519-16cd-43dd-8448-eb211c80319c\r\nX-Evil: 1",
        "0af76519-16cd-43dd-8448-eb211c8031\r\n",
        "{0af76519-16cd-43dd-8448-eb211c80319c}",
        "urn:uuid:0af76519-16cd-43dd-8448-eb211c80319c",
        "0af76519-16cd-43dd-8448-eb211c80319g",
        "0af76519_16cd_43dd_8448_eb211c80319c",
        "0af76519-16cd-43dd-8448-eb211c80319c" * 5,
        "a" * 200,
        "\uff10af76519-16cd-43dd-8448-eb211c80319c",  # a full-width digit zero
    ],
)
def test_anything_else_is_refused(value: str | None) -> None:
    assert valid_trace_id(value) is None


@given(st.text(max_size=60))
def test_what_is_accepted_is_always_a_canonical_uuid(value: str) -> None:
    result = valid_trace_id(value)
    if result is not None:
        assert result == str(uuid.UUID(value)) == value.lower()


def test_filter_puts_the_current_id_on_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.tracing")
    caplog.handler.addFilter(TraceIdFilter())
    caplog.set_level(logging.INFO, logger="tests.tracing")
    logger.info("outside")
    token = _current.set("0af76519-16cd-43dd-8448-eb211c80319c")
    try:
        assert current_trace_id() == "0af76519-16cd-43dd-8448-eb211c80319c"
        logger.info("inside")
        logger.info("explicit", extra={"trace_id": "mine"})
    finally:
        _current.reset(token)
    assert current_trace_id() is None
    assert [r.trace_id for r in caplog.records] == [
        "-",
        "0af76519-16cd-43dd-8448-eb211c80319c",
        "mine",
    ]


def test_filter_default_and_format() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert TraceIdFilter(default="none").filter(record) is True
    assert logging.Formatter("%(trace_id)s %(message)s").format(record) == "none hello"
    with pytest.raises(TypeError, match="None"):
        TraceIdFilter(default=None)  # type: ignore[arg-type]


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.write(write_end, new_trace_id().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    parent = new_trace_id()
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().decode()  # EOF when the child exits
    os.waitpid(pid, 0)
    assert UUID4.fullmatch(child) and child != parent
