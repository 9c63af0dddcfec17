"""All the sinks of one pipeline run (the worker, or a replay), built in flush order.

Order is the order of data: ticks before the candles computed from them,
candles before the patterns and correlations derived from them, signals
before their edges and enrichment. The producer (``publisher``) is flushed
after all of these and the published-signal markers after the producer
(:attr:`SinkSet.after_publish`).

``roles`` chooses which roles are written (a replay may write only some):
a sink of a role that is not written is ``None``, and the processing
functions (pipeline.runtime.processing) skip it. Derived computations still read the
analytics store.
"""

from __future__ import annotations

from typing import Iterable

from pipeline.config import Settings
from pipeline.derive.candles import CandleBuilder
from pipeline.derive.correlations import CorrelationBuilder
from pipeline.derive.enrichment import PublishedMarkers, SignalEnricher
from pipeline.derive.patterns import PatternBuilder
from pipeline.derive.strategy_edges import StrategyEdgeBuilder
from pipeline.sinks.analytics_table import AnalyticsTableSink
from pipeline.sinks.base import Sink
from pipeline.sinks.hotcache import HotTickCache
from pipeline.sinks.topic import TopicPublisher
from pipeline.stores.analytics_tables import SIGNALS_COLUMNS, TICKS_COLUMNS
from pipeline.stores.connections import Connections

ROLES = ("analytics", "cache", "vectors", "graph", "topics")


class SinkSet:
    def __init__(self, settings: Settings, connections: Connections, publisher: TopicPublisher,
                 roles: Iterable[str] = ROLES) -> None:
        roles = frozenset(roles)
        unknown = roles - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; choose from {', '.join(ROLES)}")
        store = connections.analytics
        writes_analytics, writes_topics = "analytics" in roles, "topics" in roles
        self.publisher = publisher
        self.ticks = AnalyticsTableSink(store, "ticks", TICKS_COLUMNS) if writes_analytics else None
        self.hot_ticks = HotTickCache(connections.cache, settings.hot_key_ttl_s) if "cache" in roles else None
        self.signals = AnalyticsTableSink(store, "signals", SIGNALS_COLUMNS) if writes_analytics else None
        self.candles = CandleBuilder(store, publisher if writes_topics else None, settings.timeframes,
                                     settings.candle_lateness_ms, store_bars=writes_analytics)
        self.patterns = PatternBuilder(store, connections.vectors, settings.timeframes,
                                       settings.pattern_horizon_bars) if "vectors" in roles else None
        self.correlations = CorrelationBuilder(store, connections.graph, settings.timeframes, settings.correlation_window_bars,
                                               settings.correlation_min_samples) if "graph" in roles else None
        self.strategy_edges = StrategyEdgeBuilder(store, connections.graph) if "graph" in roles else None
        self.markers = PublishedMarkers(connections.cache, settings.published_marker_ttl_s) if writes_topics else None
        self.enricher = SignalEnricher(store, connections.cache, connections.vectors, publisher, self.markers,
                                       settings.timeframes[0], settings.similar_patterns_k) if writes_topics else None

    @property
    def ordered(self) -> list[Sink]:
        """The data sinks in flush order (before the producer)."""
        sinks = [self.ticks, self.hot_ticks, self.signals, self.candles, self.patterns, self.correlations,
                 self.strategy_edges, self.enricher]
        return [sink for sink in sinks if sink is not None]

    @property
    def after_publish(self) -> list[Sink]:
        """Flushed after the producer: records of what the broker acknowledged."""
        return [self.markers] if self.markers is not None else []

    def connect_bars_directly(self) -> None:
        """Hand closed bars straight to patterns and correlations (a replay has no agents to do it)."""
        for builder in (self.patterns, self.correlations):
            if builder is not None:
                self.candles.on_bars(builder.add_bars)
