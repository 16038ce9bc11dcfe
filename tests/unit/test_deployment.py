"""docker/ cannot be built here (no container engine): these checks read it instead. The
compose file, the Prometheus configuration and Grafana's provisioning parse and point at one
another; images are pinned; the projector's health check asks /readyz; the image keeps its
build context small. (That the dashboard queries only metrics /metrics really exports is
checked against a running server in tests/e2e/test_observability.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[2]
DOCKER = ROOT / "docker"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_the_compose_stack_has_the_service_its_monitoring_and_pinned_images() -> None:
    compose = load(DOCKER / "compose.yaml")
    services = compose["services"]
    assert {"postgres", "redis", "api", "projector", "prometheus", "grafana"} <= set(services)
    assert {"rabbitmq", "relay", "postgres-read"} <= set(services)
    assert services["relay"]["command"] == ["eventgraph", "publish"]
    assert services["relay"]["environment"]["EVENTGRAPH_PUBLISH_URL"].startswith("amqp://")
    for name in ("api", "projector"):
        assert "@postgres-read:" in services[name]["environment"]["EVENTGRAPH_READ_DATABASE_URL"]
    for name, service in services.items():
        image = service.get("image")
        if image is not None:
            assert re.fullmatch(r"[\w./-]+:[\w.-]*\d[\w.-]*", image), f"{name}: pin {image}"
            assert not image.endswith(":latest")
        else:
            assert service["build"]["dockerfile"] == "docker/Dockerfile"
    projector = services["projector"]
    assert "project" in projector["command"] and "--port" in projector["command"]
    assert any("/readyz" in part for part in projector["healthcheck"]["test"])
    for name in ("api", "projector"):
        environment = services[name]["environment"]
        assert "EVENTGRAPH_METRICS_TOKEN" in environment
        assert environment["EVENTGRAPH_LOG_FORMAT"] == "json"
    assert compose["secrets"]["metrics_token"]["environment"] == "EVENTGRAPH_METRICS_TOKEN"
    for volume in services["grafana"]["volumes"] + services["prometheus"]["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert (DOCKER / source).exists(), volume


def test_the_broker_is_internal_with_generated_credentials_and_a_publish_key() -> None:
    """No broker port published on every interface (a published port binds 127.0.0.1), no
    guest:guest, the relay's URL and key from docker/.env (compose refuses without them)."""
    compose = load(DOCKER / "compose.yaml")
    text = (DOCKER / "compose.yaml").read_text()
    assert "guest" not in text
    rabbitmq = compose["services"]["rabbitmq"]
    for port in rabbitmq.get("ports", []):
        spec = str(port)
        assert spec.startswith("127.0.0.1:"), spec
        assert not spec.endswith(":5672"), "AMQP stays inside the compose network"
    environment = rabbitmq["environment"]
    assert environment["RABBITMQ_DEFAULT_USER"] not in ("guest", "")
    assert re.fullmatch(r"\$\{RABBITMQ_PASSWORD:\?[^}]+\}", environment["RABBITMQ_DEFAULT_PASS"])
    relay = compose["services"]["relay"]["environment"]
    url = relay["EVENTGRAPH_PUBLISH_URL"]
    assert url.startswith("amqp://eventgraph:${RABBITMQ_PASSWORD:?") and url.endswith(
        "@rabbitmq:5672/"
    )
    assert re.fullmatch(r"\$\{EVENTGRAPH_PUBLISH_KEY:\?[^}]+\}", relay["EVENTGRAPH_PUBLISH_KEY"])
    for service in compose["services"].values():
        for port in service.get("ports", []):
            assert not str(port).split(":")[-1].startswith(("5672", "15672")) or str(
                port
            ).startswith("127.0.0.1:"), port
    readme = (DOCKER / "README.md").read_text()
    for name in ("RABBITMQ_PASSWORD", "EVENTGRAPH_PUBLISH_KEY", "docker/.env"):
        assert name in readme
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


def test_prometheus_scrapes_every_api_replica_and_the_projector_with_the_token() -> None:
    config = load(DOCKER / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs["eventgraph-api"]
    assert api["dns_sd_configs"][0]["names"] == ["api"]  # one A record per replica
    assert api["dns_sd_configs"][0]["port"] == 8000
    assert jobs["eventgraph-projector"]["static_configs"][0]["targets"] == ["projector:9100"]
    for job in jobs.values():
        assert job["authorization"]["credentials_file"] == "/run/secrets/metrics_token"


def test_grafana_provisions_the_datasource_and_the_dashboard() -> None:
    provisioning = DOCKER / "grafana" / "provisioning"
    [source] = load(provisioning / "datasources" / "prometheus.yaml")["datasources"]
    assert source["url"] == "http://prometheus:9090"
    [provider] = load(provisioning / "dashboards" / "eventgraph.yaml")["providers"]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "eventgraph.json").read_text())
    assert dashboard["uid"] == "eventgraph"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"]
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])


def test_the_image_is_pinned_runs_as_a_user_and_copies_only_what_exists() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    [base] = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    assert re.search(r"^USER eventgraph$", dockerfile, re.MULTILINE)
    assert re.search(r"uv==\d", dockerfile)
    for source in re.findall(r"^COPY (?:--\S+ )?(.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), path
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests", "bench", "web/node_modules"} <= set(ignored)
