"""What every ``tickwire`` command shares: exit codes, one-line errors, data on stdout, settings, quiet logs.

- **Exit codes** (:data:`EXIT_CODES`, shown in every command's help): 0 ok; 1 a failure (a service
  unreachable, an operation refused, something not found); 2 bad usage or invalid settings; 3 drift
  (``topics apply``); 130 interrupted.
- **Errors** go to stderr as one line (:func:`fail`), with control characters escaped so that no text
  can drive the terminal; **data** goes to stdout (:func:`out`, :func:`table_console`), and a closed pipe
  (``| head``) ends a command quietly.
- **Tables are never cut** when stdout is not a terminal (a pipe, a file): :func:`table_console` is then
  as wide as the table needs.
- **One entry point** (:func:`run`) catches every exception of every command: a known one (invalid
  settings, a broker or store that cannot be reached, ...) becomes its one line and exit code
  (:func:`explain`), anything else ``unexpected error: <type>: <message>`` and exit 1; ``tickwire
  --debug`` also prints the traceback.
- **Logs**: library loggers (aiokafka, asyncio, ...) and Python warnings stay off the terminal unless
  ``--debug``; tickwire's own warnings show as ``warning: ...`` lines (:func:`configure_logging`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import traceback
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from pipeline.config import Settings, SettingsError, get_settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DRIFT = 3
EXIT_INTERRUPTED = 130

#: The exit codes, as every command's help shows them (``\b``: click keeps the lines as they are).
EXIT_CODES = """\b
Exit codes: 0 ok; 1 failure (a service unreachable, an operation refused,
something not found); 2 bad usage or invalid settings; 3 drift (topics
apply); 130 interrupted. Errors go to stderr as one line, data to stdout;
`tickwire --debug COMMAND` shows the traceback of an unexpected error."""

#: Characters that would act on a terminal (C0/C1 controls, DEL, bidi and zero-width format characters).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
_UNSAFE_OR_LAYOUT = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

_state = {"debug": False}


def _escape(match: re.Match[str]) -> str:
    ch = match[0]
    return _NAMED.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) <= 0xFF else f"\\u{ord(ch):04x}")


def as_text(data: bytes) -> str:
    """``data`` as text: UTF-8, with bytes that are not as ``\\xNN``."""
    return data.decode("utf-8", "backslashreplace")


def terminal_text(data: bytes, *, one_line: bool = False) -> str:
    """``data`` as text safe on a terminal: :func:`as_text`, control characters escaped (newlines and
    tabs kept unless ``one_line``)."""
    return (_UNSAFE_OR_LAYOUT if one_line else _UNSAFE).sub(_escape, as_text(data))


def one_line(text: str) -> str:
    """``text`` on one line (its lines joined), safe on a terminal."""
    joined = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return terminal_text(joined.encode(), one_line=True)


def debugging() -> bool:
    """Whether ``tickwire --debug`` was given."""
    return _state["debug"]


def set_debug(debug: bool) -> None:
    _state["debug"] = debug


def say(message: str) -> None:
    """A line for the user on stderr (notes, errors): never data. Control characters, newlines included,
    are escaped (``\\n``): one message, one line."""
    click.echo(terminal_text(message.encode(), one_line=True), err=True)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """End the command: ``message`` as one line on stderr, exit ``code``."""
    say(message)
    sys.exit(code)


def settings() -> Settings:
    """The process's settings; invalid ones end the command (exit 2, naming each bad ``TICKWIRE_`` variable)."""
    try:
        return get_settings()
    except SettingsError as exc:
        fail(str(exc), EXIT_USAGE)


