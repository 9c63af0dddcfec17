"""docker-compose.yml, the Dockerfile and the Procfile agree with each other and with the settings.

No Docker engine runs here, so nothing is started: these tests read the
files. What they pin down: the compose file parses; every ``TICKWIRE_*`` it
(or the Dockerfile) sets is a setting, and the tickwire services' environment
loads as valid settings; every address those settings hold names a service
of the file and a port it listens on; every long-running service has a
healthcheck and a worker starts only after the stores are healthy and the
catalog was applied; published host ports never collide; named volumes are
declared; the image's default command is the Procfile's worker and the
compose commands are the Procfile's and ``tickwire topics apply``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from pipeline.config import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
TICKWIRE_SERVICES = ("topics", "worker", "api")
STORES = ("redpanda", "clickhouse", "dragonfly", "postgres", "weaviate", "arangodb")
DEFAULTED = re.compile(r"\$\{([A-Z_][A-Z0-9_]*):-([^}]*)\}")


def resolved(value: object) -> str:
    """A compose value with ``${NAME:-default}`` replaced by its default (as compose does when NAME is unset)."""
    text = str(value)
    assert "${" not in DEFAULTED.sub("", text), f"{text!r}: every variable needs a default"
    return DEFAULTED.sub(lambda m: m.group(2), text)


def environment(service: str) -> dict[str, str]:
    return {name: resolved(value) for name, value in (SERVICES[service].get("environment") or {}).items()}


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def container_ports(service: str) -> set[int]:
    spec = SERVICES[service]
    ports = {int(str(p).split(":")[-1].split("/")[0]) for p in spec.get("ports", [])}
    return ports | {int(p) for p in spec.get("expose", [])}


def test_the_services_are_the_production_stack() -> None:
    assert set(SERVICES) == {*STORES, *TICKWIRE_SERVICES}
    assert SERVICES["postgres"]["image"].startswith("pgvector/pgvector:")


@pytest.mark.parametrize("service", TICKWIRE_SERVICES)
def test_every_tickwire_variable_is_a_setting_and_the_environment_loads(service: str) -> None:
    env = environment(service)
    names = {name.removeprefix(ENV_PREFIX).lower() for name in env if name.startswith(ENV_PREFIX)}
    assert names, service
    assert names <= set(Settings.model_fields), names - set(Settings.model_fields)
    assert not [name for name in env if not name.startswith(ENV_PREFIX)], "only TICKWIRE_* settings"
    settings = load_settings(**{name.removeprefix(ENV_PREFIX).lower(): value for name, value in env.items()})
    assert settings.vector_backend == "weaviate" and settings.graph_backend == "arangodb"
    assert settings.chdb_path is None  # a ClickHouse server, so `tickwire api` can run apart


def test_dockerfile_sets_only_settings() -> None:
    names = re.findall(r"\b(TICKWIRE_[A-Z_]+)=", dockerfile())
    assert names and {n.removeprefix(ENV_PREFIX).lower() for n in names} <= set(Settings.model_fields)


@pytest.mark.parametrize("service", TICKWIRE_SERVICES)
def test_every_address_points_at_a_service_and_a_port_it_listens_on(service: str) -> None:
    env = environment(service)
    settings = load_settings(**{name.removeprefix(ENV_PREFIX).lower(): value for name, value in env.items()})
    addresses = {
        "TICKWIRE_BROKER_URL": [f"kafka://{server}" for server in settings.bootstrap_servers],
        "TICKWIRE_CLICKHOUSE_DSN": [settings.clickhouse_dsn],
        "TICKWIRE_CACHE_URL": [settings.cache_url],
        "TICKWIRE_POSTGRES_DSN": [settings.postgres_dsn],
        "TICKWIRE_WEAVIATE_URL": [settings.weaviate_url],
        "TICKWIRE_WEAVIATE_GRPC_URL": [settings.weaviate_grpc_url],
        "TICKWIRE_GRAPH_URL": [settings.graph_url],
    }
    for setting, urls in addresses.items():
        for url in urls:
            parts = urlsplit(str(url))
            assert parts.hostname in SERVICES, f"{service}: {setting} names {parts.hostname!r}, not a service"
            assert parts.port in container_ports(parts.hostname), f"{service}: {setting} port {parts.port}"
    # what each process needs up before it starts: the catalog only the broker, the API every store but the broker
    needs = {"topics": {"redpanda"}, "worker": set(STORES), "api": set(STORES) - {"redpanda"}}[service]
    assert needs <= set(SERVICES[service]["depends_on"]), needs - set(SERVICES[service]["depends_on"])


def test_stores_and_tickwire_processes_have_healthchecks_and_start_in_order() -> None:
    for name in (*STORES, "worker", "api"):
        assert SERVICES[name]["healthcheck"]["test"], name
    worker = SERVICES["worker"]["depends_on"]
    assert worker.pop("topics") == {"condition": "service_completed_successfully"}
    assert worker == {store: {"condition": "service_healthy"} for store in STORES}
    assert SERVICES["topics"]["depends_on"] == {"redpanda": {"condition": "service_healthy"}}
    assert SERVICES["topics"]["restart"] == "no"


def test_health_checks_ask_the_port_the_process_serves() -> None:
    for name in ("worker", "api"):
        port = environment(name)["TICKWIRE_API_PORT"]
        assert f"127.0.0.1:{port}/health" in " ".join(SERVICES[name]["healthcheck"]["test"])
        assert int(port) in container_ports(name)


def test_published_host_ports_do_not_collide() -> None:
    host_ports: list[int] = []
    for spec in SERVICES.values():
        for port in spec.get("ports", []):
            parts = str(port).split(":")
            if len(parts) > 1:  # "host:container"; a bare container port gets an ephemeral host port
                host_ports.append(int(parts[-2]))
    assert host_ports and len(host_ports) == len(set(host_ports)), sorted(host_ports)


def test_named_volumes_are_declared() -> None:
    used = {str(v).split(":")[0] for spec in SERVICES.values() for v in spec.get("volumes", [])}
    assert used and used <= set(COMPOSE["volumes"]), used - set(COMPOSE["volumes"])


def test_commands_match_the_procfile_and_the_image() -> None:
    processes = {name.strip(): shlex.split(command) for name, command in procfile().items()}
    cmd = re.search(r"^CMD\s+(\[.*\])\s*$", dockerfile(), re.M)
    assert cmd, "the Dockerfile needs an exec-form CMD"
    assert yaml.safe_load(cmd.group(1)) == processes["worker"]
    assert "command" not in SERVICES["worker"]  # the worker runs the image's CMD
    assert SERVICES["api"]["command"] == processes["api"]
    assert SERVICES["topics"]["command"] == ["tickwire", "topics", "apply"]
    for name in TICKWIRE_SERVICES:
        assert SERVICES[name]["build"] == "." and SERVICES[name]["image"] == "tickwire:latest"


def test_procfile_commands_exist() -> None:
    from click.testing import CliRunner

    from pipeline.cli.main import cli

    for command in procfile().values():
        args = shlex.split(command)
        assert args[0] == "tickwire"
        result = CliRunner().invoke(cli, [args[1], "--help"])
        assert result.exit_code == 0, (command, result.output)
