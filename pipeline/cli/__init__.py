"""The ``tickwire`` command line: one module per group of commands, one shared console helper.

May import anything in :mod:`pipeline`; :mod:`bench` only inside ``tickwire bench``.
"""

from pipeline.cli.main import main

__all__ = ["main"]
