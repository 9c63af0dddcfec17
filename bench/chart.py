"""The benchmark's chart (matplotlib, Agg backend): one PNG with the figures of the phases a run measured.

1. ingest ticks/s per contender (median bar, min–max whisker) and the full pipeline;
2. produce → visible latency percentiles: the broker's floor (a bare consumer), hot key and
   ClickHouse, with their targets;
3. API p50 and p99 per endpoint (log scale), with the two latency targets; cached endpoints
   also without the cache (``no-cache``);
4. worker RSS against ticks processed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

LABELS = {"tickwire": "tickwire", "decode_ceiling": "(a) decode\nceiling", "sink_ceiling": "(b) sink\nceiling",
          "quix_peer": "(c) Quix\nStreams", "faust_naive": "(d) naive\nFaust"}
TICKWIRE = "#1f77b4"
OTHERS = "#9aa5b1"


def _ingest(ax: Any, results: dict[str, Any]) -> None:
    contenders = results["ingest"]["contenders"]
    full = results.get("full_pipeline")
    names = [*LABELS, "full"] if full is not None else list(LABELS)
    entries = [*(contenders[n] for n in LABELS), *([full] if full is not None else [])]
    medians = [e["median"] / 1000 for e in entries]
    errors = [[(e["median"] - e["min"]) / 1000 for e in entries], [(e["max"] - e["median"]) / 1000 for e in entries]]
    colors = [TICKWIRE if n in ("tickwire", "full") else OTHERS for n in names]
    bars = ax.bar(range(len(names)), medians, yerr=errors, color=colors, capsize=3)
    ax.bar_label(bars, labels=[f"{m:,.0f}k" for m in medians], fontsize=8, padding=2)
    ax.set_xticks(range(len(names)), [*LABELS.values(), "tickwire\nfull pipeline"][:len(names)], fontsize=8)
    ax.set_ylabel("thousand ticks/s (median, min–max)")
    ax.set_title(f"ingest of {results['ingest']['records']:,} preloaded ticks")


def _latency(ax: Any, results: dict[str, Any]) -> None:
    latency = results["latency"]
    quantiles = ("p50_ms", "p95_ms", "p99_ms", "max_ms")
    x = range(len(quantiles))
    series = (("broker_floor", "produce → bare consumer (broker floor)", None, "C2"),
              ("hot_key", "produce → hot key (p99 target 50 ms)", 50, "C0"),
              ("clickhouse", "produce → ClickHouse row (p99 target 1 s)", 1000, "C1"))
    for offset, (key, label, target, color) in zip((-0.27, 0.0, 0.27), series):
        ax.bar([i + offset for i in x], [latency[key][q] for q in quantiles], width=0.27, label=label, color=color)
        if target is not None:
            ax.axhline(target, linestyle="--", linewidth=0.8, color=color)
    ax.set_yscale("log")
    ax.set_ylim(bottom=10)
    ax.set_xticks(list(x), ["p50", "p95", "p99", "max"])
    ax.set_ylabel("ms (log)")
    ax.set_title(f"latency at {latency['achieved_rate']:,.0f} ticks/s for {latency['seconds']:g} s")
    ax.legend(fontsize=7)


def _api(ax: Any, results: dict[str, Any]) -> None:
    measured = []
    for path, e in results["api"]["endpoints"].items():
        measured.append((path.removeprefix("/v1/"), e))
        if "uncached" in e:
            measured.append((f"{path.removeprefix('/v1/')}\n(no-cache)", e["uncached"]))
    x = range(len(measured))
    ax.bar([i - 0.2 for i in x], [e["p50_ms"] for _, e in measured], width=0.4, label="p50")
    ax.bar([i + 0.2 for i in x], [e["p99_ms"] for _, e in measured], width=0.4, label="p99")
    for target in (5, 20):
        ax.axhline(target, linestyle="--", linewidth=0.8, color="grey")
    ax.set_yscale("log")
    ax.set_xticks(list(x), [f"{label}\n{e['rps']:,.0f} req/s" for label, e in measured], fontsize=6)
    ax.set_ylabel("ms (log); dashed: 5 and 20 ms targets")
    ax.set_title(f"API, {results['api']['clients']} concurrent clients")
    ax.legend(fontsize=7)


def _memory(ax: Any, results: dict[str, Any]) -> None:
    memory = results["memory"]
    samples = memory["samples"]
    ax.plot([s["ticks"] / 1e6 for s in samples], [s["rss_mb"] for s in samples], color=TICKWIRE)
    ax.axvline(memory["steady_at"] / 1e6, linestyle="--", linewidth=0.8, color="grey")
    ax.set_xlabel("million ticks committed")
    ax.set_ylabel("worker RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"memory: {memory['growth_pct']:+.1f}% from steady state to {memory['ticks'] / 1e6:g}M ticks")


#: section of the results -> its figure, in the chart's order
_FIGURES = (("ingest", _ingest), ("latency", _latency), ("api", _api), ("memory", _memory))


def write_chart(results: dict[str, Any], path: Path) -> None:
    """The figures of the sections present in ``results`` (two per row), as a PNG at ``path``."""
    figures = [draw for section, draw in _FIGURES if section in results]
    rows = (len(figures) + 1) // 2
    columns = min(len(figures), 2)
    fig, axes = plt.subplots(rows, columns, figsize=(7 * columns, 4.5 * rows), squeeze=False)
    for n, draw in enumerate(figures):
        draw(axes[n // 2][n % 2], results)
    if len(figures) % 2 and len(figures) > 1:
        axes[-1][-1].set_visible(False)
    fig.suptitle(f"tickwire bench {results['name']} ({results['plan']['mode']}), {results['started_at']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
