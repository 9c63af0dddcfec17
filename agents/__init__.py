"""The stages' agents: one module per stage, each small: consume → transform → sinks.

A module holds its stage's sink bundle (which sinks, in flush order) and its
handlers: plain functions ``handler(messages, sinks)`` over one decoded batch
that only buffer into sinks (no I/O; the stage's checkpoint writes). The
topology (:mod:`pipeline.runtime.topology`) routes each input topic to its
handlers; the worker runs them as Faust agents and replay calls them directly,
so both run the same code. A handler can be tried on a hand-made batch with
no server at all.

May import: :mod:`pipeline.derive`, :mod:`pipeline.sinks`, :mod:`pipeline.core`, :mod:`pipeline.contracts`.
"""
