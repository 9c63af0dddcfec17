"""docker-compose.yml (and its development override), the Dockerfile and the Procfile agree with each other and
with the settings, and the stack they describe is safe to run.

No Docker engine runs here, so nothing is started: these tests read the files (tests/stack/test_image.py runs
what the image installs). What they pin down: the compose file parses; every ``TICKWIRE_*`` it (or the
Dockerfile) sets is a setting, every ``tickwire_*`` secret is a secret setting, and the tickwire services'
environment and secrets load as valid settings; every address those settings hold names a service of the file
and a port it listens on; every long-running service has a healthcheck and a worker starts only after the stores
are healthy and the catalog was applied; no database port is published (the dev override publishes them on
127.0.0.1); no secret is on a command line, in a healthcheck or in the file, and every one the file needs is in
.env.example; Redpanda asks for SASL/SCRAM and tickwire gives it; ArangoDB gets an application user that tickwire
uses instead of root; every image is pinned by version; the Dockerfile installs the hashed lock before the source,
runs as its user and has the healthcheck the tickwire services use; the commands are the Procfile's.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import SecretStr

from pipeline.config import ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
DEV = yaml.safe_load((ROOT / "docker-compose.dev.yml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
TICKWIRE_SERVICES = ("topics", "worker", "api")
STORES = ("redpanda", "clickhouse", "dragonfly", "postgres", "weaviate", "arangodb")
ONE_SHOTS = ("redpanda-users", "topics")
MONITORING = ("prometheus", "grafana", "redpanda-console")  # deploy/; tests/unit/test_prometheus_rules.py checks them
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?([-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


#: What an operator's .env would hold: every variable of .env.example, with a value.
DOTENV = {name: value or f"test-{name.lower().replace('_', '-')}" for name, value in env_example().items()}


def resolved(value: object, env: dict[str, str] = DOTENV) -> str:
    """A compose value with ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` replaced as compose does."""

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        if kind == "-":
            return rest
        raise AssertionError(f"compose would stop: {name} is unset ({rest or 'no default'})")

    return VARIABLE.sub(one, str(value))


def environment(service: str) -> dict[str, str]:
    return {name: resolved(value) for name, value in (SERVICES[service].get("environment") or {}).items()}


def secrets_of(service: str) -> list[str]:
    return [s if isinstance(s, str) else s["source"] for s in SERVICES[service].get("secrets", [])]


def tickwire_settings(service: str) -> Settings:
    """The settings a tickwire service's process loads: its TICKWIRE_* variables and its secret files."""
    values: dict[str, object] = {name.removeprefix(ENV_PREFIX).lower(): value for name, value in environment(service).items()}
    for secret in secrets_of(service):
        values[secret.removeprefix("tickwire_")] = DOTENV[COMPOSE["secrets"][secret]["environment"]]
    return load_settings(**values)


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (continuation lines joined), comments left out."""
    joined = re.sub(r"\\\n", " ", dockerfile())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def container_ports(service: str) -> set[int]:
    spec = SERVICES[service]
    ports = {int(str(p).split(":")[-1].split("/")[0]) for p in spec.get("ports", [])}
    return ports | {int(p) for p in spec.get("expose", [])}


def test_the_services_are_the_production_stack() -> None:
    assert set(SERVICES) == {*STORES, *TICKWIRE_SERVICES, "redpanda-users", *MONITORING}
    assert SERVICES["postgres"]["image"].startswith("pgvector/pgvector:")


@pytest.mark.parametrize("service", TICKWIRE_SERVICES)
def test_every_tickwire_variable_and_secret_is_a_setting_and_they_load(service: str) -> None:
    env = environment(service)
    names = {name.removeprefix(ENV_PREFIX).lower() for name in env if name.startswith(ENV_PREFIX)}
    assert names, service
    assert names <= set(Settings.model_fields), names - set(Settings.model_fields)
    assert not [name for name in env if not name.startswith(ENV_PREFIX)], "only TICKWIRE_* settings"
    secret_fields = {name for name, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation)}
    secrets = {secret.removeprefix("tickwire_") for secret in secrets_of(service)}
    assert all(secret.startswith("tickwire_") for secret in secrets_of(service))
    assert secrets <= secret_fields, secrets - secret_fields
    assert not names & secret_fields, "secrets come as files, not in the environment"
    settings = tickwire_settings(service)
    assert settings.vector_backend == "weaviate" and settings.graph_backend == "arangodb"
    assert settings.chdb_path is None  # a ClickHouse server, so `tickwire api` can run apart
    # every store tickwire talks to gets its credentials
    for field in ("kafka_sasl_password", "clickhouse_password", "cache_password", "postgres_password",
                  "weaviate_api_key", "arango_password"):
        value = getattr(settings, field)
        assert isinstance(value, SecretStr) and value.get_secret_value(), field


def test_dockerfile_sets_only_settings() -> None:
    names = re.findall(r"\b(TICKWIRE_[A-Z_]+)=", dockerfile())
    assert names and {n.removeprefix(ENV_PREFIX).lower() for n in names} <= set(Settings.model_fields)


@pytest.mark.parametrize("service", TICKWIRE_SERVICES)
def test_every_address_points_at_a_service_and_a_port_it_listens_on(service: str) -> None:
    settings = tickwire_settings(service)
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
            assert parts.password is None, f"{service}: {setting} carries a password; it belongs in a secret"
    # what each process needs up before it starts: the catalog only the broker, the API every store but the broker
    needs = {"topics": {"redpanda-users"}, "worker": set(STORES), "api": set(STORES) - {"redpanda"}}[service]
    assert needs <= set(SERVICES[service]["depends_on"]), needs - set(SERVICES[service]["depends_on"])


def test_stores_and_tickwire_processes_have_healthchecks_and_start_in_order() -> None:
    for name in STORES:
        assert SERVICES[name]["healthcheck"]["test"], name
    worker = SERVICES["worker"]["depends_on"]
    assert worker.pop("topics") == {"condition": "service_completed_successfully"}
    assert worker == {store: {"condition": "service_healthy"} for store in STORES}
    assert SERVICES["topics"]["depends_on"] == {"redpanda-users": {"condition": "service_completed_successfully"}}
    assert SERVICES["redpanda-users"]["depends_on"] == {"redpanda": {"condition": "service_healthy"}}
    for name in ONE_SHOTS:
        assert SERVICES[name]["restart"] == "no"


def test_the_image_healthcheck_asks_the_port_each_tickwire_process_serves() -> None:
    (check,) = [args for name, args in instructions() if name == "HEALTHCHECK"]
    command = yaml.safe_load(check[check.index("CMD") + 3:].strip())
    assert command[:2] == ["python", "-c"]
    assert "'http://127.0.0.1:%s/health/live' % os.environ['TICKWIRE_API_PORT']" in command[2]
    image_env = dict(re.findall(r"\b(TICKWIRE_[A-Z_]+)=(\S+)", dockerfile()))
    assert image_env["TICKWIRE_API_PORT"] == "6066"
    for name in ("worker", "api"):  # one place: the image's; the services only say which port they serve
        assert "healthcheck" not in SERVICES[name], f"{name} overrides the image's healthcheck"
        port = environment(name)["TICKWIRE_API_PORT"]
        assert int(port) in container_ports(name)
    assert SERVICES["topics"]["healthcheck"] == {"disable": True}


def test_no_database_port_is_published_and_the_dev_override_publishes_them_on_localhost() -> None:
    published = {name: spec["ports"] for name, spec in SERVICES.items() if spec.get("ports")}
    assert set(published) == {"worker", "api", "grafana", "redpanda-console"}, published
    assert published["worker"] == ["6066"] and published["api"] == ["8000:8000"]
    assert published["grafana"] == ["3000:3000"] and published["redpanda-console"] == ["8081:8080"]
    overridden = DEV["services"]
    assert set(overridden) == set(STORES) and set(DEV) == {"services"}
    for name, spec in overridden.items():
        assert set(spec) == {"ports"}, name
        for port in spec["ports"]:
            host, host_port, container_port = str(port).split(":")
            assert host == "127.0.0.1" and int(container_port) in container_ports(name), (name, port)


def test_published_host_ports_do_not_collide_with_or_without_the_dev_override() -> None:
    host_ports: list[int] = []
    for spec in [*SERVICES.values(), *DEV["services"].values()]:
        for port in spec.get("ports", []):
            parts = str(port).split(":")
            if len(parts) > 1:  # "[ip:]host:container"; a bare container port gets an ephemeral host port
                host_ports.append(int(parts[-2]))
    assert len(host_ports) > 6 and len(host_ports) == len(set(host_ports)), sorted(host_ports)


def test_no_secret_is_on_a_command_line_in_a_healthcheck_or_in_the_file() -> None:
    secret_names = set(env_example())
    for name, spec in SERVICES.items():
        lines = [spec.get("command"), spec.get("entrypoint"), (spec.get("healthcheck") or {}).get("test")]
        text = " ".join(" ".join(map(str, line)) if isinstance(line, list) else str(line or "") for line in lines)
        assert not re.search(r"(?i)pass|secret|api_?key|requirepass|token", text), (name, text)
        assert not VARIABLE.search(text) and "$$" not in text, (name, text)
    # every variable the file uses is a secret of .env.example, required (no default: no weak password ships)
    used = {match.group(1): match.group(2) for match in VARIABLE.finditer(COMPOSE_TEXT)}
    assert set(used) == secret_names, set(used) ^ secret_names
    assert set(used.values()) == {"?"}, used
    assert all(value == "" for value in env_example().values()), ".env.example holds no value"
    for secret in COMPOSE["secrets"].values():
        assert set(secret) == {"environment"} and secret["environment"] in secret_names
    assert {s for name in SERVICES for s in secrets_of(name)} == set(COMPOSE["secrets"])
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()


def test_the_secret_files_are_what_the_stores_read() -> None:
    assert environment("postgres")["POSTGRES_PASSWORD_FILE"] == "/run/secrets/tickwire_postgres_password"
    assert "tickwire_postgres_password" in secrets_of("postgres")
    assert environment("arangodb")["ARANGO_ROOT_PASSWORD_FILE"] == "/run/secrets/arango_root_password"
    assert {"arango_root_password", "tickwire_arango_password"} <= set(secrets_of("arangodb"))
    raw = {name: SERVICES[name].get("environment", {}) for name in STORES}
    # the same variable reaches the store and tickwire
    assert raw["dragonfly"]["DFLY_requirepass"] == raw["dragonfly"]["REDISCLI_AUTH"]
    assert VARIABLE.search(raw["dragonfly"]["DFLY_requirepass"]).group(1) == COMPOSE["secrets"]["tickwire_cache_password"]["environment"]
    assert (VARIABLE.search(raw["clickhouse"]["CLICKHOUSE_PASSWORD"]).group(1)
            == COMPOSE["secrets"]["tickwire_clickhouse_password"]["environment"])
    assert (VARIABLE.search(raw["weaviate"]["AUTHENTICATION_APIKEY_ALLOWED_KEYS"]).group(1)
            == COMPOSE["secrets"]["tickwire_weaviate_api_key"]["environment"])
    assert environment("clickhouse")["CLICKHOUSE_USER"] == tickwire_settings("worker").clickhouse_username
    assert "requirepass" not in " ".join(SERVICES["dragonfly"]["command"])


def test_redpanda_asks_for_sasl_scram_and_tickwire_gives_it() -> None:
    settings = tickwire_settings("worker")
    assert settings.kafka_security_protocol == "SASL_PLAINTEXT" and settings.kafka_sasl_mechanism == "SCRAM-SHA-256"
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in SERVICES["redpanda"]["volumes"] if str(v).startswith("./")}
    bootstrap = yaml.safe_load((ROOT / mounts["/etc/redpanda/.bootstrap.yaml"]).read_text())
    assert bootstrap["enable_sasl"] is True and bootstrap["superusers"] == [settings.kafka_sasl_username]
    users = SERVICES["redpanda-users"]
    assert users["image"] == SERVICES["redpanda"]["image"]
    assert users["environment"]["KAFKA_USERNAME"] == settings.kafka_sasl_username
    assert users["secrets"] == ["tickwire_kafka_sasl_password"]
    (script_mount,) = users["volumes"]
    source, target = str(script_mount).split(":")[:2]
    assert users["entrypoint"] == ["/bin/bash", target] and (ROOT / source).is_file()


def test_arangodb_gets_an_application_user_that_tickwire_uses_instead_of_root() -> None:
    settings = tickwire_settings("worker")
    assert settings.arango_username == "tickwire" != "root"
    (init,) = [str(v).split(":") for v in SERVICES["arangodb"]["volumes"] if "docker-entrypoint-initdb.d" in str(v)]
    script = (ROOT / init[0]).read_text()
    assert init[1].startswith("/docker-entrypoint-initdb.d/") and init[1].endswith(".js")
    assert f"const user = '{settings.arango_username}';" in script
    assert f"const database = '{settings.arango_database}';" in script
    assert "fs.read('/run/secrets/tickwire_arango_password')" in script and "grantDatabase(user, database, 'rw')" in script
    # the healthcheck needs no credentials
    assert "/_admin/server/availability" in " ".join(SERVICES["arangodb"]["healthcheck"]["test"])


IMAGE_TAG = re.compile(r"^(?P<repo>[a-z0-9./_-]+):(?P<tag>[A-Za-z0-9._-]+)(@sha256:[0-9a-f]{64})?$")


def pinned(image: str) -> bool:
    """An explicit version: a tag with major.minor.patch (a bare major, ``pg17`` or ``latest`` floats)."""
    match = IMAGE_TAG.match(image)
    return bool(match) and bool(re.search(r"\d+\.\d+\.\d+", match.group("tag"))) and "latest" not in match.group("tag")


def test_every_image_is_pinned_by_an_explicit_version() -> None:
    for name, spec in SERVICES.items():
        if "build" in spec:
            assert spec["image"] == f"tickwire:{VERSION}", name  # built here, tagged with the project's version
        else:
            assert pinned(spec["image"]), (name, spec["image"])
    (base,) = [args for name, args in instructions() if name == "FROM"]
    assert pinned(base.split()[0]), base
    for floating in ("arangodb:3.12", "pgvector/pgvector:pg17", "redis:latest", "clickhouse/clickhouse-server:25.8",
                     "python:3.11-slim"):
        assert not pinned(floating), floating
    assert pinned("pgvector/pgvector:0.8.0-pg17") and pinned("arangodb:3.12.4@sha256:" + "0" * 64)
    assert "docker buildx imagetools inspect" in COMPOSE_TEXT and "docker buildx imagetools inspect" in dockerfile()


def test_the_dockerfile_installs_the_hashed_lock_before_the_source_and_runs_as_its_user() -> None:
    steps = instructions()
    order = [name for name, _ in steps]
    runs = [args for name, args in steps if name == "RUN"]
    copies = [args.split() for name, args in steps if name == "COPY"]
    lock_install = next(i for i, (name, args) in enumerate(steps) if name == "RUN" and "--require-hashes" in args)
    assert steps[lock_install][1] == "pip install --require-hashes -r requirements/worker.lock"
    assert copies[0] == ["requirements/worker.lock", "requirements/worker.lock"]
    first_source = next(i for i, (name, args) in enumerate(steps) if name == "COPY" and "pipeline" in args.split()[0])
    assert lock_install < first_source, "the dependencies are installed before the source is copied"
    assert runs[-1] == "pip install --no-deps ." and "-e" not in runs[-1].split()
    user = next(args for name, args in steps if name == "USER")
    assert user == "tickwire" and f"useradd --system --uid 10001 --create-home {user}" in runs[0]
    assert order.index("USER") < order.index("CMD") and order.index("USER") > max(i for i, n in enumerate(order) if n == "RUN")
    image_env = dict(re.findall(r"\b(TICKWIRE_[A-Z_]+)=(\S+)", dockerfile()))
    assert image_env["TICKWIRE_TOPICS_FILE"] == "/app/topics.yaml" and image_env["TICKWIRE_SCHEMAS_DIR"] == "/app/schemas"
    assert image_env["TICKWIRE_STATE_DIR"] == "/var/lib/tickwire"
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"bench", "tests", "docs", "examples", ".venv", ".git"} <= set(ignored)


def test_commands_match_the_procfile_and_the_image() -> None:
    processes = {name.strip(): shlex.split(command) for name, command in procfile().items()}
    cmd = re.search(r"^CMD\s+(\[.*\])\s*$", dockerfile(), re.M)
    assert cmd, "the Dockerfile needs an exec-form CMD"
    assert yaml.safe_load(cmd.group(1)) == processes["worker"]
    assert "command" not in SERVICES["worker"]  # the worker runs the image's CMD
    assert SERVICES["api"]["command"] == processes["api"]
    assert SERVICES["topics"]["command"] == ["tickwire", "topics", "apply"]
    for name in TICKWIRE_SERVICES:
        assert SERVICES[name]["build"] == "." and SERVICES[name]["image"] == f"tickwire:{VERSION}"


def test_named_volumes_are_declared_and_mounted_files_exist() -> None:
    used = {str(v).split(":")[0] for spec in SERVICES.values() for v in spec.get("volumes", [])}
    named = {v for v in used if not v.startswith("./")}
    assert named and named <= set(COMPOSE["volumes"]), named - set(COMPOSE["volumes"])
    files = used - named
    assert len(files) == 3 and all((ROOT / f).is_file() for f in files), files


def test_procfile_commands_exist() -> None:
    from click.testing import CliRunner

    from pipeline.cli.main import cli

    for command in procfile().values():
        args = shlex.split(command)
        assert args[0] == "tickwire"
        result = CliRunner().invoke(cli, [args[1], "--help"])
        assert result.exit_code == 0, (command, result.output)


def test_the_redpanda_superuser_script_creates_or_updates_the_user_from_the_secret_file(tmp_path: Path) -> None:
    """deploy/redpanda/create-superuser.sh against a stand-in ``rpk`` that records its arguments."""
    script = ROOT / "deploy" / "redpanda" / "create-superuser.sh"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "rpk").write_text('#!/bin/bash\nprintf "%s\\n" "$*" >> "$RPK_LOG"\n'
                                 'if [ "$2 $3" = "user create" ] && [ -n "$RPK_EXISTS" ]; then echo "user already exists" >&2; exit 1; fi\n')
    (bin_dir / "rpk").chmod(0o755)
    secret = tmp_path / "tickwire_kafka_sasl_password"
    secret.write_text("s3cret-Value")
    log = tmp_path / "rpk.log"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RPK_LOG": str(log), "KAFKA_USERNAME": "tickwire",
           "REDPANDA_ADMIN": "redpanda:9644", "KAFKA_PASSWORD_FILE": str(secret)}

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        log.unlink(missing_ok=True)
        return subprocess.run(["bash", str(script)], env={**env, **extra}, capture_output=True, text=True, timeout=30)

    created = run()
    assert created.returncode == 0 and "s3cret" not in created.stdout + created.stderr
    assert log.read_text().splitlines() == [
        "security user create tickwire --password s3cret-Value --mechanism SCRAM-SHA-256 -X admin.hosts=redpanda:9644"]
    updated = run(RPK_EXISTS="1")
    assert updated.returncode == 0 and "s3cret" not in updated.stdout + updated.stderr
    assert log.read_text().splitlines()[1] == (
        "security user update tickwire --new-password s3cret-Value --mechanism SCRAM-SHA-256 -X admin.hosts=redpanda:9644")
    secret.write_text("")
    empty = run()
    assert empty.returncode == 1 and "set KAFKA_PASSWORD in .env" in empty.stderr and not log.exists()
    assert SERVICES["redpanda-users"]["secrets"] == [Path(env["KAFKA_PASSWORD_FILE"]).name]
