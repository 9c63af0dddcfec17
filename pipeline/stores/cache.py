"""The hot cache's client (Valkey, DragonflyDB): one place that knows its URL, credentials and TLS settings."""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis

from pipeline.config import Settings


def cache_client(settings: Settings, **options: Any) -> redis.Redis:
    """An asyncio client of the cache (``TICKWIRE_CACHE_URL``, its user/password, its CA for ``rediss://``);
    ``options`` are redis-py's (timeouts, retries)."""
    if settings.cache_ca_file is not None:
        options.setdefault("ssl_ca_certs", str(settings.cache_ca_file))
    return redis.Redis.from_url(settings.cache_connection_url, **options)
