"""The vector role on Weaviate (the production backend), through weaviate-client v4's async client.

Layout: **one collection** (``TickwirePattern`` by default) with multi-tenancy
enabled, so every tickwire tenant is its own Weaviate tenant (its own shard):
no query can reach another tenant's objects, and one tenant's vectors never
crowd another's out of a nearest-neighbour search. Tenants are created on
demand, on a tenant's first upsert (auto-activation is on, so a tenant an
operator set inactive is woken by the next access).

Objects: bring-your-own vectors (no vectorizer module) in one named vector,
``embedding`` (HNSW, cosine distance: 0 = same direction, 2 = opposite, as
pgvector's ``<=>``). Properties ``broker``, ``symbol``, ``timeframe`` (text,
``field`` tokenization so equality is exact on the whole name), ``window_end``
(int, range-indexed), ``close``, ``volatility``, ``forward_return`` (numbers;
``forward_return`` absent until recorded, null state indexed so
``with_forward_return_only`` is a filter). The object UUID is
:attr:`PatternKey.id`, so every write is an upsert. The collection's
description records the dimension (``dimension=N``): Weaviate's schema has no
vector length, and :meth:`WeaviateVectorStore.start` refuses a collection made
for another dimension or without multi-tenancy.

Writes:

- :meth:`WeaviateVectorStore.upsert` is a gRPC batch per tenant (chunks of
  :data:`OBJECTS_PER_BATCH`). A batch replaces whole objects, so before it the
  stored ``forward_return`` of the keys written without one is read (one
  by-id fetch per tenant) and carried over: a recorded forward return is
  never erased. Every object's result is checked: one failed object fails the
  call (:class:`WeaviateWriteError`), it is never dropped silently.
- :meth:`WeaviateVectorStore.set_forward_returns` is a partial update (REST
  ``PATCH``, a server-side merge of the one property) per object, at most
  :data:`UPDATE_CONCURRENCY` at a time; 404 (unknown key) is ignored.

Differences from :class:`~pipeline.stores.vectors.pgvector.PgVectorStore` that the
role contract allows or that Weaviate imposes:

- Weaviate has no multi-object transaction: a failed ``upsert`` or
  ``set_forward_returns`` may have applied a subset (writing it again is
  safe; the checkpoint does exactly that). The forward-return carry-over is a
  read then a write: a ``set_forward_returns`` of the same key *between* them
  is lost. tickwire never does that concurrently (one sink of one worker
  writes a series' patterns and their returns, one after the other).
- Tenant names become Weaviate tenant names, so they must match the message
  schema's tenant pattern (they always do: they come from validated
  messages); another name raises :class:`ValueError`.
- A search of a tenant Weaviate does not know returns ``[]`` (the tenant is
  looked up once per process; known tenants are remembered, since tickwire
  never deletes one).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import defaultdict
from typing import Any
from urllib.parse import urlsplit

import weaviate
from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
from weaviate.classes.data import DataObject
from weaviate.classes.init import AdditionalConfig, Auth, Timeout
from weaviate.classes.query import Filter, MetadataQuery
from weaviate.classes.tenants import Tenant
from weaviate.collections import CollectionAsync
from weaviate.exceptions import UnexpectedStatusCodeError

from pipeline.config import Settings
from pipeline.contracts.schemas import TENANT
from pipeline.stores.vectors.base import Pattern, PatternKey, PatternMatch, VectorStore

#: Weaviate collection (class) names: an upper-case letter, then letters, digits, underscores.
COLLECTION_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]{0,63}$")
#: The named vector that holds the embedding.
VECTOR_NAME = "embedding"
#: Weaviate's gRPC port when ``grpc_url`` is not given.
DEFAULT_GRPC_PORT = 50051
#: Objects per gRPC batch request (36 floats + 6 properties is ~0.3 kB an object).
OBJECTS_PER_BATCH = 1000
#: Forward-return updates (one PATCH each) in flight at once.
UPDATE_CONCURRENCY = 16
#: Weaviate's HNSW indexes vectors of up to this many dimensions (the same bound as pgvector's, for one contract).
MAX_DIMENSION = 2000

_DIMENSION_NOTE = re.compile(r"\bdimension=(\d+)\b")
_RETURNED = ["broker", "symbol", "timeframe", "window_end", "close", "volatility", "forward_return"]


class WeaviateWriteError(RuntimeError):
    """Weaviate did not accept every object of a batch; the message names the first failures."""


def _endpoint(url: str, default_port: int | None = None) -> tuple[str, int, bool]:
    """(host, port, secure) of an ``http(s)://host[:port]`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected http(s)://host[:port], got {url!r}")
    secure = parts.scheme == "https"
    port = parts.port or default_port or (443 if secure else 80)
    return parts.hostname, port, secure


