"""Keys of the hot cache: part of the contract (bridges and dashboards read them directly).

``tw:{tenant}:tick:{broker}:{symbol}`` is a hash with ``bid``, ``ask``, ``last``,
``volume``, ``flags``, ``time_msc`` and ``offset`` (the newest tick of the series);
``tw:{tenant}:signal-published:{id}`` marks a signal published to ``signals.enriched.v1``.
Every key starts with its tenant.
"""

from __future__ import annotations


def hot_key(tenant: str, broker: str, symbol: str) -> str:
    """The hash holding the newest tick of (tenant, broker, symbol)."""
    return f"tw:{tenant}:tick:{broker}:{symbol}"


def published_key(tenant: str, signal_id: str) -> str:
    """The marker of a signal already published enriched."""
    return f"tw:{tenant}:signal-published:{signal_id}"
