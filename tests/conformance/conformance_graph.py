"""The graph role's conformance suite: the :class:`~pipeline.stores.graph.base.GraphStore` contract, written once.

A backend's test class subclasses :class:`GraphStoreConformance` and
provides two fixtures:

- ``store``: a started store (function scope is fine: the store is cheap);
- ``make_store``: ``make_store()`` builds another, not started, store on the
  same server (for the lifecycle checks).

Every test writes into its own tenant (the ``tenant`` fixture). Only the
role's methods look at what is stored; a backend's own tests may count what
is behind it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable

import pytest

from pipeline.stores.graph import CorrelationEdge, GraphStore, Neighbor, StrategyEdge


def corr(
    tenant: str, x: str, y: str, weight: float, *, timeframe: str = "H1", end: int = 1_000, samples: int = 50
) -> CorrelationEdge:
    return CorrelationEdge.between(tenant, x, y, timeframe, weight, end, samples)


def other_tenant() -> str:
    return "t" + uuid.uuid4().hex[:10]


#   A ─0.9─ B ─(-0.8)─ C ─0.7─ D          all H1; on M5 also A ─0.99─ D and A ─0.2─ B
#    ╲                 │
#     0.3 ─── E ──0.95─┘
GRAPH = [("A", "B", 0.9), ("B", "C", -0.8), ("C", "D", 0.7), ("A", "E", 0.3), ("E", "C", 0.95)]
M5 = [("A", "D", 0.99), ("A", "B", 0.2)]

NASTY = [
    "#AAPL",
    "US30+",
    "EUR.USD-x",
    'a"b',
    "a'b",
    "a`b`",
    "back\\",
    "\\n",
    "{x}",
    "$symbol",
    'x"}) MATCH (n) DETACH DELETE n //',
    "x'}) MATCH (n) DETACH DELETE n //",
    "ünï€",
]


class GraphStoreConformance:
    """The contract of :class:`GraphStore`; subclasses bind it to a backend (see the module docstring)."""

    # writes ---------------------------------------------------------------------

    async def test_upsert_twice_is_one_edge(self, store: GraphStore, tenant: str) -> None:
        edges = [
            corr(tenant, "EURUSD", "GBPUSD", 0.8),
            corr(tenant, "USDJPY", "EURUSD", -0.4),
            corr(tenant, "EURUSD", "GBPUSD", 0.7, timeframe="M5"),
        ]
        signals = [StrategyEdge(tenant, "trend", "EURUSD", 3, "buy", 0.75, 5_000)]
        for _ in range(2):
            await store.upsert_correlations(edges)
            await store.upsert_strategy_edges(signals)
        # the same pair given in the other order, and duplicates within one call
        await store.upsert_correlations([corr(tenant, "GBPUSD", "EURUSD", 0.8)] * 3)

        assert await store.strategies(tenant, "EURUSD") == signals  # absolute values, not incremented
        # sorted by timeframe, then the other symbol
        assert await store.correlations(tenant, "EURUSD") == [edges[0], edges[1], edges[2]]
        assert await store.correlations(tenant, "GBPUSD", timeframe="M5") == [edges[2]]

    async def test_older_window_never_overwrites_newer(self, store: GraphStore, tenant: str) -> None:
        await store.upsert_correlations([corr(tenant, "EURUSD", "GBPUSD", 0.8, end=2_000, samples=60)])
        await store.upsert_correlations([corr(tenant, "EURUSD", "GBPUSD", -0.3, end=1_000, samples=10)])
        assert await store.correlations(tenant, "EURUSD") == [corr(tenant, "EURUSD", "GBPUSD", 0.8, end=2_000, samples=60)]

        # the same window replaces
        await store.upsert_correlations([corr(tenant, "EURUSD", "GBPUSD", 0.7, end=2_000, samples=61)])
        assert await store.correlations(tenant, "GBPUSD") == [corr(tenant, "EURUSD", "GBPUSD", 0.7, end=2_000, samples=61)]

        # newest first in one call: the older one after it still loses
        await store.upsert_correlations(
            [corr(tenant, "EURUSD", "GBPUSD", 0.5, end=3_000), corr(tenant, "EURUSD", "GBPUSD", 0.1, end=2_500)]
        )
        assert await store.correlations(tenant, "EURUSD") == [corr(tenant, "EURUSD", "GBPUSD", 0.5, end=3_000)]
        assert (await store.neighbors(tenant, "GBPUSD"))[0].weight == 0.5

    async def test_strategy_edge_newer_wins(self, store: GraphStore, tenant: str) -> None:
        def edge(signals: int, action: str, time_ms: int) -> StrategyEdge:
            return StrategyEdge(tenant, "breakout", "XAUUSD", signals, action, signals / 10, time_ms)

        await store.upsert_strategy_edges([edge(5, "buy", 100)])
        await store.upsert_strategy_edges([edge(9, "sell", 50)])  # older last signal: ignored
        assert await store.strategies(tenant, "XAUUSD") == [edge(5, "buy", 100)]
        await store.upsert_strategy_edges([edge(6, "buy", 100)])  # a late signal counted, same last signal
        assert await store.strategies(tenant, "XAUUSD") == [edge(6, "buy", 100)]
        await store.upsert_strategy_edges([edge(4, "buy", 100)])  # stale recount: ignored
        assert await store.strategies(tenant, "XAUUSD") == [edge(6, "buy", 100)]
        await store.upsert_strategy_edges([edge(7, "close", 200)])
        assert await store.strategies(tenant, "XAUUSD") == [edge(7, "close", 200)]

    async def test_strategies_of_a_symbol(self, store: GraphStore, tenant: str) -> None:
        edges = [
            StrategyEdge(tenant, "trend", "EURUSD", 12, "sell", 0.625, 9_000),
            StrategyEdge(tenant, "mean-rev", "EURUSD", 3, "hold", 0.5, 8_000),
            StrategyEdge(tenant, "trend", "GBPUSD", 1, "buy", 1.0, 7_000),
        ]
        await store.upsert_strategy_edges(edges)
        await store.upsert_strategy_edges(edges)
        assert await store.strategies(tenant, "EURUSD") == [edges[1], edges[0]]  # sorted by strategy
        assert await store.strategies(tenant, "GBPUSD") == [edges[2]]
        assert await store.strategies(tenant, "USDJPY") == []

    # traversal ------------------------------------------------------------------

    @pytest.fixture
    async def shaped(self, store: GraphStore, tenant: str) -> str:
        await store.upsert_correlations(
            [corr(tenant, x, y, w) for x, y, w in GRAPH] + [corr(tenant, x, y, w, timeframe="M5") for x, y, w in M5]
        )
        return tenant

    async def test_neighbors_depth_one(self, store: GraphStore, shaped: str) -> None:
        assert await store.neighbors(shaped, "A", timeframe="H1") == [
            Neighbor("B", 1, 0.9, "H1", "A"),
            Neighbor("E", 1, 0.3, "H1", "A"),
        ]
        # every timeframe: the M5 edges too, strongest first; of the two A-B edges the stronger one
        assert await store.neighbors(shaped, "A") == [
            Neighbor("D", 1, 0.99, "M5", "A"),
            Neighbor("B", 1, 0.9, "H1", "A"),
            Neighbor("E", 1, 0.3, "H1", "A"),
        ]
        assert await store.neighbors(shaped, "A", depth=5, timeframe="M5") == [
            Neighbor("D", 1, 0.99, "M5", "A"),
            Neighbor("B", 1, 0.2, "M5", "A"),
        ]
        # C is the b end of B-C and the a end of C-D: edges are undirected
        assert {n.symbol for n in await store.neighbors(shaped, "C")} == {"B", "D", "E"}
        assert await store.neighbors(shaped, "A", min_weight=0.5, timeframe="H1") == [Neighbor("B", 1, 0.9, "H1", "A")]

    async def test_neighbors_depth_two_and_three(self, store: GraphStore, shaped: str) -> None:
        # C is two hops away through B (-0.8) and through E (0.95): the stronger last edge is reported
        assert await store.neighbors(shaped, "A", depth=2, timeframe="H1") == [
            Neighbor("B", 1, 0.9, "H1", "A"),
            Neighbor("E", 1, 0.3, "H1", "A"),
            Neighbor("C", 2, 0.95, "H1", "E"),
        ]
        # A-E is cut: C only through B, and the negative B-C counts by |weight|
        assert await store.neighbors(shaped, "A", depth=2, min_weight=0.5, timeframe="H1") == [
            Neighbor("B", 1, 0.9, "H1", "A"),
            Neighbor("C", 2, -0.8, "H1", "B"),
        ]
        # E is still reachable around the weak edge, at depth 3; A itself never appears
        assert await store.neighbors(shaped, "A", depth=3, min_weight=0.5, timeframe="H1") == [
            Neighbor("B", 1, 0.9, "H1", "A"),
            Neighbor("C", 2, -0.8, "H1", "B"),
            Neighbor("E", 3, 0.95, "H1", "C"),
            Neighbor("D", 3, 0.7, "H1", "C"),
        ]

    async def test_weak_edge_in_the_middle_blocks_the_path(self, store: GraphStore, shaped: str) -> None:
        # |B-C| = 0.8 < 0.85: nothing behind it, at any depth
        blocked = await store.neighbors(shaped, "A", depth=5, min_weight=0.85, timeframe="H1")
        assert blocked == [Neighbor("B", 1, 0.9, "H1", "A")]
        # a strong negative correlation is as strong as a positive one
        through_negative = await store.neighbors(shaped, "B", depth=5, min_weight=0.8, timeframe="H1")
        assert [(n.symbol, n.depth) for n in through_negative] == [("A", 1), ("C", 1), ("E", 2)]

    async def test_neighbors_of_unknown_things(self, store: GraphStore, shaped: str) -> None:
        assert await store.neighbors(shaped, "NOPE", depth=3) == []
        assert await store.neighbors(shaped, "A", timeframe="D1") == []
        assert await store.neighbors(other_tenant(), "A", depth=2) == []  # a tenant without a graph
        assert await store.strategies(other_tenant(), "A") == []

    async def test_tenants_are_isolated(self, store: GraphStore, shaped: str) -> None:
        other = other_tenant()
        await store.upsert_correlations(
            [corr(other, "A", "Q", 0.9), corr(other, "A", "B", -0.1), corr(other, "B", "C", 0.99)]
        )
        await store.upsert_strategy_edges([StrategyEdge(other, "spy", "A", 99, "sell", 0.1, 1)])

        mine = await store.neighbors(shaped, "A", depth=5, timeframe="H1")
        assert {n.symbol for n in mine} == {"B", "C", "D", "E"}
        assert mine[0] == Neighbor("B", 1, 0.9, "H1", "A")
        assert await store.strategies(shaped, "A") == []
        assert await store.neighbors(other, "A", depth=5) == [
            Neighbor("Q", 1, 0.9, "H1", "A"),
            Neighbor("B", 1, -0.1, "H1", "A"),
            Neighbor("C", 2, 0.99, "H1", "B"),
        ]

    # names and arguments ----------------------------------------------------------

    async def test_names_with_cypher_special_characters(self, store: GraphStore, tenant: str) -> None:
        weights = {name: round(0.5 + i / 100, 2) for i, name in enumerate(NASTY)}  # exact in 15 digits
        await store.upsert_correlations([corr(tenant, "HUB", name, weight) for name, weight in weights.items()])
        await store.upsert_strategy_edges([StrategyEdge(tenant, name, "HUB", 1, "buy", 0.5, 1) for name in NASTY])

        assert {n.symbol for n in await store.neighbors(tenant, "HUB")} == set(NASTY)
        assert {e.strategy for e in await store.strategies(tenant, "HUB")} == set(NASTY)
        for name in NASTY:
            assert await store.neighbors(tenant, name, depth=2) == [Neighbor("HUB", 1, weights[name], "H1", name)] + [
                Neighbor(other, 2, weight, "H1", "HUB") for other, weight in sorted(weights.items(), key=lambda kv: -kv[1])
                if other != name
            ]

    @pytest.mark.parametrize(
        ("call", "parameter"),
        [
            (lambda s, t: s.neighbors(t, "A", depth=0), "depth"),
            (lambda s, t: s.neighbors(t, "A", depth=6), "depth"),
            (lambda s, t: s.neighbors(t, "A", depth=True), "depth"),
            (lambda s, t: s.neighbors(t, "A", depth=2.0), "depth"),
            (lambda s, t: s.neighbors(t, "A", min_weight=-0.1), "min_weight"),
            (lambda s, t: s.neighbors(t, "A", min_weight=1.01), "min_weight"),
            (lambda s, t: s.neighbors(t, "A", min_weight=math.nan), "min_weight"),
            (lambda s, t: s.neighbors(t, "A", timeframe=""), "timeframe"),
            (lambda s, t: s.neighbors(t, "", depth=2), "symbol"),
            (lambda s, t: s.neighbors("Bad:Tenant", "A"), "tenant"),
            (lambda s, t: s.strategies(t, ""), "symbol"),
            (lambda s, t: s.strategies("", "A"), "tenant"),
            (lambda s, t: s.correlations(t, "A", timeframe=""), "timeframe"),
            (lambda s, t: s.upsert_correlations([StrategyEdge(t, "s", "A", 1, "buy", 0.5, 1)]), "edges"),
            (lambda s, t: s.upsert_strategy_edges([corr(t, "A", "B", 0.5)]), "edges"),
        ],
    )
    async def test_bad_arguments_name_the_parameter(self, store: GraphStore, tenant: str, call, parameter: str) -> None:
        with pytest.raises(ValueError, match=rf"^{parameter}\b"):
            await call(store, tenant)

    # lifecycle ------------------------------------------------------------------

    async def test_lifecycle(self, make_store: Callable[[], GraphStore]) -> None:
        graph = make_store()
        with pytest.raises(RuntimeError, match="not started"):
            await graph.ping()
        await graph.start()
        await graph.start()  # idempotent
        assert 0 < await graph.ping() < 1
        await graph.close()
        await graph.close()
        with pytest.raises(RuntimeError, match="not started"):
            await graph.neighbors("acme", "EURUSD")
        await graph.start()  # it may be started again
        assert await graph.ping() > 0
        await graph.close()
