"""The alerts, recording rules, dashboard and monitoring services of deploy/ are valid and agree with each other.

``promtool check rules`` and ``promtool test rules`` (deploy/prometheus/tests/*.yml: every alert fires on its
case and stays quiet on another) run for real; promtool is Debian's ``prometheus`` package, installed when
missing (tests/prometheus_support.py). The rest reads the files: every alert carries a severity, a summary, a
description and a runbook line; every rule and dashboard query reads only metrics the worker exports
(pipeline/core/metrics.py) and recorded series; the compose services scrape and mount what deploy/ holds.
tests/stack/test_prometheus_live.py runs a real Prometheus against a worker.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml
from prometheus_client import Counter, Gauge, Histogram

from pipeline.core import metrics
from tests.prometheus_support import (
    DASHBOARD,
    DEPLOY,
    PROMETHEUS_DIR,
    ROOT,
    RULE_FILES,
    dashboard,
    load_yaml,
    panel_queries,
    prometheus_binary,
    rules,
    series_names,
)

RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def exported_series() -> set[str]:
    """The sample names the worker's /metrics carries (pipeline/core/metrics.py)."""
    names: set[str] = set()
    for value in vars(metrics).values():
        if isinstance(value, Counter):
            names.add(value._name + "_total")
        elif isinstance(value, Histogram):
            names |= {value._name + suffix for suffix in ("_bucket", "_count", "_sum")}
        elif isinstance(value, Gauge):
            names.add(value._name)
    return names


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_promtool_checks_the_rule_files() -> None:
    promtool = prometheus_binary("promtool")
    done = run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_runs_the_rule_unit_tests() -> None:
    promtool = prometheus_binary("promtool")
    done = run(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_promtool_checks_the_prometheus_config_of_compose(tmp_path: Path) -> None:
    """deploy/prometheus/prometheus.yml with its rule files where compose mounts them (here: the repo's)."""
    promtool = prometheus_binary("promtool")
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    mounted = {c["target"]: ROOT / COMPOSE["configs"][c["source"]]["file"] for c in SERVICES["prometheus"]["configs"]}
    assert set(config["rule_files"]) <= set(mounted), set(config["rule_files"]) - set(mounted)
    assert {mounted[path] for path in config["rule_files"]} == {path.resolve() for path in RULE_FILES}
    config["rule_files"] = [str(mounted[path]) for path in config["rule_files"]]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    done = run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test_and_every_recording_rule_a_value_test() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    evaluated: set[str] = set()
    for path in RULE_TESTS:
        spec = load_yaml(path)
        assert {(PROMETHEUS_DIR / "tests" / f).resolve() for f in spec["rule_files"]} <= {p.resolve() for p in RULE_FILES}
        for case in spec["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check["exp_alerts"] else quiet).add(check["alertname"])
            evaluated |= {check["expr"] for check in case.get("promql_expr_test", [])}
    alerts = {rule["alert"] for rule in rules("alert")}
    assert alerts <= fires, f"alerts never tested firing: {alerts - fires}"
    assert alerts <= quiet, f"alerts never tested quiet: {alerts - quiet}"
    recorded = {rule["record"] for rule in rules("record")}
    assert recorded <= evaluated, f"recording rules without a value test: {recorded - evaluated}"


def test_every_alert_says_how_bad_what_and_where_and_what_to_check_first() -> None:
    for rule in rules("alert"):
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}, name
        assert rule["annotations"]["runbook"].startswith("First "), name
        grouped = set(re.findall(r"\$labels\.(\w+)", rule["annotations"]["summary"] + rule["annotations"]["description"]))
        assert grouped & {"stage", "sink", "job", "instance"}, f"{name}: the annotations name no stage, sink or target"
        assert re.fullmatch(r"\d+m", rule.get("for", "")), f"{name}: an alert needs a `for`"


def test_rules_and_dashboard_read_only_exported_or_recorded_series() -> None:
    known = exported_series() | {"up"}
    recorded = {rule["record"] for rule in rules("record")}
    assert exported_series() >= {"tickwire_records_consumed_total", "tickwire_sink_flush_seconds_bucket",
                                 "tickwire_consumer_lag_seconds", "tickwire_api_request_seconds_count",
                                 "tickwire_stage_state", "tickwire_rows_written_total"}
    for rule in [*rules("record"), *rules("alert")]:
        names = series_names(rule["expr"])
        assert names and names <= known, (rule.get("record") or rule.get("alert"), names - known)
    for title, expr in panel_queries():
        names = series_names(expr)
        assert names and names <= known | recorded, (title, names - known - recorded)


def test_the_dashboard_has_the_panels_an_on_call_engineer_needs() -> None:
    board = dashboard()
    panels = [p for p in board["panels"] if p["type"] != "row"]
    titles = {p["title"] for p in panels}
    assert {"Ingest rate per stage", "Lag per stage (records)", "Lag per stage (seconds)", "Checkpoint age per stage",
            "Sink flush latency (p50, p99)", "Circuit state", "Dead letters by stage and reason",
            "API latency by route (p50, p99)", "API status codes"} <= titles
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"] and panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"]), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
    assert board["uid"] == "tickwire"


