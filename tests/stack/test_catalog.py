"""The topic catalog: valid, applied idempotently, drift reported."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import yaml

from pipeline.contracts.catalog import CatalogError, apply_catalog, load_catalog
from pipeline.contracts.schemas import CANDLE_SCHEMAS

ROOT = Path(__file__).resolve().parents[2]


def test_repository_catalog_is_valid():
    catalog = load_catalog(ROOT / "topics.yaml")
    names = {t.name for t in catalog.topics}
    assert {"mt5.ticks.v1", "mt5.signals.v1", "dlq.v1"} <= names
    for topic in catalog.topics:
        assert (ROOT / "schemas" / f"{topic.schema_name}.json").exists()
    assert catalog.get("candles.v1").schema_name == CANDLE_SCHEMAS[-1] == "candle.v2", "the bars published now"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"topics": [{"name": "a", "partitions": 0, "retention_ms": 1, "cleanup_policy": "delete", "key": "k", "schema": "tick.v1"}], }, "partitions"),
        ({"topics": [{"name": "a", "partitions": 1, "retention_ms": 1, "cleanup_policy": "delete", "key": "k", "schema": "nope.v9"}]}, "unknown schema"),
        ({"topics": [{"name": "a", "partitions": 1, "retention_ms": 1, "cleanup_policy": "delete", "key": "k", "schema": "tick.v1", "extra": 1}]}, "extra"),
    ],
)
def test_invalid_catalog_fails_with_a_reason(tmp_path, document, message):
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(CatalogError, match=message):
        load_catalog(path)


@pytest.mark.stack
def test_apply_creates_then_is_idempotent_then_reports_drift(stack_settings, tmp_path):
    name = f"test.{uuid.uuid4().hex[:8]}"
    spec = {"name": name, "partitions": 2, "retention_ms": 3600000, "cleanup_policy": "delete", "key": "k", "schema": "tick.v1"}
    path = tmp_path / "topics.yaml"
    path.write_text(yaml.safe_dump({"topics": [spec]}))
    servers = stack_settings.bootstrap_servers

    first = asyncio.run(apply_catalog(load_catalog(path), servers))
    assert [(s.name, s.action) for s in first] == [(name, "created")]
    second = asyncio.run(apply_catalog(load_catalog(path), servers))
    assert [(s.name, s.action) for s in second] == [(name, "ok")]

    path.write_text(yaml.safe_dump({"topics": [{**spec, "partitions": 4, "retention_ms": 60000}]}))
    drift = asyncio.run(apply_catalog(load_catalog(path), servers))
    assert drift[0].action == "drift"
    assert "partitions 2 != 4" in drift[0].detail and "retention.ms 3600000 != 60000" in drift[0].detail
