"""Logs: one JSON object per line with its fields, context fields, exceptions as a field, secrets masked;
the text format; the CLI's floor for libraries; and the worker keeping tickwire's logging (no Faust handlers,
no banner in the JSON format)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import warnings
from collections.abc import Iterator
from datetime import datetime, timezone

import faust
import pytest
from pydantic import SecretStr

from pipeline.config import load_settings
from pipeline.core.logs import ContextLogger, configure_logging, log_context, make_handler, set_stage
from pipeline.runtime.app import TickwireWorker
from pipeline.runtime.worker import faust_command_line

SECRET = "s3cr3t-Pa$$/word"  # quoted in URLs as s3cr3t-Pa%24%24%2Fword
KEY = "tw_0123456789abcdef_" + "A" * 43


def logger_writing_to(stream: io.StringIO, *, name: str = "tickwire.test", cli: bool = False,
                      **settings: object) -> logging.Logger:
    """A logger of its own whose only handler is the one configure_logging installs."""
    logger = logging.getLogger(name)
    logger.handlers = [make_handler(load_settings(**settings), cli=cli, stream=stream)]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_json_format_is_one_object_per_line_with_its_fields_and_context() -> None:
    out = io.StringIO()
    log = logger_writing_to(out, log_format="json")
    log.warning("stage %s: sink %s unavailable\nsecond line", "ingest", "cache.hot_ticks",
                extra={"stage": "ingest", "sink": "cache.hot_ticks", "topic": "mt5.ticks.v1", "partition": 3})
    log.info("no context")
    first, second = json_lines(out)
    assert first["message"] == "stage ingest: sink cache.hot_ticks unavailable\nsecond line"
    assert first["level"] == "WARNING" and first["logger"] == "tickwire.test"
    assert (first["stage"], first["sink"], first["topic"], first["partition"]) == ("ingest", "cache.hot_ticks",
                                                                                 "mt5.ticks.v1", 3)
    stamp = str(first["timestamp"])
    assert stamp.endswith("Z")
    parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timezone.utc.utcoffset(None)
    assert abs((datetime.now(timezone.utc) - parsed).total_seconds()) < 60
    assert set(second) == {"timestamp", "level", "logger", "message"}, "no context field that does not apply"


def test_an_exception_is_one_field_of_one_line() -> None:
    out = io.StringIO()
    log = logger_writing_to(out, log_format="json")
    try:
        raise ValueError("the store said no")
    except ValueError:
        log.exception("stage %s failed", "graph", extra={"stage": "graph"})
    (line,) = json_lines(out)
    assert line["message"] == "stage graph failed" and line["stage"] == "graph"
    assert line["exc_type"] == "ValueError"
    assert str(line["exception"]).startswith("Traceback") and "ValueError: the store said no" in str(line["exception"])


def test_secrets_are_masked_in_messages_urls_keys_and_tracebacks() -> None:
    out = io.StringIO()
    log = logger_writing_to(out, log_format="json", cache_password=SecretStr(SECRET),
                            postgres_password=SecretStr("pg-Password-1"))
    log.error("connecting with %s failed", SECRET)
    log.error("dsn postgresql://tickwire:s3cr3t-Pa%24%24%2Fword@db:5432/tickwire refused")
    log.error("graph at redis://admin:not-a-setting@graph:6379 is down")  # a password in a URL, whatever it is
    log.error("a request with %s", KEY)
    try:
        raise ConnectionError("auth failed for pg-Password-1")
    except ConnectionError:
        log.exception("giving up")
    written = out.getvalue()
    for secret in (SECRET, "s3cr3t-Pa%24%24%2Fword", "pg-Password-1", "not-a-setting", "A" * 43):
        assert secret not in written, secret
    lines = json_lines(out)
    assert lines[0]["message"] == "connecting with *** failed"
    assert "postgresql://tickwire:***@db:5432/tickwire" in str(lines[1]["message"])
    assert "redis://admin:***@graph:6379" in str(lines[2]["message"])
    assert lines[3]["message"] == "a request with tw_0123456789abcdef_***", "the key id stays, to find the key"
    assert "auth failed for ***" in str(lines[4]["exception"])


def test_text_format_is_one_line_with_time_level_logger_and_message() -> None:
    out = io.StringIO()
    log = logger_writing_to(out, log_format="text", cache_password=SecretStr(SECRET))
    log.warning("stage %s: sink %s recovered after %d failed attempts", "ingest", "cache.hot_ticks", 3)
    log.info("password %s", SECRET)
    first, second = out.getvalue().splitlines()
    stamp, level, name, message = first.split(" ", 3)
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).tzinfo is not None and stamp.endswith("Z")
    assert (level, name) == ("WARNING", "tickwire.test:")
    assert message == "stage ingest: sink cache.hot_ticks recovered after 3 failed attempts"
    assert second.endswith("tickwire.test: password ***")


def test_context_fields_come_from_a_context_logger_or_the_task_that_set_them() -> None:
    out = io.StringIO()
    log = logger_writing_to(out, log_format="json")
    library = logger_writing_to(out, name="aiokafka.test", log_format="json")
    ContextLogger(log, {"stage": "signals"}).info("adapter", extra={"topic": "mt5.signals.v1"})

    async def child() -> None:
        library.info("in a task it started")

    async def stage_task() -> None:
        set_stage("patterns")
        library.info("in the stage's task")
        await asyncio.create_task(child())

    async def main() -> None:
        await asyncio.create_task(stage_task())
        library.info("elsewhere")
        with log_context() as fields:
            fields["tenant"] = "acme"  # known once the request's key is
            log.info("answering", extra={"sink": "x"})
        log.info("answered")

    asyncio.run(main())
    adapter, in_task, started, elsewhere, answering, answered = json_lines(out)
    assert (adapter["stage"], adapter["topic"]) == ("signals", "mt5.signals.v1")
    assert in_task["stage"] == started["stage"] == "patterns" and in_task["logger"] == "aiokafka.test"
    assert "stage" not in elsewhere
    assert (answering["tenant"], answering["sink"]) == ("acme", "x") and "tenant" not in answered


def test_a_command_shows_libraries_from_warning_up_unless_debug() -> None:
    out = io.StringIO()
    ours = logger_writing_to(out, cli=True)
    library = logger_writing_to(out, name="aiokafka.cli", cli=True)
    ours.info("ours")
    library.info("library info")
    library.warning("library warning")
    debug = io.StringIO()
    logger_writing_to(debug, name="aiokafka.debug", cli=True, log_level="DEBUG").info("library info in DEBUG")
    assert [line.split(": ", 1)[1] for line in out.getvalue().splitlines()] == ["ours", "library warning"]
    assert "library info in DEBUG" in debug.getvalue()


@pytest.fixture
def root_logging() -> Iterator[logging.Logger]:
    """The root logger, restored after the test (configure_logging changes process-wide state)."""
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    yield root
    root.handlers = handlers
    root.setLevel(level)
    sys.excepthook = hook
    logging.captureWarnings(False)


def test_configure_logging_replaces_the_root_handlers_and_routes_warnings(root_logging: logging.Logger,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    root_logging.addHandler(logging.StreamHandler(io.StringIO()))  # e.g. a basicConfig made earlier
    configure_logging(load_settings(log_format="json", log_level="WARNING"))
    assert len(root_logging.handlers) == 1 and root_logging.level == logging.WARNING
    logging.getLogger("faust.test").warning("from a library")
    logging.getLogger("tickwire.test").info("below the level")
    warnings.warn("a warning", UserWarning, stacklevel=1)
    sys.excepthook(RuntimeError, RuntimeError("boom"), None)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["logger"], line["level"]) for line in lines] == [("faust.test", "WARNING"), ("py.warnings", "WARNING"),
                                                                   ("tickwire", "CRITICAL")]
    assert lines[2]["exc_type"] == "RuntimeError"


def test_faust_runs_quiet_in_json_at_tickwire_s_level_and_an_old_l_option_is_dropped() -> None:
    argv, dropped = faust_command_line(load_settings(log_format="json", log_level="WARNING"), ["-l", "info", "--web-port", "1"])
    assert argv == ["tickwire", "--quiet", "worker", "-l", "warn", "--web-port", "1"] and dropped == "info"
    argv, dropped = faust_command_line(load_settings(log_format="text"), ["--loglevel=debug"])
    assert argv == ["tickwire", "worker", "-l", "info"] and dropped == "debug"


def test_the_worker_keeps_tickwire_s_handlers_where_faust_s_would_replace_them(root_logging: logging.Logger) -> None:
    ours = logging.StreamHandler(io.StringIO())
    root_logging.handlers = [ours]
    loop = asyncio.new_event_loop()
    try:
        app = faust.App("logs-test", broker="kafka://127.0.0.1:1", autodiscover=False)
        worker = TickwireWorker(app, loop=loop, redirect_stdouts=False, loglevel="info")
        worker._setup_logging()
        assert root_logging.handlers == [ours] and ours.level == logging.NOTSET and worker.spinner is None
        faust.Worker(app, loop=loop, redirect_stdouts=False, loglevel="info")._setup_logging()
        assert root_logging.handlers != [ours], "Faust's own worker would have replaced them"
    finally:
        loop.close()
