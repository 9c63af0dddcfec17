"""The producer side: what puts ticks and signals on the topics.

:class:`~pipeline.ingest.producer.MT5Producer` for bridges, the simulator, and
the MT5 CSV importer. Kept light: it must install where MT5 runs (Windows).

May import: :mod:`pipeline.core` (Kafka options), :mod:`pipeline.contracts`, :mod:`pipeline.config`.
"""
