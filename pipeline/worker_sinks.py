"""The sinks of a worker process, built once and registered with the source.

Registration order is flush order at every checkpoint, and it follows the
data: ticks before the candles computed from them, candles before the
patterns and correlations derived from them, signals before their edges and
enrichment; the producer is flushed after all of these, and the
published-signal markers after the producer.
"""

from __future__ import annotations

from pipeline.analytics_tables import SIGNALS_COLUMNS, TICKS_COLUMNS
from pipeline.candle_builder import CandleBuilder
from pipeline.config import Settings
from pipeline.connections import Connections
from pipeline.correlation_builder import CorrelationBuilder
from pipeline.pattern_builder import PatternBuilder
from pipeline.signal_enricher import PublishedMarkers, SignalEnricher
from pipeline.sinks.clickhouse import AnalyticsTableSink
from pipeline.sinks.hotcache import HotTickCache
from pipeline.sinks.topic import TopicPublisher
from pipeline.source import BatchSource
from pipeline.strategy_edges import StrategyEdgeBuilder


class WorkerSinks:
    """Named sinks that agents write to; all flushed by the source's checkpoint, in this order."""

    def __init__(self, settings: Settings, connections: Connections, source: BatchSource) -> None:
        store = connections.analytics
        self.topics: TopicPublisher = source.publisher
        self.ticks = source.add_sink(AnalyticsTableSink(store, "ticks", TICKS_COLUMNS))
        self.hot_ticks = source.add_sink(HotTickCache(connections.cache, settings.hot_key_ttl_s))
        self.signals = source.add_sink(AnalyticsTableSink(store, "signals", SIGNALS_COLUMNS))
        self.candles = source.add_sink(CandleBuilder(store, self.topics, settings.timeframes))
        self.patterns = source.add_sink(PatternBuilder(
            store, connections.vectors, settings.timeframes, settings.pattern_horizon_bars))
        self.correlations = source.add_sink(CorrelationBuilder(
            store, connections.graph, settings.timeframes, settings.correlation_window_bars, settings.correlation_min_samples))
        self.strategy_edges = source.add_sink(StrategyEdgeBuilder(store, connections.graph))
        markers = PublishedMarkers(connections.cache, settings.published_marker_ttl_s)
        self.enricher = source.add_sink(SignalEnricher(
            store, connections.cache, connections.vectors, self.topics, markers,
            settings.timeframes[0], settings.similar_patterns_k))
        source.add_sink(markers, after_publish=True)
