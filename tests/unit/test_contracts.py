"""Contracts are declared once: topic names, a tick's fields, the topology. Everything else is checked against them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson

import agents.ingest
from pipeline.api import ticks as api_ticks
from pipeline.config import STAGE_NAMES, load_settings
from pipeline.contracts.catalog import load_catalog
from pipeline.contracts.schemas import SCHEMA_TYPES, Tick
from pipeline.contracts.topics import ALL_TOPICS, DERIVED_TOPICS, DLQ_TOPIC, OUTCOMES_TOPIC, TERMINAL_TOPICS
from pipeline.ingest.producer import encode_tick
from pipeline.runtime.topology import TOPOLOGY, consumers_of
from pipeline.stores.analytics_tables import TICKS_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
#: The declaration: the fields of the ``tick.v1`` message type.
TICK_FIELDS = [field.name for field in msgspec.structs.fields(Tick)]
#: A stored tick's columns are its fields, ``time_msc`` as ``time``, without the version; plus derived columns.
STORED = {name: "time" if name == "time_msc" else name for name in TICK_FIELDS if name != "v"}
DERIVED_COLUMNS = {"spread", "src_partition", "src_offset"}


def test_topic_names_are_the_catalogs() -> None:
    catalog = load_catalog(ROOT / "topics.yaml")
    assert sorted(topic.name for topic in catalog.topics) == sorted(ALL_TOPICS)
    for topic in catalog.topics:
        assert topic.schema_name in SCHEMA_TYPES, topic.name


def test_the_json_schema_of_a_tick_has_exactly_its_fields() -> None:
    schema = json.loads((ROOT / "schemas" / "tick.v1.json").read_text())
    assert sorted(schema["properties"]) == sorted(TICK_FIELDS)
    required = {f.name for f in msgspec.structs.fields(Tick) if f.required}
    assert set(schema["required"]) == required


def test_encode_tick_writes_exactly_the_fields() -> None:
    encoded = orjson.loads(encode_tick(tenant="a", broker="b", symbol="c", time_msc=1, bid=1.0, ask=2.0))
    assert list(encoded) == TICK_FIELDS


def test_the_ticks_table_stores_every_field() -> None:
    assert set(TICKS_COLUMNS) == set(STORED.values()) | DERIVED_COLUMNS


def test_the_api_answers_every_stored_field_of_a_tick() -> None:
    selected = re.search(r"SELECT (.*?)\nFROM", api_ticks.TICKS_SQL, re.S)
    assert selected is not None
    names = [part.strip().split(" AS ")[-1] for part in selected.group(1).split(",")]
    wanted = [name for name in TICK_FIELDS if name not in ("v", "tenant")]
    assert sorted(names) == sorted(wanted)
    assert sorted(api_ticks.SCHEMAS["Tick"]["properties"]) == sorted(wanted)


@dataclass
class Rec:
    partition: int
    offset: int


class ColumnsOf:
    """Collects what the ingest handler hands to the ticks table, by column name."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {}

    def add_columns(self, columns: list[list[Any]], origins: list[Any]) -> None:
        self.columns = dict(zip(TICKS_COLUMNS, columns))


class NoClock:
    def track(self, messages: Any) -> None:
        pass


def test_the_ingest_handler_fills_each_column_with_the_field_of_its_name() -> None:
    tick = Tick(v=1, tenant="acme", broker="demo", symbol="EURUSD", time_msc=1_763_900_000_123, bid=1.1, ask=1.3,
                last=1.2, volume=7, volume_real=7.5, flags=6)
    table = ColumnsOf()
    agents.ingest.ticks([(Rec(3, 42), tick)], agents.ingest.IngestSinks(table, None, NoClock()))  # type: ignore[arg-type]
    for name, column in STORED.items():
        assert table.columns[column] == [getattr(tick, name)], name
    assert table.columns["src_partition"] == [3] and table.columns["src_offset"] == [42]
    assert abs(table.columns["spread"][0] - 0.2) < 1e-12


def test_the_topology_names_every_stage_and_every_derived_topic_has_a_consumer() -> None:
    assert tuple(spec.name for spec in TOPOLOGY) == STAGE_NAMES
    assert STAGE_NAMES == ("ingest", "signals", "patterns", "graph", "outcomes")
    for spec in TOPOLOGY:
        for topic in spec.publishes:
            if topic in TERMINAL_TOPICS:  # for consumers outside tickwire
                assert not consumers_of(topic), f"{topic} is declared terminal, yet a stage reads it"
                continue
            assert consumers_of(topic), f"{spec.name} publishes {topic}, which no stage reads"
            upstream = [s.name for s in TOPOLOGY].index(spec.name)
            assert all([s.name for s in TOPOLOGY].index(c.name) > upstream for c in consumers_of(topic)), \
                "a stage reads only what stages before it publish (replay runs them in order)"
        assert spec.inputs and DLQ_TOPIC not in spec.inputs
    assert {topic for spec in TOPOLOGY for topic in spec.inputs} <= set(ALL_TOPICS)


def test_the_stages_that_read_derived_topics_only_wait_longer_on_empty_fetches() -> None:
    settings = load_settings(fetch_max_wait_ms=20, derived_fetch_max_wait_ms=300)
    waits = {spec.name: spec.fetch_max_wait_ms(settings) for spec in TOPOLOGY}
    assert waits == {"ingest": 20, "signals": 20, "patterns": 300, "graph": 300, "outcomes": 300}
    assert all(topic in DERIVED_TOPICS for spec in TOPOLOGY if waits[spec.name] == 300 for topic in spec.inputs)
    assert {spec.name for spec in TOPOLOGY for topic in spec.publishes} == {"ingest", "signals", "outcomes"}
    assert {topic for spec in TOPOLOGY for topic in spec.publishes} == set(DERIVED_TOPICS)


def test_a_settings_stage_list_is_kept_in_topology_order() -> None:
    assert load_settings(stages="graph,ingest").stage_names == ["ingest", "graph"]
    assert load_settings(stages="outcomes,signals,ingest").stage_names == ["ingest", "signals", "outcomes"]
    assert load_settings().stage_names == list(STAGE_NAMES), "every stage runs by default"


def test_the_outcomes_stage_follows_the_stages_that_store_what_it_reads_and_publishes_its_topic() -> None:
    names = [spec.name for spec in TOPOLOGY]
    outcomes = TOPOLOGY[names.index("outcomes")]
    assert names.index("outcomes") > names.index("graph") > names.index("signals") > names.index("ingest")
    assert outcomes.inputs == ("candles.v1", "signals.enriched.v1")
    assert outcomes.publishes == (OUTCOMES_TOPIC,) and outcomes.writes_analytics
    assert OUTCOMES_TOPIC in TERMINAL_TOPICS and load_catalog(ROOT / "topics.yaml").get(OUTCOMES_TOPIC).schema_name == \
        "signal.outcome.v1"
