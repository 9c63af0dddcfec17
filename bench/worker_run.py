"""Timing a real tickwire worker (``pipeline.devstack.worker_process.WorkerProcess``) through a preloaded backlog.

The worker runs as ``tickwire worker`` does, in its own process, with a fresh
consumer group, chDB directory and state directory. From the outside, the
bench watches:

- ``ready``: the worker answers a query on its operator SQL route (stores
  connected, source started): start-up, including Faust's own group join;
- ``assigned``: the time the worker logged that its source's consumer group
  gave it the partitions (the start of consumption: the first fetch follows);
- the group's committed offsets, polled every 20 ms (from a consumer that
  only reads them and never joins): the first and the last commit. A commit
  comes only after every sink flushed (rows visible in ClickHouse, hot keys
  written, derived streams done), so "last commit" is "everything visible".

The ingest rate is records / (last commit - assigned): from the start of
consumption to the moment the last record is visible everywhere.
"""

from __future__ import annotations

import asyncio
import re
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from bench.profile import Profiler
from pipeline.config import Settings
from pipeline.core.kafka import client_options
from pipeline.devstack.worker_process import WorkerProcess
from pipeline.ops.sql_client import worker_query
from pipeline.runtime.log_ends import LogEnds
from pipeline.runtime.source import stage_group
from pipeline.runtime.topology import consumers_of

POLL_S = 0.02
#: How often :class:`StageSampler` reads the worker's ``/metrics``: a read costs the busy worker ~20-40 ms of its event loop.
SAMPLE_S = 5.0
_ASSIGNED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z INFO tickwire\.source: stage ingest: assigned \d+ partitions", re.M)


@dataclass(frozen=True)
class WorkerTimeline:
    """Wall times (epoch s) of one worker run through a backlog of ``records``."""

    records: int
    spawned: float
    ready: float
    assigned: float
    first_commit: float
    last_commit: float
    #: py-spy summary from the first to the last commit, when asked for
    profile: dict[str, object] | None = None

    @property
    def rate(self) -> float:
        """Records per second from the start of consumption to the last commit."""
        return self.records / (self.last_commit - self.assigned)

    @property
    def seconds(self) -> float:
        return self.last_commit - self.assigned

    def as_dict(self) -> dict[str, float]:
        return {
            "records": self.records,
            "startup_s": round(self.ready - self.spawned, 3),
            "join_s": round(self.assigned - self.spawned, 3),
            "first_commit_s": round(self.first_commit - self.assigned, 3),
            "seconds": round(self.seconds, 3),
            "rate": round(self.rate, 1),
        }


class CommitWatcher:
    """Reads the committed offsets of the stage groups that consume the given partitions, without joining them
    (a partition read by several stages counts once per stage)."""

    def __init__(self, settings: Settings, partitions: Sequence[TopicPartition]) -> None:
        self._watched = [(stage_group(settings, spec.name), tp) for tp in partitions for spec in consumers_of(tp.topic)]
        self._by_group = {group: AIOKafkaConsumer(**client_options(settings), group_id=group,
                                                  enable_auto_commit=False)
                          for group in sorted({group for group, _ in self._watched})}

    async def __aenter__(self) -> CommitWatcher:
        for consumer in self._by_group.values():
            await consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for consumer in self._by_group.values():
            await consumer.stop()

    async def committed(self) -> int:
        """Records committed over all partitions and stages (committed offsets start at 0 in a fresh topic)."""
        total = 0
        for group, tp in self._watched:
            total += await self._by_group[group].committed(tp) or 0
        return total


async def downstream_behind(settings: Settings, topics: Sequence[str]) -> int:
    """Records of ``topics`` (derived topics: candles, enriched signals) their consuming stages have not committed
    yet, against the log ends read now: 0 once every derived row is written."""
    ends = LogEnds(settings, topics)
    await ends.on_start()
    try:
        await ends.probe()
        partitions = list(ends.ends)
        async with CommitWatcher(settings, partitions) as watcher:
            expected = sum(ends.ends[tp].offset * len(consumers_of(tp.topic)) for tp in partitions)
            return max(0, expected - await watcher.committed())
    finally:
        await ends.on_stop()


def partitions_of(topics: dict[str, int]) -> list[TopicPartition]:
    return [TopicPartition(topic, p) for topic, count in topics.items() for p in range(count)]


