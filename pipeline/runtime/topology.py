"""The topology: every stage, its input topics and handlers, the sinks it writes, and what it publishes.

One declaration, used by the live worker (:mod:`pipeline.runtime.app`: one
batch source, consumer group, checkpoint and set of circuits per stage, the
handlers run as Faust agents) and by replay (:mod:`pipeline.ops.replay`: the
same stages, in this order, calling the same handlers). The derived-data graph
is explicit here: a stage publishes topics that later stages consume.

::

    mt5.ticks.v1 ──▶ ingest ──▶ ClickHouse ticks, hot keys, ClickHouse candles ──▶ candles.v1
    mt5.signals.v1 ─▶ signals ─▶ ClickHouse signals, enrichment ──▶ signals.enriched.v1
    candles.v1 ────▶ patterns ─▶ vector role (embeddings, forward returns)
    candles.v1 + signals.enriched.v1 ──▶ graph ──▶ graph role (correlations, strategy edges)
    candles.v1 + signals.enriched.v1 ──▶ outcomes ──▶ ClickHouse signal_outcomes ──▶ signals.outcomes.v1

Roles (``analytics``, ``cache``, ``vectors``, ``graph``, ``topics``) say which
stores a run writes: a replay may write only some; a sink of a role not
written is ``None`` and its handler skips it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, Sequence

import msgspec

import agents.graph
import agents.ingest
import agents.outcomes
import agents.patterns
import agents.signals
from pipeline.config import STAGE_NAMES, Settings
from pipeline.contracts.schemas import Candle, EnrichedSignal, Signal, Tick
from pipeline.contracts.topics import CANDLES_TOPIC, DERIVED_TOPICS, ENRICHED_TOPIC, OUTCOMES_TOPIC, SIGNALS_TOPIC, TICKS_TOPIC
from pipeline.core.batch import Handler
from pipeline.derive.candles import CandleBuilder
from pipeline.derive.correlations import CorrelationBuilder
from pipeline.derive.enrichment import PublishedMarkers, SignalEnricher
from pipeline.derive.outcomes import OutcomeBuilder, OutcomeRows
from pipeline.derive.patterns import PatternBuilder
from pipeline.derive.strategy_edges import StrategyEdgeBuilder
from pipeline.sinks.analytics_table import AnalyticsTableSink
from pipeline.sinks.base import Sink
from pipeline.sinks.hotcache import HotTickCache
from pipeline.sinks.topic import TopicPublisher
from pipeline.stores.analytics import AnalyticsSession
from pipeline.stores.analytics_tables import SIGNALS_COLUMNS, TICKS_COLUMNS
from pipeline.stores.connections import Connections

ROLES = ("analytics", "cache", "vectors", "graph", "topics")


class StageSinks(Protocol):
    """A stage's sink bundle (defined with its handlers in ``agents/``)."""

    @property
    def ordered(self) -> list[Sink]:
        """The data sinks in flush order (the producer is flushed after them)."""


@dataclass(frozen=True)
class Route:
    """Batches of ``topic``, decoded as ``message_type``, go to ``handler``; ``eager``: even during a checkpoint."""

    topic: str
    message_type: type[msgspec.Struct]
    handler: Handler[Any, Any]
    eager: bool = False


@dataclass(frozen=True)
class StageResources:
    """What a stage's sinks are built from."""

    stage: str
    settings: Settings
    connections: Connections
    publisher: TopicPublisher
    roles: frozenset[str]

    @property
    def session(self) -> AnalyticsSession:
        """The stage's own ClickHouse session (never shared with another stage or with readers)."""
        return self.connections.analytics.session(self.stage)


@dataclass(frozen=True)
class StageSpec:
    name: str
    routes: tuple[Route, ...]
    build: Callable[[StageResources], StageSinks]
    #: topics this stage publishes (besides the DLQ): the edges of the derived-data graph
    publishes: tuple[str, ...] = ()
    #: writes ClickHouse tables the query API reads (its checkpoints make kept API answers stale)
    writes_analytics: bool = False

    @property
    def inputs(self) -> tuple[str, ...]:
        """The stage's input topics, each once."""
        return tuple(dict.fromkeys(route.topic for route in self.routes))

    def fetch_max_wait_ms(self, settings: Settings) -> int:
        """How long the broker may hold this stage's fetches: ``derived_fetch_max_wait_ms`` for a stage that reads
        derived topics only (nothing waits on it record by record), ``fetch_max_wait_ms`` otherwise."""
        if all(topic in DERIVED_TOPICS for topic in self.inputs):
            return settings.derived_fetch_max_wait_ms
        return settings.fetch_max_wait_ms


