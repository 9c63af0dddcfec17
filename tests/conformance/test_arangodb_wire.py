"""The ArangoDB adapter at the wire: the exact HTTP requests and AQL it builds, without an ArangoDB server.

No ArangoDB can run here (no Docker, no wheel), so a stand-in (aiohttp on
127.0.0.1) speaks just enough of ArangoDB's HTTP API: version, database and
collection creation, and ``/_api/cursor``. It records every request and
answers with canned replies. Every assertion is about what the adapter sent
(database, collections, AQL text, bind parameters, keys) or about what it did
with a canned answer (a conflict is retried, a missing database is created);
nothing here reads back what the test wrote into the stand-in.

What this cannot show: that ArangoDB runs these AQL statements with the
assumed semantics (UPSERT against OLD, ``overwriteMode: "ignore"``, traversal
filters). That is what the conformance suite checks when
``TICKWIRE_TEST_ARANGO_URL`` points at a live server (tests/test_graph.py).
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from pipeline.config import load_settings
from pipeline.stores.graph import CorrelationEdge, Neighbor, StrategyEdge
from pipeline.stores.graph.arangodb import (
    CORRELATIONS_OF,
    INSERT_VERTICES,
    NEXT_LEVEL,
    STRATEGIES_OF,
    UPSERT_CORRELATIONS,
    UPSERT_STRATEGY_EDGES,
    ArangoGraphStore,
    document_key,
)

DB = "twtest"
KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}:[0-9a-f]{32}$")
ARANGO_KEY_ALPHABET = re.compile(r"^[A-Za-z0-9_\-:.@()+,=;$!*'%]{1,254}$")


@dataclass
class FakeArango:
    """Records requests; answers from ``databases``/``collections``/``answers``/``failures`` it is given."""

    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    authorizations: set[str | None] = field(default_factory=set)
    databases: set[str] = field(default_factory=lambda: {"_system", DB})
    collections: dict[str, int] = field(default_factory=dict)  # name -> type (2 document, 3 edge)
    answers: list[list[Any]] = field(default_factory=list)  # results of the next cursor requests, in order
    failures: list[int] = field(default_factory=list)  # errorNum of the next cursor requests, in order
    port: int = 0

    def cursors(self) -> list[tuple[str, dict[str, Any]]]:
        """(AQL, bind parameters) of every cursor request, in order."""
        return [(body["query"], body.get("bindVars", {})) for method, path, body in self.requests
                if method == "POST" and path == f"/_db/{DB}/_api/cursor"]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, body))
        self.authorizations.add(request.headers.get("Authorization"))
        match = re.fullmatch(r"/_db/([^/]+)(/_api/.*)", request.path)
        assert match, request.path
        db, api = match.groups()
        if db not in self.databases:
            return error(404, 1228, "database not found")
        if api == "/_api/version":
            return web.json_response({"server": "arango", "version": "3.12.4", "license": "community"})
        if api == "/_api/database" and request.method == "POST":
            self.databases.add(body["name"])
            return web.json_response({"error": False, "code": 201, "result": True}, status=201)
        if api == "/_api/collection" and request.method == "GET":
            return web.json_response({"error": False, "code": 200, "result": [
                {"id": str(i), "name": name, "isSystem": False, "type": kind, "status": 3, "globallyUniqueId": name}
                for i, (name, kind) in enumerate(self.collections.items())
            ]})
        if api == "/_api/collection" and request.method == "POST":
            self.collections[body["name"]] = body.get("type", 2)
            return web.json_response({"error": False, "code": 200, "id": "1", "name": body["name"],
                                      "type": body.get("type", 2), "status": 3, "isSystem": False})
        if api == "/_api/cursor" and request.method == "POST":
            if self.failures:
                return error(409, self.failures.pop(0), "write-write conflict")
            rows = self.answers.pop(0) if self.answers else []
            return web.json_response({"error": False, "code": 201, "result": rows, "hasMore": False,
                                      "cached": False, "extra": {}}, status=201)
        return error(500, 4, f"stand-in has no {request.method} {api}")


def error(status: int, number: int, message: str) -> web.Response:
    return web.json_response({"error": True, "code": status, "errorNum": number, "errorMessage": message},
                             status=status)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeArango]:
    stand_in = FakeArango()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stand_in.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stand_in.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield stand_in
    await runner.cleanup()


def make_store(fake: FakeArango) -> ArangoGraphStore:
    return ArangoGraphStore(f"http://127.0.0.1:{fake.port}", database=DB, username="tw", password="pw")


@pytest_asyncio.fixture
async def store(fake: FakeArango) -> AsyncIterator[ArangoGraphStore]:
    graph = make_store(fake)
    await graph.start()
    fake.requests.clear()
    yield graph
    await graph.close()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def values(bind_vars: dict[str, Any]) -> list[Any]:
    """Every scalar inside the bind parameters (to check that names only ever travel there)."""
    if isinstance(bind_vars, dict):
        return [v for x in bind_vars.values() for v in values(x)]
    if isinstance(bind_vars, list):
        return [v for x in bind_vars for v in values(x)]
    return [bind_vars]


# start ----------------------------------------------------------------------


async def test_start_creates_the_collections_it_needs(fake: FakeArango) -> None:
    fake.collections = {"symbols": 2}  # one exists already
    graph = make_store(fake)
    await graph.start()
    await graph.start()  # idempotent
    assert 0 < await graph.ping() < 5
    await graph.close()

    created = [(body["name"], body.get("type", 2)) for method, path, body in fake.requests
               if method == "POST" and path == f"/_db/{DB}/_api/collection"]
    assert created == [("strategies", 2), ("correlated", 3), ("signals", 3)]
    assert fake.authorizations == {basic("tw", "pw")}
    assert all(path.startswith(f"/_db/{DB}/") for _, path, _ in fake.requests)


async def test_start_creates_a_missing_database(fake: FakeArango) -> None:
    fake.databases = {"_system"}
    graph = make_store(fake)
    await graph.start()
    await graph.close()
    assert ("POST", "/_db/_system/_api/database", {"name": DB}) in fake.requests


async def test_start_refuses_a_collection_of_the_wrong_type(fake: FakeArango) -> None:
    fake.collections = {"correlated": 2}
    with pytest.raises(ValueError, match="correlated is a document collection, tickwire needs an edge collection"):
        await make_store(fake).start()


async def test_not_started() -> None:
    graph = ArangoGraphStore("http://127.0.0.1:1")
    with pytest.raises(RuntimeError, match="not started"):
        await graph.ping()
    with pytest.raises(RuntimeError, match="not started"):
        await graph.neighbors("acme", "EURUSD")


# keys -----------------------------------------------------------------------


NAMES = ['#AAPL', 'US30+', 'a"b', "a'b", "back\\", "{x}", 'x"}) FOR d IN symbols REMOVE d IN symbols //', "ünï€", "a:b", " "]


def test_keys_are_deterministic_valid_and_distinct() -> None:
    keys = {name: document_key("acme", name) for name in NAMES}
    assert all(KEY.fullmatch(k) and ARANGO_KEY_ALPHABET.fullmatch(k) for k in keys.values())
    assert len(set(keys.values())) == len(NAMES)
    assert document_key("acme", "EURUSD") == document_key("acme", "EURUSD")
    assert document_key("acme", "EURUSD") != document_key("acme2", "EURUSD")
    # the identity is encoded unambiguously: no two splits of the same characters collide
    assert document_key("t", "a", "b:c", "H1") != document_key("t", "a:b", "c", "H1")
    assert document_key("t", "ab", "c", "H1") != document_key("t", "a", "bc", "H1")


# writes ---------------------------------------------------------------------


async def test_correlations_upsert_vertices_then_edges(store: ArangoGraphStore, fake: FakeArango) -> None:
    edges = [
        CorrelationEdge.between("acme", "GBPUSD", "EURUSD", "H1", 0.8, 2_000, 50),
        CorrelationEdge.between("beta", "EURUSD", "USDJPY", "M5", -0.5, 1_000, 12),
    ]
    await store.upsert_correlations(edges)

    [(vertex_aql, vertex_vars), (edge_aql, edge_vars)] = fake.cursors()
    assert vertex_aql == INSERT_VERTICES and 'overwriteMode: "ignore"' in vertex_aql
    assert vertex_vars["@collection"] == "symbols"
    assert sorted((v["tenant"], v["name"], v["_key"]) for v in vertex_vars["vertices"]) == sorted(
        (t, n, document_key(t, n)) for t, n in [("acme", "EURUSD"), ("acme", "GBPUSD"), ("beta", "EURUSD"),
                                                ("beta", "USDJPY")]
    )
    assert edge_aql == UPSERT_CORRELATIONS
    assert edge_vars == {"edges": [
        {"_key": document_key("acme", "EURUSD", "GBPUSD", "H1"),
         "_from": f"symbols/{document_key('acme', 'EURUSD')}", "_to": f"symbols/{document_key('acme', 'GBPUSD')}",
         "tenant": "acme", "a": "EURUSD", "b": "GBPUSD", "timeframe": "H1",
         "weight": 0.8, "window_end_ms": 2_000, "samples": 50},
        {"_key": document_key("beta", "EURUSD", "USDJPY", "M5"),
         "_from": f"symbols/{document_key('beta', 'EURUSD')}", "_to": f"symbols/{document_key('beta', 'USDJPY')}",
         "tenant": "beta", "a": "EURUSD", "b": "USDJPY", "timeframe": "M5",
         "weight": -0.5, "window_end_ms": 1_000, "samples": 12},
    ]}
    # newer wins is decided by the server against the stored edge, in the same statement
    assert "UPSERT { _key: r._key }" in edge_aql and "r.window_end_ms >= OLD.window_end_ms" in edge_aql


async def test_strategy_edges_upsert_both_vertex_kinds_then_edges(store: ArangoGraphStore, fake: FakeArango) -> None:
    await store.upsert_strategy_edges([StrategyEdge("acme", "trend", "EURUSD", 3, "buy", 0.75, 5_000)])
    [(_, strategies), (_, symbols), (edge_aql, edge_vars)] = fake.cursors()
    assert strategies == {"@collection": "strategies", "vertices": [
        {"_key": document_key("acme", "trend"), "tenant": "acme", "name": "trend"}]}
    assert symbols == {"@collection": "symbols", "vertices": [
        {"_key": document_key("acme", "EURUSD"), "tenant": "acme", "name": "EURUSD"}]}
    assert edge_aql == UPSERT_STRATEGY_EDGES
    assert edge_vars == {"edges": [{
        "_key": document_key("acme", "trend", "EURUSD"),
        "_from": f"strategies/{document_key('acme', 'trend')}", "_to": f"symbols/{document_key('acme', 'EURUSD')}",
        "tenant": "acme", "strategy": "trend", "symbol": "EURUSD",
        "signals": 3, "last_action": "buy", "mean_confidence": 0.75, "last_time_ms": 5_000,
    }]}
    assert ("r.last_time_ms > OLD.last_time_ms OR (r.last_time_ms == OLD.last_time_ms AND r.signals >= OLD.signals)"
            in edge_aql)


async def test_a_write_conflict_is_retried_then_raised(store: ArangoGraphStore, fake: FakeArango) -> None:
    edge = CorrelationEdge.between("acme", "A", "B", "H1", 0.5, 1, 2)
    fake.failures = [1200, 1210]  # the vertex insert meets two conflicts, then goes through
    await store.upsert_correlations([edge])
    sent = fake.cursors()
    assert [aql for aql, _ in sent] == [INSERT_VERTICES] * 3 + [UPSERT_CORRELATIONS]
    assert sent[0] == sent[1] == sent[2]

    fake.requests.clear()
    fake.failures = [1200] * 5
    with pytest.raises(Exception, match="write-write conflict"):
        await store.upsert_correlations([edge])
    assert len(fake.cursors()) == 5

    fake.requests.clear()
    fake.failures = [1203]  # not a conflict: raised at once
    with pytest.raises(Exception):
        await store.upsert_correlations([edge])
    assert len(fake.cursors()) == 1


async def test_names_travel_only_as_bind_parameters(store: ArangoGraphStore, fake: FakeArango) -> None:
    await store.upsert_correlations([CorrelationEdge.between("acme", "HUB", name, "H1", 0.5, 1, 2) for name in NAMES])
    await store.upsert_strategy_edges([StrategyEdge("acme", name, "HUB", 1, "buy", 0.5, 1) for name in NAMES])
    for name in NAMES:
        await store.neighbors("acme", name, timeframe=name)
        await store.strategies("acme", name)
        await store.correlations("acme", name, timeframe=name)
    constants = {INSERT_VERTICES, UPSERT_CORRELATIONS, UPSERT_STRATEGY_EDGES, NEXT_LEVEL, STRATEGIES_OF, CORRELATIONS_OF}
    sent = fake.cursors()
    assert {aql for aql, _ in sent} == constants  # the query texts never change
    bound = [v for _, bind_vars in sent for v in values(bind_vars)]
    assert set(NAMES) <= set(bound)


# reads ----------------------------------------------------------------------


async def test_neighbors_is_a_breadth_first_search_one_traversal_per_level(
    store: ArangoGraphStore, fake: FakeArango
) -> None:
    fake.answers = [
        [["B", "A", 0.9, "H1"], ["E", "A", 0.3, "H1"]],  # level 1
        [["C", "B", -0.8, "H1"], ["C", "E", 0.95, "H1"]],  # level 2: C twice, the strongest last edge wins
        [],  # level 3: nothing new, the search stops
    ]
    found = await store.neighbors("acme", "A", depth=5, min_weight=0.25, timeframe="H1")
    assert found == [Neighbor("B", 1, 0.9, "H1", "A"), Neighbor("E", 1, 0.3, "H1", "A"), Neighbor("C", 2, 0.95, "H1", "E")]

    sent = fake.cursors()
    assert [aql for aql, _ in sent] == [NEXT_LEVEL] * 3
    assert [bind_vars for _, bind_vars in sent] == [
        {"frontier": [f"symbols/{document_key('acme', 'A')}"], "tenant": "acme", "min_weight": 0.25,
         "timeframe": "H1", "seen": ["A"]},
        {"frontier": [f"symbols/{document_key('acme', n)}" for n in ("B", "E")], "tenant": "acme",
         "min_weight": 0.25, "timeframe": "H1", "seen": ["A", "B", "E"]},
        {"frontier": [f"symbols/{document_key('acme', 'C')}"], "tenant": "acme", "min_weight": 0.25,
         "timeframe": "H1", "seen": ["A", "B", "E", "C"]},
    ]
    for clause in ("FILTER e.tenant == @tenant AND n.tenant == @tenant", "ABS(e.weight) >= @min_weight",
                   "@timeframe == null OR e.timeframe == @timeframe", "n.name NOT IN @seen", "1..1 ANY start correlated"):
        assert clause in NEXT_LEVEL


async def test_neighbors_without_timeframe_binds_null(store: ArangoGraphStore, fake: FakeArango) -> None:
    await store.neighbors("acme", "A")
    [(_, bind_vars)] = fake.cursors()
    assert bind_vars["timeframe"] is None and bind_vars["min_weight"] == 0.0


async def test_strategies_and_correlations_traverse_from_the_tenants_vertex(
    store: ArangoGraphStore, fake: FakeArango
) -> None:
    fake.answers = [
        [["trend", 12, "sell", 0.625, 9_000], ["mean-rev", 3, "hold", 0.5, 8_000]],
        [["EURUSD", "GBPUSD", "H1", 0.8, 1_000, 50], ["EURUSD", "USDJPY", "M5", -1, 2_000, 3]],
    ]
    assert await store.strategies("acme", "EURUSD") == [
        StrategyEdge("acme", "mean-rev", "EURUSD", 3, "hold", 0.5, 8_000),
        StrategyEdge("acme", "trend", "EURUSD", 12, "sell", 0.625, 9_000),
    ]
    correlations = await store.correlations("acme", "EURUSD", timeframe=None)
    assert [type(e.weight) for e in correlations] == [float, float]  # ArangoDB renders -1.0 as -1
    start = f"symbols/{document_key('acme', 'EURUSD')}"
    assert fake.cursors() == [
        (STRATEGIES_OF, {"symbol": start, "tenant": "acme"}),
        (CORRELATIONS_OF, {"symbol": start, "tenant": "acme", "timeframe": None}),
    ]
    assert "1..1 INBOUND @symbol signals" in STRATEGIES_OF and "e.tenant == @tenant AND st.tenant == @tenant" in STRATEGIES_OF
    assert "1..1 ANY @symbol correlated" in CORRELATIONS_OF and "e.tenant == @tenant AND n.tenant == @tenant" in CORRELATIONS_OF


async def test_every_query_is_tenant_filtered(store: ArangoGraphStore, fake: FakeArango) -> None:
    """Each read binds the tenant and the start vertex derived from it; no read sends another tenant's id."""
    await store.neighbors("acme", "A", depth=2)
    await store.strategies("acme", "A")
    await store.correlations("acme", "A")
    for aql, bind_vars in fake.cursors():
        assert "@tenant" in aql and bind_vars["tenant"] == "acme"
        ids = [v for v in values(bind_vars) if isinstance(v, str) and "/" in v]
        assert ids and all(i.split("/", 1)[1].startswith("acme:") for i in ids)


