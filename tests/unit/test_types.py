"""The type check passes: ``mypy`` with the project's configuration (pyproject.toml ``[tool.mypy]``: strict
on ``pipeline`` and ``agents``) reports no error, so ``pytest`` alone enforces it, as ``make test`` does.

Fast after the first run: mypy's incremental cache (``.mypy_cache``) is kept between runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_reports_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the configuration's `files` and the cache are relative to the project root
    stdout, stderr, status = api.run(["--config-file", str(ROOT / "pyproject.toml")])
    assert status == 0, f"mypy found type errors (run `.venv/bin/mypy`):\n{stdout}{stderr}"
