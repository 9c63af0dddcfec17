"""Sinks: where processed records go. See :mod:`pipeline.sinks.base` for the contract.

A sink buffers what a stage's agents add and writes it when the stage's
checkpoint flushes it; every write is idempotent; a store that refuses some
records lets the sink isolate them (they go to the DLQ) instead of failing the batch.

May import: :mod:`pipeline.stores`, :mod:`pipeline.core`, :mod:`pipeline.contracts`, :mod:`pipeline.config`.
"""
