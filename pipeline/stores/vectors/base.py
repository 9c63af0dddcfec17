"""The vector role: pattern embeddings and a per-tenant similarity search.

When a candle bar closes, an agent embeds the recent price shape of
(tenant, broker, symbol, timeframe) ending at ``window_end_ms`` as a
fixed-length vector and upserts it; once the following bars are known it
records the window's forward return. :meth:`VectorStore.search` then answers
"what happened after shapes like this" for one tenant.

Contracts every backend keeps:
- A pattern's identity is its :class:`PatternKey`; :attr:`PatternKey.id` is a
  deterministic UUIDv5, identical across backends, so every write is an upsert
  and redelivery never makes a duplicate.
- A search only ever returns the vectors of the tenant it names.
- Vectors have exactly :attr:`VectorStore.dimension` finite components and a
  non-zero norm (cosine distance is undefined for the zero vector); anything
  else raises :class:`ValueError` before the store is touched.
"""

from __future__ import annotations

import math
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

#: Namespace of :attr:`PatternKey.id`. Never change it: stored ids derive from it.
TICKWIRE_PATTERN_NAMESPACE = uuid.UUID("6f1d8a52-3c4e-5b7a-9d0f-2e8c41a7b935")

#: The largest ``k`` a search accepts.
MAX_K = 1000

_FLOAT32_MAX = 3.4028234663852886e38  # vectors are stored as 32-bit floats


