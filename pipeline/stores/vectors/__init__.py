"""The vector role: pattern embeddings upserted by deterministic id, searched per tenant.

:mod:`pipeline.stores.vectors.base` holds the interface and its contracts,
:mod:`pipeline.stores.vectors.pgvector` the PostgreSQL + pgvector backend.
"""

from pipeline.stores.vectors.base import (
    MAX_K,
    TICKWIRE_PATTERN_NAMESPACE,
    Pattern,
    PatternKey,
    PatternMatch,
    VectorStore,
)
from pipeline.stores.vectors.pgvector import PgVectorStore

__all__ = [
    "MAX_K",
    "TICKWIRE_PATTERN_NAMESPACE",
    "Pattern",
    "PatternKey",
    "PatternMatch",
    "PgVectorStore",
    "VectorStore",
]

