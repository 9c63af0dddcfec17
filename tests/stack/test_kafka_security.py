"""Kafka security, live against the local broker: TLS (and mutual TLS), SASL, and each way it goes wrong.

tansu 0.6 cannot serve TLS itself (its ``--cert``/``--key`` options refuse each other) and never stores SCRAM users
(``tansu user create`` answers success, every login then gets ``unknown-user``), so:

- TLS is served by a TLS terminator in front of a private tansu (as a load balancer or stunnel would), which
  advertises the terminator's address: tickwire's clients (the topic catalog, the producer, a whole worker)
  connect with ``TICKWIRE_KAFKA_SECURITY_PROTOCOL=SSL`` and a CA file;
- a successful SASL login cannot be shown live on this broker: what is tested is that every client sends the
  SCRAM exchange with the configured mechanism and user (read off the wire by a recording relay in front of a tansu
  started with ``--authentication``), and that a refused login ends in one line naming the settings.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from pipeline.config import Settings, load_settings
from pipeline.core.kafka import KafkaSetupError, client_options
from pipeline.devstack import binaries
from pipeline.devstack.worker_process import WorkerProcess, settings_env
from pipeline.ingest.producer import MT5Producer
from pipeline.ops.sql_client import worker_query
from tests.stack.test_ticks_pipeline import make_ticks
from tests.waiting import wait_until

pytestmark = pytest.mark.stack


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- certificates -----------------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
                 *, ca: bool = False, server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer[0].subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                        critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key, server_key, client_key = _key(), _key(), _key(), _key()
    ca = _certificate("tickwire-test-ca", ca_key, None, ca=True)
    other = _certificate("some-other-ca", other_key, None, ca=True)
    return Pki(
        ca=_write_cert(ca, d / "ca.pem"), other_ca=_write_cert(other, d / "other-ca.pem"),
        server_cert=_write_cert(_certificate("127.0.0.1", server_key, (ca, ca_key), server=True), d / "server.pem"),
        server_key=_write_key(server_key, d / "server.key"),
        client_cert=_write_cert(_certificate("client", client_key, (ca, ca_key)), d / "client.pem"),
        client_key=_write_key(client_key, d / "client.key"),
    )


# --- a private broker behind a relay (TLS terminator, or a recorder of the bytes) ---------------------------------


@dataclass
class Relay:
    """Accepts on ``port`` (TLS when ``context`` is given), forwards to ``upstream``; keeps what clients sent."""

    upstream: int
    context: ssl.SSLContext | None = None
    port: int = field(default_factory=free_port)
    received: bytearray = field(default_factory=bytearray)

    def run(self, ready: threading.Event, stop: threading.Event) -> None:
        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bool) -> None:
            try:
                while data := await reader.read(65536):
                    if record:
                        self.received.extend(data)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

        async def main() -> None:
            server = await asyncio.start_server(handle, "127.0.0.1", self.port, ssl=self.context)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            server.close()

        asyncio.run(main())


@dataclass
class Broker:
    """A private tansu whose clients come through a relay (it advertises the relay's address)."""

    relay: Relay
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.relay.port}"