def assigned_at(log_text: str) -> float | None:
    """When the worker's source got its partitions (its log line), as epoch s."""
    found = _ASSIGNED.search(log_text)
    if found is None:
        return None
    return datetime.strptime(found.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()


async def time_backlog(worker: WorkerProcess, topics: dict[str, int], records: int, *, timeout_s: float,
                       on_poll: Callable[[int], None] | None = None, profile_to: Path | None = None,
                       downstream: Sequence[str] = (), sampler: StageSampler | None = None) -> WorkerTimeline:
    """Start ``worker`` (not started yet) and time it through ``records`` committed records of ``topics`` and then,
    with ``downstream`` (derived topics), until the stages that read those have committed all of them too.

    With ``profile_to``, py-spy records the worker from its first commit to its last into that file; with
    ``sampler``, its metrics are sampled from its start to the last commit.
    """
    spawned = time.time()
    worker.start()
    sampling = asyncio.create_task(sampler.run()) if sampler is not None else None
    try:
        return await _time_started(worker, records, topics, timeout_s, on_poll, profile_to, downstream, spawned)
    finally:
        if sampler is not None and sampling is not None:
            sampler.stop()
            await sampling


async def _time_started(worker: WorkerProcess, records: int, topics: dict[str, int], timeout_s: float,
                        on_poll: Callable[[int], None] | None, profile_to: Path | None, downstream: Sequence[str],
                        spawned: float) -> WorkerTimeline:
    ready = first = last = None
    profiler = None
    deadline = time.monotonic() + timeout_s
    async with CommitWatcher(worker.settings, partitions_of(topics)) as watcher:
        while last is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker committed fewer than {records:,} records in {timeout_s:.0f} s:\n{worker.log_tail()}")
            if not worker.running():
                raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
            if ready is None and await _answers(worker.settings):
                ready = time.time()
            committed = await watcher.committed()
            now = time.time()
            if committed and first is None:
                first = now
                if profile_to is not None and worker.pid is not None:
                    profiler = Profiler(worker.pid, profile_to)
            if committed >= records and (not downstream or not await downstream_behind(worker.settings, downstream)):
                last = now
            if on_poll is not None:
                on_poll(committed)
            await asyncio.sleep(POLL_S)
    profile = profiler.stop() if profiler is not None else None
    assigned = assigned_at(worker.log_file.read_text(errors="replace"))
    if assigned is None:
        raise RuntimeError(f"no 'assigned' line in the worker's log:\n{worker.log_tail()}")
    assert first is not None
    return WorkerTimeline(records, spawned, ready if ready is not None else last, assigned, first, last, profile)


async def _answers(settings: Settings) -> bool:
    try:
        return await asyncio.to_thread(worker_query, settings, "SELECT 1") is not None
    except Exception:  # noqa: BLE001 - starting: 503
        return False


def stored_rows(settings: Settings, table: str = "ticks") -> int:
    """Rows of ``table`` a query sees (``FINAL``: one per identity), through the worker."""
    lines = worker_query(settings, f"SELECT count() AS n FROM tickwire.{table} FINAL") or []
    return int(orjson.loads(lines[0])["n"]) if lines else 0


@dataclass
class StageFigures:
    """One stage through a backlog, from the worker's own metrics."""

    #: records the stage fetched from its input topics
    records: int = 0
    #: epoch s of the stage's last checkpoint that committed offsets (None: it committed nothing)
    last_commit: float | None = None
    #: the greatest lag (records, summed over its partitions) seen while sampling
    peak_lag: int = 0
    #: seconds the stage spent in checkpoints (flushing its sinks and the producer, committing)
    checkpoint_s: float = 0.0

    def as_dict(self, started: float) -> dict[str, float | int]:
        """The figures, timed from ``started`` (epoch s: the worker's partition assignment) to the last commit."""
        seconds = max(0.0, (self.last_commit or started) - started)
        return {"records": self.records, "seconds": round(seconds, 3),
                "records_per_s": round(self.records / seconds, 1) if seconds else 0.0, "peak_lag": self.peak_lag,
                "checkpoint_seconds": round(self.checkpoint_s, 3)}


@dataclass
class StageSampler:
    """Samples a worker's Prometheus ``/metrics`` every :data:`SAMPLE_S` while it works through a backlog: per stage,
    the records consumed (``tickwire_records_consumed_total``), the last commit
    (``tickwire_last_checkpoint_timestamp_seconds``), the time in checkpoints (``tickwire_checkpoint_seconds``) and
    the peak of its lag (``tickwire_consumer_lag`` summed over partitions, as the worker's lag probe set it)."""

    api_url: str
    stages: dict[str, StageFigures] = field(default_factory=lambda: defaultdict(StageFigures))
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        """Sample until :meth:`stop`, then once more."""
        while not self._stop.is_set():
            await self.sample()
            try:
                await asyncio.wait_for(self._stop.wait(), SAMPLE_S)
            except TimeoutError:
                pass
        await self.sample()

    def stop(self) -> None:
        self._stop.set()

    async def sample(self) -> None:
        text = await asyncio.to_thread(self._read)
        if text is None:
            return
        lag: dict[str, float] = defaultdict(float)
        consumed: dict[str, float] = defaultdict(float)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                stage = sample.labels.get("stage")
                if stage is None:
                    continue
                if sample.name == "tickwire_records_consumed_total":
                    consumed[stage] += sample.value
                elif sample.name == "tickwire_consumer_lag":
                    lag[stage] += sample.value
                elif sample.name == "tickwire_last_checkpoint_timestamp_seconds":
                    self.stages[stage].last_commit = sample.value
                elif sample.name == "tickwire_checkpoint_seconds_sum":
                    self.stages[stage].checkpoint_s = sample.value
        for stage, records in consumed.items():
            self.stages[stage].records = int(records)
        for stage, records in lag.items():
            self.stages[stage].peak_lag = max(self.stages[stage].peak_lag, int(records))

    def _read(self) -> str | None:
        try:
            with urllib.request.urlopen(self.api_url + "/metrics", timeout=10) as response:
                text: str = response.read().decode()
                return text
        except (urllib.error.URLError, TimeoutError, ConnectionError):
            return None  # starting, or too busy to answer this time
