"""Stores: the roles tickwire writes and reads, each behind a narrow interface.

Analytics (ClickHouse or chDB, with its tables and sessions), the hot cache
connection, vectors (pgvector, Weaviate), graph (FalkorDB, ArangoDB), and the
connections a worker opens. An agent never knows which product is behind a role.

May import: :mod:`pipeline.core`, :mod:`pipeline.contracts`, :mod:`pipeline.config`.
"""
