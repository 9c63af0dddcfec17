"""The graph role: the conformance suite on every reachable backend, and FalkorDB's own checks.

FalkorDB (the local stack's graph server) always runs; ArangoDB runs when
``TICKWIRE_TEST_ARANGO_URL`` points at a live server (user and password in
``TICKWIRE_TEST_ARANGO_USERNAME`` / ``TICKWIRE_TEST_ARANGO_PASSWORD``, default
root and empty; it writes into a database of its own, dropped at the end) and
is skipped with that reason otherwise. FalkorDB's own tests count edges and
nodes with a plain FalkorDB client, to see what is stored rather than what the
store chooses to return.
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis.exceptions
from falkordb import FalkorDB

from pipeline.config import Settings
from pipeline.stores.graph import CorrelationEdge, GraphStore, StrategyEdge
from pipeline.stores.graph.falkordb import FalkorGraphStore, graph_name
from tests.conformance.conformance_graph import GRAPH, M5, NASTY, GraphStoreConformance, corr

# FalkorDB ---------------------------------------------------------------------


@pytest.mark.stack
class TestFalkorDBConformance(GraphStoreConformance):
    @pytest.fixture
    async def store(self, stack_settings: Settings) -> AsyncIterator[GraphStore]:
        graph = FalkorGraphStore.from_settings(stack_settings)
        await graph.start()
        yield graph
        await graph.close()

    @pytest.fixture
    def make_store(self, stack_settings: Settings) -> Callable[[], GraphStore]:
        return lambda: FalkorGraphStore(stack_settings.graph_connection_url)


# ArangoDB ---------------------------------------------------------------------

ARANGO_URL = os.environ.get("TICKWIRE_TEST_ARANGO_URL")
ARANGO_DATABASE = "tw_test_" + uuid.uuid4().hex[:8]


def arango_store() -> GraphStore:
    from pipeline.stores.graph.arangodb import ArangoGraphStore

    assert ARANGO_URL is not None
    return ArangoGraphStore(ARANGO_URL, database=ARANGO_DATABASE,
                            username=os.environ.get("TICKWIRE_TEST_ARANGO_USERNAME", "root"),
                            password=os.environ.get("TICKWIRE_TEST_ARANGO_PASSWORD", ""))


@pytest.fixture(scope="module")
def live_arango() -> Iterator[None]:
    """A live ArangoDB, or a skip; drops the test database afterwards."""
    if ARANGO_URL is None:
        pytest.skip("TICKWIRE_TEST_ARANGO_URL is not set: the ArangoDB conformance run needs a live ArangoDB "
                    "(its requests are checked without one in tests/test_arangodb_wire.py)")
    yield
    from arango import ArangoClient

    client = ArangoClient(hosts=ARANGO_URL)
    system = client.db("_system", username=os.environ.get("TICKWIRE_TEST_ARANGO_USERNAME", "root"),
                       password=os.environ.get("TICKWIRE_TEST_ARANGO_PASSWORD", ""))
    system.delete_database(ARANGO_DATABASE, ignore_missing=True)
    client.close()


class TestArangoDBConformance(GraphStoreConformance):
    @pytest.fixture
    async def store(self, live_arango: None) -> AsyncIterator[GraphStore]:
        graph = arango_store()
        await graph.start()
        yield graph
        await graph.close()

    @pytest.fixture
    def make_store(self, live_arango: None) -> Callable[[], GraphStore]:
        return arango_store


# FalkorDB's own checks -----------------------------------------------------------


@pytest.fixture
async def falkor(stack_settings: Settings) -> AsyncIterator[FalkorGraphStore]:
    graph = FalkorGraphStore.from_settings(stack_settings)
    await graph.start()
    yield graph
    await graph.close()


@pytest.fixture(scope="module")
def raw(stack_settings: Settings) -> Iterator[FalkorDB]:
    client = FalkorDB.from_url(stack_settings.graph_connection_url)
    yield client
    client.connection.close()


def count(raw: FalkorDB, tenant: str, pattern: str) -> int:
    """How many ``x`` in ``pattern`` (e.g. ``()-[x:CORRELATED]->()``) the tenant's graph holds.

    ``count(x)``, not ``count(*)``: FalkorDB 4.16 answers ``count(*)`` of an edge
    pattern with the number of connected node pairs, so parallel edges (one pair
    on two timeframes) are counted once.
    """
    return raw.select_graph(graph_name(tenant)).ro_query(f"MATCH {pattern} RETURN count(x)").result_set[0][0]


@pytest.mark.stack
async def test_falkordb_stores_one_edge_and_node_per_identity(falkor: FalkorGraphStore, raw: FalkorDB, tenant: str) -> None:
    edges = [
        corr(tenant, "EURUSD", "GBPUSD", 0.8),
        corr(tenant, "USDJPY", "EURUSD", -0.4),
        corr(tenant, "EURUSD", "GBPUSD", 0.7, timeframe="M5"),
    ]
    for _ in range(2):
        await falkor.upsert_correlations(edges)
        await falkor.upsert_strategy_edges([StrategyEdge(tenant, "trend", "EURUSD", 3, "buy", 0.75, 5_000)])
    await falkor.upsert_correlations([corr(tenant, "GBPUSD", "EURUSD", 0.8)] * 3)

    assert count(raw, tenant, "()-[x:CORRELATED]->()") == 3  # one per (pair, timeframe)
    assert count(raw, tenant, "()-[x:SIGNALS]->()") == 1
    assert count(raw, tenant, "(x:Symbol)") == 3
    assert count(raw, tenant, "(x:Strategy)") == 1


@pytest.mark.stack
async def test_falkordb_keeps_a_graph_per_tenant(falkor: FalkorGraphStore, raw: FalkorDB, tenant: str) -> None:
    other = "t" + uuid.uuid4().hex[:10]
    await falkor.upsert_correlations(
        [corr(tenant, x, y, w) for x, y, w in GRAPH] + [corr(tenant, x, y, w, timeframe="M5") for x, y, w in M5]
    )
    await falkor.upsert_correlations([corr(other, "A", "Q", 0.9), corr(other, "A", "B", -0.1), corr(other, "B", "C", 0.99)])
    assert count(raw, tenant, "()-[x:CORRELATED]->()") == len(GRAPH) + len(M5)
    assert count(raw, other, "()-[x:CORRELATED]->()") == 3


@pytest.mark.stack
async def test_falkordb_names_round_trip_as_parameters(falkor: FalkorGraphStore, raw: FalkorDB, tenant: str) -> None:
    await falkor.upsert_correlations([corr(tenant, "HUB", name, 0.5) for name in NASTY])
    assert count(raw, tenant, "(x:Symbol)") == len(NASTY) + 1


# edge values (no store) ------------------------------------------------------------


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


async def test_start_raises_when_the_server_is_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    graph = FalkorGraphStore(f"redis://127.0.0.1:{port}", timeout_s=1)
    with pytest.raises(redis.exceptions.ConnectionError):
        await graph.start()
    await graph.close()
