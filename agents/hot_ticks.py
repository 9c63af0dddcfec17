"""Hot-tick agent: decoded ``mt5.ticks.v1`` batches -> the newest tick per key in the cache.

An eager route: it gets each batch as soon as the source decoded it, even while
a checkpoint flushes the other sinks, and the source writes the hot keys right
after (see pipeline.runtime.source), so a hot key's freshness does not depend on the
checkpoint's pace. The checkpoint still flushes the cache before it commits.
"""

from __future__ import annotations

from pipeline.contracts.schemas import Tick
from pipeline.core.batch import RecordBatch
from pipeline.ingest.producer import TICKS_TOPIC
from pipeline.runtime.app import app, sinks, source
from pipeline.runtime.processing import offer_hot_ticks


@app.agent(source.route(TICKS_TOPIC, Tick, eager=True))
async def hot_ticks(batches):  # type: ignore[no-untyped-def]
    async for batch in batches:
        batch: RecordBatch[Tick]
        async with batch.processing():
            offer_hot_ticks(batch.messages, sinks)
