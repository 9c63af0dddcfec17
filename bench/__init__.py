"""tickwire's benchmarks (``tickwire bench``): throughput against a ceiling and a peer, latency, API speed, memory.

Everything runs on a private local stack started by the benchmark itself (own
ports, own state directory under /tmp) and stopped at the end. Every
contender runs in its own process, on the same preloaded topic, with a fresh
consumer group; the figures go to ``bench/results/<name>.json`` and a chart to
``bench/results/<name>.png``. See docs/performance.md for how to read them.
"""