def test_the_monitoring_services_scrape_the_tickwire_services_and_mount_what_deploy_holds() -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job, service in (("tickwire-worker", "worker"), ("tickwire-api", "api")):
        (sd,) = jobs[job]["dns_sd_configs"]
        assert sd["names"] == [service] and sd["type"] == "A", job
        port = SERVICES[service]["environment"]["TICKWIRE_API_PORT"]
        assert str(sd["port"]) == port and port in SERVICES[service]["expose"], job
        assert jobs[job].get("metrics_path", "/metrics") == "/metrics"
    for alert in rules("alert"):  # the alerts' job names are the scrape jobs
        assert set(re.findall(r'job=~?"([^"]+)"', alert["expr"])) <= {"tickwire-.*", *jobs}
    # every config file a service mounts exists in deploy/
    for config_name, spec in COMPOSE["configs"].items():
        source = (ROOT / spec["file"]).resolve()
        assert source.is_file() and source.is_relative_to(DEPLOY), config_name
    grafana_files = {c["target"]: (ROOT / COMPOSE["configs"][c["source"]]["file"]).resolve()
                     for c in SERVICES["grafana"]["configs"]}
    provider = load_yaml(grafana_files["/etc/grafana/provisioning/dashboards/tickwire.yml"])
    (dashboards_dir,) = [p["options"]["path"] for p in provider["providers"]]
    assert grafana_files[f"{dashboards_dir}/tickwire.json"] == DASHBOARD.resolve()
    assert SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == f"{dashboards_dir}/tickwire.json"
    (datasource,) = load_yaml(grafana_files["/etc/grafana/provisioning/datasources/prometheus.yml"])["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    assert "9090" in SERVICES["prometheus"]["expose"]
    console = SERVICES["redpanda-console"]["environment"]
    assert console["KAFKA_BROKERS"] == "redpanda:9092" and "9092" in SERVICES["redpanda"]["expose"]
    worker_env = SERVICES["worker"]["environment"]
    assert console["KAFKA_SASL_MECHANISM"] == worker_env["TICKWIRE_KAFKA_SASL_MECHANISM"]
    assert console["KAFKA_SASL_USERNAME"] == worker_env["TICKWIRE_KAFKA_SASL_USERNAME"]
    # pinned to an exact version; only Grafana's and the console's ports are published
    for name in ("prometheus", "grafana", "redpanda-console"):
        image = SERVICES[name]["image"]
        assert re.fullmatch(r"[a-z0-9./_-]+:v?\d+\.\d+\.\d+", image) and "latest" not in image, image
    assert "ports" not in SERVICES["prometheus"]
    assert SERVICES["grafana"]["ports"] == ["3000:3000"] and SERVICES["redpanda-console"]["ports"] == ["8081:8080"]
    assert {"prometheus", "grafana"} <= set(COMPOSE["volumes"])
