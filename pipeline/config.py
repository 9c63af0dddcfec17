"""One typed settings object for the whole of tickwire.

Every setting is read from an environment variable ``TICKWIRE_<NAME>`` (or a
``.env`` file), defaults point at the local stack, and :func:`load_settings`
validates all of them at start: an error always names the offending setting
by its environment variable.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.contracts.indicators import IndicatorSpec, parse_periods
from pipeline.contracts.timeframes import Timeframe, TradingDays, parse_day_offsets

ENV_PREFIX = "TICKWIRE_"
#: Every stage, in topology order (upstream first); see pipeline.runtime.topology.
STAGE_NAMES = ("ingest", "signals", "patterns", "graph", "outcomes")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_read_sessions(cpus: int | None) -> int:
    """Read-only ClickHouse sessions when not set: two per CPU (chDB runs one query per session at a time, and
    the sessions' queries concurrently), at least 4, at most 64."""
    return min(64, max(4, 2 * (cpus or 1)))


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names it (``TICKWIRE_...``)."""


def _require_scheme(value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    shown = masked(value)
    if parts.scheme not in schemes:
        raise ValueError(f"scheme must be one of {', '.join(s + '://' for s in schemes)}, got {shown!r}")
    if parts.scheme != "chdb" and not parts.hostname:
        raise ValueError(f"needs a host, got {shown!r}")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"bad port in {shown!r}") from None
    return value


def with_credentials(url: str, username: str | None, password: SecretStr | None) -> str:
    """``url`` with ``username:password@`` in its authority, unless it has a password already or none is given.
    The user of the URL stays when ``username`` is None (``redis://:pw@host`` for a requirepass)."""
    if password is None:
        return url
    parts = urlsplit(url)
    if parts.password is not None:
        return url
    user = username if username is not None else (parts.username or "")
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(user, safe='')}:{quote(password.get_secret_value(), safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def masked(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


class Settings(BaseSettings):
    """All of tickwire's configuration. Field ``x`` is env var ``TICKWIRE_X``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True)

    # where things live
    state_dir: Path = Field(Path(".tickwire"), description="Local stack state (data dirs, logs, pid files).")
    topics_file: Path = Field(PROJECT_ROOT / "topics.yaml", description="The topic catalog.")
    schemas_dir: Path = Field(PROJECT_ROOT / "schemas", description="Versioned JSON Schemas.")

    # roles and their backends
    broker_url: str = Field("kafka://127.0.0.1:19092", description="Kafka-protocol bootstrap servers, comma separated.")
    topic_replication_factor: int = Field(1, ge=1, le=7, description="Replicas of topics that `topics apply` creates (3 on a cluster).")
    clickhouse_dsn: str = Field("chdb://.tickwire/clickhouse", description="chdb://PATH (in-process) or http(s)://host:port.")
    clickhouse_database: str = Field("tickwire", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    cache_url: str = Field("redis://127.0.0.1:16379/0", description="Redis protocol hot cache (Valkey, DragonflyDB).")
    postgres_dsn: str = Field("postgresql://tickwire@127.0.0.1:15432/tickwire")
    vector_backend: Literal["pgvector", "weaviate"] = "pgvector"
    weaviate_url: str | None = None
    graph_backend: Literal["falkordb", "arangodb"] = "falkordb"
    graph_url: str = Field("redis://127.0.0.1:16380", description="FalkorDB (redis://) or ArangoDB (http://).")
    weaviate_grpc_url: str | None = Field(
        None, description="Weaviate gRPC endpoint, http(s)://host:port; default: the host of TICKWIRE_WEAVIATE_URL, port 50051.")
    weaviate_api_key: SecretStr | None = Field(None, description="Weaviate API key (sent as a bearer token).")
    arango_database: str = Field("tickwire", pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,63}$",
                                 description="ArangoDB database of the graph (created if missing and allowed).")
    arango_username: str = Field("root", min_length=1, description="ArangoDB user.")
    arango_password: SecretStr = Field(SecretStr(""), description="ArangoDB password.")
    # securing the connections (secrets are SecretStr: never shown, never logged)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How every Kafka client of tickwire talks to the brokers.")
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        "SCRAM-SHA-256", description="SASL mechanism (with a SASL_* security protocol).")
    kafka_sasl_username: str | None = Field(None, description="SASL user (with a SASL_* security protocol).")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password (with a SASL_* security protocol).")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle the brokers' certificates are checked against "
                                                            "(SSL, SASL_SSL; default: the system's).")
    kafka_ssl_certfile: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    kafka_ssl_keyfile: Path | None = Field(None, description="Client private key (PEM) for mutual TLS.")
    cache_username: str | None = Field(None, description="Cache ACL user (Valkey/DragonflyDB), with TICKWIRE_CACHE_PASSWORD.")
    cache_password: SecretStr | None = Field(None, description="Cache password (requirepass, or the ACL user's).")
    cache_ca_file: Path | None = Field(None, description="CA bundle for a rediss:// cache.")
    graph_username: str | None = Field(None, description="FalkorDB ACL user, with TICKWIRE_GRAPH_PASSWORD.")
    graph_password: SecretStr | None = Field(None, description="FalkorDB password (requirepass, or the ACL user's).")
    graph_ca_file: Path | None = Field(None, description="CA bundle for a rediss:// FalkorDB.")
    postgres_password: SecretStr | None = Field(
        None, description="PostgreSQL password (scram); TLS: sslmode/sslrootcert in TICKWIRE_POSTGRES_DSN's query.")
    clickhouse_username: str | None = Field(None, description="ClickHouse server user (default: the DSN's, else default).")
    clickhouse_password: SecretStr | None = Field(None, description="ClickHouse server password.")
    clickhouse_ca_file: Path | None = Field(None, description="CA bundle for an https:// ClickHouse server.")
    clickhouse_cluster: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$",
        description="A ClickHouse cluster: DDL runs ON CLUSTER with ReplicatedReplacingMergeTree tables "
                    "(the servers' {shard} and {replica} macros). Unset: one server, or chDB.")
    ticks_retention_days: int | None = Field(None, ge=1, description="Ticks older than this are dropped (a TTL).")
    candles_retention_days: int | None = Field(None, ge=1, description="Bars older than this are dropped (a TTL).")
    signals_retention_days: int | None = Field(None, ge=1, description="Signals older than this are dropped (a TTL).")
    clickhouse_async_insert: bool = Field(
        True, description="ClickHouse server only: async_insert=1 with wait_for_async_insert=1 on every insert.")

    # worker and API
    app_id: str = Field("tickwire", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    group_id: str = Field("tickwire-pipeline", pattern=r"^[A-Za-z0-9._-]{1,128}$")
    api_host: str = "127.0.0.1"
    api_port: int = Field(6066, ge=1, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Least severe log records written (case-insensitive; WARN means WARNING), by the worker, "
                            "`tickwire api` and the CLI (pipeline/core/logs.py).")
    log_format: Literal["text", "json"] = Field(
        "text", description="`text`: one line per record for a terminal; `json`: one JSON object per line "
                            "(timestamp, level, logger, message, context fields) and nothing else on the output.")

    # consume path and checkpointing
    fetch_max_records: int = Field(20_000, ge=1, le=1_000_000, description="Records per getmany() call.")
    fetch_timeout_ms: int = Field(50, ge=1, le=10_000)
    fetch_max_wait_ms: int = Field(
        25, ge=1, le=10_000,
        description="How long the broker may hold a fetch that has no new records (Kafka's fetch.max.wait.ms; "
                    "aiokafka's default is 500). A broker that waits the whole time even when records arrive "
                    "(tansu) adds up to this to every record's latency; a short wait costs idle fetches only.")
    derived_fetch_max_wait_ms: int = Field(
        250, ge=1, le=10_000,
        description="TICKWIRE_FETCH_MAX_WAIT_MS of the stages that read derived topics only (patterns, graph, "
                    "outcomes: bars arrive once per bar close). A caught-up consumer fetches 1000/wait times a "
                    "second and each empty fetch costs CPU in the worker and the broker: measured on the full "
                    "pipeline, 25 ms for every stage made it 1.7x slower than 250 ms for these three.")
    commit_interval_ms: int = Field(250, ge=1, le=60_000, description="Checkpoint (flush + commit) at least this often.")
    commit_max_records: int = Field(100_000, ge=1, description="Checkpoint early once this many records are pending.")
    session_timeout_ms: int = Field(10_000, ge=1_000, le=300_000)
    max_record_bytes: int = Field(65_536, ge=256, description="Larger records go to the DLQ as oversize.")
    sink_retry_max_backoff_ms: int = Field(5_000, ge=10)
    shutdown_timeout_s: float = Field(20.0, gt=0)

    # stages: each its own consumer group, checkpoint, circuits and lag
    stages: str = Field("ingest,signals,patterns,graph,outcomes",
                        description="Stages this worker runs, comma separated (`tickwire worker --stages`).")
    stage_stall_after_s: float = Field(
        60.0, gt=0, description="A stage with lag and no commit for this long (and no open circuit) is `stalled`.")
    lag_probe_interval_ms: int = Field(2_000, ge=100, le=600_000,
                                       description="How often the log end of every input partition is read (lag).")

    # input domain checks (after the schema); rejects go to the DLQ with a named reason
    min_price: float = Field(1e-9, gt=0, description="Prices below this (subnormal, zero) are rejected.")
    max_price: float = Field(1e9, gt=0, le=1e9, description="Prices above this are rejected.")
    crossed_quotes: Literal["reject", "accept"] = Field(
        "reject", description="A tick with bid > ask: `reject` (to the DLQ as crossed_quote) or `accept`.")
    max_future_skew_ms: int = Field(
        60_000, ge=0, description="A tick or signal time further ahead of the wall clock than this is rejected "
                                  "(the topic contract is UTC: convert MT5 server time before producing).")

    # dead letters
    dlq_max_envelope_bytes: int = Field(
        262_144, ge=16_384, le=16 << 20,
        description="Largest DLQ envelope; a bigger record is dead-lettered by reference (head, length, SHA-256, "
                    "source coordinates). Keep it under the broker's message limit (1 MB by default).")
    dlq_value_head_bytes: int = Field(4_096, ge=0, le=1 << 20,
                                      description="Bytes of a too-large record kept in its DLQ envelope.")

    # store errors
    unknown_error_attempts: int = Field(
        5, ge=1, le=1000,
        description="A store error neither transient nor permanent is retried this many times, then the records "
                    "at fault are isolated and dead-lettered.")

    # reads: the query API and operator SQL never use a stage's ClickHouse session
    analytics_read_sessions: int = Field(
        default_factory=lambda: default_read_sessions(os.cpu_count()), ge=1, le=64,
        description="Read-only ClickHouse sessions for API reads and operator SQL (default: 2 per CPU, at least 4).")
    api_query_timeout_s: float = Field(5.0, gt=0, le=300, description="An API read is cancelled in the store after this.")
    sql_timeout_s: float = Field(30.0, gt=0, le=3600, description="An operator `tickwire sql` query is cancelled after this.")
    api_rate_per_s: float = Field(200.0, gt=0, description="Requests per second per API key (token bucket refill).")
    api_rate_burst: int = Field(400, ge=1, description="Token bucket size per API key.")
    api_tenant_queries: int = Field(
        3, ge=1, le=64, description="Uncached store queries one tenant may run at once (others wait their turn).")
    api_header_timeout_s: float = Field(10.0, gt=0, le=300,
                                        description="A client must send a request's headers within this.")
    api_keepalive_timeout_s: float = Field(15.0, gt=0, le=3600, description="Idle keep-alive connections close after this.")
    api_body_timeout_s: float = Field(10.0, gt=0, le=300, description="A client must send a request's body within this.")
    # the tick stream (GET /v1/ticks/stream, pipeline/api/streams.py): bounded per key, per tenant and per process
    api_streams_per_key: int = Field(4, ge=1, le=1000, description="Tick streams one API key may hold open at once.")
    api_streams_per_tenant: int = Field(
        32, ge=1, le=10_000, description="Tick streams one tenant's keys may hold open at once (a tenant may have many keys).")
    api_streams_max: int = Field(512, ge=1, le=100_000, description="Tick streams this process holds open at once.")
    api_stream_idle_timeout_s: float = Field(
        60.0, gt=0, le=86_400, description="A tick stream that sent no tick for this long ends (event `end`, reason idle).")

    # hot cache
    hot_key_ttl_s: int = Field(86_400, ge=1)

    # derived streams
    candle_timeframes: str = Field(
        "1m,5m,1h,1d", description="Comma-separated bar lengths (s, m, h, d); from a day on, bars follow each broker's "
                                   "trading day (TICKWIRE_BROKER_DAY_OFFSETS).")
    broker_day_offsets: str = Field(
        "", description="Where each broker's trading day starts, as hours east of UTC of its server's midnight, "
                        "e.g. demo=+2,icmarkets=+3 (a 1d bar of demo is [22:00, 22:00) UTC). Brokers not named: 0 "
                        "(UTC midnight). Fixed offsets: daylight saving changes are not followed.")
    indicator_sma_periods: str = Field("20,50", description="Periods (bars) of the SMA carried by every bar (sma_<n>).")
    indicator_ema_periods: str = Field("20,50", description="Periods (bars) of the EMA carried by every bar (ema_<n>).")
    indicator_window_bars: int = Field(
        200, ge=1, le=5_000, description="A bar's indicators are computed from it and the stored bars before it, at "
                                         "most this many (VWAP: from the start of its trading day).")
    candle_lateness_ms: int = Field(5_000, ge=0, description="A late tick this close to the watermark amends its bar.")
    pattern_horizon_bars: int = Field(5, ge=1, le=1000, description="Forward return horizon of a pattern, in bars.")
    correlation_window_bars: int = Field(30, ge=3, le=10_000, description="Bars of returns a correlation is computed over.")
    correlation_min_samples: int = Field(10, ge=3, description="Fewer common returns than this: no edge.")
    correlation_threshold: float = Field(0.5, ge=0, le=1, description="Default minimum |weight| of graph neighbours.")
    similar_patterns_k: int = Field(5, ge=1, le=100, description="Similar past patterns attached to an enriched signal.")
    published_marker_ttl_s: int = Field(
        30 * 86_400, ge=60, description="How long a signal is remembered as published (>= the signals topic retention).")
    outcome_horizons: str = Field(
        "5m,1h,1d", description="Horizons at which every signal's outcome is computed (the outcomes stage), comma "
                                "separated, written like timeframes (s, m, h, d).")

    @field_validator("broker_url")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        for server in value.split(","):
            _require_scheme(server.strip() if "://" in server else f"kafka://{server.strip()}", ("kafka",))
        return value

    @field_validator("clickhouse_dsn")
    @classmethod
    def _check_clickhouse(cls, value: str) -> str:
        _require_scheme(value, ("chdb", "http", "https"))
        if value.startswith("chdb://") and len(value) == len("chdb://"):
            raise ValueError("chdb:// needs a data directory, e.g. chdb://.tickwire/clickhouse")
        return value

    @field_validator("cache_url")
    @classmethod
    def _check_cache(cls, value: str) -> str:
        return _require_scheme(value, ("redis", "rediss"))

    @field_validator("postgres_dsn")
    @classmethod
    def _check_postgres(cls, value: str) -> str:
        return _require_scheme(value, ("postgresql", "postgres"))

    @field_validator("graph_url")
    @classmethod
    def _check_graph(cls, value: str) -> str:
        return _require_scheme(value, ("redis", "rediss", "http", "https"))

    @field_validator("weaviate_grpc_url")
    @classmethod
    def _check_weaviate_grpc(cls, value: str | None) -> str | None:
        return None if value is None else _require_scheme(value, ("http", "https"))

    @field_validator("weaviate_url")
    @classmethod
    def _check_weaviate(cls, value: str | None) -> str | None:
        return None if value is None else _require_scheme(value, ("http", "https"))

    @field_validator("log_level", mode="before")
    @classmethod
    def _normalise_log_level(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip().upper()
            return "WARNING" if value == "WARN" else value
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _normalise_log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("stages")
    @classmethod
    def _check_stages(cls, value: str) -> str:
        names = [part.strip() for part in value.split(",") if part.strip()]
        unknown = [name for name in names if name not in STAGE_NAMES]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(f"choose distinct stages among {', '.join(STAGE_NAMES)}, got {value!r}")
        return ",".join(name for name in STAGE_NAMES if name in names)

    @field_validator("candle_timeframes")
    @classmethod
    def _check_timeframes(cls, value: str) -> str:
        names = [Timeframe.parse(part).name for part in value.split(",") if part.strip()]
        if not names or len(set(names)) != len(names):
            raise ValueError("need one or more distinct timeframes, e.g. 1m,5m,1h")
        return ",".join(names)

    @field_validator("outcome_horizons")
    @classmethod
    def _check_horizons(cls, value: str) -> str:
        horizons = [Timeframe.parse(part) for part in value.split(",") if part.strip()]
        if not horizons or len({h.ms for h in horizons}) != len(horizons):
            raise ValueError("need one or more distinct horizons, e.g. 5m,1h,1d")
        return ",".join(h.name for h in horizons)

    @field_validator("broker_day_offsets")
    @classmethod
    def _check_day_offsets(cls, value: str) -> str:
        parse_day_offsets(value)
        return value

    @field_validator("indicator_sma_periods", "indicator_ema_periods")
    @classmethod
    def _check_periods(cls, value: str) -> str:
        return ",".join(str(n) for n in parse_periods(value))

    @model_validator(mode="after")
    def _check_indicator_window(self) -> Settings:
        name, bars = self.indicators.longest_warm_up
        if self.indicator_window_bars + 1 < bars:
            raise ValueError(f"TICKWIRE_INDICATOR_WINDOW_BARS ({self.indicator_window_bars}) must be at least {bars - 1}: "
                             f"{name} needs {bars} bars (the bar and {bars - 1} before it)")
        return self

    @model_validator(mode="after")
    def _check_groups(self) -> Settings:
        if self.group_id == self.app_id:
            raise ValueError(
                f"TICKWIRE_GROUP_ID must differ from TICKWIRE_APP_ID (both {self.app_id!r}): "
                "Faust's own consumer group is named after the app id"
            )
        return self

    @model_validator(mode="after")
    def _check_prices(self) -> Settings:
        if self.min_price >= self.max_price:
            raise ValueError(f"TICKWIRE_MIN_PRICE ({self.min_price}) must be below TICKWIRE_MAX_PRICE ({self.max_price})")
        return self

    @model_validator(mode="after")
    def _check_backends(self) -> Settings:
        graph_scheme = urlsplit(self.graph_url).scheme
        if self.vector_backend == "weaviate" and self.weaviate_url is None:
            raise ValueError("TICKWIRE_WEAVIATE_URL must be set (http(s)://host:port) when TICKWIRE_VECTOR_BACKEND=weaviate")
        if self.graph_backend == "falkordb" and graph_scheme not in ("redis", "rediss"):
            raise ValueError(f"TICKWIRE_GRAPH_URL must be redis(s):// for TICKWIRE_GRAPH_BACKEND=falkordb, got {graph_scheme}://")
        if self.graph_backend == "arangodb" and graph_scheme not in ("http", "https"):
            raise ValueError(f"TICKWIRE_GRAPH_URL must be http(s):// for TICKWIRE_GRAPH_BACKEND=arangodb, got {graph_scheme}://")
        return self

    # derived values -----------------------------------------------------
    @property
    def bootstrap_servers(self) -> list[str]:
        """``host:port`` pairs for aiokafka."""
        return [s.strip().removeprefix("kafka://") for s in self.broker_url.split(",")]

    @property
    def chdb_path(self) -> Path | None:
        """The chDB data directory when ClickHouse is in-process, else None."""
        if not self.clickhouse_dsn.startswith("chdb://"):
            return None
        return Path(self.clickhouse_dsn.removeprefix("chdb://")).expanduser().resolve()

    @property
    def cache_connection_url(self) -> str:
        """TICKWIRE_CACHE_URL with TICKWIRE_CACHE_USERNAME/PASSWORD in it (for clients only: never log it)."""
        return with_credentials(self.cache_url, self.cache_username, self.cache_password)

    @property
    def graph_connection_url(self) -> str:
        """TICKWIRE_GRAPH_URL with TICKWIRE_GRAPH_USERNAME/PASSWORD in it (FalkorDB; for clients only: never log it)."""
        if urlsplit(self.graph_url).scheme not in ("redis", "rediss"):
            return self.graph_url
        return with_credentials(self.graph_url, self.graph_username, self.graph_password)

    @property
    def postgres_connection_dsn(self) -> str:
        """TICKWIRE_POSTGRES_DSN with TICKWIRE_POSTGRES_PASSWORD in it (for clients only: never log it)."""
        return with_credentials(self.postgres_dsn, None, self.postgres_password)

    @property
    def stage_names(self) -> list[str]:
        """The stages this process runs, in topology order."""
        return self.stages.split(",")

    @property
    def timeframes(self) -> list[Timeframe]:
        """Candle timeframes, shortest first."""
        return sorted(Timeframe.parse(part) for part in self.candle_timeframes.split(","))

    @property
    def outcome_horizon_list(self) -> list[Timeframe]:
        """Signal outcome horizons (TICKWIRE_OUTCOME_HORIZONS), shortest first."""
        return sorted(Timeframe.parse(part) for part in self.outcome_horizons.split(","))

    @property
    def trading_days(self) -> TradingDays:
        """Each broker's trading-day offset (TICKWIRE_BROKER_DAY_OFFSETS)."""
        return TradingDays(parse_day_offsets(self.broker_day_offsets))

    @property
    def indicators(self) -> IndicatorSpec:
        """The indicators every bar carries (TICKWIRE_INDICATOR_*)."""
        return IndicatorSpec(parse_periods(self.indicator_sma_periods), parse_periods(self.indicator_ema_periods),
                             self.indicator_window_bars)

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"


def _problem(err: ErrorDetails) -> str:
    if not err["loc"]:  # a check across settings names them in its message
        return str(err["msg"]).removeprefix("Value error, ")
    return f"{ENV_PREFIX}{str(err['loc'][0]).upper()}: {err['msg']}"


#: Docker secrets: a file per setting, named like its variable in lower case (``tickwire_cache_password``).
DOCKER_SECRETS = Path("/run/secrets")


def secrets_dirs(state_dir: Path) -> list[Path]:
    """Where secrets are read from, lowest priority first, when they exist: the local stack's generated
    ``<state_dir>/secrets`` and Docker's ``/run/secrets``. Environment variables and ``.env`` win over both."""
    return [path for path in (Path(state_dir) / "secrets", DOCKER_SECRETS) if path.is_dir()]


def load_settings(**overrides: object) -> Settings:
    """Read and validate all settings; raise :class:`SettingsError` naming each bad one.

    Secrets may also come from files (:func:`secrets_dirs`): a variable ``TICKWIRE_X`` from a file ``tickwire_x``."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]  # pydantic-settings takes field values as keywords
        found = secrets_dirs(settings.state_dir)
        if found:
            # _secrets_dir is an init keyword of BaseSettings, not a field
            settings = Settings(_secrets_dir=found, **overrides)  # type: ignore[arg-type, call-arg]  # as above
        return settings
    except ValidationError as exc:
        problems = "; ".join(_problem(err) for err in exc.errors())
        raise SettingsError(f"invalid settings: {problems}") from None


def with_secrets(settings: Settings) -> Settings:
    """``settings`` read again, so that secrets written since (the local stack's passwords) fill what is unset."""
    return load_settings(**{name: value for name, value in settings.model_dump().items() if value is not None})


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return load_settings()
