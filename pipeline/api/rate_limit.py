"""Requests per API key: a token bucket for each key, so one client cannot take the API from the others.

Contract:

- Every authenticated ``/v1`` request takes one token from the bucket of its
  key (the key id of the *verified* principal: a request with someone else's
  key id and a wrong secret is a 401 before it reaches a bucket, so no one can
  spend another key's tokens). Requests with ``Cache-Control: no-cache`` and
  requests answered from the answer cache count like any other.
- A bucket holds at most ``burst`` tokens (``TICKWIRE_API_RATE_BURST``) and
  refills at ``rate_per_s`` tokens per second (``TICKWIRE_API_RATE_PER_S``); a
  key not seen before starts full.
- A request that finds less than one token is refused: 429 with
  ``Retry-After``, the whole seconds (at least 1) until the bucket holds a token
  again. A refused request takes nothing, so a client that waits that long is
  served.
- In memory, per process: N API processes allow a key N times the rate.
  Memory is bounded: a bucket idle for ``burst / rate_per_s`` seconds is full
  again, which is what a key without a bucket gets, so it is dropped (checked
  on every request, least recently used first); beyond ``max_keys`` buckets the
  least recently used is dropped early (that key then starts full again).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from pipeline.api.errors import too_many_requests

#: Buckets kept at most (far more keys than one process serves at once).
MAX_KEYS = 100_000


class KeyRateLimiter:
    """Token buckets by key id (see the module docstring)."""

    def __init__(self, rate_per_s: float, burst: int, *, max_keys: int = MAX_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._full_after_s = burst / rate_per_s
        self._max_keys = max_keys
        self._clock = clock
        #: key id -> (tokens, when they were counted); least recently used first
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key_id: str) -> float:
        """Take a token of ``key_id``'s bucket: 0.0 when taken, else the seconds until one is there (none taken)."""
        now = self._clock()
        self._drop_full(now)
        tokens, counted = self._buckets.pop(key_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - counted) * self._rate)
        wait_s = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait_s = (1.0 - tokens) / self._rate
        self._buckets[key_id] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return wait_s

    def admit(self, key_id: str) -> None:
        """Take a token of ``key_id``'s bucket or raise the 429 :class:`~pipeline.api.errors.ApiError`."""
        wait_s = self.take(key_id)
        if wait_s > 0.0:
            raise too_many_requests(
                f"rate limit of this API key exceeded ({self._rate:g} requests/s, bursts of {self._burst:g}); "
                "retry after the time in Retry-After", wait_s)

    def _drop_full(self, now: float) -> None:
        """Drop the buckets idle long enough to be full (oldest first: the order is by last use)."""
        buckets = self._buckets
        while buckets:
            key_id, (_, counted) = next(iter(buckets.items()))
            if now - counted < self._full_after_s:
                return
            del buckets[key_id]
