"""Readiness checks: each asks a server a real question in its own protocol.

Contract: a probe returns None when the server answered correctly within
``timeout`` seconds and raises (any exception, usually :class:`ProbeError`)
otherwise. Probes are blocking and may be called from any thread (the
PostgreSQL probe runs its own event loop, so it must not be called from a
thread that is already running one).
"""

from __future__ import annotations

import asyncio
import socket
import struct

import asyncpg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


class ProbeError(RuntimeError):
    """The server answered, but not as expected."""


def kafka_metadata(host: str, port: int, timeout: float) -> None:
    """Send a Kafka Metadata (v0) request and require a well-formed answer naming a broker."""
    correlation_id, client_id = 1729, b"tickwire-stack"
    request = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        answer = _recv_exact(sock, min(size, 1 << 20))
    got_id, brokers = struct.unpack(">ii", answer[:8])
    if got_id != correlation_id or brokers < 1:
        raise ProbeError(f"unexpected Metadata answer (correlation id {got_id}, {brokers} brokers)")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError("connection closed mid-answer")
        buf += chunk
    return bytes(buf)


def _redis(host: str, port: int, db: int, timeout: float, password: str | None) -> redis.Redis:
    return redis.Redis(
        host=host, port=port, db=db, password=password, socket_timeout=timeout, socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def redis_ping(host: str, port: int, db: int, timeout: float, password: str | None = None) -> None:
    """PING (after AUTH and SELECT ``db``) must answer PONG."""
    with _redis(host, port, db, timeout, password) as client:
        if client.ping() is not True:
            raise ProbeError("PING did not answer PONG")


GRAPH_PROBE_KEY = "tickwire:stack:probe"


def falkordb_query(host: str, port: int, timeout: float, password: str | None = None) -> None:
    """``GRAPH.QUERY`` of ``RETURN 1`` (on the graph :data:`GRAPH_PROBE_KEY`) must return 1."""
    with _redis(host, port, 0, timeout, password) as client:
        reply = client.execute_command("GRAPH.QUERY", GRAPH_PROBE_KEY, "RETURN 1")
    if reply[1] != [[1]]:
        raise ProbeError(f"GRAPH.QUERY RETURN 1 answered {reply!r}")


def postgres_select(host: str, port: int, user: str, database: str, timeout: float, password: str | None = None) -> None:
    """Connect as ``user`` (with ``password``) to ``database`` and ``SELECT 1``."""

    async def check() -> None:
        conn = await asyncpg.connect(host=host, port=port, user=user, password=password, database=database,
                                     timeout=timeout, ssl=False)
        try:
            if await conn.fetchval("SELECT 1", timeout=timeout) != 1:
                raise ProbeError("SELECT 1 did not return 1")
        finally:
            await conn.close(timeout=timeout)

    asyncio.run(check())
