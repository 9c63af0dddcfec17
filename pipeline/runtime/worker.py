"""Entry point of the worker process: build the worker from the settings and run Faust's ``worker`` command."""

from __future__ import annotations

import sys

from pipeline.config import Settings


def run(settings: Settings, faust_args: list[str]) -> None:
    """Run the worker of ``settings`` with Faust's ``worker`` command and ``faust_args`` (e.g. ``-l info``)."""
    import uvloop

    uvloop.install()
    from pipeline.runtime.app import build_worker

    worker = build_worker(settings)
    sys.argv = ["tickwire", "worker", *faust_args]
    worker.app.main()