def start_broker(tmp: Path, *, context: ssl.SSLContext | None = None, authentication: bool = False) -> Iterator[Broker]:
    port = free_port()
    relay = Relay(port, context)
    argv = [str(binaries.tansu()), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{relay.port}", "--storage-engine", "memory://tansu/"]
    if authentication:
        argv.append("--authentication")
    log = open(tmp / f"tansu-{port}.log", "wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=relay.run, args=(ready, stop), daemon=True)
    thread.start()
    assert ready.wait(10), "the relay did not start"
    try:
        def listening() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0
        wait_until(listening, timeout_s=10, what="the private tansu")
        yield Broker(relay, process)
    finally:
        stop.set()
        process.terminate()
        process.wait(10)
        thread.join(5)
        log.close()


def tls_server_context(pki: Pki, *, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)
    return context


@pytest.fixture(scope="module")
def tls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    yield from start_broker(tmp_path_factory.mktemp("tls"), context=tls_server_context(pki))


@pytest.fixture(scope="module")
def mtls_broker(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    yield from start_broker(tmp_path_factory.mktemp("mtls"), context=tls_server_context(pki, client_ca=pki.ca))


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    yield from start_broker(tmp_path_factory.mktemp("sasl"), authentication=True)


def cli(settings: Settings, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **settings_env(settings)})


def over(stack_settings: Settings, broker: Broker, **security: object) -> Settings:
    return load_settings(**{**stack_settings.model_dump(), "broker_url": broker.url, **security})


# --- TLS ------------------------------------------------------------------------------------------------------------


def test_a_worker_runs_end_to_end_over_tls(stack_settings: Settings, tls_broker: Broker, pki: Pki, tmp_path: Path,
                                           tenant: str) -> None:
    settings = over(stack_settings, tls_broker, kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca)
    applied = cli(settings, "topics", "apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    worker_settings = load_settings(**{**settings.model_dump(), "group_id": "tls-" + tenant, "app_id": "tls-" + tenant + "-app",
                                       "clickhouse_dsn": f"chdb://{tmp_path / 'clickhouse'}", "state_dir": tmp_path / "state",
                                       "api_port": free_port()})
    worker = WorkerProcess(worker_settings, tmp_path / "worker.log").start()
    try:
        worker.wait_ready(timeout_s=90)
        ticks = make_ticks([tenant], ["EURUSD"], per_key=200)

        async def produce() -> None:
            async with MT5Producer(settings) as producer:
                for tick in ticks:
                    await producer.send_tick(**tick)

        asyncio.run(produce())
        count = f"SELECT count() AS n FROM tickwire.ticks FINAL WHERE tenant = '{tenant}'"
        wait_until(lambda: (lines := worker_query(worker_settings, count)) and '"n":200' in lines[0], timeout_s=60,
                   what="the ticks produced and consumed over TLS")
    finally:
        worker.stop()


def test_mutual_tls_needs_the_client_certificate(stack_settings: Settings, mtls_broker: Broker, pki: Pki) -> None:
    with_cert = over(stack_settings, mtls_broker, kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca,
                     kafka_ssl_certfile=pki.client_cert, kafka_ssl_keyfile=pki.client_key)
    assert cli(with_cert, "topics", "apply").returncode == 0
    without = over(stack_settings, mtls_broker, kafka_security_protocol="SSL", kafka_ssl_cafile=pki.ca)
    refused = cli(without, "topics", "apply")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr + refused.stdout


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    text = (done.stderr or done.stdout).strip()
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return text.splitlines()[-1]


def test_an_unknown_ca_is_a_clear_error_naming_the_ca_setting(stack_settings: Settings, tls_broker: Broker, pki: Pki) -> None:
    settings = over(stack_settings, tls_broker, kafka_security_protocol="SSL", kafka_ssl_cafile=pki.other_ca)
    done = cli(settings, "topics", "apply")
    assert done.returncode == 1 and "TICKWIRE_KAFKA_SSL_CAFILE" in one_line(done)


def test_a_plaintext_client_on_the_tls_port_is_a_clear_error_soon(stack_settings: Settings, tls_broker: Broker) -> None:
    settings = over(stack_settings, tls_broker)  # PLAINTEXT
    began = time.monotonic()
    done = cli(settings, "topics", "apply")
    assert done.returncode == 1 and "TICKWIRE_KAFKA_SECURITY_PROTOCOL" in one_line(done)
    assert time.monotonic() - began < 60


def test_a_tls_client_on_a_plaintext_port_is_a_clear_error_not_a_hang(stack_settings: Settings, pki: Pki) -> None:
    settings = load_settings(**{**stack_settings.model_dump(), "kafka_security_protocol": "SSL", "kafka_ssl_cafile": pki.ca})
    began = time.monotonic()
    done = cli(settings, "topics", "apply")  # the session's broker speaks plaintext
    assert done.returncode == 1 and "TICKWIRE_KAFKA_SECURITY_PROTOCOL" in one_line(done)
    assert time.monotonic() - began < 60


# --- SASL -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_a_refused_login_is_a_clear_error_and_the_scram_exchange_is_on_the_wire(
        stack_settings: Settings, sasl_broker: Broker, mechanism: str) -> None:
    settings = over(stack_settings, sasl_broker, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism=mechanism,
                    kafka_sasl_username="tickwire-app", kafka_sasl_password="not-the-password")
    done = cli(settings, "topics", "apply")
    line = one_line(done)
    assert done.returncode == 1 and "TICKWIRE_KAFKA_SASL_USERNAME" in line and "TICKWIRE_KAFKA_SASL_PASSWORD" in line
    assert "not-the-password" not in done.stdout + done.stderr
    sent = bytes(sasl_broker.relay.received)
    assert mechanism.encode() in sent, "a SaslHandshake naming the mechanism"
    assert b"n,,n=tickwire-app,r=" in sent, "the SCRAM client-first message with the configured user"
    assert b"not-the-password" not in sent, "SCRAM never sends the password itself"


def test_a_sasl_client_on_a_listener_without_sasl_is_a_clear_error(stack_settings: Settings) -> None:
    settings = load_settings(**{**stack_settings.model_dump(), "kafka_security_protocol": "SASL_PLAINTEXT",
                                "kafka_sasl_username": "u", "kafka_sasl_password": "p"})
    done = cli(settings, "topics", "apply")
    assert done.returncode == 1 and "TICKWIRE_KAFKA_SECURITY_PROTOCOL" in one_line(done)


async def test_every_client_connects_the_same_way(stack_settings: Settings, pki: Pki) -> None:
    """The stages, the probe, the producer and the tools take the same options: here, their parts for SASL_SSL."""
    settings = load_settings(**{**stack_settings.model_dump(), "kafka_security_protocol": "SASL_SSL",
                                "kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_sasl_username": "u",
                                "kafka_sasl_password": "p", "kafka_ssl_cafile": pki.ca})
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "u" and options["sasl_plain_password"] == "p"
    assert isinstance(options["ssl_context"], ssl.SSLContext) and options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(KafkaSetupError, match="TICKWIRE_KAFKA_SECURITY_PROTOCOL"):  # the session's broker: plaintext
        async with MT5Producer(settings):
            pass
