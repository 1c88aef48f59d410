"""docker/: the compose file parses and wires the farm together; the image installs what a render node needs."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def test_compose_wires_redis_nodes_flower_and_s3():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"redis", "node", "flower", "s3", "web"} <= set(services)
    for name, service in services.items():
        deps = service.get("depends_on", [])
        assert set(deps) <= set(services), f"{name} depends on an unknown service"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
    node = services["node"]
    assert (DOCKER / node["build"]["context"]).resolve() == DOCKER.parent  # built from the repository root
    assert (DOCKER.parent / node["build"]["dockerfile"]).is_file()
    assert node["environment"]["HTTPOV_BROKER_URL"] == "redis://redis:6379/0"
    assert node["environment"]["HTTPOV_STORAGE"].startswith("s3://")
    assert node["environment"]["AWS_ENDPOINT_URL"] == "http://s3:9000"
    assert "seccomp=unconfined" in node["security_opt"]
    assert node["command"][:4] == ["celery", "-A", "httpov", "worker"]
    flower = " ".join(services["flower"]["command"])
    assert "celery -A httpov flower" in flower and "--basic-auth=" in flower
    assert services["flower"]["environment"] == node["environment"]


def test_render_node_image_has_povray_bubblewrap_and_httpov_and_drops_root():
    text = (DOCKER / "Dockerfile").read_text()
    assert text.startswith("#") and re.search(r"^FROM debian:", text, re.M)
    for package in ("povray", "povray-includes", "bubblewrap", "python3"):
        assert re.search(rf"(?<![\w-]){package}(?![\w-])", text), package
    assert "pip install" in text and "[s3,flower,web]" in text
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for part in source.split():
            assert (DOCKER.parent / part).exists(), f"COPY {part}: not in the repository"
    assert 'CMD ["celery", "-A", "httpov", "worker"' in text


def test_k8s_nodes_scale_with_the_backlog_keda_reads_from_the_web_api():
    """docker/k8s: a Deployment of the node image KEDA scales on /api/backlog's work (httpov.view.backlog), with
    a stop grace for warm shutdown; the ScaledObject's value path is one backlog answers."""
    from httpov.view import backlog
    from httpov.web.api import api

    (deployment,) = yaml.safe_load_all((DOCKER / "k8s" / "node.yaml").read_text())
    auth, scaled = yaml.safe_load_all((DOCKER / "k8s" / "scaledobject.yaml").read_text())
    assert (deployment["apiVersion"], deployment["kind"]) == ("apps/v1", "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (node,) = pod["containers"]
    assert node["command"] == ["celery", "-A", "httpov", "worker", "--loglevel", "INFO", "--without-gossip",
                               "--without-mingle"]  # as the Dockerfile's CMD: SIGTERM reaches Celery itself
    assert node["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    assert pod["terminationGracePeriodSeconds"] >= 600
    assert deployment["spec"]["selector"]["matchLabels"] == deployment["spec"]["template"]["metadata"]["labels"]
    processes = {e["name"]: e["value"] for e in node["env"]}["HTTPOV_RENDER_PROCESSES"]

    assert (auth["apiVersion"], auth["kind"]) == ("keda.sh/v1alpha1", "TriggerAuthentication")
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                               "name": deployment["metadata"]["name"]}
    (trigger,) = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "metrics-api" and trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert meta["authMode"] == "bearer" and auth["spec"]["secretTargetRef"][0]["parameter"] == "token"
    assert meta["url"].endswith("/api/backlog") and meta["targetValue"] == processes
    assert any(rule.rule == "/api/backlog" for rule in _rules(api))

    class NoJobs:
        def active_ids(self) -> list[str]:
            return []

        def snapshots(self, ids: list[str]) -> dict:
            return {}
    answer = backlog(NoJobs())  # type: ignore[arg-type]
    for part in meta["valueLocation"].split("."):
        answer = answer[part]
    assert answer == 0


def _rules(blueprint) -> list:
    from flask import Flask

    app = Flask("rules")
    app.register_blueprint(blueprint, url_prefix="/api")
    return list(app.url_map.iter_rules())
