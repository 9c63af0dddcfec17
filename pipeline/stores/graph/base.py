"""The graph role: edge types and the :class:`GraphStore` contract.

The graph holds, per tenant, two kinds of edges:

* symbol–symbol **correlation** edges (:class:`CorrelationEdge`): the Pearson
  correlation of two symbols' rolling returns of closed candle bars on one
  timeframe, with the end of the window it was computed over and its sample
  count. Correlation is symmetric, so an edge is stored once, with ``a < b``.
* strategy→symbol **signal** edges (:class:`StrategyEdge`): how many signals a
  strategy emitted on a symbol, the last action, the mean confidence and the
  time of the last signal. The writer computes these aggregates from
  deduplicated stored signals and writes them as absolute values, never as
  increments, so writing an edge again (redelivery, replay) changes nothing.

Nodes are ``(tenant, symbol)`` and ``(tenant, strategy)``. The broker is not
part of the graph: a symbol is the same instrument across a tenant's brokers.
Tenants never share anything: no write or query of one tenant can see another's
nodes or edges.

Both writes are idempotent upserts keyed by a deterministic identity, with a
*newer wins* rule so that an older recomputation arriving late (redelivery,
replay, a slow writer) never overwrites a newer one. :class:`GraphStore`
validates every argument and collapses duplicate identities within one call
(keeping the winner) before a backend sees them, so every backend gets the
same, already checked, input.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Hashable, Sequence, TypeVar

from pipeline.contracts.schemas import TENANT

#: Bounds of :meth:`GraphStore.neighbors`' ``depth``.
MIN_DEPTH = 1
MAX_DEPTH = 5

E = TypeVar("E")


def check_tenant(tenant: object) -> str:
    """Return ``tenant`` if it is a valid tenant name (as in the message schemas), else raise ValueError."""
    if not isinstance(tenant, str):
        raise ValueError(f"tenant must be a str, got {type(tenant).__name__}")
    try:
        TENANT.check("tenant", tenant)
    except ValueError:
        raise ValueError(f"tenant must match {TENANT.regex!r}, got {tenant!r}") from None
    return tenant


def _check_name(parameter: str, value: object) -> None:
    """A node name or label: any non-empty str (backends pass it as a query parameter, never as query text)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{parameter} must be a non-empty str, got {value!r}")


def _check_int(parameter: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{parameter} must be an integer >= {minimum}, got {value!r}")


def _check_real(parameter: str, value: object, low: float, high: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < low  # numbers.Real declares < and <= only
        or not value <= high
    ):
        raise ValueError(f"{parameter} must be a finite number in [{low:g}, {high:g}], got {value!r}")


@dataclass(frozen=True)
class CorrelationEdge:
    """Correlation of symbols ``a`` and ``b`` (``a < b``) on ``timeframe``.

    Identity: ``(tenant, a, b, timeframe)``. ``weight`` is the Pearson
    correlation in [-1, 1]; ``window_end_ms`` the end (epoch ms) of the window
    of closed bars it was computed over; ``samples`` the number of return
    pairs (at least 2, below which Pearson is undefined). Build one from an
    unordered pair with :meth:`between`.
    """

    tenant: str
    a: str
    b: str
    timeframe: str
    weight: float
    window_end_ms: int
    samples: int

    def __post_init__(self) -> None:
        check_tenant(self.tenant)
        _check_name("a", self.a)
        _check_name("b", self.b)
        if not self.a < self.b:
            raise ValueError(f"a must sort before b (use CorrelationEdge.between), got a={self.a!r} b={self.b!r}")
        _check_name("timeframe", self.timeframe)
        _check_real("weight", self.weight, -1.0, 1.0)
        _check_int("window_end_ms", self.window_end_ms, 0)
        _check_int("samples", self.samples, 2)

    @classmethod
    def between(
        cls, tenant: str, x: str, y: str, timeframe: str, weight: float, window_end_ms: int, samples: int
    ) -> CorrelationEdge:
        """The edge between ``x`` and ``y`` in either order; ``x == y`` is a ValueError."""
        if x == y:
            raise ValueError(f"a symbol has no correlation edge with itself: {x!r}")
        a, b = (x, y) if x < y else (y, x)
        return cls(tenant, a, b, timeframe, weight, window_end_ms, samples)

    @property
    def identity(self) -> tuple[str, str, str, str]:
        return (self.tenant, self.a, self.b, self.timeframe)


@dataclass(frozen=True)
class StrategyEdge:
    """Aggregates of ``strategy``'s signals on ``symbol``.

    Identity: ``(tenant, strategy, symbol)``. All values are absolute (computed
    by the writer from the deduplicated stored signals): ``signals`` >= 1,
    ``last_action`` the action of the newest signal, ``mean_confidence`` in
    [0, 1], ``last_time_ms`` the newest signal's ``time_msc``.
    """

    tenant: str
    strategy: str
    symbol: str
    signals: int
    last_action: str
    mean_confidence: float
    last_time_ms: int

    def __post_init__(self) -> None:
        check_tenant(self.tenant)
        _check_name("strategy", self.strategy)
        _check_name("symbol", self.symbol)
        _check_int("signals", self.signals, 1)
        _check_name("last_action", self.last_action)
        _check_real("mean_confidence", self.mean_confidence, 0.0, 1.0)
        _check_int("last_time_ms", self.last_time_ms, 0)

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.tenant, self.strategy, self.symbol)


