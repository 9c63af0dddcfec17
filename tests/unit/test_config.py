"""Settings: defaults point at the local stack; every error names its setting."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.config import SettingsError, load_settings


def test_defaults_are_the_local_stack(monkeypatch):
    for name in list(__import__("os").environ):
        if name.startswith("TICKWIRE_"):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.bootstrap_servers == ["127.0.0.1:19092"]
    assert settings.cache_url == "redis://127.0.0.1:16379/0"
    assert settings.postgres_dsn == "postgresql://tickwire@127.0.0.1:15432/tickwire"
    assert settings.graph_url == "redis://127.0.0.1:16380"
    assert settings.chdb_path is not None and settings.chdb_path.name == "clickhouse"
    assert settings.api_url == "http://127.0.0.1:6066"


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("TICKWIRE_CACHE_URL", "http://127.0.0.1:1", "TICKWIRE_CACHE_URL"),
        ("TICKWIRE_CLICKHOUSE_DSN", "mysql://x", "TICKWIRE_CLICKHOUSE_DSN"),
        ("TICKWIRE_CLICKHOUSE_DSN", "chdb://", "TICKWIRE_CLICKHOUSE_DSN"),
        ("TICKWIRE_BROKER_URL", "kafka://host:notaport", "TICKWIRE_BROKER_URL"),
        ("TICKWIRE_POSTGRES_DSN", "redis://x", "TICKWIRE_POSTGRES_DSN"),
        ("TICKWIRE_API_PORT", "70000", "TICKWIRE_API_PORT"),
        ("TICKWIRE_FETCH_MAX_RECORDS", "zero", "TICKWIRE_FETCH_MAX_RECORDS"),
        ("TICKWIRE_VECTOR_BACKEND", "milvus", "TICKWIRE_VECTOR_BACKEND"),
        ("TICKWIRE_CLICKHOUSE_DATABASE", "x; DROP", "TICKWIRE_CLICKHOUSE_DATABASE"),
        ("TICKWIRE_GROUP_ID", "tickwire", "TICKWIRE_GROUP_ID"),
    ],
)
def test_bad_setting_is_named(monkeypatch, env, value, message):
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_several_bad_settings_are_all_named(monkeypatch):
    monkeypatch.setenv("TICKWIRE_CACHE_URL", "nope")
    monkeypatch.setenv("TICKWIRE_API_PORT", "-1")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "TICKWIRE_CACHE_URL" in str(info.value) and "TICKWIRE_API_PORT" in str(info.value)


def test_worker_refuses_to_start_with_a_bad_setting(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "TICKWIRE_CACHE_URL": "memcached://x", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "pipeline", "worker"], env=env, capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert "TICKWIRE_CACHE_URL" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
