"""Runtime: how the stages run.

The topology (stages, their input topics, handlers and sinks; used by the
worker and by replay), the batch source and checkpoint of each stage, the
log-end probe behind honest lag, the read-only view of stage state, and the
factory that builds the Faust worker from settings (nothing happens at import).

May import: :mod:`agents`, :mod:`pipeline.derive`, :mod:`pipeline.sinks`, :mod:`pipeline.stores`,
:mod:`pipeline.core`, :mod:`pipeline.contracts`, :mod:`pipeline.config`.
"""
