"""``python -m pipeline`` is the ``tickwire`` command."""

from pipeline.cli import main

main()
