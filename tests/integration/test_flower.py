"""A real Flower next to real render nodes, started as README says (`httpov flower`) from a folder outside the
checkout: it needs a login there too; a job's tasks are found, readable, through its API."""
from __future__ import annotations

import ast
import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from httpov.local_farm import free_port, worker_env
from tests.conftest import TINY_ANIMATION, wait_for, write_scene

AUTH = "farm:s3cret"
ROOT = Path(__file__).resolve().parents[2]


def api(url: str, auth: str | None = AUTH) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _flower_env(settings, **flower: str) -> dict[str, str]:
    env = {k: v for k, v in worker_env(settings).items() if not k.startswith("FLOWER_")}
    return {**env, **flower}


HTTPOV_FLOWER = [sys.executable, "-m", "httpov.cli", "flower"]  # the README's `httpov flower`
CELERY_FLOWER = [sys.executable, "-m", "celery", "-A", "httpov", "flower"]


def _start_flower(env: dict[str, str], log_path, argv: list[str] = HTTPOV_FLOWER, cwd: Path | None = None):
    """`argv` (the README's command, `httpov flower`, unless told) in `cwd`, by default a folder of its own outside
    the checkout: no flowerconfig.py there to lean on."""
    if cwd is None:
        cwd = Path(log_path).parent / "elsewhere"
        cwd.mkdir(exist_ok=True)
    log = open(log_path, "w+")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    return proc, log


def _stop(proc, log) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.seek(0)
    print(log.read()[-3000:])


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as /proc/net/tcp* writes them) listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.append(address)
    return found


@pytest.fixture
def flower(settings, tmp_path):
    port = free_port()
    proc, log = _start_flower(_flower_env(settings, FLOWER_BASIC_AUTH=AUTH, FLOWER_PORT=str(port)),
                              tmp_path / "flower.log")
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "flower.log").read_text()
        try:
            return api(url + "/healthcheck")[0] == 200
        except OSError:
            return False

    try:
        wait_for(up, 60, "flower to answer")
        yield url
    finally:
        _stop(proc, log)


def test_the_documented_flower_command_listens_on_loopback_with_a_login(settings, flower):
    port = int(flower.rsplit(":", 1)[1])
    assert _listening(port) == ["0100007F"], "Flower listens beyond 127.0.0.1"
    assert api(flower + "/api/workers", auth=None)[0] == 401
    assert api(flower + "/api/workers", auth="farm:wrong")[0] == 401
    assert api(flower + "/api/workers")[0] == 200


@pytest.mark.parametrize("how", ["httpov flower elsewhere", "celery -A httpov flower in the checkout",
                                 "httpov flower on loopback, elsewhere"])
def test_flower_refuses_to_start_without_a_login(settings, tmp_path, how):
    port = free_port()
    argv, cwd = (CELERY_FLOWER, ROOT) if how.startswith("celery") else (HTTPOV_FLOWER, None)
    if "loopback" in how:
        argv = [*argv, "--address=127.0.0.1"]
    proc, log = _start_flower(_flower_env(settings, FLOWER_PORT=str(port)), tmp_path / "flower.log", argv, cwd)
    try:
        assert proc.wait(60) != 0
        log.seek(0)
        assert "Flower needs a login" in log.read()
        assert _listening(port) == []
    finally:
        _stop(proc, log)


def test_httpov_flower_keeps_its_login_against_a_conf_of_ones_own(settings, tmp_path):
    own = tmp_path / "open.py"
    own.write_text("basic_auth = []\naddress = '0.0.0.0'\n")
    result = subprocess.run([*HTTPOV_FLOWER, f"--conf={own}"], env=_flower_env(settings), capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and "no --conf" in result.stderr, result.stderr


def test_flower_lists_a_jobs_tasks_with_job_batch_and_frames(tmp_path, settings, client, workers, flower):
    assert api(flower + "/api/tasks", auth=None)[0] == 401  # basic auth guards the API too
    workers(concurrency=2, name="fnode")
    # task events are off in celeryconfig (each costs the node a round trip to Redis): Flower turns them on in
    # every worker it reaches, every 5 s while it runs. Wait until Flower knows the render node, then turn them on
    # as Flower's timer does, with the node's reply, so that events flow before the job's tasks are sent.

    def knows_node() -> bool:
        status, body = api(flower + "/api/workers?refresh=1")
        return status == 200 and any(name.startswith("fnode@") for name in json.loads(body))

    wait_for(knows_node, 60, "flower to see the render node")
    replies = client.celery.control.enable_events(reply=True, timeout=10)
    assert any(name.startswith("fnode@") for reply in replies for name in reply), replies

    scene = write_scene(tmp_path / "fl", TINY_ANIMATION, "Width=16\nHeight=12\n+KFI1 +KFF4\n")
    sub = client.submit(scene, count=2)
    client.wait(sub.spec.id, timeout=180)

    def tasks_of_job() -> list[dict]:
        status, body = api(flower + "/api/tasks?limit=100")
        assert status == 200, body[:500]
        found = []
        for task in json.loads(body).values():
            kwargs = task.get("kwargs") or "{}"
            kwargs = ast.literal_eval(kwargs) if isinstance(kwargs, str) else kwargs
            if kwargs.get("job_id") == sub.spec.id:
                found.append({**task, "kwargs": kwargs})
        return found

    wait_for(lambda: len([t for t in tasks_of_job() if t["state"] == "SUCCESS"]) == 2, 30,
             "flower to see both batches succeed")
    tasks = sorted(tasks_of_job(), key=lambda t: t["kwargs"]["batch"])
    assert [t["name"] for t in tasks] == ["httpov.render_batch"] * 2
    assert [t["kwargs"]["batch"] for t in tasks] == ["f000001-000002", "f000003-000004"]
    assert [t["kwargs"]["label"] for t in tasks] == ["frames 1-2", "frames 3-4"]
    assert all(t["worker"].startswith("fnode@") for t in tasks)
    assert all(f"rendered: {t['kwargs']['label']} in" in str(t["result"]) for t in tasks), [t["result"] for t in tasks]

    # one task by id, as the task page shows it
    status, body = api(flower + f"/api/task/info/{tasks[0]['uuid']}")
    assert status == 200 and json.loads(body)["state"] == "SUCCESS"