def test_settings_build_the_store() -> None:
    settings = load_settings(graph_backend="arangodb", graph_url="https://arango.example:8529",
                             arango_database="graphs", arango_username="svc", arango_password="pw")
    graph = ArangoGraphStore.from_settings(settings)
    assert (graph._url, graph._database, graph._username, graph._password) == (
        "https://arango.example:8529", "graphs", "svc", "pw")


def test_roles_pick_arangodb_and_refuse_a_redis_url() -> None:
    from pipeline.config import SettingsError
    from pipeline.stores.roles import make_graph_store

    assert isinstance(make_graph_store(load_settings(graph_backend="arangodb", graph_url="http://arangodb:8529")),
                      ArangoGraphStore)
    with pytest.raises(SettingsError, match="TICKWIRE_GRAPH_URL must be http"):
        load_settings(graph_backend="arangodb")  # the default graph URL is FalkorDB's redis://
    with pytest.raises(SettingsError, match="TICKWIRE_GRAPH_URL must be redis"):
        load_settings(graph_url="http://arangodb:8529")  # the default backend is FalkorDB
    with pytest.raises(SettingsError, match="TICKWIRE_ARANGO_DATABASE"):
        load_settings(graph_backend="arangodb", graph_url="http://arangodb:8529", arango_database="x/y")
