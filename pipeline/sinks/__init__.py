"""Sinks: where processed records go. See :mod:`pipeline.sinks.base` for the contract."""
