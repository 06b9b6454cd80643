"""The live-log parts on their own: the ring buffer, the handler, SSE framing, the options."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator

import pytest

from mnemo_obs.errors import ConfigurationError
from mnemo_obs.installation import install
from mnemo_obs.logs import LiveLogs, LogBuffer, LogFilter, LogHandler, sse
from mnemo_obs.logs.records import MESSAGE, TRACE_ID, parse_level
from mnemo_obs.tracing import _current

from .logs_support import LOGS, STREAM, make_app


def entry(message: str, level: int = logging.INFO, logger: str = "app", trace: str | None = None):
    return (0.0, level, logging.getLevelName(level), logger, message, trace, None)


def test_ids_increase_and_a_full_buffer_overwrites_the_oldest_and_counts_it() -> None:
    buffer = LogBuffer(3)
    seqs = [buffer.append(entry(f"m{i}")) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert buffer.stats() == {"size": 3, "held": 3, "appended": 5, "overwritten": 2}
    items, lost = buffer.after(0, 100)
    assert [seq for seq, _e in items] == [3, 4, 5] and lost == 2
    items, lost = buffer.after(3, 100)
    assert [seq for seq, _e in items] == [4, 5] and lost == 0
    assert buffer.after(5, 100) == ([], 0)
    items, lost = buffer.after(1, 1)
    assert [seq for seq, _e in items] == [3] and lost == 1
    assert buffer.format_id(4) == f"{buffer.epoch}:4"


def test_tail_filters_by_trace_id_level_and_logger() -> None:
    buffer = LogBuffer(100)
    buffer.append(entry("a", trace="t1"))
    buffer.append(entry("b", logging.ERROR, "app.db", "t1"))
    buffer.append(entry("c", logging.DEBUG, "apple", "t2"))
    buffer.append(entry("d", logging.WARNING, "other"))

    def tail(count: int = 10, **kwargs: object) -> list[str]:
        return [e[MESSAGE] for _s, e in buffer.tail(LogFilter(**kwargs), count)]  # type: ignore[arg-type]

    assert tail() == ["a", "b", "c", "d"]
    assert tail(2) == ["c", "d"]
    assert tail(trace_id="t1") == ["a", "b"]
    assert tail(min_level=logging.WARNING) == ["b", "d"]
    assert tail(logger="app") == ["a", "b"]  # app and app.db, not apple
    assert tail(0) == []


def test_followers_are_woken_by_appends() -> None:
    buffer = LogBuffer(10)
    wake = buffer.subscribe()
    assert not wake.is_set()
    threading.Thread(target=buffer.append, args=(entry("x"),)).start()
    assert wake.wait(10)
    buffer.unsubscribe(wake)


@pytest.fixture
def kept() -> Iterator[tuple[logging.Logger, LogHandler]]:
    logger = logging.getLogger("test_logs_buffer")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = LogHandler(LogBuffer(100), level=logging.INFO, message_max=50)
    logger.addHandler(handler)
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_the_handler_keeps_message_level_trace_id_and_exception(
    kept: tuple[logging.Logger, LogHandler],
) -> None:
    logger, handler = kept
    token = _current.set("0e3a2b9c-7f6d-4e5a-9b8c-1d2e3f4a5b6c")
    try:
        logger.info("user %s did %d things", "ann", 3)
        logger.debug("below the handler's level")
        logger.info("given", extra={"trace_id": "explicit"})
    finally:
        _current.reset(token)
    logger.warning("x" * 500)
    try:
        raise RuntimeError("kaboom")
    except RuntimeError:
        logger.exception("failed")
    # A caller's bug (straight to the handler: pytest fails any logger call that makes one).
    bad = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "bad %d", ("x",), None)
    handler.handle(bad)
    entries = [e for _s, e in handler.buffer.tail(LogFilter(), 100)]
    assert [e[MESSAGE][:20] for e in entries] == [
        "user ann did 3 thing",
        "given",
        "x" * 20,
        "failed",
    ]
    assert entries[0][TRACE_ID] == "0e3a2b9c-7f6d-4e5a-9b8c-1d2e3f4a5b6c"
    assert entries[1][TRACE_ID] == "explicit"
    assert entries[2][TRACE_ID] is None
    assert entries[2][MESSAGE].endswith("[cut: 500 characters in all]")
    assert "RuntimeError: kaboom" in entries[3][-1]
    assert handler.errors == 1


def test_an_app_without_logging_config_still_gets_warnings_on_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Python prints WARNING and above when a record finds no handler; ours
    # must not swallow that for an app that configured nothing.
    logger = logging.getLogger("unconfigured")
    logger.propagate = False
    handler = LogHandler(LogBuffer(10))
    logger.addHandler(handler)
    try:
        logger.warning("you should see this")
        logger.info("not this")
        other = logging.StreamHandler()
        logger.addHandler(other)
        logger.removeHandler(other)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert capsys.readouterr().err == "you should see this\n"


@pytest.mark.parametrize(
    "message",
    [
        "a\r\nb\rc\nd",
        '\n\ndata: {"forged": true}\n\nid: 1\n\n',
        "nul\x00here",
        "\u2028\u2029\x85\x0b\x0c",
        "retry: 0\n: x",
    ],
)
def test_a_record_is_one_event_with_one_data_line(message: str) -> None:
    chunk = sse.json_event("log", {"message": message}, "abcd0123:7")
    text = chunk.decode("ascii")  # ensure_ascii: nothing but ASCII on the wire
    lines = text.split("\n")
    assert lines[:2] == ["id: abcd0123:7", "event: log"]
    assert lines[2].startswith("data: ") and lines[3:] == ["", ""]
    assert "\r" not in text and "\x00" not in text
    assert json.loads(lines[2][6:]) == {"message": message}


def test_plain_text_data_is_split_per_line_and_fields_stay_on_one_line() -> None:
    assert sse.event("gap", "a\r\nb\rc\nd") == b"event: gap\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
    assert sse.event("x\ny", "", "1\r\n2\x00") == b"id: 1 2\nevent: x y\ndata: \n\n"
    assert sse.comment("ping\n\ndata: x") == b": ping  data: x\n\n"
    assert sse.mark("ab:1") == b"id: ab:1\n: ping\n\n"


def test_levels_by_name_any_case_or_number() -> None:
    assert [parse_level(x) for x in ("debug", "Info", "WARNING", "warn", "error", "CRITICAL")] == [
        10,
        20,
        30,
        30,
        40,
        50,
    ]
    assert parse_level(25) == 25 and parse_level("35") == 35
    for bad in ("LOUD", "", -1, 101, None, True, 2.5):
        with pytest.raises(ConfigurationError, match="level"):
            parse_level(bad)


def test_live_logs_options_are_validated_eagerly() -> None:
    for kwargs, match in [
        ({"level": "LOUD"}, "log_level"),
        ({"loggers": "app"}, "log_loggers"),
        ({"loggers": ()}, "log_loggers"),
        ({"loggers": (1,)}, "log_loggers"),
        ({"buffer_size": 0}, "log_buffer_size"),
        ({"max_streams": 0}, "log_max_streams"),
        ({"max_stream_seconds": 0}, "log_max_stream_seconds"),
        ({"max_stream_seconds": float("inf")}, "log_max_stream_seconds"),
        ({"heartbeat_seconds": -1}, "log_heartbeat_seconds"),
        ({"redis_url": "nope://x"}, "log_redis_url"),
        ({"redis_key": ""}, "log_redis_key"),
        ({"token": "two words"}, "token"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            LiveLogs(**kwargs)  # type: ignore[arg-type]


def test_install_refuses_bad_log_options_and_leaves_the_app_untouched(dsn: str) -> None:
    import falcon.testing

    root_handlers = list(logging.getLogger().handlers)
    for kwargs, match in [
        ({"logs": "yes"}, "logs"),
        ({"log_level": "LOUD"}, "log_level"),
        ({"log_buffer_size": -5}, "log_buffer_size"),
        ({"log_max_streams": 0}, "log_max_streams"),
        ({"log_redis_url": "nope://x"}, "log_redis_url"),
    ]:
        app = make_app()
        with pytest.raises(ConfigurationError, match=match):
            install(app, dsn=dsn, redis_url="", **kwargs)  # type: ignore[arg-type]
        client = falcon.testing.TestClient(app)
        assert client.simulate_get(LOGS).status_code == 404
        assert client.simulate_get(STREAM).status_code == 404
        assert logging.getLogger().handlers == root_handlers
    taken = make_app()
    taken.add_route(LOGS, object())
    with pytest.raises(ConfigurationError, match="already has a route"):
        install(taken, dsn=dsn, redis_url="")
