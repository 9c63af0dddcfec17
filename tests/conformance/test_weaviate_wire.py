"""The Weaviate adapter at the wire: the exact requests it builds, without a Weaviate server.

No Weaviate can run here (no Docker, no wheel), so a stand-in speaks just
enough of Weaviate's two APIs on 127.0.0.1: REST (aiohttp: meta, liveness,
schema, tenants, object PATCH) and gRPC (a ``grpc.aio`` server with the
protobuf messages shipped inside weaviate-client: health, TenantsGet,
BatchObjects, Search). It records every request and answers with canned
replies. Every assertion is about what the adapter sent (collection, tenant,
filters, vectors, UUIDs, properties) or about what it did with a canned
answer (an object error fails the write, a 404 is ignored); nothing here
reads back data the test wrote into the stand-in.

What this cannot show: that a real Weaviate accepts these requests and
answers as assumed (result order, filter semantics, batch upsert). That is
what the conformance suite checks when ``TICKWIRE_TEST_WEAVIATE_URL`` points
at a live server (tests/test_vectors.py).
"""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import pytest_asyncio
from aiohttp import web
from weaviate.proto.v1 import (
    base_pb2,
    batch_pb2,
    health_weaviate_pb2,
    properties_pb2,
    search_get_pb2,
    tenants_pb2,
    weaviate_pb2_grpc,
)

from pipeline.config import load_settings
from pipeline.stores.vectors import Pattern, PatternKey
from pipeline.stores.vectors.weaviate import VECTOR_NAME, WeaviateVectorStore, WeaviateWriteError

DIM = 4
COLLECTION = "WirePattern"


@dataclass
class FakeWeaviate:
    """Records requests; answers from the ``tenants``/``missing_objects``/``batch_errors``/``schema`` it is given."""

    rest: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)
    grpc_calls: list[tuple[str, Any]] = field(default_factory=list)
    authorizations: set[tuple[str, str | None]] = field(default_factory=set)  # (REST or gRPC method, Authorization)
    tenants: set[str] = field(default_factory=set)  # tenants TenantsGet reports as existing
    schema: dict | None = None  # GET /v1/schema/{name}: None = 404
    missing_objects: set[str] = field(default_factory=set)  # PATCH of these ids answers 404
    batch_errors: dict[int, str] = field(default_factory=dict)  # BatchObjects: index -> error
    search_results: list[search_get_pb2.SearchResult] = field(default_factory=list)
    http_port: int = 0
    grpc_port: int = 0

    def calls(self, method: str) -> list[Any]:
        return [request for name, request in self.grpc_calls if name == method]

    def rest_calls(self, method: str, prefix: str) -> list[tuple[str, dict[str, str], Any]]:
        return [(path, query, body) for m, path, query, body in self.rest if m == method and path.startswith(prefix)]

    # REST -------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        path = request.path
        self.rest.append((request.method, path, dict(request.query), body))
        self.authorizations.add(("REST", request.headers.get("Authorization")))
        if path == "/v1/meta":
            return web.json_response({"version": "1.32.5", "hostname": "http://[::]:8080", "modules": {}})
        if path in ("/v1/.well-known/live", "/v1/.well-known/ready"):
            return web.Response(status=200)
        if request.method == "GET" and path == f"/v1/schema/{COLLECTION}":
            return web.json_response(self.schema) if self.schema else web.json_response({"error": []}, status=404)
        if request.method == "POST" and path == "/v1/schema":
            return web.json_response(body)
        if request.method == "POST" and path == f"/v1/schema/{COLLECTION}/tenants":
            return web.json_response(body)
        if request.method == "PATCH" and path.startswith(f"/v1/objects/{COLLECTION}/"):
            if path.rsplit("/", 1)[1] in self.missing_objects:
                return web.json_response({"error": [{"message": "not found"}]}, status=404)
            return web.Response(status=204)
        return web.json_response({"error": [{"message": f"fake has no {request.method} {path}"}]}, status=500)

    # gRPC -------------------------------------------------------------------

    async def health(self, request: Any, context: Any) -> Any:
        self.grpc_calls.append(("Health", request))
        self.authorizations.add(("Health", dict(context.invocation_metadata()).get("authorization")))
        return health_weaviate_pb2.WeaviateHealthCheckResponse(
            status=health_weaviate_pb2.WeaviateHealthCheckResponse.SERVING
        )

    async def TenantsGet(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method name
        self.grpc_calls.append(("TenantsGet", request))
        self.authorizations.add(("TenantsGet", dict(context.invocation_metadata()).get("authorization")))
        names = [n for n in request.names.values if n in self.tenants]
        return tenants_pb2.TenantsGetReply(
            tenants=[tenants_pb2.Tenant(name=n, activity_status=tenants_pb2.TENANT_ACTIVITY_STATUS_HOT) for n in names]
        )

    async def BatchObjects(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.grpc_calls.append(("BatchObjects", request))
        self.authorizations.add(("BatchObjects", dict(context.invocation_metadata()).get("authorization")))
        return batch_pb2.BatchObjectsReply(
            errors=[batch_pb2.BatchObjectsReply.BatchError(index=i, error=e) for i, e in self.batch_errors.items()]
        )

    async def Search(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.grpc_calls.append(("Search", request))
        self.authorizations.add(("Search", dict(context.invocation_metadata()).get("authorization")))
        return search_get_pb2.SearchReply(results=self.search_results)


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeWeaviate]:
    stand_in = FakeWeaviate()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stand_in.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    stand_in.http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    server = grpc.aio.server()
    servicer = type("Servicer", (weaviate_pb2_grpc.WeaviateServicer,), {
        name: getattr(stand_in, name) for name in ("TenantsGet", "BatchObjects", "Search")
    })()
    weaviate_pb2_grpc.add_WeaviateServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
        "Check": grpc.unary_unary_rpc_method_handler(
            stand_in.health,
            request_deserializer=health_weaviate_pb2.WeaviateHealthCheckRequest.FromString,
            response_serializer=health_weaviate_pb2.WeaviateHealthCheckResponse.SerializeToString,
        ),
    })])
    stand_in.grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield stand_in
    await server.stop(None)
    await runner.cleanup()


