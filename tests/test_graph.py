"""The graph role against the real FalkorDB of the local stack.

Each test writes into its own tenant (its own FalkorDB graph). Edge and node
counts are read with a plain FalkorDB client, to see what is stored rather
than what the store chooses to return.
"""

from __future__ import annotations

import math
import socket
import uuid
from typing import AsyncIterator, Iterator

import pytest
import redis.exceptions
from falkordb import FalkorDB

from pipeline.config import Settings
from pipeline.graph import CorrelationEdge, Neighbor, StrategyEdge
from pipeline.graph.falkordb import FalkorGraphStore, graph_name

pytestmark = pytest.mark.stack


@pytest.fixture
async def store(stack_settings: Settings) -> AsyncIterator[FalkorGraphStore]:
    graph = FalkorGraphStore.from_settings(stack_settings)
    await graph.start()
    yield graph
    await graph.close()


@pytest.fixture(scope="module")
def raw(stack_settings: Settings) -> Iterator[FalkorDB]:
    client = FalkorDB.from_url(stack_settings.graph_url)
    yield client
    client.connection.close()


def count(raw: FalkorDB, tenant: str, pattern: str) -> int:
    """How many ``x`` in ``pattern`` (e.g. ``()-[x:CORRELATED]->()``) the tenant's graph holds.

    ``count(x)``, not ``count(*)``: FalkorDB 4.16 answers ``count(*)`` of an edge
    pattern with the number of connected node pairs, so parallel edges (one pair
    on two timeframes) are counted once.
    """
    return raw.select_graph(graph_name(tenant)).ro_query(f"MATCH {pattern} RETURN count(x)").result_set[0][0]


def corr(
    tenant: str, x: str, y: str, weight: float, *, timeframe: str = "H1", end: int = 1_000, samples: int = 50
) -> CorrelationEdge:
    return CorrelationEdge.between(tenant, x, y, timeframe, weight, end, samples)


def other_tenant() -> str:
    return "t" + uuid.uuid4().hex[:10]


# writes ---------------------------------------------------------------------


async def test_upsert_twice_is_one_edge(store: FalkorGraphStore, raw: FalkorDB, tenant: str) -> None:
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

    assert count(raw, tenant, "()-[x:CORRELATED]->()") == 3  # one per (pair, timeframe)
    assert count(raw, tenant, "()-[x:SIGNALS]->()") == 1
    assert count(raw, tenant, "(x:Symbol)") == 3
    assert count(raw, tenant, "(x:Strategy)") == 1
    assert await store.strategies(tenant, "EURUSD") == signals  # absolute values, not incremented
    # sorted by timeframe, then the other symbol
    assert await store.correlations(tenant, "EURUSD") == [edges[0], edges[1], edges[2]]
    assert await store.correlations(tenant, "GBPUSD", timeframe="M5") == [edges[2]]


async def test_older_window_never_overwrites_newer(store: FalkorGraphStore, tenant: str) -> None:
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


async def test_strategy_edge_newer_wins(store: FalkorGraphStore, tenant: str) -> None:
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


async def test_strategies_of_a_symbol(store: FalkorGraphStore, tenant: str) -> None:
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

#   A ─0.9─ B ─(-0.8)─ C ─0.7─ D          all H1; on M5 also A ─0.99─ D and A ─0.2─ B
#    ╲                 │
#     0.3 ─── E ──0.95─┘
GRAPH = [("A", "B", 0.9), ("B", "C", -0.8), ("C", "D", 0.7), ("A", "E", 0.3), ("E", "C", 0.95)]
M5 = [("A", "D", 0.99), ("A", "B", 0.2)]


@pytest.fixture
async def shaped(store: FalkorGraphStore, tenant: str) -> str:
    await store.upsert_correlations(
        [corr(tenant, x, y, w) for x, y, w in GRAPH] + [corr(tenant, x, y, w, timeframe="M5") for x, y, w in M5]
    )
    return tenant


async def test_neighbors_depth_one(store: FalkorGraphStore, shaped: str) -> None:
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


async def test_neighbors_depth_two_and_three(store: FalkorGraphStore, shaped: str) -> None:
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


async def test_weak_edge_in_the_middle_blocks_the_path(store: FalkorGraphStore, shaped: str) -> None:
    # |B-C| = 0.8 < 0.85: nothing behind it, at any depth
    blocked = await store.neighbors(shaped, "A", depth=5, min_weight=0.85, timeframe="H1")
    assert blocked == [Neighbor("B", 1, 0.9, "H1", "A")]
    # a strong negative correlation is as strong as a positive one
    through_negative = await store.neighbors(shaped, "B", depth=5, min_weight=0.8, timeframe="H1")
    assert [(n.symbol, n.depth) for n in through_negative] == [("A", 1), ("C", 1), ("E", 2)]


