"""Static checks of prometheus/prometheus.yml and prometheus/rules.yml."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "prometheus"

# The router's metric names (the contract with router/); rules may use no others.
ROUTER_METRICS = {
    "memory_router_requests_total",
    "memory_router_request_duration_seconds",
    "memory_router_time_to_first_byte_seconds",
    "memory_router_overhead_seconds",
    "memory_router_requests_in_flight",
    "memory_router_upstream_errors_total",
    "memory_router_routing_decisions_total",
    "memory_router_tokens_total",
    "memory_router_user_id_overflow_total",
}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((PROM_DIR / "rules.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _job(config: dict[str, Any], name: str) -> dict[str, Any]:
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert name in jobs, f"no scrape job {name!r}"
    return jobs[name]


def test_scrapes_the_router_by_service_name_and_port(
    config: dict[str, Any], compose: dict[str, Any]
) -> None:
    job = _job(config, "memory-router")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["router:8765"]
    host, port = targets[0].split(":")
    assert host in compose["services"]
    assert str(compose["services"][host]["environment"]["MEMORY_ROUTER_PORT"]) == port


def test_scrapes_litellm(config: dict[str, Any], compose: dict[str, Any]) -> None:
    job = _job(config, "litellm")
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert targets == ["litellm:4000"]
    # LiteLLM mounts its metrics app at /metrics/ (and redirects /metrics there).
    assert job.get("metrics_path") == "/metrics/"
    assert "litellm" in compose["services"]


def test_the_loopback_config_has_the_same_jobs_on_dev_sh_default_ports(
    config: dict[str, Any],
) -> None:
    """prometheus.local.yml (scripts/dev.sh --prometheus): prometheus.yml's jobs, paths and
    rules, with the targets on 127.0.0.1 at the ports scripts/dev.sh uses by default (the
    strings it replaces when other ports are set)."""
    local = yaml.safe_load((PROM_DIR / "prometheus.local.yml").read_text())
    assert local["rule_files"] == config["rule_files"]

    def paths(cfg: dict[str, Any]) -> dict[str, str]:
        jobs = cfg["scrape_configs"]
        return {job["job_name"]: job.get("metrics_path", "/metrics") for job in jobs}

    assert paths(local) == paths(config)
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in local["scrape_configs"]
    }
    assert targets == {
        "memory-router": ["127.0.0.1:8765"],
        "litellm": ["127.0.0.1:4000"],
        "prometheus": ["127.0.0.1:9090"],
    }
    dev = (ROOT / "scripts" / "dev.sh").read_text()
    for port in (8765, 4000, 9090):
        assert rf"s/127\.0\.0\.1:{port}/" in dev, f"scripts/dev.sh no longer replaces :{port}"


def test_rule_files_are_mounted_next_to_the_config(
    config: dict[str, Any], compose: dict[str, Any]
) -> None:
    prom = compose["services"]["prometheus"]
    mounts = {v["target"]: v["source"] for v in prom["volumes"] if v["type"] == "bind"}
    config_target = next(t for t, s in mounts.items() if s == "./prometheus/prometheus.yml")
    assert config["rule_files"]
    for rule_file in config["rule_files"]:
        assert not posixpath.isabs(rule_file), (
            "keep it relative so promtool works from the repo too"
        )
        assert (PROM_DIR / rule_file).is_file()
        in_container = posixpath.join(posixpath.dirname(config_target), rule_file)
        assert mounts.get(in_container) == f"./prometheus/{rule_file}", (
            f"{rule_file} is not mounted"
        )


def _metric_names(expr: str) -> set[str]:
    return set(
        re.findall(r"\b(memory_router_[a-z_]+?)(?:_bucket|_count|_sum)?\b(?=\s*[{\[)]|\s*$)", expr)
    )


def test_rules_use_only_router_metrics(rules: list[dict[str, Any]]) -> None:
    used: set[str] = set()
    for rule in rules:
        used |= _metric_names(rule["expr"])
    assert used, "no memory_router_* metric found in the rules"
    assert used <= ROUTER_METRICS, f"unknown metrics: {sorted(used - ROUTER_METRICS)}"


def test_recording_rules(rules: list[dict[str, Any]]) -> None:
    recorded = {r["record"]: " ".join(r["expr"].split()) for r in rules if "record" in r}
    rate = recorded["memory_router:requests:rate5m"]
    assert "sum by (user_id)" in rate and "rate(memory_router_requests_total[5m])" in rate
    p95 = recorded["memory_router:request_duration_seconds:p95_5m"]
    assert p95.startswith("histogram_quantile(0.95,")
    assert "sum by (user_id, le)" in p95 and "memory_router_request_duration_seconds_bucket" in p95
    assert 'status=~"5.."' in recorded["memory_router:request_errors:ratio_rate5m"]


def test_alerts(rules: list[dict[str, Any]], config: dict[str, Any]) -> None:
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    assert set(alerts) >= {
        "MemoryRouterDown",
        "MemoryRouterHighErrorRatio",
        "MemoryRouterUserIdOverflow",
    }
    assert alerts["MemoryRouterDown"]["expr"].strip() == 'up{job="memory-router"} == 0'
    _job(config, "memory-router")  # the job name the alert watches
    assert (
        "memory_router:request_errors:ratio_rate5m" in alerts["MemoryRouterHighErrorRatio"]["expr"]
    )
    assert re.fullmatch(
        r"increase\(memory_router_user_id_overflow_total\[\d+[mh]\]\) > 0",
        alerts["MemoryRouterUserIdOverflow"]["expr"].strip(),
    )
    for name, alert in alerts.items():
        assert alert["labels"]["severity"] in {"critical", "warning"}, name
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name
