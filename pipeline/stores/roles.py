"""Choosing the backend of each role from the settings.

Agents and the API only see the role interfaces (:class:`VectorStore`,
:class:`GraphStore`); this is the one place that knows which product is behind
them. Whether a backend's settings fit it (a URL of the right scheme, a
Weaviate URL at all) is checked when the settings are loaded
(:class:`~pipeline.config.Settings`), so a bad combination fails at start,
naming the setting, before anything is built here.
"""

from __future__ import annotations

from pipeline.config import Settings
from pipeline.derive.embedding import DIMENSION
from pipeline.stores.graph.base import GraphStore
from pipeline.stores.vectors.base import VectorStore


def make_vector_store(settings: Settings) -> VectorStore:
    """pgvector (in TICKWIRE_POSTGRES_DSN's database) or Weaviate (TICKWIRE_WEAVIATE_URL)."""
    if settings.vector_backend == "weaviate":
        from pipeline.stores.vectors.weaviate import WeaviateVectorStore

        return WeaviateVectorStore.from_settings(settings, DIMENSION)
    from pipeline.stores.vectors.pgvector import PgVectorStore

    return PgVectorStore(settings.postgres_dsn, DIMENSION)


def make_graph_store(settings: Settings) -> GraphStore:
    """FalkorDB (TICKWIRE_GRAPH_URL redis://) or ArangoDB (TICKWIRE_GRAPH_URL http(s)://)."""
    if settings.graph_backend == "arangodb":
        from pipeline.stores.graph.arangodb import ArangoGraphStore

        return ArangoGraphStore.from_settings(settings)
    from pipeline.stores.graph.falkordb import FalkorGraphStore

    return FalkorGraphStore(settings.graph_url)
