"""Whole jobs with S3 storage: a real S3-compatible server (moto in its own process) reached over HTTP by the client
and by render nodes running as separate `celery worker` processes."""
from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis
from click.testing import CliRunner

from httpov.broker import key_prefix
from httpov.celery import make_app
from httpov.cli import cli
from httpov.client import Client
from httpov.local_farm import free_port, worker_env
from httpov.settings import Settings
from httpov.storage.s3 import S3Storage
from tests.conftest import REDIS_URL, TINY_ANIMATION, pixels, povray_direct, write_scene
from tests.s3server import apply_env, make_bucket, moto_process, recorded_requests, start_recording

pytestmark = pytest.mark.integration

INI = "Width=24\nHeight=16\nAntialias=on\nAntialias_Threshold=0.3\nInitial_Frame=1\nFinal_Frame=4\n"
# moto accepts any credentials: a distinctive secret shows whether it leaks into Redis or a Celery message.
SECRET = "s3cr3t-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_process(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def s3_settings(settings: Settings, endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The test's settings on a fresh bucket; AWS_* in os.environ, which worker_env hands to render nodes."""
    apply_env(monkeypatch, endpoint)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    bucket = "jobs-" + uuid.uuid4().hex[:12]
    make_bucket(endpoint, bucket)
    return settings.with_(storage=f"s3://{bucket}/farm")


def _client(settings: Settings) -> Client:
    return Client(settings, make_app(settings))


def _object_requests(endpoint: str, method: str, storage: S3Storage, key: str) -> int:
    path = f"/{storage.bucket}/{storage.prefix}{key}"
    return sum(1 for r in recorded_requests(endpoint) if r["method"] == method and urlparse(r["url"]).path == path)


def _redis_values(prefix: str) -> str:
    """Every value stored under the test's key prefix (job state and the queued Celery messages), as text."""
    r = redis.Redis.from_url(REDIS_URL)
    text = []
    for key in r.scan_iter(match=f"{prefix}:*", count=1000):
        kind = r.type(key)
        if kind == b"hash":
            text += [repr(v) for v in r.hgetall(key).values()]
        elif kind == b"list":
            text += [repr(v) for v in r.lrange(key, 0, -1)]
        elif kind == b"string":
            text.append(repr(r.get(key)))
        elif kind in (b"set", b"zset"):
            text += [repr(v) for v in (r.smembers(key) if kind == b"set" else r.zrange(key, 0, -1))]
    return "\n".join(text)


def test_job_in_s3_renders_like_povray_and_each_node_downloads_the_scene_once(tmp_path, endpoint, s3_settings,
                                                                              workers):
    scene = write_scene(tmp_path / "s3anim", TINY_ANIMATION, INI)
    client = _client(s3_settings)
    start_recording(endpoint)
    sub = client.submit(scene, count=1)
    assert sub.uploaded and len(sub.spec.batches) == 4

    # Nothing secret travels in the job's state or its queued messages: nodes use their own AWS settings.
    queued = _redis_values(s3_settings.prefix)
    assert "render_batch" in queued and sub.spec.id in queued
    assert SECRET not in queued and "testing" not in queued

    # Two render nodes, each with its own scene cache, two processes each.
    for name in ("s3a", "s3b"):
        workers(concurrency=2, name=name, settings_=s3_settings.with_(cache_dir=tmp_path / f"cache-{name}"))
    final = client.wait(sub.spec.id, timeout=180)
    assert (final.state, final.frames_done) == ("done", 4)

    storage = client.storage
    assert isinstance(storage, S3Storage)
    nodes = {info["node"].split("@")[0] for info in client.store.batches(sub.spec.id)["done"].values()}
    assert nodes <= {"s3a", "s3b"} and nodes
    assert _object_requests(endpoint, "PUT", storage, sub.spec.scene_key) == 1
    assert _object_requests(endpoint, "GET", storage, sub.spec.scene_key) == len(nodes), \
        "each render node must download the scene once, whatever its number of processes"
    assert len(list((tmp_path / f"cache-{next(iter(nodes))}" / "scenes").iterdir())) == 1
    assert not (tmp_path / "storage").exists(), "nothing may go to a local storage folder in S3 mode"

    result = CliRunner().invoke(cli, ["fetch", sub.spec.id, "--output", str(tmp_path / "out")],
                                env=worker_env(s3_settings))
    assert result.exit_code == 0, result.output
    assert "downloading 4/4" in result.output
    povray_direct(scene, tmp_path / "ref")
    for n in range(1, 5):
        assert pixels(tmp_path / "out" / f"s3anim_{n:04d}.png") == pixels(tmp_path / "ref" / f"ref{n}.png"), \
            f"frame {n} fetched from S3 differs from a direct povray render"


