"""Derived data: what tickwire computes from stored ticks, bars and signals.

Candles (with their indicators) and their event-time clock, pattern embeddings, correlations,
strategy edges, signal enrichment and signal outcomes. Each builder is a sink whose writes are
pure functions of stored data, so redelivery and replay rewrite the same values.

May import: :mod:`pipeline.sinks`, :mod:`pipeline.stores`, :mod:`pipeline.core`,
:mod:`pipeline.contracts`, :mod:`pipeline.config`.
"""
