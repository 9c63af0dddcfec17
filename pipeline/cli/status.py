"""``tickwire status`` (alias ``top``): the stages of a running worker, live in the terminal.

Read from the worker's web server (``TICKWIRE_API_HOST``/``TICKWIRE_API_PORT``): ``/health`` gives each
stage's state (running, paused by which circuit, stalled, starting), its lag in records and seconds and its
circuits; ``/metrics`` gives the records each stage consumed and dead-lettered, whose differences between
two reads are the rates.
"""

from __future__ import annotations

import http.client
import json
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click
from rich import box
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pipeline.cli.console import EXIT_FAILURE, EXIT_USAGE, fail, out_json, print_table, table_console
from pipeline.cli.console import settings as cli_settings

#: Longest wait for one answer of the worker (``/health`` itself bounds its probes at 2 s).
REQUEST_TIMEOUT_S = 5.0
STATE_STYLES = {"running": "green", "paused": "yellow", "stalled": "bold red", "starting": "cyan"}
#: The worker is asked directly, never through a proxy of the environment (http_proxy).
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class NoAnswer(RuntimeError):
    """The worker's web server did not answer as a worker does; the message says how."""


@dataclass
class Counters:
    """Per stage: records consumed and dead-lettered so far (``/metrics`` counters), and when they were read."""

    at: float
    consumed: dict[str, float]
    dead_lettered: dict[str, float]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with _opener.open(url, timeout=REQUEST_TIMEOUT_S) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:  # /health answers 503 (with its body) when something required is down
        return exc.code, bytes(exc.read())
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # refused, timed out, cut off
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise NoAnswer(f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)) from None


def read_health(base: str) -> dict[str, Any]:
    code, body = _get(base + "/health")
    try:
        health = json.loads(body)
    except ValueError:
        raise NoAnswer(f"GET /health answered {code} without a health document") from None
    if not isinstance(health, dict) or "stages" not in health:
        raise NoAnswer(f"GET /health answered {code} without a health document")
    return health


def read_counters(base: str) -> Counters:
    from prometheus_client.parser import text_string_to_metric_families

    code, body = _get(base + "/metrics")
    if code != 200:
        raise NoAnswer(f"GET /metrics answered {code}")
    consumed: dict[str, float] = defaultdict(float)
    dead_lettered: dict[str, float] = defaultdict(float)
    try:
        for family in text_string_to_metric_families(body.decode("utf-8", "replace")):
            for sample in family.samples:
                if sample.name == "tickwire_records_consumed_total":
                    consumed[sample.labels.get("stage", "")] += sample.value
                elif sample.name == "tickwire_dlq_records_total":
                    dead_lettered[sample.labels.get("stage", "")] += sample.value
    except ValueError as exc:
        raise NoAnswer(f"GET /metrics answered what is not Prometheus text ({exc})") from None
    return Counters(time.monotonic(), dict(consumed), dict(dead_lettered))


def _rate(before: Counters | None, now: Counters, series: str, stage: str) -> float | None:
    if before is None or now.at <= before.at:
        return None
    counts: tuple[dict[str, float], dict[str, float]] = (getattr(now, series), getattr(before, series))
    new, old = counts[0].get(stage, 0.0), counts[1].get(stage, 0.0)
    if new < old:  # the worker restarted: its counters began again
        return None
    return (new - old) / (now.at - before.at)


def snapshot(base: str, health: dict[str, Any], before: Counters | None, now: Counters) -> dict[str, Any]:
    """One view of the worker: its status, each dependency's, and per stage its state, rates, lag, circuits."""
    stages = {}
    for name, stage in (health.get("stages") or {}).items():
        rate, dlq_rate = _rate(before, now, "consumed", name), _rate(before, now, "dead_lettered", name)
        stages[name] = {
            "state": stage.get("state"),
            "paused_by": stage.get("paused_by"),
            "records_per_s": None if rate is None else round(rate, 1),
            "consumed": int(now.consumed.get(name, 0)),
            "dead_letters_per_s": None if dlq_rate is None else round(dlq_rate, 1),
            "dead_lettered": int(now.dead_lettered.get(name, 0)),
            "lag": {"records": stage.get("lag", {}).get("records"), "seconds": stage.get("lag", {}).get("seconds")},
            "last_commit_at": stage.get("last_commit_at"),
            "circuits": stage.get("circuits") or {},
        }
    return {"url": base, "time": round(time.time(), 3), "status": health.get("status"), "ready": health.get("ready"),
            "dependencies": {name: {"status": dep.get("status"), "latency_ms": dep.get("latency_ms"),
                                    "required": dep.get("required"), "error": dep.get("error")}
                             for name, dep in (health.get("dependencies") or {}).items()},
            "stages": stages}


