"""Entry point of the worker process: build the worker from the settings and run Faust's ``worker`` command.

Logging is tickwire's (:func:`pipeline.core.logs.configure_logging`), set up
before anything else: Faust's worker (:class:`pipeline.runtime.app.TickwireWorker`) keeps it instead
of installing its own handlers, so Faust's, mode's and aiokafka's records are
written in ``TICKWIRE_LOG_FORMAT`` like tickwire's. The level is
``TICKWIRE_LOG_LEVEL``: Faust's ``-l``/``--loglevel`` is given from it, and one
in ``faust_args`` (``tickwire worker -l info``, as in older command lines) is
dropped (a log line says so when it differs). In the JSON format Faust runs
``--quiet``: no banner, nothing printed but JSON lines.
"""

from __future__ import annotations

import logging
import sys

from pipeline.config import Settings
from pipeline.core.logs import configure_logging

log = logging.getLogger("tickwire.worker")

#: TICKWIRE_LOG_LEVEL -> Faust's ``-l`` choice.
FAUST_LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error"}


def faust_command_line(settings: Settings, faust_args: list[str]) -> tuple[list[str], str | None]:
    """Faust's command line for the worker of ``settings`` (``sys.argv``), and the level of a ``-l`` it dropped
    from ``faust_args`` (see the module docstring)."""
    kept: list[str] = []
    dropped: str | None = None
    args = iter(faust_args)
    for arg in args:
        if arg in ("-l", "--loglevel"):
            dropped = next(args, "")
        elif arg.startswith("--loglevel="):
            dropped = arg.partition("=")[2]
        elif arg.startswith("-l") and len(arg) > 2:
            dropped = arg[2:]
        else:
            kept.append(arg)
    quiet = ["--quiet"] if settings.log_format == "json" else []
    return ["tickwire", *quiet, "worker", "-l", FAUST_LEVELS[settings.log_level], *kept], dropped


def run(settings: Settings, faust_args: list[str]) -> None:
    """Run the worker of ``settings`` with Faust's ``worker`` command and ``faust_args`` (e.g. ``--web-port``)."""
    configure_logging(settings)
    argv, dropped = faust_command_line(settings, faust_args)
    if dropped is not None and FAUST_LEVELS[settings.log_level] != dropped.lower().replace("warning", "warn"):
        log.info("ignoring the log level %r given to the worker: the level is TICKWIRE_LOG_LEVEL (%s)", dropped,
                 settings.log_level)
    import uvloop

    uvloop.install()
    from pipeline.runtime.app import build_worker

    worker = build_worker(settings)
    sys.argv = argv
    worker.app.main()
