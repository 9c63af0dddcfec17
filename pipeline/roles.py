"""Choosing the backend of each role from the settings.

Agents and the API only see the role interfaces (:class:`VectorStore`,
:class:`GraphStore`); this is the one place that knows which product is behind
them.
"""

from __future__ import annotations

from pipeline.config import Settings, SettingsError
from pipeline.embedding import DIMENSION
from pipeline.graph.base import GraphStore
from pipeline.vectors.base import VectorStore


def make_vector_store(settings: Settings) -> VectorStore:
    if settings.vector_backend == "pgvector":
        from pipeline.vectors.pgvector import PgVectorStore

        return PgVectorStore(settings.postgres_dsn, DIMENSION)
    raise SettingsError(f"TICKWIRE_VECTOR_BACKEND={settings.vector_backend}: this backend is not available in this build")


def make_graph_store(settings: Settings) -> GraphStore:
    if settings.graph_backend == "falkordb":
        if not settings.graph_url.startswith(("redis://", "rediss://")):
            raise SettingsError(f"TICKWIRE_GRAPH_URL must be redis:// for FalkorDB, got {settings.graph_url!r}")
        from pipeline.graph.falkordb import FalkorGraphStore

        return FalkorGraphStore(settings.graph_url)
    raise SettingsError(f"TICKWIRE_GRAPH_BACKEND={settings.graph_backend}: this backend is not available in this build")