def _number(value: float | None, unit: str = "") -> str:
    return "…" if value is None else f"{value:,.0f}{unit}" if value >= 100 or value == int(value) else f"{value:,.1f}{unit}"


def _ago(epoch: float | None) -> str:
    if epoch is None:
        return "never"
    seconds = max(time.time() - epoch, 0.0)
    return f"{seconds:.1f}s ago" if seconds < 60 else f"{seconds / 60:.0f}m ago" if seconds < 3600 else f"{seconds / 3600:.0f}h ago"


def _circuits(circuits: dict[str, Any]) -> Text:
    opened = {name: c for name, c in circuits.items() if c.get("state") == "open"}
    if not circuits:
        return Text("-", style="dim")
    if not opened:
        return Text(f"{len(circuits)} closed", style="dim")
    text = Text()
    for name, circuit in opened.items():
        if text:
            text.append(", ")
        since = f" since {_ago(circuit.get('open_since')).removesuffix(' ago')}" if circuit.get("open_since") else ""
        error = f" ({circuit['last_error']})" if circuit.get("last_error") else ""
        text.append(f"{name} open{since}{error}", style="yellow")
    return text


def render(view: dict[str, Any], problem: str | None = None, since: datetime | None = None) -> Group:
    """The terminal view of :func:`snapshot` (and of the worker not answering any more since ``since``, if
    ``problem``)."""
    status = view.get("status") or "?"
    title = Text.assemble(("tickwire worker ", "bold"), (view["url"], ""), ": ",
                          (status, {"ok": "green", "degraded": "yellow"}.get(status, "bold red")),
                          f"  ({datetime.now().strftime('%H:%M:%S')})")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for header, right in (("stage", False), ("state", False), ("rec/s", True), ("consumed", True), ("lag", True),
                          ("lag s", True), ("dlq/s", True), ("commit", True), ("circuits", False)):
        table.add_column(header, justify="right" if right else "left", no_wrap=header != "circuits",
                         min_width=8 if header == "circuits" else None)
    for name, stage in view["stages"].items():
        state = stage["state"] or "?"
        state_text = Text(state, style=STATE_STYLES.get(state, ""))
        if stage.get("paused_by"):
            state_text.append(f" by {stage['paused_by'].get('sink')}", style="yellow")
        lag = stage["lag"]
        table.add_row(Text(name), state_text, _number(stage["records_per_s"]), f"{stage['consumed']:,}",
                      "?" if lag["records"] is None else f"{lag['records']:,}",
                      "?" if lag["seconds"] is None else f"{lag['seconds']:,.1f}",
                      _number(stage["dead_letters_per_s"]), _ago(stage["last_commit_at"]), _circuits(stage["circuits"]))
    dependencies = Text("stores: ", style="dim")
    for i, (name, dep) in enumerate(view["dependencies"].items()):
        if i:
            dependencies.append(" · ", style="dim")
        up = dep["status"] == "up"
        dependencies.append(f"{name} {dep['status']}", style="green" if up else "red" if dep.get("required") else "yellow")
        if not up and dep.get("error"):
            dependencies.append(f" ({dep['error']})", style="dim")
    parts: list[Any] = [table, dependencies]
    if problem is not None:
        parts.append(Text(f"no answer from the worker since {(since or datetime.now()).strftime('%H:%M:%S')}: {problem}",
                          style="bold red"))
    return Group(*parts)


def _first_view(base: str, interval: float, where: str) -> tuple[dict[str, Any], Counters]:
    """The first snapshot, its rates measured over ``interval``; no worker answering ends the command."""
    try:
        before = read_counters(base)
        time.sleep(interval)  # the window the first rates are measured over
        health = read_health(base)
        now = read_counters(base)
    except NoAnswer as exc:
        fail(f"no worker answers at {base} ({exc}): start one (`tickwire worker`), or {where}", EXIT_FAILURE)
    if health.get("stages") is None:
        fail(f"the web server at {base} runs no stages (a `tickwire api` process?): {where}", EXIT_FAILURE)
    return snapshot(base, health, before, now), now


