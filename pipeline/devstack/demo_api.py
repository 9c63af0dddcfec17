"""The API part of ``make demo``: a ready-to-use key for tenant ``acme``, example queries and the web console.

Registers ``acme`` if needed, creates a new ``read`` key (keys are stored
hashed, so an earlier one cannot be shown again), prints it with curl
examples against the worker's API, runs the first one to show its answer,
and ends with the web console's URL and the key to type into it (never in
the URL: the console keeps it in the browser tab's session storage).
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

from rich.console import Console

from pipeline.api.keys import IssuedKey, create_key
from pipeline.api.migrations import open_pool
from pipeline.api.tenants import add_tenant
from pipeline.config import Settings

TENANT = "acme"


async def _demo_key(settings: Settings) -> IssuedKey:
    pool = await open_pool(settings.postgres_connection_dsn, max_size=1)
    try:
        await add_tenant(pool, TENANT)
        return await create_key(pool, TENANT, "read")
    finally:
        await pool.close()


def example_paths(settings: Settings) -> list[str]:
    """Queries that answer with the demo's data."""
    timeframe = settings.timeframes[0].name
    return [
        "/v1/ticks/latest?symbol=EURUSD&broker=demo",
        "/v1/symbols",
        "/v1/ticks?symbol=EURUSD&limit=3",
        f"/v1/candles?symbol=EURUSD&timeframe={timeframe}&limit=2",
        f"/v1/patterns/similar?symbol=EURUSD&timeframe={timeframe}&k=3",
        "/v1/graph/neighbors?symbol=EURUSD&depth=2",
    ]


def show_api_examples(settings: Settings, console: Console) -> None:
    """Print a new read key of ``acme`` and curl examples; run the first; end with the console's URL and the key."""
    issued = asyncio.run(_demo_key(settings))
    base = settings.api_url
    console.print(f"[bold]query API[/bold] at {base} (OpenAPI: {base}/openapi.json, health: {base}/health); "
                  f"a new read key of tenant {TENANT} (shown once):")
    console.print(f"  export TW_KEY={issued.key}", highlight=False, soft_wrap=True)
    paths = example_paths(settings)
    for path in paths:
        console.print(f"  curl -s -H \"Authorization: Bearer $TW_KEY\" '{base}{path}'", highlight=False, soft_wrap=True)
    request = urllib.request.Request(base + paths[0], headers={"Authorization": f"Bearer {issued.key}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            console.print("    " + response.read().decode(), highlight=False, soft_wrap=True)
    except (urllib.error.URLError, OSError) as exc:
        console.print(f"    [yellow]the API did not answer: {exc}[/yellow]")
    console.print(f"  curl -s -N -H \"Authorization: Bearer $TW_KEY\" '{base}/v1/ticks/stream?symbol=EURUSD&broker=demo'"
                  "   # the newest tick as it changes (server-sent events)", highlight=False, soft_wrap=True)
    console.print(f"[bold]web console[/bold]: open {base}/console and enter the key of tenant {TENANT} "
                  "(it stays in that browser tab):", soft_wrap=True)
    console.print(f"  {issued.key}", highlight=False, soft_wrap=True)
