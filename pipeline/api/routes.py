"""What a route of the API is: method, path, who may call it, its parameters, and its handler.

A resource module (``ticks``, ``candles``, ...) declares its routes; :mod:`pipeline.api.app`
turns each into an aiohttp handler and :mod:`pipeline.api.openapi` into the document, so
the two cannot disagree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import msgspec

from pipeline.api.auth import Principal
from pipeline.api.keys import Scope
from pipeline.api.params import Param

if TYPE_CHECKING:
    from pipeline.api.context import ApiContext


@dataclass(frozen=True)
class Call:
    """A request that passed authentication and validation: who asks, and what."""

    principal: Principal | None
    params: dict[str, Any]
    body: Any = None

    @property
    def tenant(self) -> str:
        """The tenant of the caller's key: the only tenant whose data a handler may read."""
        assert self.principal is not None, "tenant of an unauthenticated route"
        return self.principal.tenant


#: A handler answers a JSON-serialisable body (or an aiohttp response, for non-JSON answers).
Handler = Callable[["ApiContext", Call], Awaitable[Any]]


@dataclass(frozen=True)
class Body:
    """A JSON request body: decoded into ``type`` (msgspec, as strict as ``schema``), documented by ``schema``."""

    type: type[msgspec.Struct]
    schema: dict[str, Any]

    @cached_property
    def decoder(self) -> msgspec.json.Decoder[Any]:
        return msgspec.json.Decoder(self.type)


@dataclass(frozen=True)
class Route:
    """One operation. ``scope`` None: no key needed (and no tenant data served).

    ``cached``: the JSON answer may be served from the context's answer cache
    (:mod:`pipeline.api.answer_cache`), for routes that only read ClickHouse.
    ``queries``: the handler queries the stores, so (for a route with a key) it runs
    in one of the tenant's query slots (:mod:`pipeline.api.query_slots`); false for
    routes that only read the hot cache, and for routes whose store reads take the
    tenant's slots themselves, one per store query (:mod:`pipeline.api.batched_reads`).
    ``response`` names the components schema of the success body (status ``status``);
    ``errors`` lists the other statuses the handler itself may answer (parameter, auth
    and availability errors are documented for every route that can have them, see
    :mod:`pipeline.api.openapi`).
    """

    method: str
    path: str
    summary: str
    tag: str
    handler: Handler
    response: str | None
    scope: Scope | None = "read"
    params: tuple[Param, ...] = ()
    body: Body | None = None
    status: int = 200
    description: str = ""
    errors: tuple[int, ...] = field(default=())
    cached: bool = False
    queries: bool = True
    #: The whole OpenAPI responses object, for routes whose answers are not the usual ones.
    responses: dict[str, Any] | None = None

    @property
    def label(self) -> str:
        """``METHOD /path/{template}``: a bounded metrics label and a log name."""
        return f"{self.method} {self.path}"
