"""The query API: what the pipeline stored, per tenant, over HTTP (``/v1``), plus ``/health`` (and the
probes ``/health/live``, ``/health/ready``), ``/metrics``, ``/openapi.json``, ``/docs`` and the web console
``/console``.

One set of aiohttp handlers serves in two places: inside the worker, on Faust's
aiohttp web server (:mod:`pipeline.api.in_worker`; with chDB only that process
can read ClickHouse), and as its own process, ``tickwire api``, when ClickHouse
is a server (:mod:`pipeline.api.server`).

Modules, one concept each:

- :mod:`~pipeline.api.routes` what a route is; :mod:`~pipeline.api.params` its
  parameters (parsing and OpenAPI schema from one declaration);
  :mod:`~pipeline.api.errors` the error answers; :mod:`~pipeline.api.app`
  wraps routes into handlers (auth, errors, metrics, JSON) and mounts them;
  :mod:`~pipeline.api.openapi` the document built from the routes;
  :mod:`~pipeline.api.docs_page` the interactive page rendered from it;
  :mod:`~pipeline.api.console_page` the web console (its files: ``console/``, package data).
- Resources: :mod:`~pipeline.api.ticks`, :mod:`~pipeline.api.streams` (the newest tick as
  server-sent events), :mod:`~pipeline.api.symbols` (a tenant's series), :mod:`~pipeline.api.candles`,
  :mod:`~pipeline.api.signals` (paged by :mod:`~pipeline.api.pages`),
  :mod:`~pipeline.api.performance` (the signals' outcomes per strategy),
  :mod:`~pipeline.api.patterns`, :mod:`~pipeline.api.graph`,
  :mod:`~pipeline.api.key_admin`.
- Access: :mod:`~pipeline.api.migrations` (the operational schema),
  :mod:`~pipeline.api.tenants`, :mod:`~pipeline.api.keys` (format, hashing,
  storage), :mod:`~pipeline.api.auth` (bearer keys to tenants, briefly cached).
- Containment (one client or tenant never slows or stops the others):
  :mod:`~pipeline.api.rate_limit` (requests per key),
  :mod:`~pipeline.api.query_slots` (concurrent store queries per tenant),
  :mod:`~pipeline.api.stream_slots` (open tick streams per key, tenant and process),
  :mod:`~pipeline.api.server_limits` (header-read and keep-alive timeouts,
  fixed answers to malformed requests, on both servers).
- Operations: :mod:`~pipeline.api.health` (the report and the probes), :mod:`~pipeline.api.context` (the
  stores the API reads), :mod:`~pipeline.cli.api`, :mod:`~pipeline.devstack.demo_api`.
"""
