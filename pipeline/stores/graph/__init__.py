"""The graph role: symbol correlation edges and strategy→symbol edges, per tenant.

:class:`GraphStore` (:mod:`pipeline.stores.graph.base`) is the contract that agents and
the query API use. Backends live in their own modules and are imported from
there, so this package needs no backend's client: the local stack's is
:class:`pipeline.stores.graph.falkordb.FalkorGraphStore` (``falkordb`` is in the
``local`` extra).
"""

from pipeline.stores.graph.base import CorrelationEdge, GraphStore, Neighbor, StrategyEdge

__all__ = ["CorrelationEdge", "GraphStore", "Neighbor", "StrategyEdge"]
