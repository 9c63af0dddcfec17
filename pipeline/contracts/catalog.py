"""The topic catalog (``topics.yaml``) and applying it to a broker.

``apply_catalog`` is idempotent: it creates missing topics and reports drift of
existing ones (partitions, retention, cleanup policy) without changing them,
since shrinking partitions is impossible and changing them reorders keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.contracts.schemas import SCHEMA_TYPES

TOPIC_ALREADY_EXISTS = 36


class TopicSpec(BaseModel):
    """One topic as the catalog declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9._-]{1,249}$")
    partitions: int = Field(ge=1, le=10_000)
    retention_ms: int = Field(ge=-1)
    cleanup_policy: Literal["delete", "compact", "compact,delete"]
    key: str
    schema_name: str = Field(alias="schema")

    @property
    def configs(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    topics: list[TopicSpec]

    def get(self, name: str) -> TopicSpec:
        for topic in self.topics:
            if topic.name == name:
                return topic
        raise KeyError(f"topic {name!r} is not in the catalog")


class CatalogError(ValueError):
    """topics.yaml is unreadable or invalid (the message says where)."""


def load_catalog(path: Path) -> Catalog:
    try:
        raw = yaml.safe_load(path.read_text())
        catalog = Catalog.model_validate(raw)
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"cannot read topic catalog {path}: {exc}") from None
    except ValidationError as exc:
        raise CatalogError(f"invalid topic catalog {path}: {exc}") from None
    for topic in catalog.topics:
        if topic.schema_name not in SCHEMA_TYPES:
            raise CatalogError(f"{path}: topic {topic.name} names unknown schema {topic.schema_name!r}")
    names = [t.name for t in catalog.topics]
    if len(set(names)) != len(names):
        raise CatalogError(f"{path}: duplicate topic names")
    return catalog


@dataclass(frozen=True)
class TopicState:
    """What ``apply_catalog`` found or did for one topic."""

    name: str
    action: Literal["created", "ok", "drift"]
    detail: str = ""


async def apply_catalog(catalog: Catalog, brokers: list[str] | dict[str, Any], replication_factor: int = 1) -> list[TopicState]:
    """Create missing topics (with ``replication_factor``); report drift of existing ones. Never deletes or alters.

    ``brokers``: the bootstrap servers, or the client options of every tickwire Kafka client
    (``pipeline.core.kafka.client_options``: servers and security)."""
    options: dict[str, Any] = {"bootstrap_servers": brokers} if isinstance(brokers, list) else dict(brokers)
    options.setdefault("request_timeout_ms", 10_000)
    admin = AIOKafkaAdminClient(**options)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in catalog.topics if t.name not in existing]
        states: list[TopicState] = []
        if missing:
            response = await admin.create_topics(
                [NewTopic(t.name, t.partitions, replication_factor, topic_configs=t.configs) for t in missing]
            )
            for name, code, message in response.topic_errors:
                if code not in (0, TOPIC_ALREADY_EXISTS):
                    raise RuntimeError(f"creating topic {name} failed: error {code} {message}")
            states += [TopicState(t.name, "created", f"{t.partitions} partitions") for t in missing]
        present = [t for t in catalog.topics if t.name in existing]
        if present:
            states += await _check_drift(admin, present)
        order = {t.name: i for i, t in enumerate(catalog.topics)}
        return sorted(states, key=lambda s: order[s.name])
    finally:
        await admin.close()


async def _check_drift(admin: AIOKafkaAdminClient, topics: list[TopicSpec]) -> list[TopicState]:
    described = {d["topic"]: d for d in await admin.describe_topics([t.name for t in topics])}
    config_responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t.name) for t in topics]
    )
    configs: dict[str, dict[str, str]] = {}
    for response in config_responses:
        for resource in response.resources:
            _code, _msg, _type, name, entries = resource[:5]
            configs[name] = {entry[0]: entry[1] for entry in entries}
    states = []
    for topic in topics:
        problems = []
        partitions = len(described.get(topic.name, {}).get("partitions", []))
        if partitions != topic.partitions:
            problems.append(f"partitions {partitions} != {topic.partitions}")
        actual = configs.get(topic.name, {})
        for name, wanted in topic.configs.items():
            if name in actual and actual[name] != wanted:
                problems.append(f"{name} {actual[name]} != {wanted}")
        states.append(TopicState(topic.name, "drift" if problems else "ok", "; ".join(problems)))
    return states
