"""Core mechanics of the consume path, independent of any store.

Batches handed to agents, decoding with domain checks, dead-letter envelopes,
error classification (transient, permanent, unknown), retry with backoff and
jitter, circuit breakers, isolation of the records a store refuses, Kafka
client options, Prometheus metrics, the logging setup of every process
(formats, context fields, secrets masked) and the operator token.

May import: :mod:`pipeline.contracts`, :mod:`pipeline.config`.
"""