STATUS_HELP = """Live per-stage rates, lag and circuit states of a running worker, refreshing
every --interval seconds until Ctrl-C (exit 0), read from the worker's /health and /metrics
at http://TICKWIRE_API_HOST:TICKWIRE_API_PORT (or --url).

Columns: records consumed per second (rec/s, from tickwire_records_consumed_total), records
consumed since the worker started, lag in records and in seconds (committed offset to log
end), dead letters per second (dlq/s), the last commit, and the circuits (open ones with
their error). A stage is running, paused (by which sink's circuit), stalled (lag and no
commit for TICKWIRE_STAGE_STALL_AFTER_S) or starting.

--once prints one snapshot (rates over one --interval) and exits; without --json, so does a
run whose stdout is not a terminal (a pipe, a file). --json prints each snapshot as one JSON
document per line (one with --once, else one every --interval until Ctrl-C): {"url", "time",
"status", "ready", "dependencies": {NAME: {"status", "latency_ms", "required", "error"}},
"stages": {NAME: {"state", "paused_by", "records_per_s", "consumed", "dead_letters_per_s",
"dead_lettered", "lag": {"records", "seconds"}, "last_commit_at", "circuits"}}}."""

STATUS_EPILOG = """\b
Exit codes: 0 ok (also when stopped with Ctrl-C); 1 no worker answers at the
URL; 2 bad usage or invalid settings."""


def _status(once: bool, as_json: bool, interval: float, url: str | None) -> None:
    settings = cli_settings()
    base = (url or settings.api_url).rstrip("/")
    if "://" not in base:
        fail(f"--url must be http://host:port, got {base!r}", EXIT_USAGE)
    where = ("check --url" if url else
             f"set TICKWIRE_API_HOST/TICKWIRE_API_PORT (now {settings.api_host}:{settings.api_port}) to a worker's web server")
    view, counters = _first_view(base, interval, where)
    live = not once and sys.stdout.isatty() and not as_json
    if not live and (once or not as_json):
        if as_json:
            out_json(view)
        else:
            print_table(render(view))
        return
    try:
        if as_json:  # a JSON document per line, every interval, until Ctrl-C
            while True:
                out_json(view)
                time.sleep(interval)
                try:
                    health, now = read_health(base), read_counters(base)
                except NoAnswer as exc:
                    fail(f"no answer from the worker at {base} any more ({exc})", EXIT_FAILURE)
                view, counters = snapshot(base, health, counters, now), now
        with Live(render(view), console=table_console(), auto_refresh=False, screen=False) as display:
            lost: datetime | None = None  # since when the worker does not answer
            while True:
                time.sleep(interval)
                try:
                    health, now = read_health(base), read_counters(base)
                except NoAnswer as exc:  # keep the last view, say so, and keep asking
                    lost = lost or datetime.now()
                    display.update(render(view, problem=str(exc), since=lost), refresh=True)
                    continue
                lost = None
                view, counters = snapshot(base, health, counters, now), now
                display.update(render(view), refresh=True)
    except KeyboardInterrupt:  # how a live view ends: not an error
        return


def _status_command(name: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text, epilog=STATUS_EPILOG)
    @click.option("--once", is_flag=True, help="Print one snapshot and exit.")
    @click.option("--json", "as_json", is_flag=True, help="Snapshots as JSON documents, one per line (see above).")
    @click.option("--interval", type=click.FloatRange(min=0.2, max=3600), default=1.0, show_default=True,
                  help="Seconds between refreshes (and the window of the rates).")
    @click.option("--url", help="The worker's web server, e.g. http://127.0.0.1:6066 (default: from the settings).")
    def command(once: bool, as_json: bool, interval: float, url: str | None) -> None:
        _status(once, as_json, interval, url)

    return command


status_command = _status_command("status", STATUS_HELP)
top_command = _status_command("top", "Same as `tickwire status`.\n\n" + STATUS_HELP)
