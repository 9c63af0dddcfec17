"""One logging setup for every tickwire process: the worker, ``tickwire api`` and the CLI.

:func:`configure_logging` puts one handler on the root logger, so tickwire's
own records (loggers ``tickwire.*``) and those of the libraries (Faust, mode,
aiokafka, aiohttp, Python's warnings) share one destination (standard error)
and one format, chosen by ``TICKWIRE_LOG_FORMAT``:

- ``text``, for a terminal: one line per record,
  ``2026-11-23T18:20:01.123Z WARNING tickwire.circuit: stage ingest: sink cache.hot_ticks unavailable, ...``
  (time in UTC, level, logger name, message); a traceback follows on the next lines.
- ``json``, for a log pipeline: one JSON object per line and nothing else
  (the worker prints no banner then, and stray prints or warnings become records):
  ``timestamp`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message``;
  the context fields ``stage``, ``topic``, ``partition``, ``tenant``, ``sink``
  when the record has them; ``exception`` (the whole traceback, one string) and
  ``exc_type`` when it carries one; an uncaught exception is logged as one record too.

``TICKWIRE_LOG_LEVEL`` (DEBUG, INFO, WARNING, ERROR) is the least severe
record written. With ``cli=True`` (a command, not a service) the libraries'
records are written from WARNING up unless the level is DEBUG: a command
reports its own failures.

Context fields come from ``extra=`` on the logging call
(``log.warning("...", extra={"stage": stage, "sink": sink})``), from a
:class:`ContextLogger` (fixed fields for every call), or from the asyncio task
that logs: :func:`set_stage` tags every record logged afterwards in the task
and the tasks it starts (e.g. a stage's aiokafka consumer) with its stage, and
:func:`log_context` the records logged within a block (the API: the caller's
tenant while it answers a request).

Secrets are never written: a filter replaces, in the message and the
traceback, every value of the settings' ``SecretStr`` fields (as is and
URL-quoted; values under 4 characters are left: they would mask ordinary
words), any password in a URL (``scheme://user:***@host``) and the secret part
of API keys (``tw_<key id>_***``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, TextIO
from urllib.parse import quote

import orjson
from pydantic import SecretStr

from pipeline.config import Settings

#: Fields a record may carry (``extra=``), written by the JSON format when present.
CONTEXT_FIELDS = ("stage", "topic", "partition", "tenant", "sink")
#: What a masked secret becomes.
MASK = "***"
#: Secrets shorter than this are not masked (they would mask ordinary words).
MIN_SECRET_CHARS = 4
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/@:]*:)[^\s/@]+@")
_API_KEY = re.compile(r"\b(?P<head>tw_[0-9a-f]{16}_)[A-Za-z0-9_\-]{8,}")

_context: ContextVar[Mapping[str, object]] = ContextVar("tickwire_log_context", default={})


def set_stage(stage: str) -> None:
    """Tag every record logged from now on in this asyncio task, and in the tasks it starts, with ``stage``."""
    _context.set({**_context.get(), "stage": stage})


@contextmanager
def log_context(**fields: object) -> Iterator[dict[str, object]]:
    """Tag the records logged within the block (in this task, and tasks it starts) with ``fields``; the block may
    add fields to the dict it is given (e.g. a tenant once the request's key is known)."""
    current = {**_context.get(), **fields}
    token = _context.set(current)
    try:
        yield current
    finally:
        _context.reset(token)


class ContextLogger(logging.LoggerAdapter[logging.Logger]):
    """``logger`` adding fixed context fields (e.g. ``{"stage": "ingest"}``) to every record; a call's own
    ``extra=`` fields win."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs


def secret_values(settings: Settings) -> list[str]:
    """The values of every ``SecretStr`` setting that is set."""
    found = []
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) and value.get_secret_value():
            found.append(value.get_secret_value())
    return found


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _format_exception(exc_info: tuple[type[BaseException], BaseException, TracebackType | None]) -> str:
    return "".join(traceback.format_exception(*exc_info)).rstrip("\n")


class SecretMask(logging.Filter):
    """Masks secrets in a record's message, traceback and stack (see the module docstring).

    On a handler it sees every record the handler writes, whichever logger made it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        values = {variant for secret in secrets if len(secret) >= MIN_SECRET_CHARS
                  for variant in (secret, quote(secret, safe=""))}
        ordered = sorted(values, key=len, reverse=True)  # a secret that contains another is masked whole
        self._secrets = re.compile("|".join(re.escape(value) for value in ordered)) if ordered else None

    def mask(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(MASK, text)
        text = _URL_PASSWORD.sub(rf"\g<head>{MASK}@", text)
        return _API_KEY.sub(rf"\g<head>{MASK}", text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: the handler reports it as logging does
            return True
        record.msg, record.args = self.mask(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _format_exception(record.exc_info)  # type: ignore[arg-type]  # exc_info is set: (type, value, tb)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return True


class _FieldsFromContext(logging.Filter):
    """Adds the fields of :func:`set_stage` and :func:`log_context` a record does not have itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


#: Loggers of tickwire itself: its own (``tickwire.*``) and those mode's services name after their module.
OWN_LOGGERS = ("tickwire", "pipeline", "agents")


class _LibraryFloor(logging.Filter):
    """Drops the libraries' records below ``floor`` (tickwire's own pass)."""

    def __init__(self, floor: int) -> None:
        super().__init__()
        self._floor = floor

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self._floor or record.name.split(".", 1)[0] in OWN_LOGGERS


class TextFormatter(logging.Formatter):
    """``<UTC time> <LEVEL> <logger>: <message>``; a traceback on the lines after."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's name
        return _timestamp(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"timestamp": _timestamp(record.created), "level": record.levelname,
                                 "logger": record.name, "message": record.getMessage()}
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None and value != "":
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
            if record.exc_info and record.exc_info[0] is not None:
                entry["exc_type"] = record.exc_info[0].__name__
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(entry, default=str).decode()
        except TypeError:  # e.g. a lone surrogate in a message about undecodable input: json escapes it
            return json.dumps(entry, default=str)


def make_handler(settings: Settings, *, cli: bool = False, stream: TextIO | None = None) -> logging.Handler:
    """The handler :func:`configure_logging` installs, writing to ``stream`` (default: standard error)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    handler.addFilter(SecretMask(secret_values(settings)))
    handler.addFilter(_FieldsFromContext())
    if cli and settings.log_level != "DEBUG":
        handler.addFilter(_LibraryFloor(logging.WARNING))
    return handler


def _log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("tickwire").critical("uncaught exception: %s", kind.__name__, exc_info=(kind, value, tb))


def configure_logging(settings: Settings, *, cli: bool = False) -> None:
    """Send every record to standard error in ``TICKWIRE_LOG_FORMAT`` from ``TICKWIRE_LOG_LEVEL`` up (see the
    module docstring); ``cli``: a command rather than a service (libraries from WARNING up unless DEBUG).

    Replaces whatever handlers the root logger had (calling it again reconfigures); Python's warnings
    become records; in the JSON format an uncaught exception is logged as one record.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(make_handler(settings, cli=cli))
    root.setLevel(settings.log_level)
    logging.captureWarnings(True)
    if settings.log_format == "json":
        sys.excepthook = _log_uncaught
    elif sys.excepthook is _log_uncaught:
        sys.excepthook = sys.__excepthook__
