"""Tenants and API keys: the CLI, what is stored (never the key), and which keys the API refuses."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
from typing import Any

import asyncpg
import pytest

from pipeline.api.auth import KEY_CACHE_TTL_S
from pipeline.api.keys import split_key
from pipeline.api.migrations import MIGRATIONS, migrate
from pipeline.config import Settings
from pipeline.devstack.worker_process import settings_env
from tests.api_support import ApiClient, issue_key, start_api_worker
from tests.waiting import wait_until

pytestmark = pytest.mark.stack


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **settings_env(settings), "COLUMNS": "200"})


async def fetch(settings: Settings, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(settings.postgres_connection_dsn)
    try:
        return await connection.fetch(sql, *args)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def worker(stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    worker = start_api_worker(stack_settings, tmp_path_factory.mktemp("keys-worker"))
    yield worker
    worker.stop()


def test_cli_adds_tenants_and_prints_a_key_once_that_the_api_accepts(stack_settings: Settings, worker, tenant: str) -> None:
    added = cli(stack_settings, "tenants", "add", tenant)
    assert added.returncode == 0 and "added" in added.stderr
    again = cli(stack_settings, "tenants", "add", tenant)
    assert again.returncode == 0 and "already registered" in again.stderr
    created = cli(stack_settings, "keys", "create", "--tenant", tenant, "--scope", "read")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert split_key(key) is not None and created.stdout == key + "\n", "stdout is the key alone"
    key_id = split_key(key)[0]
    answer = ApiClient(worker.settings.api_url, key).get("/v1/ticks", symbol="EURUSD")
    assert answer.status == 200 and answer.body == {"data": [], "next_cursor": None}

    listed = cli(stack_settings, "keys", "list", "--tenant", tenant)
    assert listed.returncode == 0 and key_id in listed.stdout and split_key(key)[1] not in listed.stdout
    assert tenant in cli(stack_settings, "tenants", "list").stdout

    assert cli(stack_settings, "keys", "create", "--tenant", tenant + "-nosuch").returncode == 1
    assert cli(stack_settings, "keys", "create", "--tenant", "Bad Name").returncode == 2
    assert cli(stack_settings, "tenants", "add", "Bad:Name").returncode == 2
    assert cli(stack_settings, "keys", "create", "--tenant", tenant, "--scope", "root").returncode == 2
    assert cli(stack_settings, "keys", "revoke", "0" * 16).returncode == 1


def test_keys_are_stored_only_as_salted_hashes(stack_settings: Settings, tenant: str) -> None:
    first, second = issue_key(stack_settings, tenant), issue_key(stack_settings, tenant)
    rows = asyncio.run(fetch(stack_settings, "SELECT * FROM api_keys WHERE tenant = $1 ORDER BY created_at", tenant))
    assert len(rows) == 2
    for issued, row in zip((first, second), rows):
        _, secret = split_key(issued.key)
        stored_text = " ".join(str(v) for v in row.values()) + " ".join(bytes(v).hex() for v in row.values()
                                                                       if isinstance(v, bytes))
        assert secret not in stored_text and issued.key not in stored_text
        assert set(row.keys()) == {"key_id", "tenant", "scope", "salt", "secret_hash", "created_at", "revoked_at"}
        assert row["key_id"] == issued.key_id
        assert bytes(row["secret_hash"]) == hmac.new(bytes(row["salt"]), secret.encode(), hashlib.sha256).digest()
        assert bytes(row["secret_hash"]) != hashlib.sha256(secret.encode()).digest(), "salted, not a bare hash"
    assert rows[0]["salt"] != rows[1]["salt"]


def test_missing_malformed_and_wrong_keys_are_refused(stack_settings: Settings, worker, tenant: str) -> None:
    good = issue_key(stack_settings, tenant).key
    key_id, secret = split_key(good)
    client = ApiClient(worker.settings.api_url)
    refused = {
        "no header": None,
        "empty": "",
        "basic": f"Basic {good}",
        "no scheme": good,
        "bearer only": "Bearer ",
        "garbage": "Bearer garbage",
        "truncated": f"Bearer {good[:-1]}",
        "longer": f"Bearer {good}x",
        "wrong secret": f"Bearer tw_{key_id}_{'A' * 43}",
        "unknown id": f"Bearer tw_{'0' * 16}_{secret}",
        "other prefix": f"Bearer xx_{key_id}_{secret}",
        "non-ascii": "Bearer tw_é",
    }
    for what, header in refused.items():
        headers = {} if header is None else {"Authorization": header}
        answer = client.request("GET", "/v1/ticks", {"symbol": "EURUSD"}, headers=headers)
        assert answer.status == 401, what
        assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer"), what
        assert set(answer.body) == {"error"} and good not in answer.body["error"], what
    assert client.request("GET", "/v1/ticks", {"symbol": "EURUSD"}, headers={"Authorization": f"bearer {good}"}).status == 200


def test_a_key_revoked_from_the_cli_is_refused_within_the_cache_ttl(stack_settings: Settings, worker, tenant: str) -> None:
    issued = issue_key(stack_settings, tenant)
    client = ApiClient(worker.settings.api_url, issued.key)
    assert client.get("/v1/ticks", symbol="EURUSD").status == 200  # now cached as valid
    revoked = cli(stack_settings, "keys", "revoke", issued.key_id)
    assert revoked.returncode == 0 and "revoked" in revoked.stderr
    assert "already revoked" in cli(stack_settings, "keys", "revoke", issued.key_id).stderr
    wait_until(lambda: client.get("/v1/ticks", symbol="EURUSD").status == 401, timeout_s=KEY_CACHE_TTL_S + 3,
               what="the revoked key to be refused", interval_s=0.1)
    assert asyncio.run(fetch(stack_settings, "SELECT revoked_at FROM api_keys WHERE key_id = $1", issued.key_id))[0][0]


def test_admin_scope_manages_own_keys_and_read_scope_gets_403(stack_settings: Settings, worker, tenant: str) -> None:
    admin = ApiClient(worker.settings.api_url, issue_key(stack_settings, tenant, "admin").key)
    reader = ApiClient(worker.settings.api_url, issue_key(stack_settings, tenant, "read").key)
    refused = reader.get("/v1/keys")
    assert refused.status == 403 and "admin" in refused.body["error"]
    assert reader.request("POST", "/v1/keys", body={"scope": "read"}).status == 403

    created = admin.request("POST", "/v1/keys", body={"scope": "read"})
    assert created.status == 201 and created.body["scope"] == "read"
    new = ApiClient(worker.settings.api_url, created.body["key"])
    assert new.get("/v1/ticks", symbol="EURUSD").status == 200
    listed = admin.get("/v1/keys").body["data"]
    assert created.body["key_id"] in {k["key_id"] for k in listed}
    assert all(set(k) == {"key_id", "scope", "created_at_ms", "revoked_at_ms"} for k in listed)

    gone = admin.request("DELETE", f"/v1/keys/{created.body['key_id']}")
    assert gone.status == 200 and gone.body == {"key_id": created.body["key_id"], "revoked": True}
    assert new.get("/v1/ticks", symbol="EURUSD").status == 401, "revoked through this process: refused at once"
    assert admin.request("DELETE", f"/v1/keys/{created.body['key_id']}").status == 200, "idempotent"
    assert admin.request("DELETE", f"/v1/keys/{'0' * 16}").status == 404
    assert admin.request("DELETE", "/v1/keys/not-a-key-id").status == 400
    assert admin.request("POST", "/v1/keys", body={"scope": "root"}).status == 400


def test_migrations_are_versioned_and_applied_once(stack_settings: Settings, worker) -> None:
    rows = asyncio.run(fetch(stack_settings, "SELECT version, name FROM schema_migrations ORDER BY version"))
    assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in MIGRATIONS]

    async def again() -> list[int]:
        connection = await asyncpg.connect(stack_settings.postgres_connection_dsn)
        try:
            return await migrate(connection)
        finally:
            await connection.close()

    assert asyncio.run(again()) == []
