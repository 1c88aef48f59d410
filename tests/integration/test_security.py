"""Hostile input end to end: scenes and job records that try to take over a render node, and the broker's locks.

Each test proves the harm did not happen (no marker file, no file outside the job, nothing queued)."""
from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from httpov.cli import cli
from httpov.local import free_port, worker_env
from tests.conftest import TINY_ANIMATION, pixels, povray_direct, wait_for, write_scene


def test_scene_ini_cannot_override_what_httpov_sets(tmp_path, client, workers):
    marker = tmp_path / "shellout-ran"
    evil_out = tmp_path / "evil-output"
    scene = write_scene(tmp_path / "sneaky", TINY_ANIMATION,
                        "Width=16\nHeight=12\n+KFI1 +KFF2\n"
                        f"Output_File_Name={evil_out}/x.png\nDisplay=on\nWork_Threads=64\n"
                        f"Pre_Scene_Command=touch {marker}\nPost_Frame_Command=touch {marker}\n"
                        "Subset_Start_Frame=2\n+SR5 +ER6\n")
    (scene / "povray.ini").write_text(f"Pre_Scene_Command=touch {marker}\n")
    workers(concurrency=1)
    sub = client.submit(scene, count=2)
    assert any("Pre_Scene_Command" in item for item in sub.ignored)
    client.wait(sub.spec.id, timeout=120)
    images = client.fetch(sub.spec.id, tmp_path / "out")
    assert [p.name for p in images] == ["sneaky_0002.png"]  # the ini's subset is honoured, its rows are not
    assert not marker.exists(), "a shell-out from the scene ran"
    assert not evil_out.exists(), "povray wrote where the scene's ini asked"
    clean = write_scene(tmp_path / "clean", TINY_ANIMATION, "Width=16\nHeight=12\n+KFI1 +KFF2\n")
    povray_direct(clean, tmp_path / "ref")
    assert pixels(images[0]) == pixels(tmp_path / "ref" / "ref2.png"), "the scene changed the rendered rows"


def test_node_does_not_trust_a_forged_job_record(tmp_path, settings, client, workers):
    """Someone who can write to Redis puts shell-outs and paths outside the scene into a job: the node refuses."""
    marker = tmp_path / "forged-ran"
    scene = write_scene(tmp_path / "forged", TINY_ANIMATION, "Width=16\nHeight=12\n")
    sub = client.submit(scene)
    key = f"{settings.prefix}:job:{sub.spec.id}"
    spec = json.loads(client.store.r.hget(key, "spec"))
    spec["options"].update({"Pre_Scene_Command": f"touch {marker}", "Output_File_Name": str(tmp_path / "o.png"),
                            "Input_File_Name": "../../../../etc/hostname"})
    client.store.r.hset(key, "spec", json.dumps(spec))
    workers(concurrency=1)
    wait_for(lambda: client.store.state(sub.spec.id) in ("failed", "done"), 60, "the forged job to end")
    progress = client.status(sub.spec.id)[0]
    assert progress["state"] == "failed"
    assert any("outside the scene" in line for line in progress["errors"])
    assert not marker.exists() and not (tmp_path / "o.png").exists()


def test_hostile_archive_is_refused_before_anything_is_stored(tmp_path, settings):
    bad = tmp_path / "escape.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("pov.ini", "Input_File_Name=scene.pov\n")
        zf.writestr("scene.pov", TINY_ANIMATION)
        zf.writestr("../../outside.txt", "gotcha")
    result = CliRunner().invoke(cli, ["submit", str(bad)], env=worker_env(settings))
    assert result.exit_code == 3, result.output
    assert ".." in result.output
    assert not Path(settings.storage).exists() or not any(Path(settings.storage).rglob("*.zip"))
    assert not (tmp_path.parent / "outside.txt").exists()


