"""The broker's latency floor: produce → a bare aiokafka consumer has the record.

Runs beside the worker during the latency measurement (:mod:`bench.latency`),
in its own process with its own consumer group and the worker's consumer
settings (:func:`bench.ceiling.make_consumer`), on the same topic and the same
ticks. For every tick stamped at or after the start it is given (the end of the
warm-up, in µs) it takes the time ``getmany`` handed it over minus its send
time (the µs stamp in ``volume``). No tickwire code is involved: whatever this
shows, a hot key cannot beat.

Run as ``python -m bench.consume_floor SECONDS`` with ``TICKWIRE_*``
variables: prints ``ready`` once its partitions are assigned, reads the start
(µs) as a line on stdin, and SECONDS later prints one JSON line of latency
percentiles (:func:`bench.stats.latency_summary`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import orjson

from bench.ceiling import make_consumer
from bench.stats import latency_summary
from pipeline.config import get_settings


async def run(seconds: float) -> dict[str, float]:
    settings = get_settings()
    consumer = make_consumer(settings)
    await consumer.start()
    latencies: list[float] = []
    try:
        while not consumer.assignment():
            await asyncio.sleep(0.05)
        print("ready", flush=True)
        start_us = int(await asyncio.to_thread(sys.stdin.readline))
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            fetched = await consumer.getmany(timeout_ms=settings.fetch_timeout_ms, max_records=settings.fetch_max_records)
            now = time.time_ns() // 1_000
            for records in fetched.values():
                for record in records:
                    stamp = int(orjson.loads(record.value)["volume"])
                    if stamp >= start_us:
                        latencies.append((now - stamp) / 1000)
    finally:
        await consumer.stop()
    return latency_summary(latencies)


def main() -> None:
    print(json.dumps(asyncio.run(run(float(sys.argv[1])))), flush=True)


if __name__ == "__main__":
    main()
