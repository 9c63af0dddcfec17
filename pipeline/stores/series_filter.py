"""The SQL condition that selects the rows of some series (tenant, broker, symbol) of an analytics table.

``(tenant, broker, symbol) IN {series:Array(Tuple(...))}`` is exact but slow on
the LowCardinality columns: the store builds a tuple per row (measured on
chDB 4.4, 92k ticks: 36 ms, against 11 ms for one ``IN`` per column; the
derived stages run such reads at every checkpoint). One ``IN`` per column
selects the cross product of the series' tenants, brokers and symbols, which
is the set itself when the set is a "rectangle" (every tenant × broker ×
symbol of it is in it: the usual case, a checkpoint touching every active
series). :func:`series_filter` gives the per-column condition alone for a
rectangle and adds the exact tuple test only otherwise. So the condition is
always exact; only its cost depends on the set.
"""

from __future__ import annotations

from typing import Any, Collection

Series = tuple[str, str, str]

PARAMETERS = ("series_tenants", "series_brokers", "series_symbols", "series_exact")


def series_filter(series: Collection[Series], alias: str = "") -> tuple[str, dict[str, Any]]:
    """The condition that a row is of one of ``series`` (columns qualified by ``alias``, e.g. ``"t."``), and the
    server-side parameters it refers to (named as :data:`PARAMETERS`). ``series`` must not be empty."""
    if not series:
        raise ValueError("series_filter needs at least one series")
    tenants = sorted({s[0] for s in series})
    brokers = sorted({s[1] for s in series})
    symbols = sorted({s[2] for s in series})
    condition = (f"{alias}tenant IN {{series_tenants:Array(String)}} AND {alias}broker IN {{series_brokers:Array(String)}}"
                 f" AND {alias}symbol IN {{series_symbols:Array(String)}}")
    parameters: dict[str, Any] = {"series_tenants": tenants, "series_brokers": brokers, "series_symbols": symbols}
    distinct = set(series)
    if len(distinct) < len(tenants) * len(brokers) * len(symbols):
        condition += f" AND ({alias}tenant, {alias}broker, {alias}symbol) IN {{series_exact:Array(Tuple(String, String, String))}}"
        parameters["series_exact"] = sorted(distinct)
    return condition, parameters