def _quiet_stdout() -> None:
    """stdout was closed by its reader: send whatever is still buffered nowhere."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def out(text: str) -> None:
    """Write data to stdout; a closed pipe (``| head``) ends the command quietly (exit 0)."""
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(EXIT_OK)


def out_json_lines(items: Iterable[Any]) -> None:
    """One JSON document per line on stdout."""
    out("".join(json.dumps(item, default=str) + "\n" for item in items))


def out_json(document: Any) -> None:
    """One JSON document on stdout."""
    out(json.dumps(document, default=str) + "\n")


def table_console(*, markup: bool = False) -> Console:
    """A console for data on stdout: on a terminal as wide as it; else (a pipe, a file) wide enough that no
    table or line is cut or wrapped at 80 columns."""
    return Console(highlight=False, markup=markup, emoji=False, width=None if sys.stdout.isatty() else 100_000)


def print_table(renderable: Any) -> None:
    """Print ``renderable`` (a table) to stdout with :func:`table_console`; a closed pipe ends quietly."""
    try:
        table_console().print(renderable)
    except BrokenPipeError:
        _quiet_stdout()
        sys.exit(EXIT_OK)


def chdb_held(path: Path) -> bool:
    """Whether another process holds the chDB data directory ``path`` (a worker, ``tickwire api``, a replay).

    ClickHouse takes an exclusive ``flock`` on ``<path>/status`` for as long as it has the directory open; a
    second process that opens it fails with ``Code: 36 ... BAD_ARGUMENTS`` (and chDB writes ``Cannot lock
    file`` straight to file descriptor 2). Asking the lock first gives the reason instead."""
    import fcntl  # POSIX only, as chDB is

    try:
        fd = os.open(path / "status", os.O_RDONLY)
    except OSError:
        return False  # no data yet (or unreadable: opening it will say so)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the lock, if we took it
    return False


def err_console() -> Console:
    """A console on stderr for progress and live displays (never data)."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


# logging -----------------------------------------------------------------------------------------------------------

_OWN_LOGGERS = ("tickwire", "pipeline", "agents")


class _OwnWarnings(logging.Handler):
    """tickwire's own warnings and errors as ``warning: message`` lines on the current stderr (no traceback);
    every other logger's records (libraries: aiokafka, asyncio, ...) and Python warnings are dropped."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".")[0] in _OWN_LOGGERS and bool(super().filter(record))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"{record.levelname.lower()}: {one_line(record.getMessage())}\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never end a command
            self.handleError(record)


def configure_logging(debug: bool) -> None:
    """Logging for a CLI command (not for the long-running ``worker`` and ``api``, which set up their own).

    Without ``debug``: only tickwire's own warnings reach the terminal, one line each; the records of
    libraries (aiokafka logs every failed connection at WARNING/ERROR, asyncio reports an unclosed client)
    and Python's warnings are dropped: a command reports its failure itself, as one line. With ``debug``:
    :func:`pipeline.core.logs.configure_logging` as the worker has it (every logger from
    ``TICKWIRE_LOG_LEVEL`` up, in ``TICKWIRE_LOG_FORMAT``, with tracebacks), and Python's warnings
    (ResourceWarning included). Secrets are masked either way (:class:`pipeline.core.logs.SecretMask`)."""
    from pipeline.core.logs import SecretMask, secret_values
    from pipeline.core.logs import configure_logging as configure_process_logging

    try:
        current: Settings | None = get_settings()
    except SettingsError:
        current = None  # the command says so, as its one line
    root = logging.getLogger()
    if debug and current is not None:
        configure_process_logging(current)
        warnings.simplefilter("default")
        return
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    logging.captureWarnings(True)
    if debug:  # invalid settings: a plain handler (the command ends at once, saying which setting)
        verbose = logging.StreamHandler(sys.stderr)
        verbose.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(verbose)
        root.setLevel(logging.INFO)
        warnings.simplefilter("default")
        return
    quiet = _OwnWarnings()
    if current is not None:
        quiet.addFilter(SecretMask(secret_values(current)))
    root.addHandler(quiet)
    root.setLevel(logging.WARNING)


# the entry point ---------------------------------------------------------------------------------------------------


def _described(exc: BaseException) -> str:
    """``Type: message``, the message's lines joined into one."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _masked(text: str) -> str:
    """``text`` with the settings' secrets, passwords in URLs and API key secrets masked (as logs are)."""
    from pipeline.core.logs import SecretMask, secret_values

    try:
        values = secret_values(get_settings())
    except SettingsError:
        values = []
    return SecretMask(values).mask(text)


