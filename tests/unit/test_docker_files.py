"""docker/: the compose file parses and wires the farm together; the image installs what a render node needs."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def test_compose_wires_redis_nodes_and_web_on_a_shared_storage_volume():
    """compose.yaml alone is a working farm (tests/integration/test_containers.py runs it): storage on a volume
    the nodes and the web interface share, nothing published beyond this machine, Redis not at all."""
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "node", "web"}
    _local_ports_and_known_dependencies(services)
    assert "ports" not in services["redis"]
    node, web = services["node"], services["web"]
    assert (DOCKER / node["build"]["context"]).resolve() == DOCKER.parent  # built from the repository root
    assert (DOCKER.parent / node["build"]["dockerfile"]).is_file()
    assert node["environment"]["HTTPOV_BROKER_URL"] == "redis://redis:6379/0"
    storage = node["environment"]["HTTPOV_STORAGE"]
    assert f"storage:{storage}" in node["volumes"] and f"storage:{storage}" in web["volumes"]
    assert "storage" in compose["volumes"]
    assert web["environment"]["HTTPOV_STORAGE"] == storage
    assert "seccomp=unconfined" in node["security_opt"]
    assert node["command"][:4] == ["celery", "-A", "httpov", "worker"]
    assert web["command"][:2] == ["httpov", "web"] and "--public-read" not in web["command"]
    accounts = web["environment"]["HTTPOV_WEB_ACCOUNTS"]
    assert any(v.endswith(":" + str(Path(accounts).parent)) for v in web["volumes"]), "accounts on a volume"
    assert not any(accounts.startswith(v.split(":")[1]) for v in node["volumes"]), "nodes never see the hashes"


def test_compose_s3_and_flower_overrides():
    """compose.s3.yaml moves storage to S3 (MinIO, its bucket made first) for nodes and web alike;
    compose.flower.yaml adds Flower behind basic auth."""
    base = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    s3 = yaml.safe_load((DOCKER / "compose.s3.yaml").read_text())["services"]
    for name in ("node", "web"):
        env = {**base[name]["environment"], **s3[name]["environment"]}
        assert env["HTTPOV_STORAGE"].startswith("s3://") and env["AWS_ENDPOINT_URL"] == "http://s3:9000"
        assert env["HTTPOV_BROKER_URL"] == base[name]["environment"]["HTTPOV_BROKER_URL"]
    assert s3["web"]["environment"]["HTTPOV_WEB_ACCOUNTS"] == base["web"]["environment"]["HTTPOV_WEB_ACCOUNTS"]
    assert "s3-bucket" in s3["node"]["depends_on"]
    _local_ports_and_known_dependencies({**base, **s3})
    flower = yaml.safe_load((DOCKER / "compose.flower.yaml").read_text())["services"]
    _local_ports_and_known_dependencies({**base, **flower})
    command = " ".join(flower["flower"]["command"])
    assert "celery -A httpov flower" in command and "--basic-auth=" in command


def _local_ports_and_known_dependencies(services: dict) -> None:
    for name, service in services.items():
        deps = service.get("depends_on", [])
        assert set(deps) <= set(services), f"{name} depends on an unknown service"
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"


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
