"""Operator tools: replay (backfill), the dead-letter reader, operator SQL, topic scans.

May import: :mod:`pipeline.runtime`, :mod:`pipeline.ingest`, :mod:`pipeline.derive`, :mod:`pipeline.sinks`,
:mod:`pipeline.stores`, :mod:`pipeline.core`, :mod:`pipeline.contracts`, :mod:`pipeline.config`.
"""
