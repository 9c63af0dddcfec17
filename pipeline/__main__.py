"""``python -m pipeline`` is the ``tickwire`` command."""

from pipeline.cli.main import main

main()
