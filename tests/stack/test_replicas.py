"""docker-compose.replicas.yml: several routers sharing one limit through Redis."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILE = ROOT / "docker-compose.replicas.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(FILE.read_text())
    return loaded


def test_schema() -> None:
    tool = shutil.which("check-jsonschema")
    assert tool, "pip install check-jsonschema"
    out = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_services_and_wiring(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"litellm", "redis", "router", "lb", "prometheus"}
    for name in ("litellm", "prometheus"):
        assert services[name]["extends"] == {"file": "docker-compose.yml", "service": name}
    router = services["router"]
    assert "ports" not in router, "replicas are reached through the load balancer only"
    assert router["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert router["deploy"]["replicas"] == "${ROUTER_REPLICAS:-3}"
    assert router["depends_on"]["redis"] == {"condition": "service_healthy"}
    (port,) = services["lb"]["ports"]
    assert (port["target"], port["published"]) == (8765, "8765")
    for name, svc in services.items():
        if "image" in svc:
            tag = svc["image"].rsplit(":", 1)[1]
            assert tag[0].isdigit() and "latest" not in tag, name


def test_load_balancer_config_is_valid_nginx(compose: dict[str, Any], tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.fail(
            "nginx is needed to check the load balancer config: apt-get install nginx-light"
        )
    content = compose["configs"]["lb-config"]["content"].replace("$$", "$")
    assert "proxy_buffering off;" in content  # streams must not be held
    assert "proxy_pass http://$router;" in content
    # A dead replica's address must not hold requests for nginx's default 60 s.
    assert "proxy_connect_timeout 2s;" in content
    (tmp_path / "logs").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events {}\nhttp {\n"
        f"access_log off;\nclient_body_temp_path {tmp_path};\n{content}\n}}\n"
    )
    out = subprocess.run(
        [nginx, "-t", "-c", str(conf), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr


def test_prometheus_finds_every_replica() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "apt-get install prometheus"
    path = ROOT / "prometheus" / "prometheus.replicas.yml"
    out = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    config = yaml.safe_load(path.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "memory-router"]
    assert job["dns_sd_configs"] == [
        {"names": ["router"], "type": "A", "port": 8765, "refresh_interval": "15s"}
    ]
