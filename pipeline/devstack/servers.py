"""The four servers of the local stack, derived from :class:`pipeline.config.Settings`.

Contract: :func:`servers_for` only parses settings and finds the servers'
passwords (:mod:`pipeline.devstack.secrets`; generated into the state
directory when asked, by ``up``; it starts and resolves nothing) and raises :class:`StackConfigError` naming the offending
``TICKWIRE_*`` variable when an address cannot be served locally (not a
loopback host, wrong scheme). A :class:`Server`'s ``prepare`` creates its
directories (and, for PostgreSQL, its user and cluster) and returns how to
launch it; ``probe`` is its readiness check; ``bootstrap`` runs once it answers.
"""

from __future__ import annotations

import ipaddress
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pipeline.config import Settings
from pipeline.devstack import binaries, postgres, probes
from pipeline.devstack.errors import StackConfigError
from pipeline.devstack.layout import StateLayout
from pipeline.devstack.process import RunAs
from pipeline.devstack.secrets import passwords, write_private

SERVER_NAMES: tuple[str, ...] = ("broker", "cache", "postgres", "graph")


@dataclass(frozen=True)
class Launch:
    """How to start a server process: its argv, and the user to run it as (None: as us)."""

    argv: list[str]
    run_as: RunAs | None = None


def _nothing(timeout: float) -> None:
    return None


@dataclass(frozen=True)
class Server:
    """One managed server. ``process_name`` appears in its command line (guards against pid reuse)."""

    name: str
    address: str
    host: str
    port: int
    process_name: str
    probe: Callable[[float], None] = field(repr=False)
    prepare: Callable[[float], Launch] = field(repr=False)
    bootstrap: Callable[[float], None] = field(default=_nothing, repr=False)
    stop_signal: int = signal.SIGTERM


def _local_host(host: str | None, env: str) -> str:
    """``host`` if it is a loopback address ('localhost' becomes 127.0.0.1)."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if host and ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise StackConfigError(f"{env}: the local stack serves on loopback only, got host {host!r}")


def _redis_address(url: str, env: str, default_port: int) -> tuple[str, int, int]:
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise StackConfigError(f"{env}: the local stack serves plain redis:// here, got {url!r}")
    db_text = parts.path.strip("/") or "0"
    if not db_text.isdigit():
        raise StackConfigError(f"{env}: the database must be a number, got {url!r}")
    return _local_host(parts.hostname, env), parts.port or default_port, int(db_text)


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _broker(settings: Settings, layout: StateLayout) -> Server:
    parts = urlsplit(f"kafka://{settings.bootstrap_servers[0]}")
    host, port = _local_host(parts.hostname, "TICKWIRE_BROKER_URL"), parts.port or 9092
    listener = f"tcp://{_hostport(host, port)}"

    def prepare(timeout: float) -> Launch:
        layout.create("broker")
        argv = [str(binaries.tansu()), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
                "--storage-engine", "memory://tansu/"]  # fmt: skip
        return Launch(argv)

    return Server("broker", _hostport(host, port), host, port, "tansu",
                  probe=lambda timeout: probes.kafka_metadata(host, port, timeout), prepare=prepare)  # fmt: skip


def _redis_like(name: str, host: str, port: int, layout: StateLayout, binary: Callable[[], list[str]],
                password: str) -> Callable[[float], Launch]:
    def prepare(timeout: float) -> Launch:
        layout.create(name)
        config = layout.data_dir(name) / "server.conf"  # the password lives here (0600), not on the command line
        write_private(config, f"requirepass {password}\n")
        executable, *arguments = binary()  # the config file must come first: redis-server reads it before the rest
        argv = [executable, str(config), *arguments, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no",
                "--dir", str(layout.data_dir(name)), "--daemonize", "no", "--logfile", ""]  # fmt: skip
        return Launch(argv)

    return prepare


def _cache(settings: Settings, layout: StateLayout, password: str) -> Server:
    host, port, db = _redis_address(settings.cache_url, "TICKWIRE_CACHE_URL", 6379)
    prepare = _redis_like("cache", host, port, layout, lambda: [str(binaries.valkey_server())], password)
    return Server("cache", f"redis://{_hostport(host, port)}/{db}", host, port, "valkey-server",
                  probe=lambda timeout: probes.redis_ping(host, port, db, timeout, password), prepare=prepare)  # fmt: skip


def _graph(settings: Settings, layout: StateLayout, password: str) -> Server:
    host, port, _ = _redis_address(settings.graph_url, "TICKWIRE_GRAPH_URL", 6379)

    def command() -> list[str]:
        server, module = binaries.falkordb()
        return [str(server), "--loadmodule", str(module)]

    prepare = _redis_like("graph", host, port, layout, command, password)
    return Server("graph", f"redis://{_hostport(host, port)}", host, port, "redis-server",
                  probe=lambda timeout: probes.falkordb_query(host, port, timeout, password), prepare=prepare)  # fmt: skip


def _postgres(settings: Settings, layout: StateLayout, password: str) -> Server:
    env = "TICKWIRE_POSTGRES_DSN"
    parts = urlsplit(settings.postgres_dsn)
    host, port = _local_host(parts.hostname, env), parts.port or 5432
    user = parts.username or "postgres"
    database = parts.path.strip("/") or user
    home = layout.data_dir("postgres")

    def prepare(timeout: float) -> Launch:
        layout.create("postgres")
        bin_dir = binaries.postgres_bin_dir()
        run_as = postgres.service_user()
        if run_as is not None:
            layout.share_with(run_as.gid)
        postgres.prepare(home, bin_dir, user, password, layout.log_file("postgres"), run_as, timeout)
        return Launch(postgres.server_argv(home, bin_dir, host, port), run_as)

    return Server(
        "postgres", f"postgresql://{user}@{_hostport(host, port)}/{database}", host, port, "postgres",
        probe=lambda timeout: probes.postgres_select(host, port, user, "postgres", timeout, password),
        prepare=prepare,
        bootstrap=lambda timeout: postgres.bootstrap(home, host, port, user, password, database, timeout),
        stop_signal=signal.SIGINT,  # "fast" shutdown: roll back sessions, checkpoint, exit
    )  # fmt: skip


def servers_for(settings: Settings, *, generate_secrets: bool = False) -> dict[str, Server]:
    """The four servers, by name, in :data:`SERVER_NAMES` order."""
    layout = StateLayout.at(settings.state_dir)
    secret = passwords(settings, generate=generate_secrets)
    return {
        "broker": _broker(settings, layout),
        "cache": _cache(settings, layout, secret["cache"]),
        "postgres": _postgres(settings, layout, secret["postgres"]),
        "graph": _graph(settings, layout, secret["graph"]),
    }
