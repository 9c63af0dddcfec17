"""A circuit breaker per sink: is its store accepting writes, and since when not.

``closed``: writes succeed. ``open``: the last write failed; the pipeline is
paused (nothing consumed, nothing committed past what was written) and the
write is retried with capped exponential backoff, each retry a probe. The
first success closes it again. Each transition logs one line and updates the
``tickwire_sink_circuit_open`` gauge; retries in between log nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from pipeline.core.metrics import SINK_CIRCUIT_OPEN

log = logging.getLogger("tickwire.circuit")


class CircuitSnapshot(TypedDict):
    """A circuit as ``/health`` shows it (see :meth:`CircuitBreaker.snapshot`)."""

    state: Literal["closed", "open"]
    failures: int
    open_since: float | None
    last_error: str


@dataclass
class CircuitBreaker:
    name: str
    stage: str = ""
    state: Literal["closed", "open"] = "closed"
    failures: int = 0
    opened_at: float | None = None
    last_error: str = ""
    last_error_kind: str = ""
    _opened_monotonic: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        SINK_CIRCUIT_OPEN.labels(self.stage, self.name).set(0)

    def failed(self, exc: BaseException) -> bool:
        """Record a failed write; True if this opened the circuit."""
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        self.last_error_kind = type(exc).__name__
        if self.state == "open":
            return False
        self.state, self.opened_at, self._opened_monotonic = "open", time.time(), time.monotonic()
        SINK_CIRCUIT_OPEN.labels(self.stage, self.name).set(1)
        log.warning("stage %s: sink %s unavailable, pausing the stage and retrying with backoff: %s", self.stage, self.name,
                    self.last_error, extra={"stage": self.stage, "sink": self.name})
        return True

    def succeeded(self) -> bool:
        """Record a successful write; True if this closed the circuit."""
        if self.state == "closed":
            return False
        log.warning("stage %s: sink %s recovered after %d failed attempts in %.1f s; resuming",
                    self.stage, self.name, self.failures, time.monotonic() - self._opened_monotonic,
                    extra={"stage": self.stage, "sink": self.name})
        self.state, self.failures, self.opened_at = "closed", 0, None
        SINK_CIRCUIT_OPEN.labels(self.stage, self.name).set(0)
        return True

    def snapshot(self) -> CircuitSnapshot:
        """For /health: state, failed attempts so far, since when (epoch s), the kind of the last error
        (its type only: the message can name hosts; it is in the log)."""
        return {"state": self.state, "failures": self.failures, "open_since": self.opened_at,
                "last_error": self.last_error_kind}
