"""The graph role: symbol correlation edges and strategy→symbol edges, per tenant.

:class:`GraphStore` (in :mod:`pipeline.graph.base`) is the contract agents and
the query API use; :class:`FalkorGraphStore` is the local stack's backend.
"""

from pipeline.graph.base import CorrelationEdge, GraphStore, Neighbor, StrategyEdge
from pipeline.graph.falkordb import FalkorGraphStore

__all__ = ["CorrelationEdge", "FalkorGraphStore", "GraphStore", "Neighbor", "StrategyEdge"]
