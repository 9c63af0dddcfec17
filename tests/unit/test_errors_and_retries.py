"""Error classification, retry with jittered backoff, circuits, and isolation of what a store refuses."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from pipeline.core.batch import run_isolating
from pipeline.core.circuit import CircuitBreaker
from pipeline.core.errors import RefusedData, TransientStoreError, classify
from pipeline.core.isolation import Refusal, isolate
from pipeline.core.retry import RetryPolicy, Stopping, flush_until_settled


class ClickHouseLike(Exception):
    """An error shaped like clickhouse-connect's (module and message)."""


ClickHouseLike.__module__ = "clickhouse_connect.driver.exceptions"


@pytest.mark.parametrize(("error", "kind"), [
    (ConnectionRefusedError("refused"), "transient"),
    (TimeoutError(), "transient"),
    (TransientStoreError("later"), "transient"),
    (RefusedData("no"), "permanent"),
    (ValueError("vector component 3 is nan"), "permanent"),
    (ClickHouseLike("Code: 469. DB::Exception: Constraint `c` ... is violated. (VIOLATED_CONSTRAINT)"), "permanent"),
    (ClickHouseLike("Code: 252. DB::Exception: Too many parts. (TOO_MANY_PARTS)"), "transient"),
    (ClickHouseLike("Code: 60. DB::Exception: Unknown table. (UNKNOWN_TABLE)"), "transient"),
    (ClickHouseLike("Code: 999. DB::Exception: something new. (SOMETHING_NEW)"), "unknown"),
    (RuntimeError("what is this"), "unknown"),
])
def test_errors_are_classified(error: BaseException, kind: str) -> None:
    assert classify(error) == kind


def test_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy(max_backoff_s=1.0, first_backoff_s=0.05)
    rng = random.Random(1)
    waits = [policy.wait_s(attempt, rng) for attempt in range(20)]
    for attempt, wait in enumerate(waits):
        ceiling = min(0.05 * 2 ** attempt, 1.0)
        assert ceiling / 2 <= wait <= ceiling
    assert len({round(w, 6) for w in waits[10:]}) > 1, "capped waits still differ (jitter)"


class ScriptedSink:
    """Fails with the scripted errors, then succeeds; records which flush was called."""

    name = "scripted"

    def __init__(self, errors: list[BaseException], refused: list[Refusal] | None = None) -> None:
        self.errors = list(errors)
        self.calls: list[str] = []
        self._refused = refused or []

    async def flush(self) -> None:
        self.calls.append("flush")
        if self.errors:
            raise self.errors.pop(0)

    async def flush_isolating(self) -> list[Refusal]:
        self.calls.append("isolating")
        if self.errors:
            raise self.errors.pop(0)
        return self._refused


POLICY = RetryPolicy(max_backoff_s=0.01, unknown_attempts=3, first_backoff_s=0.001)


async def test_transient_errors_are_retried_until_the_store_answers(caplog: pytest.LogCaptureFixture) -> None:
    sink = ScriptedSink([ConnectionError("down")] * 4)
    circuit = CircuitBreaker("scripted", "test")
    states: list[str] = []
    with caplog.at_level(logging.WARNING, "tickwire.circuit"):
        refused = await flush_until_settled(sink, circuit=circuit, stop=asyncio.Event(), policy=POLICY,
                                            on_state=lambda c: states.append(c.state))
    assert refused == [] and sink.calls == ["flush"] * 5
    assert states == ["open", "closed"] and circuit.state == "closed"
    assert len(caplog.records) == 2, "one line when the circuit opens, one when it closes"


async def test_a_permanent_error_isolates_at_once_without_opening_the_circuit() -> None:
    refusal = Refusal(None, "scripted", "refused")
    sink = ScriptedSink([ValueError("bad data")], refused=[refusal])
    circuit = CircuitBreaker("scripted", "test")
    refused = await flush_until_settled(sink, circuit=circuit, stop=asyncio.Event(), policy=POLICY)
    assert refused == [refusal] and sink.calls == ["flush", "isolating"] and circuit.failures == 0


async def test_an_unknown_error_is_retried_a_bounded_number_of_times_then_isolated() -> None:
    sink = ScriptedSink([RuntimeError("odd")] * 10)
    refused = await flush_until_settled(sink, circuit=CircuitBreaker("scripted", "test"), stop=asyncio.Event(), policy=POLICY)
    assert sink.calls[:3] == ["flush"] * 3 and sink.calls[3] == "isolating"
    assert refused == []


async def test_a_stop_request_abandons_a_store_that_stays_down() -> None:
    stop = asyncio.Event()
    stop.set()
    with pytest.raises(Stopping):
        await flush_until_settled(ScriptedSink([ConnectionError("down")] * 100), circuit=CircuitBreaker("s", "t"),
                                  stop=stop, policy=POLICY)


async def test_isolation_pins_every_refused_item_and_writes_the_rest() -> None:
    bad = {3, 17, 18, 40}
    written: set[int] = set()
    calls = 0

    async def write(lo: int, hi: int) -> None:
        nonlocal calls
        calls += 1
        if bad & set(range(lo, hi)):
            raise ValueError("refused")
        written.update(range(lo, hi))

    refused = await isolate(64, write)
    assert [index for index, _ in refused] == sorted(bad)
    assert written == set(range(64)) - bad
    assert calls <= 2 * len(bad) * 7 + 1, "about 2·k·log2(n) writes"


async def test_isolation_stops_at_a_transient_error() -> None:
    async def write(lo: int, hi: int) -> None:
        if hi - lo < 8:
            raise ConnectionError("gone")
        raise ValueError("refused")

    with pytest.raises(ConnectionError):
        await isolate(32, write)


def test_a_handler_that_fails_on_some_records_fails_only_those() -> None:
    handled: list[int] = []

    def handler(messages, sinks) -> None:
        for record, value in messages:
            if value < 0:
                raise ArithmeticError(f"negative {value}")
        handled.extend(value for _, value in messages)

    messages = [(f"r{i}", v) for i, v in enumerate([1, 2, -3, 4, 5, -6, 7])]
    failed = run_isolating(handler, messages, None)
    assert [record for record, _ in failed] == ["r2", "r5"]
    assert all("ArithmeticError" in error for _, error in failed)
    assert set(handled) == {1, 2, 4, 5, 7}