@dataclass(frozen=True)
class Neighbor:
    """A symbol reached from the start of :meth:`GraphStore.neighbors`.

    ``depth`` is the fewest hops it takes; ``via`` the symbol it was reached
    from on that last hop and ``weight``/``timeframe`` that hop's edge (the
    correlation of ``via`` and ``symbol``, not a product along the path).
    When several edges reach it at that depth, the one with the greatest
    ``|weight|`` is reported (ties: the smaller ``via``, then ``timeframe``).
    """

    symbol: str
    depth: int
    weight: float
    timeframe: str
    via: str


def _newest(edges: Sequence[E], identity: Callable[[E], Hashable], rank: Callable[[E], tuple[int, ...]]) -> list[E]:
    """One edge per identity: the greatest ``rank``, the later one in ``edges`` on a tie (first-seen order)."""
    best: dict[Hashable, E] = {}
    for edge in edges:
        key = identity(edge)
        held = best.get(key)
        if held is None or rank(edge) >= rank(held):
            best[key] = edge
    return list(best.values())


def _correlation_rank(edge: CorrelationEdge) -> tuple[int]:
    """Newer-wins order of correlation edges of one identity: by ``window_end_ms``."""
    return (edge.window_end_ms,)


def _strategy_rank(edge: StrategyEdge) -> tuple[int, int]:
    """Newer-wins order of strategy edges of one identity: by ``last_time_ms``, then ``signals``."""
    return (edge.last_time_ms, edge.signals)