def test_second_submit_of_the_same_scene_uploads_nothing(tmp_path, endpoint, s3_settings):
    scene = write_scene(tmp_path / "again", TINY_ANIMATION, INI)
    client = _client(s3_settings)
    first = client.submit(scene)
    assert first.uploaded
    start_recording(endpoint)
    second = client.submit(scene, count=2)
    assert not second.uploaded and second.spec.scene_key == first.spec.scene_key
    writes = [urlparse(r["url"]).path for r in recorded_requests(endpoint) if r["method"] in ("PUT", "POST")]
    probe = f"/{client.storage.bucket}/farm/.httpov-check-"  # submit's check that the bucket is writable
    assert [path for path in writes if not path.startswith(probe)] == []

    result = CliRunner().invoke(cli, ["submit", str(scene)], env=worker_env(s3_settings))
    assert result.exit_code == 0, result.output
    assert f"scene already stored as {first.spec.scene_key}" in result.output


def _assert_refused(settings: Settings, scene: Path, *expected: str) -> str:
    result = CliRunner().invoke(cli, ["submit", str(scene)], env=worker_env(settings))
    assert result.exit_code == 6, result.output
    assert "Traceback" not in result.output
    for text in expected:
        assert text in result.output
    r = redis.Redis.from_url(REDIS_URL)
    ours = [f"{settings.prefix}:{name}" for name in ("job:*", "jobs", "active")]
    for pattern in [*ours, f"{key_prefix(settings.prefix)}*"]:  # no job recorded, no Celery message queued
        assert list(r.scan_iter(match=pattern)) == [], f"found {pattern} after a refusal"
    return result.output


def test_submit_to_a_missing_bucket_is_refused_before_queueing(tmp_path, endpoint, s3_settings):
    scene = write_scene(tmp_path / "nobucket", TINY_ANIMATION, INI)
    missing = s3_settings.with_(storage="s3://no-such-bucket-here/farm")
    _assert_refused(missing, scene, "httpov: error:", "'no-such-bucket-here'", "does not exist", endpoint)


def test_submit_to_a_closed_port_is_refused_before_queueing(tmp_path, s3_settings, monkeypatch):
    scene = write_scene(tmp_path / "closed", TINY_ANIMATION, INI)
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    _assert_refused(s3_settings, scene, "httpov: error:", "cannot reach", closed, "hint:")


def test_submit_without_credentials_is_refused_before_queueing(tmp_path, s3_settings, monkeypatch):
    scene = write_scene(tmp_path / "nocreds", TINY_ANIMATION, INI)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    _assert_refused(s3_settings, scene, "no AWS credentials", "AWS_ACCESS_KEY_ID")


def test_submit_with_denied_access_is_refused_before_queueing(tmp_path, s3_settings, monkeypatch):
    """A second S3 server that enforces IAM from its first request: our made-up access key is refused (403)."""
    scene = write_scene(tmp_path / "denied", TINY_ANIMATION, INI)
    monkeypatch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", "0")  # read by the moto server process at start
    with moto_process(tmp_path / "moto-iam") as strict:
        monkeypatch.setenv("AWS_ENDPOINT_URL", strict)
        _assert_refused(s3_settings, scene, "httpov: error:", "access to bucket", "was denied", strict,
                        "hint: Check the AWS credentials")


class FlakyProxy:
    """A TCP proxy on 127.0.0.1 to the S3 server that resets its first `failures` connections, then forwards."""

    def __init__(self, target: str, failures: int) -> None:
        url = urlparse(target)
        self.target = (url.hostname, url.port)
        self.failures = failures
        self.connections = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            if self.connections <= self.failures:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()  # RST: "connection reset by peer"
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        self.server.close()


def test_a_worker_retries_transient_network_errors_with_backoff(tmp_path, endpoint, s3_settings, workers,
                                                                 monkeypatch):
    """More resets than botocore's own 3 tries: the node holds the batch (waiting for storage) and renders it again
    after a back-off, once S3 answers."""
    scene = write_scene(tmp_path / "flaky", TINY_ANIMATION, INI.replace("Final_Frame=4", "Final_Frame=1"))
    client = _client(s3_settings)
    sub = client.submit(scene)
    proxy = FlakyProxy(endpoint, failures=4)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)  # only the render node goes through the proxy
        workers(concurrency=1, name="flaky", settings_=s3_settings)
        final = client.wait(sub.spec.id, timeout=120)
    finally:
        proxy.close()
    assert final.state == "done"
    assert proxy.connections > 4
    batches = client.store.batches(sub.spec.id)
    # the storage's fault is the farm's (issue #31): the batch was held and tried again, using up no attempt,
    # recording no failure and blocking no node
    assert batches["attempts"] == {"f000001-000001": 1} and batches["done"]["f000001-000001"]["attempt"] == 1
    assert batches["failed"] == {} and batches["blocked"] == []
    images = client.fetch(sub.spec.id, tmp_path / "out")
    povray_direct(scene, tmp_path / "ref")
    assert pixels(images[0]) == pixels(tmp_path / "ref" / "ref.png")