async def test_neighbors_of_unknown_things(store: FalkorGraphStore, shaped: str) -> None:
    assert await store.neighbors(shaped, "NOPE", depth=3) == []
    assert await store.neighbors(shaped, "A", timeframe="D1") == []
    assert await store.neighbors(other_tenant(), "A", depth=2) == []  # a tenant without a graph
    assert await store.strategies(other_tenant(), "A") == []


async def test_tenants_are_isolated(store: FalkorGraphStore, raw: FalkorDB, shaped: str) -> None:
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
    assert count(raw, shaped, "()-[x:CORRELATED]->()") == len(GRAPH) + len(M5)
    assert count(raw, other, "()-[x:CORRELATED]->()") == 3


# names and arguments ----------------------------------------------------------

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


async def test_names_with_cypher_special_characters(store: FalkorGraphStore, raw: FalkorDB, tenant: str) -> None:
    weights = {name: round(0.5 + i / 100, 2) for i, name in enumerate(NASTY)}  # exact in 15 digits
    await store.upsert_correlations([corr(tenant, "HUB", name, weight) for name, weight in weights.items()])
    await store.upsert_strategy_edges([StrategyEdge(tenant, name, "HUB", 1, "buy", 0.5, 1) for name in NASTY])

    assert count(raw, tenant, "(x:Symbol)") == len(NASTY) + 1
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
async def test_bad_arguments_name_the_parameter(store: FalkorGraphStore, tenant: str, call, parameter: str) -> None:
    with pytest.raises(ValueError, match=rf"^{parameter}\b"):
        await call(store, tenant)


@pytest.mark.parametrize(
    ("make", "parameter"),
    [
        (lambda t: CorrelationEdge.between(t, "A", "A", "H1", 0.5, 1, 2), "itself"),
        (lambda t: CorrelationEdge(t, "B", "A", "H1", 0.5, 1, 2), "a"),
        (lambda t: CorrelationEdge.between(t, "A", "B", "H1", 1.5, 1, 2), "weight"),
        (lambda t: CorrelationEdge.between(t, "A", "B", "H1", math.inf, 1, 2), "weight"),
        (lambda t: CorrelationEdge.between(t, "A", "B", "H1", math.nan, 1, 2), "weight"),
        (lambda t: CorrelationEdge.between(t, "A", "B", "", 0.5, 1, 2), "timeframe"),
        (lambda t: CorrelationEdge.between(t, "A", "B", "H1", 0.5, -1, 2), "window_end_ms"),
        (lambda t: CorrelationEdge.between(t, "A", "B", "H1", 0.5, 1, 1), "samples"),
        (lambda t: CorrelationEdge.between("T", "A", "B", "H1", 0.5, 1, 2), "tenant"),
        (lambda t: StrategyEdge(t, "", "A", 1, "buy", 0.5, 1), "strategy"),
        (lambda t: StrategyEdge(t, "s", "A", 0, "buy", 0.5, 1), "signals"),
        (lambda t: StrategyEdge(t, "s", "A", 1, "buy", 1.5, 1), "mean_confidence"),
        (lambda t: StrategyEdge(t, "s", "A", 1, "buy", 0.5, 1.5), "last_time_ms"),
    ],
)
def test_bad_edges_name_the_field(tenant: str, make, parameter: str) -> None:
    with pytest.raises(ValueError, match=rf"\b{parameter}\b"):
        make(tenant)


def test_between_orders_the_pair(tenant: str) -> None:
    edge = CorrelationEdge.between(tenant, "US30+", "#AAPL", "H1", -0.5, 1, 2)
    assert edge == CorrelationEdge(tenant, "#AAPL", "US30+", "H1", -0.5, 1, 2)


# lifecycle ------------------------------------------------------------------


async def test_lifecycle(stack_settings: Settings) -> None:
    graph = FalkorGraphStore(stack_settings.graph_url)
    with pytest.raises(RuntimeError, match="not started"):
        await graph.ping()
    await graph.start()
    await graph.start()  # idempotent
    assert 0 < await graph.ping() < 1
    await graph.close()
    await graph.close()
    with pytest.raises(RuntimeError, match="not started"):
        await graph.neighbors("acme", "EURUSD")


async def test_start_raises_when_the_server_is_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    graph = FalkorGraphStore(f"redis://127.0.0.1:{port}", timeout_s=1)
    with pytest.raises(redis.exceptions.ConnectionError):
        await graph.start()
    await graph.close()