@dataclass(frozen=True)
class PatternKey:
    """Where a pattern comes from: a window of one series ending at ``window_end_ms``.

    Names must be non-empty and free of ``:`` (the separator of the id's name,
    as in topic keys), so distinct keys always have distinct ids.
    """

    tenant: str
    broker: str
    symbol: str
    timeframe: str
    window_end_ms: int

    def __post_init__(self) -> None:
        for field in ("tenant", "broker", "symbol", "timeframe"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value or ":" in value:
                raise ValueError(f"PatternKey.{field} must be a non-empty string without ':', got {value!r}")
        if isinstance(self.window_end_ms, bool) or not isinstance(self.window_end_ms, int):
            raise ValueError(f"PatternKey.window_end_ms must be an int, got {self.window_end_ms!r}")

    @property
    def id(self) -> uuid.UUID:
        """Deterministic id (UUIDv5): the same key always maps to the same stored pattern."""
        name = f"{self.tenant}:{self.broker}:{self.symbol}:{self.timeframe}:{self.window_end_ms}"
        return uuid.uuid5(TICKWIRE_PATTERN_NAMESPACE, name)


@dataclass(frozen=True)
class Pattern:
    """An embedded window and what is known about it; ``forward_return`` is None until recorded."""

    key: PatternKey
    vector: tuple[float, ...]
    close: float
    volatility: float
    forward_return: float | None = None


@dataclass(frozen=True)
class PatternMatch:
    """One search result: a stored pattern and its cosine distance (0 = same direction, 2 = opposite)."""

    key: PatternKey
    distance: float
    forward_return: float | None
    close: float
    volatility: float


def checked_vector(vector: Sequence[float], dimension: int) -> list[float]:
    """``vector`` as a list of floats, or :class:`ValueError` saying what is wrong with it."""
    values = [float(x) for x in vector]
    if len(values) != dimension:
        raise ValueError(f"vector has dimension {len(values)}, the store expects {dimension}")
    for i, x in enumerate(values):
        if not math.isfinite(x):
            raise ValueError(f"vector component {i} is {x} (NaN and infinity are not allowed)")
        if abs(x) > _FLOAT32_MAX:
            raise ValueError(f"vector component {i} is {x}, beyond the 32-bit float range vectors are stored in")
    if not any(values):
        raise ValueError("vector is all zeros: cosine distance is undefined for it")
    return values


def checked_number(value: float, what: str) -> float:
    """``value`` as a float, or :class:`ValueError` if it is NaN or infinite."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} is {number} (NaN and infinity are not allowed)")
    return number


class VectorStore(ABC):
    """Stores :class:`Pattern` s and finds the nearest ones of a tenant. Safe for concurrent use once started.

    Backends implement the ``_``-prefixed hooks and the lifecycle. The public
    methods validate their arguments (a :class:`ValueError` before the store is
    touched) and, for writes, merge repeated keys as sequential calls would,
    before calling the backend: every backend gets the same, already checked, input.
    """

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Length of every vector this store accepts."""

    @abstractmethod
    async def start(self) -> None:
        """Connect and create the schema if it is missing. Idempotent; safe if several processes start at once.

        Raises :class:`ValueError` if an existing schema holds vectors of another dimension.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent."""

    async def upsert(self, patterns: Sequence[Pattern]) -> None:
        """Write ``patterns`` (all or none). Idempotent by :attr:`PatternKey.id`.

        Re-upserting a key replaces its vector, ``close`` and ``volatility``; its
        ``forward_return`` is replaced only by a non-None value, so a recorded
        forward return is never erased by a later upsert without one. Within one
        call, a key given twice behaves as if the upserts were made in order.
        Raises :class:`ValueError` (nothing written) for a bad vector or a NaN/inf number.
        """
        # a repeated key merges as sequential upserts would
        merged: dict[PatternKey, Pattern] = {}
        for pattern in patterns:
            self._check_tenant(pattern.key.tenant)
            vector = tuple(checked_vector(pattern.vector, self.dimension))
            close = checked_number(pattern.close, "close")
            volatility = checked_number(pattern.volatility, "volatility")
            forward_return = pattern.forward_return
            if forward_return is not None:
                forward_return = checked_number(forward_return, "forward_return")
            elif pattern.key in merged:
                forward_return = merged[pattern.key].forward_return
            merged[pattern.key] = Pattern(pattern.key, vector, close, volatility, forward_return)
        if merged:
            await self._upsert(list(merged.values()))

    async def set_forward_returns(self, updates: Sequence[tuple[PatternKey, float]]) -> None:
        """Record forward returns of stored patterns (all or none). Idempotent; unknown keys are ignored.

        A key given twice keeps the last value. Raises :class:`ValueError` for a NaN/inf return.
        """
        latest: dict[PatternKey, float] = {}
        for key, value in updates:
            self._check_tenant(key.tenant)
            latest[key] = checked_number(value, "forward_return")
        if latest:
            await self._set_forward_returns(latest)

    async def search(
        self,
        tenant: str,
        vector: Sequence[float],
        k: int,
        *,
        symbol: str | None = None,
        timeframe: str | None = None,
        broker: str | None = None,
        before_ms: int | None = None,
        with_forward_return_only: bool = False,
    ) -> list[PatternMatch]:
        """Up to ``k`` (1..:data:`MAX_K`) patterns of ``tenant`` nearest to ``vector``, nearest first.

        Only ``tenant``'s patterns are ever considered. Optional filters: exact
        ``symbol``/``timeframe``/``broker``; ``before_ms`` keeps windows ending
        strictly before it (no look-ahead); ``with_forward_return_only`` keeps
        patterns whose forward return is recorded. Fewer than ``k`` results
        means fewer than ``k`` patterns match. The nearest neighbours may be
        approximate (an ANN index), the order of what is returned is exact.
        """
        if not isinstance(tenant, str) or not tenant:
            raise ValueError(f"tenant must be a non-empty string, got {tenant!r}")
        self._check_tenant(tenant)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ValueError(f"k must be an int in 1..{MAX_K}, got {k!r}")
        query = checked_vector(vector, self.dimension)
        return await self._search(
            tenant,
            query,
            k,
            symbol=symbol,
            timeframe=timeframe,
            broker=broker,
            before_ms=before_ms,
            with_forward_return_only=with_forward_return_only,
        )

    @abstractmethod
    async def ping(self) -> float:
        """Round-trip latency to the store in seconds; raises if it is down or not started."""

    # backend hooks (arguments already validated) ----------------------------

    def _check_tenant(self, tenant: str) -> None:
        """Raise :class:`ValueError` if the backend cannot hold ``tenant`` (a non-empty str).

        Called by every public method for each tenant it is given, before the rest of
        that pattern or search is checked. By default every such name is accepted.
        """

    @abstractmethod
    async def _upsert(self, patterns: list[Pattern]) -> None:
        """Apply :meth:`upsert` to checked patterns of distinct keys (at least one).

        Each ``vector`` has :attr:`dimension` finite floats, not all zero; numbers
        are finite floats; a ``forward_return`` of None means "keep the stored one".
        """

    @abstractmethod
    async def _set_forward_returns(self, latest: dict[PatternKey, float]) -> None:
        """Apply :meth:`set_forward_returns` to distinct keys (at least one) with finite returns."""

    @abstractmethod
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
        """:meth:`search` with a checked ``tenant``, ``query`` (a :func:`checked_vector`) and ``k``."""
