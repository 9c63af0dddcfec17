"""The benchmark's chart (matplotlib, Agg backend): one PNG with the figures of the phases a run measured.

Drawn at the width it is shown at in the README (~1,000 px, two panels a row),
with fonts that stay readable there. Panels, each only when the run has its
figures:

1. ingest ticks/s per contender (median bar, min–max whisker): one workload;
2. the other workloads as ratios to (1)'s tickwire rate of the same run: the replay of (1)'s
   ticks into empty stores, and the full pipeline (bars, patterns, graphs, signals), with
   their targets;
3. the full pipeline per stage: records/s from partition assignment to the stage's last
   commit, and its peak lag;
4. produce → visible latency percentiles: the broker's floor (a bare consumer), hot key and
   ClickHouse, with their targets;
5. API p50 and p99 per endpoint (log scale, horizontal, the figure's full width), with the
   latency targets; cached endpoints also without the cache, and without it beside a running
   ingestion;
6. worker RSS against ticks processed (every stage in one process);
7. peak RSS per stage, each stage alone in a worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

LABELS = {"tickwire": "tick-\nwire", "decode_ceiling": "(a)\ndecode\nceiling", "sink_ceiling": "(b)\nsink\nceiling",
          "quix_peer": "(c)\nQuix\nStreams", "faust_naive": "(d)\nnaive\nFaust"}
TICKWIRE = "#1f77b4"
OTHERS = "#9aa5b1"
#: The figure's width in inches at :data:`DPI`: the README shows it ~900-1,000 px wide, unscaled.
WIDTH_IN = 10.0
ROW_IN = 3.9
DPI = 100
FONT = {"font.size": 9.5, "axes.titlesize": 10.5, "axes.labelsize": 9.5, "xtick.labelsize": 9, "ytick.labelsize": 9,
        "legend.fontsize": 8.5}


def _ingest(ax: Any, results: dict[str, Any]) -> None:
    contenders = results["ingest"]["contenders"]
    entries = [contenders[n] for n in LABELS]
    medians = [e["median"] / 1000 for e in entries]
    errors = [[(e["median"] - e["min"]) / 1000 for e in entries], [(e["max"] - e["median"]) / 1000 for e in entries]]
    colors = [TICKWIRE if n == "tickwire" else OTHERS for n in LABELS]
    bars = ax.bar(range(len(LABELS)), medians, yerr=errors, color=colors, capsize=3)
    ax.bar_label(bars, labels=[f"{m:,.0f}k" for m in medians], padding=2)
    ax.set_xticks(range(len(LABELS)), list(LABELS.values()))
    ax.set_ylabel("thousand ticks/s")
    ax.margins(y=0.15)
    ax.set_title(f"(1) ingest of {results['ingest']['records']:,} preloaded ticks")


def _ratios(ax: Any, results: dict[str, Any]) -> None:
    rows = []
    if "replay" in results:
        rows.append((f"replay into\nempty stores\n({results['replay']['median'] / 1000:,.0f}k ticks/s)",
                     results["replay"]["ratio_to_ingest"], 0.9))
    full = results.get("full_pipeline")
    if full is not None and full.get("ratio_to_ingest") is not None:
        rows.append((f"full pipeline\n({full['median'] / 1000:,.1f}k records/s)", full["ratio_to_ingest"], 0.5))
    y = range(len(rows))
    bars = ax.barh(list(y), [r[1] for r in rows], color=TICKWIRE, height=0.5)
    ax.bar_label(bars, labels=[f"{r[1]:.2f}" for r in rows], padding=3)
    for i, (_, _, target) in enumerate(rows):
        ax.plot([target, target], [i - 0.4, i + 0.4], linestyle="--", color="black", linewidth=1.2)
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_yticks(list(y), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.15, max(r[1] for r in rows) * 1.2))
    ax.set_xlabel("÷ live ingest rate (1) of this run; dashed: target")
    ax.set_title("other workloads, as a ratio to ingest (1)")


def _has_ratios(results: dict[str, Any]) -> bool:
    return "replay" in results or results.get("full_pipeline", {}).get("ratio_to_ingest") is not None


def _stages(ax: Any, results: dict[str, Any]) -> None:
    stages = results["full_pipeline"]["stages"]
    names = list(stages)
    rates = [stages[n]["records_per_s"] / 1000 for n in names]
    bars = ax.barh(range(len(names)), rates, color=TICKWIRE, height=0.6)
    ax.bar_label(bars, padding=3, labels=[
        f"{stages[n]['records_per_s']:,.0f}/s" + (f", lag ≤ {stages[n]['peak_lag']:,}" if stages[n].get("peak_lag") is not None else "")
        for n in names])
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, max(rates + [0.001]) * 1.6)
    ax.set_xlabel("thousand records/s (to the stage's last commit)")
    ax.set_title("full pipeline per stage: rate, peak lag (records)")


def _has_stages(results: dict[str, Any]) -> bool:
    return bool(results.get("full_pipeline", {}).get("stages"))


def _latency(ax: Any, results: dict[str, Any]) -> None:
    latency = results["latency"]
    quantiles = ("p50_ms", "p95_ms", "p99_ms", "max_ms")
    x = range(len(quantiles))
    series = (("broker_floor", "broker floor (bare consumer)", None, "C2"),
              ("hot_key", "hot key (p99 target 50 ms)", 50, "C0"),
              ("clickhouse", "ClickHouse row (p99 target 1 s)", 1000, "C1"))
    for offset, (key, label, target, color) in zip((-0.27, 0.0, 0.27), series):
        ax.bar([i + offset for i in x], [latency[key][q] for q in quantiles], width=0.27, label=label, color=color)
        if target is not None:
            ax.axhline(target, linestyle="--", linewidth=0.8, color=color)
    ax.set_yscale("log")
    top = max(latency[key]["max_ms"] for key, *_ in series)
    ax.set_ylim(bottom=10, top=max(top, 1000) * 8)  # room for the legend above the bars
    ax.set_xticks(list(x), ["p50", "p95", "p99", "max"])
    ax.set_ylabel("ms (log)")
    ax.set_title(f"(3) produce → visible at {latency['achieved_rate']:,.0f} ticks/s")
    ax.legend(loc="upper left")


def _api(ax: Any, results: dict[str, Any]) -> None:
    api = results["api"]
    measured = []
    for path, e in api["endpoints"].items():
        name = path.removeprefix("/v1/")
        measured.append((name, e))
        if "uncached" in e:
            measured.append((f"{name} no-cache", e["uncached"]))
    for path, e in (api.get("under_ingest") or {}).get("endpoints", {}).items():
        measured.append((f"{path.removeprefix('/v1/')} no-cache + ingest", e))
    y = range(len(measured))
    ax.barh([i - 0.2 for i in y], [e["p50_ms"] for _, e in measured], height=0.4, label="p50")
    ax.barh([i + 0.2 for i in y], [e["p99_ms"] for _, e in measured], height=0.4, label="p99")
    for target in (5, 50):
        ax.axvline(target, linestyle="--", linewidth=0.8, color="grey")
    ax.set_xscale("log")
    ax.set_yticks(list(y), [f"{label} ({e['rps']:,.0f}/s)" for label, e in measured])
    ax.invert_yaxis()
    ax.set_xlabel("ms (log); dashed: 5 and 50 ms")
    ax.set_title(f"(4) API, {api['clients']} concurrent clients")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2)  # above the bars, beside the title


def _memory(ax: Any, results: dict[str, Any]) -> None:
    memory = results["memory"]
    samples = memory["samples"]
    ax.plot([s["ticks"] / 1e6 for s in samples], [s["rss_mb"] for s in samples], color=TICKWIRE)
    ax.axvline(memory["steady_at"] / 1e6, linestyle="--", linewidth=0.8, color="grey")
    ax.set_xlabel("million ticks committed")
    ax.set_ylabel("worker RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"(5) memory: {memory['growth_pct']:+.1f}% from {memory['steady_at'] / 1e6:g}M "
                 f"to {memory['ticks'] / 1e6:g}M ticks")


def _memory_stages(ax: Any, results: dict[str, Any]) -> None:
    memory = results["memory"]
    stages = memory["stages"]
    names = list(stages)
    bars = ax.barh(range(len(names)), [stages[n]["peak_rss_mb"] for n in names], color=TICKWIRE, height=0.6)
    ax.bar_label(bars, labels=[f"{stages[n]['peak_rss_mb']:,.0f}" for n in names], padding=3)
    label = "peak RSS (MB), each stage alone in a worker"
    if memory.get("peak_rss_mb") is not None:
        ax.axvline(memory["peak_rss_mb"], linestyle="--", linewidth=1, color="grey")
        label += f";\ndashed: every stage in one worker ({memory['peak_rss_mb']:,.0f})"
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel(label)
    ax.set_title("(5) peak RSS per stage")


def _has_memory_stages(results: dict[str, Any]) -> bool:
    return bool(results.get("memory", {}).get("stages"))


def _section(name: str) -> Callable[[dict[str, Any]], bool]:
    return lambda results: name in results


#: (whether the run has its figures, the panel), in the chart's order
_PANELS: tuple[tuple[Callable[[dict[str, Any]], bool], Callable[[Any, dict[str, Any]], None]], ...] = (
    (_section("ingest"), _ingest), (_has_ratios, _ratios), (_has_stages, _stages), (_section("latency"), _latency),
    (_section("api"), _api), (_section("memory"), _memory), (_has_memory_stages, _memory_stages),
)


#: panels drawn the figure's full width (long labels)
_WIDE = (_api,)


def _layout(panels: list[Callable[[Any, dict[str, Any]], None]]) -> list[tuple[int, int, int]]:
    """(row, first column, columns spanned) of each panel: two a row, a wide one alone on its row."""
    places, row, column = [], 0, 0
    for draw in panels:
        if draw in _WIDE:
            if column:
                row, column = row + 1, 0
            places.append((row, 0, 2))
            row += 1
        else:
            places.append((row, column, 1))
            row, column = (row + 1, 0) if column else (row, 1)
    return places


def write_chart(results: dict[str, Any], path: Path) -> None:
    """The panels whose figures ``results`` has (two per row, the API's alone), as a PNG at ``path``."""
    panels = [draw for present, draw in _PANELS if present(results)]
    places = _layout(panels)
    rows = max(r for r, _, _ in places) + 1
    with plt.rc_context(FONT):
        fig = plt.figure(figsize=(WIDTH_IN, ROW_IN * rows + 0.4))
        grid = fig.add_gridspec(rows, 2)
        for draw, (row, column, span) in zip(panels, places):
            draw(fig.add_subplot(grid[row, column:column + span]), results)
        fig.suptitle(f"tickwire bench {results['name']} ({results['plan']['mode']}), {results['started_at']}")
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # below the title
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
