"""Contracts: what tickwire promises to the outside, declared once.

The message schemas (msgspec structs exactly as strict as ``schemas/*.json``),
every topic name and the topic catalog (``topics.yaml``), timeframes and each
broker's trading day, the indicators a bar carries, and the fields of a tick. Everything else builds on these.

May import: third-party libraries only (no other room of ``pipeline``).
"""