def test_a_node_rechecks_archives_it_downloads(tmp_path, settings, client, workers):
    """A scene swapped in storage behind the submitter's back (hash mismatch, '..' member) is not extracted."""
    scene = write_scene(tmp_path / "swap", TINY_ANIMATION, "Width=16\nHeight=12\n")
    sub = client.submit(scene)
    stored = Path(settings.storage) / sub.spec.scene_key
    with zipfile.ZipFile(stored, "w") as zf:
        zf.writestr("pov.ini", "Input_File_Name=scene.pov\n")
        zf.writestr("scene.pov", TINY_ANIMATION)
        zf.writestr("../escaped.txt", "gotcha")
    workers(concurrency=1)
    wait_for(lambda: client.store.state(sub.spec.id) in ("failed", "done"), 90, "the job to end")
    assert client.store.state(sub.spec.id) == "failed"
    assert not list(settings.cache_dir.rglob("escaped.txt"))
    assert not (settings.cache_dir.parent / "escaped.txt").exists()


def test_pickled_messages_never_run_on_a_node(tmp_path, settings, client, workers):
    """Only json is accepted: a pickle that would write a marker when loaded is refused, the node keeps going."""
    marker = tmp_path / "unpickled"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    workers(concurrency=1)
    client.celery.send_task("httpov.render_batch", kwargs={"job_id": "x", "batch": Evil()}, queue=settings.queue,
                            serializer="pickle")
    scene = write_scene(tmp_path / "after", TINY_ANIMATION, "Width=8\nHeight=8\n")
    sub = client.submit(scene)
    assert client.wait(sub.spec.id, timeout=90)["state"] == "done"
    assert not marker.exists()


def _tls_files(folder: Path) -> dict[str, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl command."""
    folder.mkdir()
    run = lambda *a: subprocess.run(["openssl", *a], cwd=folder, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=httpov-test-ca")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
        "/CN=127.0.0.1")
    (folder / "ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
        "server.crt", "-days", "1", "-extfile", "ext")
    return {name: folder / name for name in ("ca.crt", "server.crt", "server.key")}


@pytest.fixture
def tls_redis(tmp_path):
    """Our own redis-server with TLS only and a password (the shared one is never reconfigured)."""
    files = _tls_files(tmp_path / "tls")
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server"), "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(files["server.crt"]), "--tls-key-file", str(files["server.key"]),
         "--tls-ca-cert-file", str(files["ca.crt"]), "--tls-auth-clients", "no", "--requirepass", "s3cret",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"rediss://:s3cret@127.0.0.1:{port}/0?ssl_ca_certs={files['ca.crt']}"

    def answers() -> bool:
        assert proc.poll() is None, "redis-server could not start with TLS"
        try:
            return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
        except redis.ConnectionError:
            return False

    try:
        wait_for(answers, 20, "the TLS redis-server to answer")
        yield port, files["ca.crt"]
    finally:
        proc.kill()
    proc.wait()


def test_redis_with_tls_and_password(tmp_path, settings, tls_redis, workers):
    port, ca = tls_redis
    url = f"rediss://:s3cret@127.0.0.1:{port}/0"
    secure = settings.with_(broker_url=url, state_url=url, redis_ca=str(ca))
    scene = write_scene(tmp_path / "tls", TINY_ANIMATION, "Width=8\nHeight=8\n")
    workers(concurrency=1, settings_=secure)
    env = worker_env(secure)
    done = CliRunner().invoke(cli, ["submit", str(scene), "--wait"], env=env)
    assert done.exit_code == 0, done.output

    unverified = dict(env)
    del unverified["HTTPOV_REDIS_CA"]  # the system CAs do not know our test CA: verification must fail
    refused = CliRunner().invoke(cli, ["status"], env=unverified)
    assert refused.exit_code == 5 and "certificate verify failed" in refused.output

    no_password = dict(env, HTTPOV_BROKER_URL=f"rediss://127.0.0.1:{port}/0",
                       HTTPOV_STATE_URL=f"rediss://127.0.0.1:{port}/0")
    denied = CliRunner().invoke(cli, ["status"], env=no_password)
    assert denied.exit_code == 5 and "password" in denied.output