def _weaviate_tenant(tenant: object) -> str:
    """``tenant`` as a Weaviate tenant name; :class:`ValueError` unless it matches the schema's tenant pattern."""
    if not isinstance(tenant, str):
        raise ValueError(f"tenant must be a str, got {type(tenant).__name__}")
    try:
        TENANT.check("tenant", tenant)
    except ValueError:
        raise ValueError(f"tenant must match {TENANT.regex!r} (it names a Weaviate tenant), got {tenant!r}") from None
    return tenant


def _number(value: object) -> float:
    """A number Weaviate returned (an ``int`` or a ``float``: the client's property values are typed as any field)."""
    if isinstance(value, (int, float)):
        return float(value)
    raise TypeError(f"Weaviate returned {value!r} where a number was expected")


def _integer(value: object) -> int:
    """An INT property Weaviate returned, as an ``int``."""
    if isinstance(value, (int, float)):
        return int(value)
    raise TypeError(f"Weaviate returned {value!r} where an integer was expected")


class WeaviateVectorStore(VectorStore):
    """:class:`VectorStore` in one multi-tenant Weaviate collection.

    ``url`` is the REST endpoint (``http(s)://host:port``), ``grpc_url`` the
    gRPC one (default: the same host on port 50051, TLS if ``url`` is https).
    ``api_key`` is sent as a bearer token and never logged.
    """

    def __init__(
        self,
        url: str,
        dimension: int,
        *,
        grpc_url: str | None = None,
        api_key: str | None = None,
        collection: str = "TickwirePattern",
        timeout_s: float = 30.0,
    ) -> None:
        if isinstance(dimension, bool) or not isinstance(dimension, int) or not 1 <= dimension <= MAX_DIMENSION:
            raise ValueError(f"dimension must be an int in 1..{MAX_DIMENSION}, got {dimension!r}")
        if not COLLECTION_NAME.fullmatch(collection):
            raise ValueError(f"collection must match {COLLECTION_NAME.pattern}, got {collection!r}")
        self._http = _endpoint(url)
        if grpc_url is None:
            self._grpc = (self._http[0], DEFAULT_GRPC_PORT, self._http[2])
        else:
            self._grpc = _endpoint(grpc_url, DEFAULT_GRPC_PORT)
        self._api_key = api_key
        self._dimension = dimension
        self._name = collection
        self._timeout_s = timeout_s
        self._client: weaviate.WeaviateAsyncClient | None = None
        self._tenants: set[str] = set()  # tenants known to exist (never deleted by tickwire)
        self._tenant_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, dimension: int) -> WeaviateVectorStore:
        if settings.weaviate_url is None:
            raise ValueError("TICKWIRE_WEAVIATE_URL is not set")
        key = settings.weaviate_api_key
        return cls(
            settings.weaviate_url,
            dimension,
            grpc_url=settings.weaviate_grpc_url,
            api_key=None if key is None else key.get_secret_value(),
        )

    @property
    def dimension(self) -> int:
        return self._dimension

    # lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        if self._client is not None:
            return
        (http_host, http_port, http_secure), (grpc_host, grpc_port, grpc_secure) = self._http, self._grpc
        timeout = int(max(1, self._timeout_s))
        client = weaviate.use_async_with_custom(
            http_host=http_host,
            http_port=http_port,
            http_secure=http_secure,
            grpc_host=grpc_host,
            grpc_port=grpc_port,
            grpc_secure=grpc_secure,
            auth_credentials=None if self._api_key is None else Auth.api_key(self._api_key),
            additional_config=AdditionalConfig(timeout=Timeout(init=timeout, query=timeout, insert=timeout)),
            # The client's own init checks also ask PyPI for its latest version: no worker should phone
            # out at start. The REST and gRPC endpoints are checked here instead (is_live).
            skip_init_checks=True,
        )
        try:
            await client.connect()
            if not await client.is_live():
                raise ConnectionError(f"Weaviate is not live at {self._where()} (REST and gRPC are both needed)")
            await self._ensure_collection(client)
        except BaseException:
            await client.close()
            raise
        self._client = client

    async def _ensure_collection(self, client: weaviate.WeaviateAsyncClient) -> None:
        """Create the collection if missing (a concurrent creator is fine); refuse an incompatible one."""
        if not await client.collections.exists(self._name):
            try:
                await client.collections.create(
                    self._name,
                    description=f"tickwire pattern embeddings, dimension={self._dimension}",
                    multi_tenancy_config=Configure.multi_tenancy(
                        enabled=True, auto_tenant_creation=False, auto_tenant_activation=True
                    ),
                    vector_config=Configure.Vectors.self_provided(
                        name=VECTOR_NAME,
                        vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE),
                    ),
                    inverted_index_config=Configure.inverted_index(index_null_state=True),
                    properties=[
                        Property(name="broker", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                        Property(name="symbol", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                        Property(name="timeframe", data_type=DataType.TEXT, tokenization=Tokenization.FIELD),
                        Property(name="window_end", data_type=DataType.INT, index_range_filters=True),
                        Property(name="close", data_type=DataType.NUMBER),
                        Property(name="volatility", data_type=DataType.NUMBER),
                        Property(name="forward_return", data_type=DataType.NUMBER),
                    ],
                )
                return
            except UnexpectedStatusCodeError:
                if not await client.collections.exists(self._name):
                    raise
                # another process created it meanwhile: check it like any existing one
        config = await client.collections.use(self._name).config.get()
        note = _DIMENSION_NOTE.search(config.description or "")
        if note is None or int(note.group(1)) != self._dimension:
            found = "no recorded dimension" if note is None else f"dimension {note.group(1)}"
            raise ValueError(
                f"Weaviate collection {self._name!r} holds {found}, not {self._dimension}: "
                "use another collection for another embedding"
            )
        if not config.multi_tenancy_config.enabled:
            raise ValueError(f"Weaviate collection {self._name!r} exists without multi-tenancy: tickwire needs it")
        vectors = config.vector_config or {}
        if VECTOR_NAME not in vectors or vectors[VECTOR_NAME].vector_index_config.distance_metric != VectorDistances.COSINE:
            raise ValueError(f"Weaviate collection {self._name!r} has no cosine vector named {VECTOR_NAME!r}")

    async def close(self) -> None:
        client, self._client = self._client, None
        self._tenants.clear()
        if client is not None:
            await client.close()

    async def ping(self) -> float:
        client = self._started()
        began = time.perf_counter()
        if not await client.is_live():
            raise ConnectionError(f"Weaviate is not live at {self._where()}")
        return time.perf_counter() - began

    def _where(self) -> str:
        return f"{self._http[0]}:{self._http[1]} (gRPC {self._grpc[0]}:{self._grpc[1]})"

    def _started(self) -> weaviate.WeaviateAsyncClient:
        if self._client is None:
            raise RuntimeError("WeaviateVectorStore is not started: await start() first")
        return self._client

    def _collection(self, tenant: str) -> CollectionAsync:
        return self._started().collections.use(self._name).with_tenant(tenant)

    # tenants --------------------------------------------------------------

    def _check_tenant(self, tenant: str) -> None:
        _weaviate_tenant(tenant)

    async def _existing_tenants(self, tenants: set[str]) -> set[str]:
        """Which of ``tenants`` exist in Weaviate (asking only about those not known yet)."""
        unknown = sorted(tenants - self._tenants)
        if unknown:
            found = await self._started().collections.use(self._name).tenants.get_by_names(unknown)
            self._tenants.update(found)
        return tenants & self._tenants

    async def _ensure_tenants(self, tenants: set[str]) -> None:
        """Create the tenants that do not exist yet (safe against concurrent creators)."""
        async with self._tenant_lock:
            missing = sorted(tenants - await self._existing_tenants(tenants))
            if not missing:
                return
            collection = self._started().collections.use(self._name)
            try:
                await collection.tenants.create([Tenant(name=name) for name in missing])
            except UnexpectedStatusCodeError:
                # another process may have created some of them meanwhile
                if await self._existing_tenants(set(missing)) != set(missing):
                    raise
            self._tenants.update(missing)

    # writes ---------------------------------------------------------------

    async def _upsert(self, patterns: list[Pattern]) -> None:
        by_tenant: dict[str, list[Pattern]] = defaultdict(list)
        for pattern in patterns:
            by_tenant[pattern.key.tenant].append(pattern)
        await self._ensure_tenants(set(by_tenant))
        for tenant, mine in by_tenant.items():
            collection = self._collection(tenant)
            stored = await self._stored_forward_returns(collection, [p.key for p in mine if p.forward_return is None])
            objects = []
            for pattern in mine:
                key = pattern.key
                properties: dict[str, Any] = {
                    "broker": key.broker,
                    "symbol": key.symbol,
                    "timeframe": key.timeframe,
                    "window_end": key.window_end_ms,
                    "close": pattern.close,
                    "volatility": pattern.volatility,
                }
                forward_return = pattern.forward_return
                if forward_return is None:
                    forward_return = stored.get(key.id)
                if forward_return is not None:
                    properties["forward_return"] = forward_return
                objects.append(DataObject(properties=properties, uuid=key.id, vector={VECTOR_NAME: list(pattern.vector)}))
            for start in range(0, len(objects), OBJECTS_PER_BATCH):
                chunk = objects[start : start + OBJECTS_PER_BATCH]
                result = await collection.data.insert_many(chunk)
                if result.has_errors:
                    failures = sorted(result.errors.items())
                    shown = "; ".join(f"{e.original_uuid}: {e.message}" for _, e in failures[:3])
                    raise WeaviateWriteError(
                        f"Weaviate refused {len(failures)} of {len(chunk)} objects of tenant {tenant!r}: {shown}"
                    )

    async def _stored_forward_returns(self, collection: CollectionAsync, keys: list[PatternKey]) -> dict[uuid.UUID, float]:
        """The recorded forward returns of those of ``keys`` that are stored (by object UUID)."""
        found: dict[uuid.UUID, float] = {}
        for start in range(0, len(keys), OBJECTS_PER_BATCH):
            chunk = keys[start : start + OBJECTS_PER_BATCH]
            response = await collection.query.fetch_objects(
                filters=Filter.by_id().contains_any([key.id for key in chunk]),
                limit=len(chunk),
                return_properties=["forward_return"],
            )
            for obj in response.objects:
                value = obj.properties.get("forward_return")
                if value is not None:
                    found[obj.uuid] = _number(value)
        return found

    async def _set_forward_returns(self, latest: dict[PatternKey, float]) -> None:
        tenants = await self._existing_tenants({key.tenant for key in latest})
        slots = asyncio.Semaphore(UPDATE_CONCURRENCY)

        async def update(key: PatternKey, value: float) -> None:
            async with slots:
                try:
                    await self._collection(key.tenant).data.update(uuid=key.id, properties={"forward_return": value})
                except UnexpectedStatusCodeError as exc:
                    if exc.status_code != 404:  # an unknown key is ignored
                        raise

        try:
            async with asyncio.TaskGroup() as group:
                for key, value in latest.items():
                    if key.tenant in tenants:  # a tenant Weaviate does not know holds no pattern
                        group.create_task(update(key, value))
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None

    # reads ----------------------------------------------------------------

    async def _search(
        self,
        tenant: str,
        query: list[float],
        k: int,
        *,
        symbol: str | None,
        timeframe: str | None,
        broker: str | None,
        before_ms: int | None,
        with_forward_return_only: bool,
    ) -> list[PatternMatch]:
        if not await self._existing_tenants({tenant}):
            return []
        conditions: list[Any] = []
        if symbol is not None:
            conditions.append(Filter.by_property("symbol").equal(symbol))
        if timeframe is not None:
            conditions.append(Filter.by_property("timeframe").equal(timeframe))
        if broker is not None:
            conditions.append(Filter.by_property("broker").equal(broker))
        if before_ms is not None:
            conditions.append(Filter.by_property("window_end").less_than(int(before_ms)))
        if with_forward_return_only:
            conditions.append(Filter.by_property("forward_return").is_none(False))
        response = await self._collection(tenant).query.near_vector(
            near_vector=query,
            target_vector=VECTOR_NAME,
            limit=k,
            filters=Filter.all_of(conditions) if conditions else None,
            return_metadata=MetadataQuery(distance=True),
            return_properties=_RETURNED,
        )
        matches = []
        for obj in response.objects:
            p = obj.properties
            forward_return = p.get("forward_return")
            matches.append(
                PatternMatch(
                    key=PatternKey(tenant, str(p["broker"]), str(p["symbol"]), str(p["timeframe"]), _integer(p["window_end"])),
                    distance=_number(obj.metadata.distance),
                    forward_return=None if forward_return is None else _number(forward_return),
                    close=_number(p["close"]),
                    volatility=_number(p["volatility"]),
                )
            )
        # the same order as pgvector's: by distance, then the newest window first
        matches.sort(key=lambda m: (m.distance, -m.key.window_end_ms))
        return matches
