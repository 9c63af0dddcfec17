"""The Prometheus tools the monitoring tests need (``promtool``, the ``prometheus`` server), and what they read.

Both binaries come from Debian's ``prometheus`` package. CI installs it (``.ci/run``); here, when a binary is
missing and the tests run as root with apt, they install it once (quietly). Tests skip, naming the reason, only
when it can be neither found nor installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
RULE_FILES = (PROMETHEUS_DIR / "recording.yml", PROMETHEUS_DIR / "alerts.yml")
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "tickwire.json"
_install_tried: dict[str, str] = {}


def _apt_install() -> str:
    """Install Debian's prometheus package; '' on success, else why not."""
    if "result" in _install_tried:
        return _install_tried["result"]
    why = ""
    if not shutil.which("apt-get"):
        why = "apt-get is not available"
    elif os.geteuid() != 0:
        why = "not root, so apt-get cannot install the prometheus package"
    else:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"]
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:  # a fresh image has no package lists yet
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, text=True, timeout=600)
            done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            why = f"apt-get install prometheus failed: {(done.stderr or done.stdout).strip()[-300:]}"
    _install_tried["result"] = why
    return why


def prometheus_binary(name: str) -> str:
    """Path of ``promtool`` or ``prometheus``; installs the package if needed, else skips with the reason."""
    path = shutil.which(name)
    if path is None:
        why = _apt_install()
        path = shutil.which(name)
        if path is None:
            reason = f"{name} not found and could not be installed ({why or 'the package did not provide it'})"
            print(f"SKIPPED: {reason}", file=sys.stderr)
            pytest.skip(reason)
    return path


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules(kind: str) -> list[dict[str, Any]]:
    """Every rule of kind ``record`` or ``alert`` of deploy/prometheus."""
    return [rule for path in RULE_FILES for group in load_yaml(path)["groups"] for rule in group["rules"] if kind in rule]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panel_queries() -> Iterator[tuple[str, str]]:
    """(panel title, PromQL expression) of every query of the dashboard."""
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


METRIC_NAME = re.compile(r"\b((?:[a-z_]+:)?tickwire_[a-z0-9_]+(?::[a-z0-9_]+)?|up)\b(?!\s*\()")


def series_names(expr: str) -> set[str]:
    """Metric and recorded-series names an expression reads (tickwire's, and ``up``)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_by = re.sub(r"\b(by|on|ignoring|without|group_left|group_right)\s*\([^)]*\)", "", without_strings)
    return set(METRIC_NAME.findall(without_by))
