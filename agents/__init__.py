"""Faust agents: one module per agent, each consume -> transform -> sinks."""