class GraphStore(ABC):
    """The graph role. Backends implement the ``_``-prefixed hooks and the lifecycle.

    The public methods validate their arguments (a ValueError names the bad
    parameter) and, for writes, keep one edge per identity (the winner under
    the newer-wins rule, so a batch behaves like its edges written one by one
    in order) before calling the backend. Every method may be retried after a
    failure: writes are idempotent and reads have no effects.
    """

    # lifecycle ------------------------------------------------------------

    @abstractmethod
    async def start(self) -> None:
        """Connect and check the store answers (raise if it does not). Idempotent.

        Per-tenant structures (indexes) may be created on a tenant's first write.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent; the store may be started again."""

    @abstractmethod
    async def ping(self) -> float:
        """Round-trip latency of a trivial request to the store, in seconds; raises if it is down."""

    # writes ---------------------------------------------------------------

    async def upsert_correlations(self, edges: Sequence[CorrelationEdge]) -> None:
        """Write correlation edges (any tenants); idempotent.

        Identity ``(tenant, a, b, timeframe)``: at most one edge each, created
        with its nodes on first write. An edge whose ``window_end_ms`` is >= the
        stored one replaces ``weight``, ``window_end_ms`` and ``samples`` (equal
        window: the later write wins); an older one changes nothing. Returns once
        the store has durably accepted all of them; raises otherwise (then any
        subset may have been applied, and writing them again is safe).
        """
        for edge in edges:
            if not isinstance(edge, CorrelationEdge):
                raise ValueError(f"edges must be CorrelationEdge, got {type(edge).__name__}")
        newest = _newest(edges, lambda e: e.identity, _correlation_rank)
        if newest:
            await self._upsert_correlations(newest)

    async def upsert_strategy_edges(self, edges: Sequence[StrategyEdge]) -> None:
        """Write strategy→symbol edges (any tenants); idempotent.

        Identity ``(tenant, strategy, symbol)``: at most one edge each, created
        with its nodes on first write. An edge replaces all four stored values
        when its ``(last_time_ms, signals)`` is >= the stored pair, compared in
        that order: a newer last signal wins, and at the same last signal the
        count computed from more signals (a late, out-of-order signal) wins; an
        equal pair replaces (the later write wins). Otherwise nothing changes.
        Durability and failure as in :meth:`upsert_correlations`.
        """
        for edge in edges:
            if not isinstance(edge, StrategyEdge):
                raise ValueError(f"edges must be StrategyEdge, got {type(edge).__name__}")
        newest = _newest(edges, lambda e: e.identity, _strategy_rank)
        if newest:
            await self._upsert_strategy_edges(newest)

    # reads ----------------------------------------------------------------

    async def neighbors(
        self,
        tenant: str,
        symbol: str,
        *,
        depth: int = 1,
        min_weight: float = 0.0,
        timeframe: str | None = None,
    ) -> list[Neighbor]:
        """Symbols reachable from ``symbol`` within ``depth`` hops over correlation edges.

        Only edges with ``|weight| >= min_weight`` (so strong negative
        correlations count) and, if ``timeframe`` is given, of that timeframe
        are traversed: a weaker edge anywhere on a path blocks it. The start
        symbol is never returned. Each symbol appears once, as described by
        :class:`Neighbor` (fewest hops, then strongest last edge). Sorted by
        depth, then ``|weight|`` descending, then symbol. An unknown tenant or
        symbol gives ``[]``. ``depth`` must be an integer in 1..5,
        ``min_weight`` a number in [0, 1].
        """
        check_tenant(tenant)
        _check_name("symbol", symbol)
        if isinstance(depth, bool) or not isinstance(depth, int) or not MIN_DEPTH <= depth <= MAX_DEPTH:
            raise ValueError(f"depth must be an integer in {MIN_DEPTH}..{MAX_DEPTH}, got {depth!r}")
        _check_real("min_weight", min_weight, 0.0, 1.0)
        if timeframe is not None:
            _check_name("timeframe", timeframe)
        found = await self._breadth_first(tenant, symbol, depth, float(min_weight), timeframe)
        return sorted(found, key=lambda n: (n.depth, -abs(n.weight), n.symbol))

    async def _breadth_first(
        self, tenant: str, symbol: str, depth: int, min_weight: float, timeframe: str | None
    ) -> list[Neighbor]:
        """One :meth:`_next_level` query per level rather than one variable-length path query
        (which enumerates every path and explodes past depth 3). Each level sees the graph as
        it is then: a concurrent write between levels can show in the result."""
        seen = [symbol]
        frontier = [symbol]
        found: list[Neighbor] = []
        for level in range(1, depth + 1):
            best: dict[str, Neighbor] = {}
            for name, via, weight, edge_timeframe in await self._next_level(tenant, frontier, seen, min_weight, timeframe):
                candidate = Neighbor(name, level, float(weight), edge_timeframe, via)
                held = best.get(name)
                if held is None or _stronger(candidate, held):
                    best[name] = candidate
            if not best:
                break
            found.extend(best.values())
            frontier = list(best)
            seen.extend(frontier)
        return found

    async def strategies(self, tenant: str, symbol: str) -> list[StrategyEdge]:
        """The strategy edges into ``symbol``, sorted by strategy; ``[]`` if none."""
        check_tenant(tenant)
        _check_name("symbol", symbol)
        found = await self._strategies(tenant, symbol)
        return sorted(found, key=lambda e: e.strategy)

    async def correlations(self, tenant: str, symbol: str, *, timeframe: str | None = None) -> list[CorrelationEdge]:
        """The correlation edges that touch ``symbol`` (of ``timeframe`` if given), as stored.

        Sorted by timeframe, then the other symbol; ``[]`` if none.
        """
        check_tenant(tenant)
        _check_name("symbol", symbol)
        if timeframe is not None:
            _check_name("timeframe", timeframe)
        found = await self._correlations(tenant, symbol, timeframe)
        return sorted(found, key=lambda e: (e.timeframe, e.b if e.a == symbol else e.a))

    # backend hooks (arguments already validated) ----------------------------

    @abstractmethod
    async def _upsert_correlations(self, edges: list[CorrelationEdge]) -> None:
        """Apply :meth:`upsert_correlations` to edges of distinct identities."""

    @abstractmethod
    async def _upsert_strategy_edges(self, edges: list[StrategyEdge]) -> None:
        """Apply :meth:`upsert_strategy_edges` to edges of distinct identities."""

    @abstractmethod
    async def _next_level(
        self, tenant: str, frontier: list[str], seen: list[str], min_weight: float, timeframe: str | None
    ) -> list[tuple[str, str, float, str]]:
        """``(symbol, via, weight, timeframe)`` of every correlation edge from a ``frontier`` symbol
        (``via``) to a symbol not in ``seen``, with ``|weight| >= min_weight`` (and of ``timeframe``)."""

    @abstractmethod
    async def _strategies(self, tenant: str, symbol: str) -> list[StrategyEdge]:
        """:meth:`strategies`' edges, in any order."""

    @abstractmethod
    async def _correlations(self, tenant: str, symbol: str, timeframe: str | None) -> list[CorrelationEdge]:
        """:meth:`correlations`' edges, in any order."""


def _stronger(candidate: Neighbor, held: Neighbor) -> bool:
    """Whether ``candidate`` is the better last edge of one level (|weight|, then smaller via, timeframe)."""
    return (-abs(candidate.weight), candidate.via, candidate.timeframe) < (-abs(held.weight), held.via, held.timeframe)