@pytest_asyncio.fixture
async def store(fake: FakeWeaviate) -> AsyncIterator[WeaviateVectorStore]:
    vectors = WeaviateVectorStore(
        f"http://127.0.0.1:{fake.http_port}", DIM, grpc_url=f"http://127.0.0.1:{fake.grpc_port}",
        api_key="s3cret-key", collection=COLLECTION,
    )
    await vectors.start()
    fake.rest.clear()
    fake.grpc_calls.clear()
    fake.authorizations.clear()
    yield vectors
    await vectors.close()


def key(tenant: str = "acme", end: int = 1_000, symbol: str = "EURUSD") -> PatternKey:
    return PatternKey(tenant, "demo", symbol, "1m", end)


def pattern(k: PatternKey, forward_return: float | None = None) -> Pattern:
    return Pattern(k, (1.0, 2.0, 3.0, 4.0), close=1.25, volatility=0.5, forward_return=forward_return)


def properties(obj: batch_pb2.BatchObject) -> dict[str, Any]:
    """A batch object's properties as plain values (the adapter sends them as non_ref_properties)."""
    props = dict(obj.properties.non_ref_properties)
    return {name: value for name, value in props.items()}


def floats(raw: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def filter_leaves(f: base_pb2.Filters) -> list[tuple[str, str, Any]]:
    """(operator, property, value) of every leaf of a gRPC filter tree."""
    if f.filters:
        return [leaf for child in f.filters for leaf in filter_leaves(child)]
    target = f.target.property if f.HasField("target") else (f.on[0] if f.on else "")
    value = getattr(f, f.WhichOneof("test_value")) if f.WhichOneof("test_value") else None
    return [(base_pb2.Filters.Operator.Name(f.operator), target, value)]


# start ----------------------------------------------------------------------


async def test_start_creates_a_multi_tenant_byo_vector_collection(fake: FakeWeaviate) -> None:
    vectors = WeaviateVectorStore(
        f"http://127.0.0.1:{fake.http_port}", DIM, grpc_url=f"http://127.0.0.1:{fake.grpc_port}",
        api_key="s3cret-key", collection=COLLECTION,
    )
    await vectors.start()
    await vectors.start()  # idempotent
    await vectors.close()

    [(_, _, created)] = fake.rest_calls("POST", "/v1/schema")
    assert created["class"] == COLLECTION
    assert created["description"] == f"tickwire pattern embeddings, dimension={DIM}"
    assert created["multiTenancyConfig"] == {"enabled": True, "autoTenantCreation": False, "autoTenantActivation": True}
    assert created["invertedIndexConfig"]["indexNullState"] is True
    vector = created["vectorConfig"][VECTOR_NAME]
    assert vector["vectorizer"] == {"none": {}}  # bring-your-own vectors, no module
    assert vector["vectorIndexType"] == "hnsw" and vector["vectorIndexConfig"]["distance"] == "cosine"
    props = {p["name"]: p for p in created["properties"]}
    assert {name: p["dataType"] for name, p in props.items()} == {
        "broker": ["text"], "symbol": ["text"], "timeframe": ["text"], "window_end": ["int"],
        "close": ["number"], "volatility": ["number"], "forward_return": ["number"],
    }
    assert all(props[name]["tokenization"] == "field" for name in ("broker", "symbol", "timeframe"))
    assert props["window_end"]["indexRangeFilters"] is True
    # liveness is checked over both transports; the API key goes out as a bearer token (the
    # client sends gRPC's standard health check without one, as Weaviate does not require it)
    assert [call for call in fake.rest if call[1] == "/v1/.well-known/live"]
    assert fake.calls("Health")
    assert fake.authorizations == {("REST", "Bearer s3cret-key"), ("Health", None)}


@pytest.mark.parametrize(
    ("description", "message"),
    [("tickwire pattern embeddings, dimension=8", "dimension 8, not 4"), ("something else", "no recorded dimension")],
)
async def test_start_refuses_a_collection_of_another_dimension(fake: FakeWeaviate, description: str, message: str) -> None:
    fake.schema = existing_schema(description)
    vectors = WeaviateVectorStore(f"http://127.0.0.1:{fake.http_port}", DIM,
                                  grpc_url=f"http://127.0.0.1:{fake.grpc_port}", collection=COLLECTION)
    with pytest.raises(ValueError, match=message):
        await vectors.start()
    assert not fake.rest_calls("POST", "/v1/schema")


async def test_start_accepts_an_existing_compatible_collection(fake: FakeWeaviate) -> None:
    fake.schema = existing_schema(f"tickwire pattern embeddings, dimension={DIM}")
    vectors = WeaviateVectorStore(f"http://127.0.0.1:{fake.http_port}", DIM,
                                  grpc_url=f"http://127.0.0.1:{fake.grpc_port}", collection=COLLECTION)
    await vectors.start()
    await vectors.close()
    assert not fake.rest_calls("POST", "/v1/schema")


def existing_schema(description: str) -> dict:
    """A GET /v1/schema/{class} answer as Weaviate 1.32 gives it for the collection the adapter creates."""
    text = {"dataType": ["text"], "indexFilterable": True, "indexSearchable": True, "indexRangeFilters": False,
            "tokenization": "field"}
    number = {"dataType": ["number"], "indexFilterable": True, "indexSearchable": False, "indexRangeFilters": False}
    return {
        "class": COLLECTION,
        "description": description,
        "invertedIndexConfig": {"bm25": {"b": 0.75, "k1": 1.2}, "cleanupIntervalSeconds": 60, "indexNullState": True,
                                "indexPropertyLength": False, "indexTimestamps": False,
                                "stopwords": {"preset": "en", "additions": None, "removals": None}},
        "multiTenancyConfig": {"enabled": True, "autoTenantCreation": False, "autoTenantActivation": True},
        "properties": [
            {"name": "broker", **text}, {"name": "symbol", **text}, {"name": "timeframe", **text},
            {"name": "window_end", "dataType": ["int"], "indexFilterable": True, "indexSearchable": False,
             "indexRangeFilters": True},
            {"name": "close", **number}, {"name": "volatility", **number}, {"name": "forward_return", **number},
        ],
        "replicationConfig": {"factor": 1, "asyncEnabled": False, "deletionStrategy": "NoAutomatedResolution"},
        "shardingConfig": {"virtualPerPhysical": 0, "desiredCount": 0, "actualCount": 0, "desiredVirtualCount": 0,
                           "actualVirtualCount": 0, "key": "", "strategy": "", "function": ""},
        "vectorConfig": {VECTOR_NAME: {
            "vectorizer": {"none": {}},
            "vectorIndexType": "hnsw",
            "vectorIndexConfig": {
                "skip": False, "cleanupIntervalSeconds": 300, "maxConnections": 32, "efConstruction": 128, "ef": -1,
                "dynamicEfMin": 100, "dynamicEfMax": 500, "dynamicEfFactor": 8, "vectorCacheMaxObjects": 1000000000000,
                "flatSearchCutoff": 40000, "distance": "cosine", "filterStrategy": "acorn",
                "pq": {"enabled": False, "bitCompression": False, "segments": 0, "centroids": 256,
                       "trainingLimit": 100000, "encoder": {"type": "kmeans", "distribution": "log-normal"}},
                "bq": {"enabled": False}, "sq": {"enabled": False, "trainingLimit": 100000, "rescoreLimit": 20},
                "multivector": {"enabled": False, "muvera": {"enabled": False, "ksim": 4, "dprojections": 16,
                                                             "repetitions": 10}, "aggregation": "maxSim"},
            },
        }},
    }



# upsert -----------------------------------------------------------------------


async def test_upsert_creates_missing_tenants_then_batches_per_tenant(store: WeaviateVectorStore, fake: FakeWeaviate) -> None:
    fake.tenants = {"acme"}  # "beta" does not exist yet
    first, second, third = key("acme", 1), key("beta", 2, "XAUUSD"), key("acme", 3)
    await store.upsert([pattern(first, 0.5), pattern(second, -0.25), pattern(third, 0.125)])

    [asked] = fake.calls("TenantsGet")
    assert asked.collection == COLLECTION and sorted(asked.names.values) == ["acme", "beta"]
    [(_, _, created)] = fake.rest_calls("POST", f"/v1/schema/{COLLECTION}/tenants")
    assert created == [{"name": "beta", "activityStatus": "HOT"}]
    batches = fake.calls("BatchObjects")
    assert [[(o.collection, o.tenant, o.uuid) for o in b.objects] for b in batches] == [
        [(COLLECTION, "acme", str(first.id)), (COLLECTION, "acme", str(third.id))],
        [(COLLECTION, "beta", str(second.id))],
    ]
    obj = batches[1].objects[0]
    assert properties(obj) == {"broker": "demo", "symbol": "XAUUSD", "timeframe": "1m", "window_end": 2,
                               "close": 1.25, "volatility": 0.5, "forward_return": -0.25}
    [vector] = obj.vectors
    assert vector.name == VECTOR_NAME and floats(vector.vector_bytes) == [1.0, 2.0, 3.0, 4.0]
    assert not fake.calls("Search")  # every key came with a forward return: nothing to carry over
    assert fake.authorizations == {(m, "Bearer s3cret-key") for m in ("REST", "TenantsGet", "BatchObjects")}

    fake.grpc_calls.clear()
    await store.upsert([pattern(key("beta", 4))])
    assert not fake.calls("TenantsGet")  # known tenants are remembered
    assert not fake.rest_calls("POST", f"/v1/schema/{COLLECTION}/tenants")[1:]


async def test_upsert_without_forward_return_carries_the_stored_one_over(
    store: WeaviateVectorStore, fake: FakeWeaviate
) -> None:
    fake.tenants = {"acme"}
    recorded, fresh, given = key(end=1), key(end=2), key(end=3)
    fake.search_results = [search_get_pb2.SearchResult(
        metadata=search_get_pb2.MetadataResult(id_as_bytes=recorded.id.bytes),
        properties=search_get_pb2.PropertiesResult(
            non_ref_props=properties_pb2.Properties(fields={"forward_return": properties_pb2.Value(number_value=0.75)})
        ),
    )]
    await store.upsert([pattern(recorded), pattern(fresh), pattern(given, 0.5), pattern(fresh)])

    [lookup] = fake.calls("Search")
    assert lookup.collection == COLLECTION and lookup.tenant == "acme"
    assert list(lookup.properties.non_ref_properties) == ["forward_return"]
    assert lookup.limit == 2 and not lookup.HasField("near_vector")
    assert filter_leaves(lookup.filters) == [
        ("OPERATOR_CONTAINS_ANY", "_id", lookup.filters.value_text_array)
    ] and sorted(lookup.filters.value_text_array.values) == sorted([str(recorded.id), str(fresh.id)])
    [batch] = fake.calls("BatchObjects")
    sent = {o.uuid: properties(o).get("forward_return") for o in batch.objects}
    assert sent == {str(recorded.id): 0.75, str(fresh.id): None, str(given.id): 0.5}  # one object per key


async def test_a_refused_object_fails_the_upsert(store: WeaviateVectorStore, fake: FakeWeaviate) -> None:
    fake.tenants = {"acme"}
    fake.batch_errors = {1: "vector lengths don't match"}
    with pytest.raises(WeaviateWriteError, match=r"refused 1 of 2 objects of tenant 'acme'.*vector lengths don't match"):
        await store.upsert([pattern(key(end=1), 0.1), pattern(key(end=2), 0.2)])


async def test_bad_input_raises_before_any_request(store: WeaviateVectorStore, fake: FakeWeaviate) -> None:
    with pytest.raises(ValueError, match="dimension 3"):
        await store.upsert([Pattern(key(), (1.0, 2.0, 3.0), 1.0, 0.1)])
    with pytest.raises(ValueError, match="NaN"):
        await store.upsert([Pattern(key(), (1.0, 2.0, 3.0, math.nan), 1.0, 0.1)])
    with pytest.raises(ValueError, match="tenant must match"):
        await store.upsert([pattern(PatternKey("Not A Tenant", "demo", "EURUSD", "1m", 1))])
    with pytest.raises(ValueError, match="tenant must match"):
        await store.search("UPPER", (1.0, 0.0, 0.0, 0.0), 5)
    with pytest.raises(ValueError, match="k must be"):
        await store.search("acme", (1.0, 0.0, 0.0, 0.0), 0)
    with pytest.raises(ValueError, match="forward_return"):
        await store.set_forward_returns([(key(), math.inf)])
    assert fake.rest == [] and fake.grpc_calls == []


# forward returns ----------------------------------------------------------------


async def test_set_forward_returns_patches_one_property_and_ignores_unknown_keys(
    store: WeaviateVectorStore, fake: FakeWeaviate
) -> None:
    fake.tenants = {"acme"}
    known, unknown, other_tenant = key(end=1), key(end=2), key("ghost", 3)
    fake.missing_objects = {str(unknown.id)}
    await store.set_forward_returns([(known, 0.1), (unknown, 0.2), (known, 0.3), (other_tenant, 0.4)])

    patches = sorted(fake.rest_calls("PATCH", "/v1/objects/"))
    assert patches == sorted([
        (f"/v1/objects/{COLLECTION}/{known.id}", {}, {"class": COLLECTION, "tenant": "acme",
                                                     "properties": {"forward_return": 0.3}}),
        (f"/v1/objects/{COLLECTION}/{unknown.id}", {}, {"class": COLLECTION, "tenant": "acme",
                                                       "properties": {"forward_return": 0.2}}),
    ])  # the last value per key; nothing for a tenant Weaviate does not have ("ghost")
    assert sorted(fake.calls("TenantsGet")[0].names.values) == ["acme", "ghost"]


# search -------------------------------------------------------------------------


async def test_search_sends_tenant_filters_and_the_vector(store: WeaviateVectorStore, fake: FakeWeaviate) -> None:
    fake.tenants = {"acme"}
    await store.search("acme", (0.5, -1.0, 2.0, 0.25), 7, symbol="#AAPL", timeframe="1h", broker="b.1",
                       before_ms=1_700_000_000_123, with_forward_return_only=True)
    [search] = fake.calls("Search")
    assert search.collection == COLLECTION and search.tenant == "acme" and search.limit == 7
    assert list(search.near_vector.targets.target_vectors) == [VECTOR_NAME]
    [vector] = search.near_vector.vectors
    assert floats(vector.vector_bytes) == [0.5, -1.0, 2.0, 0.25]
    assert search.metadata.distance
    assert set(search.properties.non_ref_properties) == {
        "broker", "symbol", "timeframe", "window_end", "close", "volatility", "forward_return"}
    assert search.filters.operator == base_pb2.Filters.OPERATOR_AND
    assert filter_leaves(search.filters) == [
        ("OPERATOR_EQUAL", "symbol", "#AAPL"),
        ("OPERATOR_EQUAL", "timeframe", "1h"),
        ("OPERATOR_EQUAL", "broker", "b.1"),
        ("OPERATOR_LESS_THAN", "window_end", 1_700_000_000_123),
        ("OPERATOR_IS_NULL", "forward_return", False),
    ]

    fake.grpc_calls.clear()
    await store.search("acme", (1.0, 0.0, 0.0, 0.0), 3)
    [search] = fake.calls("Search")
    assert not search.HasField("filters")  # no filter but the tenant (the shard)


async def test_search_of_a_tenant_weaviate_does_not_have_asks_nothing_else(
    store: WeaviateVectorStore, fake: FakeWeaviate
) -> None:
    assert await store.search("nobody", (1.0, 0.0, 0.0, 0.0), 3) == []
    assert [name for name, _ in fake.grpc_calls] == ["TenantsGet"]
    assert not fake.rest_calls("POST", "/v1/schema")  # a read never creates a tenant
    assert await store.search("nobody", (1.0, 0.0, 0.0, 0.0), 3) == []
    assert [name for name, _ in fake.grpc_calls] == ["TenantsGet", "TenantsGet"]  # absence is not remembered


def test_settings_build_the_store() -> None:
    settings = load_settings(vector_backend="weaviate", weaviate_url="https://w.example:8443",
                             weaviate_api_key="k", weaviate_grpc_url="https://grpc.w.example")
    vectors = WeaviateVectorStore.from_settings(settings, DIM)
    assert vectors._http == ("w.example", 8443, True)
    assert vectors._grpc == ("grpc.w.example", 50051, True)
    assert vectors.dimension == DIM
    default_grpc = WeaviateVectorStore.from_settings(load_settings(weaviate_url="http://weaviate:8080"), DIM)
    assert default_grpc._grpc == ("weaviate", 50051, False)


def test_roles_pick_weaviate_and_refuse_it_without_a_url() -> None:
    from pipeline.config import SettingsError
    from pipeline.derive.embedding import DIMENSION
    from pipeline.stores.roles import make_vector_store

    vectors = make_vector_store(load_settings(vector_backend="weaviate", weaviate_url="http://weaviate:8080"))
    assert isinstance(vectors, WeaviateVectorStore) and vectors.dimension == DIMENSION
    with pytest.raises(SettingsError, match="TICKWIRE_WEAVIATE_URL must be set"):
        load_settings(vector_backend="weaviate")
    with pytest.raises(SettingsError, match="TICKWIRE_WEAVIATE_GRPC_URL"):
        load_settings(vector_backend="weaviate", weaviate_url="http://w:8080", weaviate_grpc_url="grpc://w:50051")
