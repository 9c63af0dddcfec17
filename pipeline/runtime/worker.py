"""Entry point of the worker process: the Faust app with all agents loaded."""

from __future__ import annotations

import sys


def run(faust_args: list[str]) -> None:
    """Run Faust's ``worker`` command with ``faust_args`` (e.g. ``-l info``)."""
    import uvloop

    uvloop.install()
    import agents.candles  # noqa: F401  (agents register themselves)
    import agents.graph  # noqa: F401
    import agents.hot_ticks  # noqa: F401
    import agents.patterns  # noqa: F401
    import agents.signals  # noqa: F401
    import agents.ticks  # noqa: F401
    import pipeline.api.in_worker  # noqa: F401  (serves the query API on the worker's web server)
    import pipeline.api.operator_sql  # noqa: F401  (registers the read-only SQL route)
    from pipeline.runtime.app import app

    sys.argv = ["tickwire", "worker", *faust_args]
    app.main()


if __name__ == "__main__":
    run(sys.argv[1:])
