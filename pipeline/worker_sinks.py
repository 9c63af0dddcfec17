"""The sinks of a worker process, built once and registered with the source."""

from __future__ import annotations

from pipeline.analytics_tables import TICKS_COLUMNS
from pipeline.candle_builder import CandleBuilder
from pipeline.config import Settings
from pipeline.pattern_builder import PatternBuilder
from pipeline.connections import Connections
from pipeline.sinks.clickhouse import AnalyticsTableSink
from pipeline.sinks.hotcache import HotTickCache
from pipeline.sinks.topic import TopicPublisher
from pipeline.source import BatchSource


class WorkerSinks:
    """Named sinks that agents write to; all flushed by the source's checkpoint, in this order."""

    def __init__(self, settings: Settings, connections: Connections, source: BatchSource) -> None:
        self.ticks = source.add_sink(AnalyticsTableSink(connections.analytics, "ticks", TICKS_COLUMNS))
        self.hot_ticks = source.add_sink(HotTickCache(connections.cache, settings.hot_key_ttl_s))
        self.topics: TopicPublisher = source.publisher
        # flushed after the ticks sink: bars are computed from stored ticks
        self.candles = source.add_sink(CandleBuilder(connections.analytics, self.topics, settings.timeframes))
        # flushed after candles: they derive from stored closed bars
        self.patterns = source.add_sink(PatternBuilder(
            connections.analytics, connections.vectors, settings.timeframes, settings.pattern_horizon_bars))
