"""Derived data: what tickwire computes from stored ticks, bars and signals.

Candles and their event-time clock, pattern embeddings, correlations,
strategy edges and signal enrichment. Each builder is a sink whose writes are
pure functions of stored data, so redelivery and replay rewrite the same values.

May import: :mod:`pipeline.sinks`, :mod:`pipeline.stores`, :mod:`pipeline.core`,
:mod:`pipeline.contracts`, :mod:`pipeline.config`.
"""
