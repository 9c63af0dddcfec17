"""(d) The naive Faust agent: what Faust reaches when used the way its examples show.

One agent on the ticks topic, ``async for value in stream``: each value is
decoded (orjson) as it arrives and buffered; every ``SMALL_BATCH`` records the
buffer is inserted into ClickHouse and its newest ticks written to the hot
keys (:mod:`bench.sink_work`), directly from the agent. Offsets are Faust's
own: acknowledged as the agent moves on, committed by Faust's committer. After
RECORDS records the agent writes what is left, asks Faust to commit, prints a
:class:`~bench.contender.Measurement` (from its first record to that commit)
and stops the worker (SIGTERM, Faust's graceful stop).

Run as ``python -m bench.faust_naive RECORDS CHDB_DIR`` with ``TICKWIRE_*``
variables (broker, cache; the group is ``TICKWIRE_APP_ID``: Faust names its
group after the app).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import faust
import orjson
import redis.asyncio

from bench.contender import Measurement
from bench.sink_work import (
    insert_ticks,
    newest_per_key,
    open_analytics,
    stored_ticks,
    tick_columns,
    write_hot_keys_async,
)
from pipeline.config import get_settings
from pipeline.contracts.topics import TICKS_TOPIC

#: Records per ClickHouse insert and hot-key write.
SMALL_BATCH = 500

RECORDS, CHDB_DIR = int(sys.argv[1]), Path(sys.argv[2])
settings = get_settings()
started = time.perf_counter()
CHDB_DIR.parent.mkdir(parents=True, exist_ok=True)
app = faust.App(
    settings.app_id,
    broker=[f"kafka://{server}" for server in settings.bootstrap_servers],
    store="memory://",
    value_serializer="raw",
    consumer_auto_offset_reset="earliest",
    broker_session_timeout=settings.session_timeout_ms / 1000,
    broker_heartbeat_interval=max(settings.session_timeout_ms / 5000, 0.5),
    web_enabled=False,
    topic_partitions=12,
    datadir=str(CHDB_DIR.parent / "faust"),
)
ticks_topic = app.topic(TICKS_TOPIC, value_serializer="raw")


@app.agent(ticks_topic)
async def store(stream: Any) -> None:  # noqa: ANN401 - a Faust stream
    analytics = open_analytics(CHDB_DIR)
    cache = redis.asyncio.Redis.from_url(settings.cache_connection_url)
    values: list[dict[str, Any]] = []
    partitions: list[int] = []
    offsets: list[int] = []
    first = None
    seen = 0
    async for value in stream:
        if first is None:
            first = time.perf_counter()
        message = stream.current_event.message
        values.append(orjson.loads(value))
        partitions.append(message.partition)
        offsets.append(message.offset)
        seen += 1
        if len(values) >= SMALL_BATCH or seen >= RECORDS:
            insert_ticks(analytics, tick_columns(values, partitions, offsets))
            await write_hot_keys_async(cache, newest_per_key(values, offsets))
            values, partitions, offsets = [], [], []
        if seen >= RECORDS:
            stream.current_event.ack()
            await app.consumer.commit()
            finished = time.perf_counter()
            Measurement(records=seen, join_s=first - started, seconds=finished - first, stored=stored_ticks(analytics)).emit()
            os.kill(os.getpid(), signal.SIGTERM)
            return


if __name__ == "__main__":
    # --without-web: Faust's `worker` command turns the web server on by default (whatever web_enabled says), on
    # port 6066, which a `make demo` worker may hold; this contender serves nothing
    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()
