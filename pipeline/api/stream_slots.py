"""Open tick streams (``/v1/ticks/stream``, :mod:`pipeline.api.streams`) per key, per tenant and per process.

A stream holds a connection and a task for as long as it runs, so how many may
be open is capped three ways: per API key (``TICKWIRE_API_STREAMS_PER_KEY``),
per tenant (``TICKWIRE_API_STREAMS_PER_TENANT``: an admin key may make more
keys of its tenant) and per process (``TICKWIRE_API_STREAMS_MAX``). A stream
past any cap is refused with 429 and ``Retry-After`` before it opens.
In memory, per process (as :mod:`pipeline.api.rate_limit`).
"""

from __future__ import annotations

from collections import Counter

from pipeline.api.auth import Principal
from pipeline.api.errors import ApiError, too_many_requests


class StreamSlots:
    """Open streams per key, per tenant and in this process, each capped (see the module docstring).

    In memory, per process; a key or tenant with no open stream has no entry.
    :meth:`close` marks every stream of the process to end (the server is stopping).
    """

    def __init__(self, per_key: int, per_tenant: int, total: int) -> None:
        if min(per_key, per_tenant, total) < 1:
            raise ValueError("stream limits must be >= 1")
        self.per_key, self.per_tenant, self.total = per_key, per_tenant, total
        self._keys: Counter[str] = Counter()
        self._tenants: Counter[str] = Counter()
        self._open = 0
        #: True once the server began to stop: every stream ends, and no new one opens.
        self.closed = False

    @property
    def open(self) -> int:
        return self._open

    def of_key(self, key_id: str) -> int:
        return self._keys[key_id]

    def of_tenant(self, tenant: str) -> int:
        return self._tenants[tenant]

    def acquire(self, principal: Principal) -> None:
        """Take a slot for ``principal``'s new stream, or raise the 429 (the 503, while stopping) ApiError."""
        if self.closed:
            raise ApiError(503, "the server is stopping, try again shortly", headers={"Retry-After": "1"})
        if self._keys[principal.key_id] >= self.per_key:
            raise too_many_requests(f"this API key already has {self.per_key} tick streams open (the most it may); "
                                    "close one first", 1.0)
        if self._tenants[principal.tenant] >= self.per_tenant:
            raise too_many_requests(f"this key's tenant already has {self.per_tenant} tick streams open (the most it "
                                    "may); close one first", 1.0)
        if self._open >= self.total:
            raise too_many_requests("this server has as many tick streams open as it takes; retry later", 5.0)
        self._keys[principal.key_id] += 1
        self._tenants[principal.tenant] += 1
        self._open += 1

    def release(self, principal: Principal) -> None:
        for counter, name in ((self._keys, principal.key_id), (self._tenants, principal.tenant)):
            counter[name] -= 1
            if counter[name] <= 0:
                del counter[name]
        self._open -= 1

    def close(self) -> None:
        self.closed = True
