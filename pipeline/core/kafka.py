"""How tickwire's Kafka clients are made: one place for their connection and security options.

Every producer, consumer and admin client of tickwire (the stages, the log-end
probe, the producers of bridges and tools, replay, the DLQ tools, the topic
catalog, the health probe, the benchmarks) takes :func:`client_options`, so
``TICKWIRE_KAFKA_SECURITY_PROTOCOL`` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL),
the SASL mechanism and credentials and the TLS files apply to all of them
alike. :func:`explain` turns what a client raises when it cannot connect into
one line naming the setting to check (a wrong password, an unknown CA, a
plaintext client on a TLS port, a SASL client on a listener without it).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context

from pipeline.config import Settings

#: Bounds every request of a client, the connection and TLS handshake included (a TLS client that reached a
#: plaintext port would otherwise wait aiokafka's 40 s default).
REQUEST_TIMEOUT_MS = 15_000


class KafkaSetupError(RuntimeError):
    """A Kafka client could not connect; the message names the setting to check."""


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of ``SSL``/``SASL_SSL``: the CA file (default: the system's), the client certificate if set."""
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
    )
    return context


def client_options(settings: Settings) -> dict[str, Any]:
    """Options every Kafka client of tickwire gets: where the brokers are and how to talk to them securely."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers, "security_protocol": protocol,
                               "request_timeout_ms": REQUEST_TIMEOUT_MS}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = (settings.kafka_sasl_password.get_secret_value()
                                          if settings.kafka_sasl_password is not None else None)
    return options


def make_producer(settings: Settings, *, max_request_size: int = 8 << 20) -> AIOKafkaProducer:
    """The producer tickwire uses everywhere: acks from all replicas, small linger, batched."""
    return AIOKafkaProducer(
        **{**client_options(settings), "request_timeout_ms": 30_000},
        acks="all",
        linger_ms=5,
        max_batch_size=1 << 20,
        max_request_size=max_request_size,
    )


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def explain(exc: BaseException, settings: Settings) -> str:
    """One line saying why a Kafka client could not connect and which setting to check (no secret in it)."""
    chain = _chain(exc)
    names = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain)
    where = f"TICKWIRE_BROKER_URL={settings.broker_url}"
    protocol = settings.kafka_security_protocol
    if "CERTIFICATE_VERIFY_FAILED" in text or "SSLCertVerificationError" in names:
        return (f"the broker's TLS certificate is not trusted ({where}): check TICKWIRE_KAFKA_SSL_CAFILE "
                f"({settings.kafka_ssl_cafile or 'unset: the system CAs'})")
    if "UnsupportedSaslMechanismError" in names or "UnsupportedSaslMechanism" in text:
        return (f"the broker at {where} does not offer SASL {settings.kafka_sasl_mechanism} on this listener: "
                f"check TICKWIRE_KAFKA_SECURITY_PROTOCOL ({protocol}) and TICKWIRE_KAFKA_SASL_MECHANISM")
    if protocol.startswith("SASL") and ("SaslAuthenticationFailedError" in names or "AuthenticationFailedError" in names
                                         or "KeyError" in names or "authentication" in text.lower()):
        return (f"SASL authentication failed at {where} as {settings.kafka_sasl_username!r} "
                f"({settings.kafka_sasl_mechanism}): check TICKWIRE_KAFKA_SASL_USERNAME and TICKWIRE_KAFKA_SASL_PASSWORD")
    if "SSLError" in names or "WRONG_VERSION_NUMBER" in text or (protocol in ("SSL", "SASL_SSL") and "Timeout" in text):
        return (f"no TLS handshake with the broker at {where}: check TICKWIRE_KAFKA_SECURITY_PROTOCOL ({protocol}) "
                "against the listener (TLS or plaintext)")
    kind = type(exc).__name__
    return (f"cannot reach the Kafka broker at {where} ({kind}): check that it runs and that "
            f"TICKWIRE_KAFKA_SECURITY_PROTOCOL ({protocol}) matches its listener")


async def _tls_handshake_problem(settings: Settings) -> BaseException | None:
    """What a TLS handshake with the first broker raises (None if it succeeds, or the broker does not answer)."""
    host, _, port = settings.bootstrap_servers[0].rpartition(":")
    try:
        async with asyncio.timeout(5):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port), ssl=ssl_context(settings),
                                                      server_hostname=host.strip("[]"))
    except (ssl.SSLError, ConnectionError, TimeoutError, OSError) as exc:
        return exc
    writer.close()
    return None


async def diagnose(exc: BaseException, settings: Settings) -> str:
    """:func:`explain`, after a TLS handshake of our own when a TLS client could not connect: aiokafka reports
    only that it could not bootstrap, not that the certificate was refused or the port speaks plaintext."""
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL") and type(exc).__name__ == "KafkaConnectionError":
        problem = await _tls_handshake_problem(settings)
        if problem is not None:
            try:
                raise exc from problem
            except BaseException as chained:  # noqa: BLE001 - only to read the chain
                return explain(chained, settings)
    return explain(exc, settings)


async def start(client: Any, settings: Settings) -> None:
    """``await client.start()``; on failure, close it and raise :class:`KafkaSetupError` with :func:`diagnose`'s line."""
    try:
        await client.start()
    except Exception as exc:  # noqa: BLE001 - any failure to connect is explained the same way
        try:
            await client.stop() if hasattr(client, "stop") else await client.close()
        except Exception:  # noqa: BLE001 - already failing; the explanation is what matters
            pass
        raise KafkaSetupError(await diagnose(exc, settings)) from exc