def after_publish(sinks: StageSinks) -> list[Sink]:
    """The sinks flushed after the producer (markers of what the broker acknowledged), if the bundle has any."""
    return list(getattr(sinks, "after_publish", []))


def _ingest(r: StageResources) -> agents.ingest.IngestSinks:
    s, session = r.settings, r.session
    return agents.ingest.IngestSinks(
        ticks=AnalyticsTableSink(session, "ticks", TICKS_COLUMNS) if "analytics" in r.roles else None,
        hot_ticks=HotTickCache(r.connections.cache, s.hot_key_ttl_s) if "cache" in r.roles else None,
        candles=CandleBuilder(session, r.publisher if "topics" in r.roles else None, s.timeframes, s.candle_lateness_ms,
                              store_bars="analytics" in r.roles, trading_days=s.trading_days, indicators=s.indicators),
    )


def _signals(r: StageResources) -> agents.signals.SignalsSinks:
    s, session = r.settings, r.session
    publishes = "topics" in r.roles
    markers = PublishedMarkers(r.connections.cache, s.published_marker_ttl_s) if publishes else None
    return agents.signals.SignalsSinks(
        signals=AnalyticsTableSink(session, "signals", SIGNALS_COLUMNS) if "analytics" in r.roles else None,
        enricher=SignalEnricher(session, r.connections.cache, r.connections.vectors, r.publisher, markers,
                                s.timeframes[0], s.similar_patterns_k) if markers is not None else None,
        markers=markers,
    )


def _patterns(r: StageResources) -> agents.patterns.PatternsSinks:
    s = r.settings
    return agents.patterns.PatternsSinks(
        patterns=PatternBuilder(r.session, r.connections.vectors, s.timeframes, s.pattern_horizon_bars)
        if "vectors" in r.roles else None)


def _graph(r: StageResources) -> agents.graph.GraphSinks:
    s, writes = r.settings, "graph" in r.roles
    return agents.graph.GraphSinks(
        correlations=CorrelationBuilder(r.session, r.connections.graph, s.timeframes, s.correlation_window_bars,
                                        s.correlation_min_samples) if writes else None,
        strategy_edges=StrategyEdgeBuilder(r.session, r.connections.graph) if writes else None,
    )


def _outcomes(r: StageResources) -> agents.outcomes.OutcomesSinks:
    s = r.settings
    rows = OutcomeRows(r.session) if "analytics" in r.roles else None
    publisher = r.publisher if "topics" in r.roles else None
    builder = OutcomeBuilder(r.session, publisher, rows, s.outcome_horizon_list, s.candle_lateness_ms) \
        if rows is not None or publisher is not None else None
    return agents.outcomes.OutcomesSinks(outcomes=builder, rows=rows)


TOPOLOGY: tuple[StageSpec, ...] = (
    StageSpec("ingest", (Route(TICKS_TOPIC, Tick, agents.ingest.hot_ticks, eager=True),
                         Route(TICKS_TOPIC, Tick, agents.ingest.ticks)), _ingest, publishes=(CANDLES_TOPIC,),
              writes_analytics=True),
    StageSpec("signals", (Route(SIGNALS_TOPIC, Signal, agents.signals.signals),), _signals, publishes=(ENRICHED_TOPIC,),
              writes_analytics=True),
    StageSpec("patterns", (Route(CANDLES_TOPIC, Candle, agents.patterns.bars),), _patterns),
    StageSpec("graph", (Route(CANDLES_TOPIC, Candle, agents.graph.bars),
                        Route(ENRICHED_TOPIC, EnrichedSignal, agents.graph.enriched_signals)), _graph),
    StageSpec("outcomes", (Route(CANDLES_TOPIC, Candle, agents.outcomes.bars),
                           Route(ENRICHED_TOPIC, EnrichedSignal, agents.outcomes.enriched_signals)), _outcomes,
              publishes=(OUTCOMES_TOPIC,), writes_analytics=True),
)
assert tuple(spec.name for spec in TOPOLOGY) == STAGE_NAMES, "settings.STAGE_NAMES must list the topology's stages"


def stages(names: Iterable[str]) -> list[StageSpec]:
    """The stages named, in topology order (upstream first)."""
    wanted = set(names)
    unknown = wanted - set(STAGE_NAMES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; choose from {', '.join(STAGE_NAMES)}")
    return [spec for spec in TOPOLOGY if spec.name in wanted]


def consumers_of(topic: str) -> Sequence[StageSpec]:
    """The stages that read ``topic``."""
    return [spec for spec in TOPOLOGY if topic in spec.inputs]