def _broker_url() -> str:
    try:
        return get_settings().broker_url
    except SettingsError:
        return "(invalid settings)"


def explain(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one line for ``exc`` (raised by a command and not handled there)."""
    from aiokafka.errors import KafkaError

    from pipeline.contracts.catalog import CatalogError
    from pipeline.core.kafka import KafkaSetupError
    from pipeline.devstack.errors import StackConfigError, StackError
    from pipeline.ops.replay import ReplayError
    from pipeline.ops.sql_client import SqlError
    from pipeline.ops.topic_scan import BrokerUnavailable

    if isinstance(exc, (SettingsError, StackConfigError, CatalogError)):
        return EXIT_USAGE, one_line(str(exc))
    if isinstance(exc, (StackError, ReplayError, SqlError, KafkaSetupError)):
        return EXIT_FAILURE, one_line(str(exc))
    if isinstance(exc, BrokerUnavailable):
        return EXIT_FAILURE, one_line(
            f"cannot reach the Kafka broker at TICKWIRE_BROKER_URL={_broker_url()} ({exc.cause}); start it "
            "(`tickwire stack up` for the local stack) or set TICKWIRE_BROKER_URL to a reachable broker")
    if isinstance(exc, KafkaError):
        return EXIT_FAILURE, one_line(f"Kafka error from the broker at TICKWIRE_BROKER_URL={_broker_url()}: {_described(exc)}")
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - the worker extra is not installed
        pass
    else:
        if isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError)):
            return EXIT_FAILURE, one_line(f"PostgreSQL (TICKWIRE_POSTGRES_DSN) refused: {_described(exc)}")
    try:
        import redis
    except ImportError:  # pragma: no cover - the worker extra is not installed
        pass
    else:
        if isinstance(exc, redis.exceptions.ConnectionError):
            return EXIT_FAILURE, one_line(f"cannot reach a Redis-protocol store (TICKWIRE_CACHE_URL or TICKWIRE_GRAPH_URL): "
                                          f"{_described(exc)}")
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return EXIT_FAILURE, one_line(f"cannot reach a service: {_described(exc)}; check that it runs "
                                      "(`tickwire stack status` for the local stack) and the TICKWIRE_ settings naming it")
    hint = "" if debugging() else " (run again with --debug for the traceback)"
    return EXIT_FAILURE, one_line(f"unexpected error: {_described(exc)}{hint}")


def run(command: click.Command, args: Sequence[str] | None = None) -> int:
    """Run ``command`` (the ``tickwire`` group) with ``args`` (default: ``sys.argv[1:]``); its exit code.

    Every exception becomes one line on stderr and its exit code (:func:`explain`); ``--debug`` adds the
    traceback. ``sys.exit`` in a command passes through as it is."""
    try:
        try:
            result = command.main(args=list(args) if args is not None else None, prog_name="tickwire",
                                  standalone_mode=False)
        finally:
            try:
                sys.stdout.flush()
            except BrokenPipeError:
                _quiet_stdout()
        return result if isinstance(result, int) else EXIT_OK  # click returns an Exit's code
    except click.ClickException as exc:  # bad usage: click's own message (with the usage line)
        exc.show()
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        say("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of stdout went away (`| head`): not an error
        _quiet_stdout()
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the one place every command's errors end up
        code, line = explain(exc)
        if debugging():
            click.echo(_masked("".join(traceback.format_exception(exc))).rstrip("\n"), err=True)
        click.echo(_masked(line), err=True)
        return code
