"""(c) The peer: the same job written with Quix Streams, the way its documentation shows it.

A ``StreamingDataFrame`` on the ticks topic with Quix's JSON deserializer
(orjson), sunk into a ``BatchingSink`` whose ``write`` does the common sink
work (:mod:`bench.sink_work`: one ClickHouse insert per topic-partition batch,
newest-wins hot keys). Quix calls ``write`` at each checkpoint and commits
the offsets only after every sink flushed (at-least-once, as tickwire).
Quix's defaults are kept (``commit_interval`` 5 s) except where the job needs
otherwise: the earliest offset, and the bench's session timeout but at least
10 s (a shorter one timed out under load here and failed the peer's commit;
tansu makes the first join wait half of it, which is outside the timing).

Runs in the peer's own venv (:mod:`bench.peer_env`) as
``python -m bench.quix_peer RECORDS CHDB_DIR`` with ``TICKWIRE_*`` variables;
stops after RECORDS records (``Application.run(count=...)``, which ends with
a last checkpoint) and prints a :class:`~bench.contender.Measurement`:
from the first record the sink saw to the return of ``run``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import redis
from quixstreams import Application
from quixstreams.sinks import BatchingSink, SinkBatch

from bench.contender import Measurement
from bench.sink_work import insert_ticks, newest_per_key, open_analytics, stored_ticks, tick_columns, write_hot_keys
from pipeline.config import get_settings
from pipeline.contracts.topics import TICKS_TOPIC


class TicksSink(BatchingSink):
    """ClickHouse rows and hot keys of each topic-partition batch, written at Quix's checkpoint."""

    def __init__(self, chdb_dir: Path, cache_url: str) -> None:
        super().__init__()
        self._chdb_dir = chdb_dir
        self._cache_url = cache_url
        self.first_at: float | None = None

    def setup(self) -> None:
        self._analytics = open_analytics(self._chdb_dir)
        self._cache = redis.Redis.from_url(self._cache_url)

    def add(self, value: Any, key: Any, timestamp: int, headers: Any, topic: str, partition: int, offset: int) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        super().add(value, key, timestamp, headers, topic, partition, offset)

    def stored(self) -> int:
        return stored_ticks(self._analytics)

    def write(self, batch: SinkBatch) -> None:
        values = [item.value for item in batch]
        offsets = [item.offset for item in batch]
        insert_ticks(self._analytics, tick_columns(values, [batch.partition] * len(values), offsets))
        write_hot_keys(self._cache, newest_per_key(values, offsets))


def main() -> None:
    records, chdb_dir = int(sys.argv[1]), Path(sys.argv[2])
    settings = get_settings()
    app = Application(
        broker_address=",".join(settings.bootstrap_servers),
        consumer_group=settings.group_id,
        auto_offset_reset="earliest",
        state_dir=chdb_dir.parent / "quix-state",  # Quix's default is ./state, in the working directory
        # at least 10 s: a shorter session times out under load on a 2-core box and the peer's commit fails
        consumer_extra_config={"session.timeout.ms": max(settings.session_timeout_ms, 10_000)},
        loglevel="WARNING",
    )
    sink = TicksSink(chdb_dir, settings.cache_connection_url)
    sdf = app.dataframe(app.topic(TICKS_TOPIC, value_deserializer="json"))
    sdf.sink(sink)
    started = time.perf_counter()
    app.run(count=records, collect=False)
    finished = time.perf_counter()
    assert sink.first_at is not None
    Measurement(records=records, join_s=sink.first_at - started, seconds=finished - sink.first_at,
                stored=sink.stored()).emit()


if __name__ == "__main__":
    main()
