"""Every topic tickwire reads or writes, by name (``topics.yaml`` is the catalog of their settings).

A test checks that this list and the catalog name the same topics.
"""

from __future__ import annotations

#: MT5 ticks (``tick.v1``), keyed ``tenant:broker:symbol``: the ingest stage's input.
TICKS_TOPIC = "mt5.ticks.v1"
#: Strategy signals (``signal.v1``), keyed ``tenant:broker:symbol``: the signals stage's input.
SIGNALS_TOPIC = "mt5.signals.v1"
#: Closed and amended bars (``candle.v1``), published by the ingest stage: the patterns, graph and outcomes stages'
#: input.
CANDLES_TOPIC = "candles.v1"
#: Signals with the market and similar patterns (``signal.enriched.v1``), published by the signals stage:
#: the graph stage's input for strategy edges and the outcomes stage's for late signals.
ENRICHED_TOPIC = "signals.enriched.v1"
#: What each signal led to at each horizon (``signal.outcome.v1``), published by the outcomes stage for consumers
#: outside tickwire; keyed ``tenant:broker:symbol``.
OUTCOMES_TOPIC = "signals.outcomes.v1"
#: Dead letters (``dlq.v1``) of every stage.
DLQ_TOPIC = "dlq.v1"

ALL_TOPICS = (TICKS_TOPIC, SIGNALS_TOPIC, CANDLES_TOPIC, ENRICHED_TOPIC, OUTCOMES_TOPIC, DLQ_TOPIC)
#: Topics a stage publishes (inputs of other stages, or of consumers outside tickwire).
DERIVED_TOPICS = (CANDLES_TOPIC, ENRICHED_TOPIC, OUTCOMES_TOPIC)
#: Derived topics that no stage reads: published for consumers outside tickwire only.
TERMINAL_TOPICS = (OUTCOMES_TOPIC,)
