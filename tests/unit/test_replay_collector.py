"""Replay runs with the live worker's garbage collector settings and gives the process its own back."""

from __future__ import annotations

import gc

from pipeline.ops.replay import _collector_tuned
from pipeline.runtime.app import GC_GEN0_THRESHOLD


def test_the_collector_is_tuned_while_replaying_and_restored_after() -> None:
    before, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    with _collector_tuned():
        assert gc.get_threshold() == (GC_GEN0_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > frozen_before, "the start-up heap is out of the collector's view"
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen_before
