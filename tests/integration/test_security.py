"""Hostile input end to end: scenes and job records that try to take over a render node, and the broker's locks.

Each test proves the harm did not happen (no marker file, no file outside the job, nothing queued)."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from httpov.celery import make_app
from httpov.cli import cli
from httpov.client import Client
from httpov.local_farm import free_port, start_worker, stop_worker, worker_env
from httpov.settings import Settings
from httpov.store.keys import Keys
from httpov.view import job_view
from tests.bombs import bomb_png
from tests.conftest import TINY_ANIMATION, pixels, povray_direct, private_settings, queue_drained, wait_for, write_scene


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
    key = Keys(settings.prefix).job(sub.spec.id)
    spec = json.loads(client.store.r.hget(key, "spec"))
    spec["options"].update({"Pre_Scene_Command": f"touch {marker}", "Output_File_Name": str(tmp_path / "o.png"),
                            "Input_File_Name": "../../../../etc/hostname"})
    client.store.r.hset(key, "spec", json.dumps(spec))
    workers(concurrency=1)
    wait_for(lambda: client.store.state(sub.spec.id) in ("failed", "done"), 60, "the forged job to end")
    progress = job_view(client.store, sub.spec.id)
    assert progress.state == "failed"
    assert any("outside the scene" in line for line in progress.errors)
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
    assert client.wait(sub.spec.id, timeout=90).state == "done"
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
    job = done.output.split()[1].rstrip(":")

    # `httpov web` opens its store as submit does: with the CA (it once dropped HTTPOV_REDIS_CA and could not start)
    port_ = free_port()
    token = "t" * 32
    page = subprocess.Popen([sys.executable, "-m", "httpov.cli", "web", "--port", str(port_)],
                            env=dict(env, HTTPOV_WEB_TOKENS=token), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        said = [page.stdout.readline() for _ in range(2)]  # a farm-wide token's deprecation warning comes first
        assert "deprecated" in said[0] and "httpov web on" in said[1]  # said once it listens, after Redis answered
        request = urllib.request.Request(f"http://127.0.0.1:{port_}/api/jobs/{job}",
                                         headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert json.loads(answer.read())["state"] == "done"
    finally:
        stop_worker(page, grace=10.0)

    unverified = dict(env)
    del unverified["HTTPOV_REDIS_CA"]  # the system CAs do not know our test CA: verification must fail
    refused = CliRunner().invoke(cli, ["status"], env=unverified)
    assert refused.exit_code == 5 and "certificate verify failed" in refused.output

    no_password = dict(env, HTTPOV_BROKER_URL=f"rediss://127.0.0.1:{port}/0",
                       HTTPOV_STATE_URL=f"rediss://127.0.0.1:{port}/0")
    denied = CliRunner().invoke(cli, ["status"], env=no_password)
    assert denied.exit_code == 5 and "password" in denied.output

    # a wrong password is refused once: never tried again with back-off as a dropped connection is
    server = redis.Redis.from_url(f"{url}?ssl_ca_certs={ca}", decode_responses=True)

    def refusals() -> int:  # Redis's ACL log counts failed AUTHs (one entry per user and client)
        return sum(int(entry["count"]) for entry in server.acl_log() if entry["reason"] == "auth")
    before = refusals()
    wrong = dict(env, HTTPOV_BROKER_URL=f"rediss://:wrong@127.0.0.1:{port}/0",
                 HTTPOV_STATE_URL=f"rediss://:wrong@127.0.0.1:{port}/0")
    denied = CliRunner().invoke(cli, ["status"], env=wrong)
    assert denied.exit_code == 5 and "wrong or missing password" in denied.output, denied.output
    assert refusals() - before == 1


# --- job names, forged records and messages, outputs, limits (issue #11) ---------------------------------------

def _forge(client, settings, job_id: str, **fields) -> None:
    """Overwrite fields of a job's record in Redis, as someone with write access to it could."""
    key = Keys(settings.prefix).job(job_id)
    spec = json.loads(client.store.r.hget(key, "spec"))
    spec.update(fields)
    client.store.r.hset(key, "spec", json.dumps(spec))


def test_a_name_with_a_path_is_refused_at_submit(tmp_path, settings):
    scene = write_scene(tmp_path / "named", TINY_ANIMATION, "Width=8\nHeight=8\n")
    for name in ("../../../../x/jobs/y/frames/z", "a\\b", "bell\a"):
        result = CliRunner().invoke(cli, ["submit", str(scene), "--slices", "2", "--name", name],
                                    env=worker_env(settings))
        assert result.exit_code == 2, result.output
        assert "path separator" in result.output
    assert not Path(settings.storage).exists() or not any(Path(settings.storage).rglob("*.zip"))


def test_a_forged_name_never_becomes_a_path_on_the_node(tmp_path, settings, client, workers):
    """A job record whose name points at another job's stitched frame: that frame stays as it was."""
    first = workers(concurrency=2)
    scene = write_scene(tmp_path / "victim", TINY_ANIMATION, "Width=16\nHeight=12\n")
    victim = client.submit(scene, slices=2)
    client.wait(victim.spec.id, timeout=90)
    frames = Path(settings.storage) / "jobs" / victim.spec.id / "frames"
    [stitched] = list(frames.iterdir())
    before = pixels(stitched)
    stop_worker(first)  # a fresh node reads the forged record (nodes keep the records they read)
    attacker = client.submit(write_scene(tmp_path / "attacker", TINY_ANIMATION.replace("0.4, 1", "1, 0"),
                                         "Width=16\nHeight=12\n"), slices=2)
    escape = "../" * 12 + f"{str(frames)[1:]}/{stitched.name[:-len('_0001.png')]}"
    _forge(client, settings, attacker.spec.id, name=escape)
    workers(concurrency=2, name="second")
    wait_for(lambda: client.store.state(attacker.spec.id) in ("failed", "done"), 60, "the forged job to end")
    assert pixels(stitched) == before, "the forged job replaced another job's frame"
    assert sorted(p.name for p in frames.iterdir()) == [stitched.name]
    progress = job_view(client.store, attacker.spec.id)
    assert progress.state == "failed"
    assert any("path separator" in line for line in progress.errors)


def test_a_forged_root_is_refused_before_any_lease_or_copy(tmp_path, settings, client, workers):
    """root '../' would copy every cached scene into the sandbox, where the scene could read other jobs' files."""
    secret = write_scene(tmp_path / "secret", TINY_ANIMATION + "// the other job's secret\n", "Width=8\nHeight=8\n")
    first = workers(concurrency=1)
    client.wait(client.submit(secret).spec.id, timeout=90)  # its scene is now in the node's cache
    stop_worker(first)
    sub = client.submit(write_scene(tmp_path / "forged", TINY_ANIMATION, "Width=8\nHeight=8\n"))
    _forge(client, settings, sub.spec.id, root="../")
    workers(concurrency=1, name="second")
    wait_for(lambda: client.store.state(sub.spec.id) in ("failed", "done"), 60, "the forged job to end")
    progress = job_view(client.store, sub.spec.id)
    assert progress.state == "failed"
    assert any("root='../' points outside the scene" in line for line in progress.errors)
    assert client.store.attempts(sub.spec.id, sub.spec.batches[0]) == 0, "the node leased a forged job's batch"


def test_forged_batch_messages_are_dropped_and_the_job_goes_on(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "live", TINY_ANIMATION, "Width=8\nHeight=8\n+KFI1 +KFF2\n")
    sub = client.submit(scene, count=2)
    forged = ["f000001-999999", "../../x", "f000001-000002-r00001-00008"]
    for batch in forged:
        client.celery.send_task("httpov.render_batch", kwargs={"job_id": sub.spec.id, "batch": batch},
                                queue=settings.queue)
    workers(concurrency=1)
    assert client.wait(sub.spec.id, timeout=90).state == "done"
    wait_for(lambda: queue_drained(settings), 60, "the forged messages to be consumed")
    batches = client.store.batches(sub.spec.id)
    for batch in forged:
        assert client.store.attempts(sub.spec.id, batch) == 0, f"the node took a lease on {batch}"
        assert batch not in batches["done"] and batch not in batches["failed"]
    assert not client.store.r.keys(f"{settings.prefix}:lease:*")


def test_a_scene_cannot_replace_or_add_outputs(tmp_path, settings, client, workers):
    """Frame 2's parse writes text over frame 1's image and adds an image of its own, wherever it finds povray's
    output: frame 1 keeps its pixels and no extra frame appears."""
    pov = TINY_ANIMATION + """
#if (frame_number = 2 & file_exists("../out/frame1.png"))
  #fopen F "../out/frame1.png" write #write (F, "not a png\\n") #fclose F
  #fopen G "../out/sneaky_0003.png" write #write (G, "extra\\n") #fclose G
#end
"""
    scene = write_scene(tmp_path / "sneaky", pov, "Width=16\nHeight=12\n+KFI1 +KFF2\n")
    workers(concurrency=1)
    sub = client.submit(scene, count=2)
    assert client.wait(sub.spec.id, timeout=90).state == "done"
    images = client.fetch(sub.spec.id, tmp_path / "out")
    assert [p.name for p in images] == ["sneaky_0001.png", "sneaky_0002.png"]
    povray_direct(write_scene(tmp_path / "clean", TINY_ANIMATION, "Width=16\nHeight=12\n+KFI1 +KFF2\n"),
                  tmp_path / "ref")
    assert pixels(images[0]) == pixels(tmp_path / "ref" / "ref1.png"), "the scene replaced its frame"


def test_a_scene_cannot_write_over_its_own_files_in_the_nodes_cache(tmp_path, settings, client, workers):
    """A batch's scene files are the node's cached ones, linked read-only (no copy a batch): a scene that writes over
    a file of its own fails with povray's message, and the node's cached file is as it was for the scene's next
    batches; its new files go to its batch alone."""
    pov = TINY_ANIMATION + '#fopen F "made.txt" write #write (F, "new\\n") #fclose F\n' \
                           '#fopen G "data.txt" write #write (G, "forged\\n") #fclose G\n'
    scene = write_scene(tmp_path / "own", pov, "Width=8\nHeight=8\n")
    (scene / "data.txt").write_text("42\n")
    workers(concurrency=1)
    sub = client.submit(scene)
    wait_for(lambda: client.store.state(sub.spec.id) in ("failed", "done"), 90, "the job to end")
    progress = job_view(client.store, sub.spec.id)
    assert progress.state == "failed"
    assert any("data.txt" in line for line in progress.errors), progress.errors
    cached = list((settings.cache_dir / "scenes").glob("*/data.txt"))
    assert [p.read_text() for p in cached] == ["42\n"]
    assert not list((settings.cache_dir / "scenes").glob("*/made.txt"))


@pytest.mark.parametrize("limit, body, words", [
    ({"batch_max_bytes": 200_000}, '#for (I, 1, 3) #fopen F concat("big", str(I, 0, 0), ".txt") write '
                                   '#for (J, 1, 2500) #write (F, "0123456789012345678901234567890123456789\\n") '
                                   '#end #fclose F #end', "HTTPOV_BATCH_MAX_BYTES"),
    ({"batch_max_files": 20}, '#for (I, 1, 60) #fopen F concat("f", str(I, 0, 0), ".txt") write '
                              '#write (F, "x\\n") #fclose F #end', "HTTPOV_BATCH_MAX_FILES"),
    ({"batch_max_memory_mb": 512}, '#declare S = "0123456789abcdef"; #for (I, 1, 24) #declare S = concat(S, S); #end',
     "a batch may use 512 MiB (HTTPOV_BATCH_MAX_MEMORY_MB)"),
])
def test_a_batch_may_write_only_so_much(tmp_path, settings, client, workers, limit, body, words):
    """Three 80 kB files pass a per-file limit but not the batch's total; 60 files pass no count today; a 256 MiB
    string (three copies of it) is past the node's memory setting, which reaches the worker's povray."""
    scene = write_scene(tmp_path / "writer", TINY_ANIMATION + body + "\n", "Width=8\nHeight=8\n")
    workers(concurrency=1, settings_=settings.with_(**limit))
    sub = client.submit(scene)
    wait_for(lambda: client.store.state(sub.spec.id) in ("failed", "done"), 90, "the job to end")
    progress = job_view(client.store, sub.spec.id)
    assert progress.state == "failed"
    assert any(words in line for line in progress.errors), progress.errors
    assert client.store.attempts(sub.spec.id, sub.spec.batches[0]) == 1, "a limit is final, not retried"


def test_library_path_outside_the_scene_is_refused_at_submit(tmp_path, settings):
    scene = write_scene(tmp_path / "lib", TINY_ANIMATION, "Width=8\nHeight=8\nLibrary_Path=/\n")
    result = CliRunner().invoke(cli, ["submit", str(scene)], env=worker_env(settings))
    assert result.exit_code == 3, result.output
    assert "Library_Path='/' points outside the scene" in result.output
    assert not Path(settings.storage).exists() or not any(Path(settings.storage).rglob("*.zip"))


def _povray_of(settings) -> list[int]:  # noqa: ANN001
    """Processes whose command line names the node's work folder (povray, its sandbox and launcher run in it)."""
    found = []
    work = str(settings.cache_dir / "work").encode()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and work in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


ENDLESS = "#version 3.7;\n#while (true) #end\nbackground { color rgb 1 }\n"


def test_a_job_time_limit_stops_an_endless_parse(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "endless", ENDLESS, "Width=8\nHeight=8\n")
    env = worker_env(settings)
    refused = CliRunner().invoke(cli, ["submit", str(scene), "--time-limit", str(settings.task_time_limit + 1)],
                                 env=env)
    assert refused.exit_code == 2 and "HTTPOV_TASK_TIME_LIMIT" in refused.output
    workers(concurrency=1)
    result = CliRunner().invoke(cli, ["submit", str(scene), "--time-limit", "2"], env=env)
    assert result.exit_code == 0, result.output
    job_id = client.store.job_ids()[-1]
    wait_for(lambda: client.store.state(job_id) in ("failed", "done"), 60, "the time limit to stop the job")
    progress = job_view(client.store, job_id)
    assert progress.state == "failed"
    assert any("time limit of 2 s" in line for line in progress.errors), progress.errors
    assert client.store.attempts(job_id, client.store.spec(job_id).batches[0]) == 1, "a limit is final"
    wait_for(lambda: not _povray_of(settings), 10, "povray to be gone")


def test_the_node_time_limit_message_names_the_soft_limit(tmp_path, settings, client, workers):
    workers(concurrency=1, settings_=settings.with_(task_time_limit=32))  # soft limit: 2 s
    sub = client.submit(write_scene(tmp_path / "endless", ENDLESS, "Width=8\nHeight=8\n"))
    wait_for(lambda: client.store.state(sub.spec.id) in ("failed", "done"), 60, "the soft time limit")
    progress = job_view(client.store, sub.spec.id)
    assert progress.state == "failed"
    assert any("time limit of 2 s" in line for line in progress.errors), progress.errors
    wait_for(lambda: not _povray_of(settings), 10, "povray to be gone")


# --- control sequences from names and povray messages never reach a terminal or page raw -------------------

TITLE_ATTACK = "\x1b]0;pwned\x07"  # OSC: sets the terminal's window title (click lets OSC through)
CLEAR_ATTACK = "\x1b[2J"  # CSI: clears the screen


def test_control_sequences_from_names_and_povray_are_shown_escaped(tmp_path, settings, client, workers):
    """A scene whose #error prints an OSC, and a job name holding CSI/OSC (written straight into Redis, as any
    older client or anyone with Redis access could): every CLI view and the web page show them as \\x1b...,
    `--json` keeps the raw characters as data."""
    from tests.webapp import page

    evil = write_scene(tmp_path / "evil", '#version 3.7;\n#error concat(chr(27), "]0;pwned", chr(7))\n',
                       "Width=8\nHeight=8\n")
    workers(concurrency=1)
    env = worker_env(settings)
    waited = CliRunner().invoke(cli, ["submit", str(evil), "--wait"], env=env)
    assert waited.exit_code == 8, waited.output
    job = client.store.job_ids()[-1]
    key = Keys(settings.prefix).job(job)
    spec = json.loads(client.store.r.hget(key, "spec"))
    spec["name"] = f"n{CLEAR_ATTACK}{TITLE_ATTACK}"
    client.store.r.hset(key, "spec", json.dumps(spec))
    runs = {"submit --wait": waited}
    for what, args in (("status", ["status"]), ("status JOB", ["status", job]), ("watch", ["watch", job, "--once"])):
        runs[what] = CliRunner().invoke(cli, args, env=env)
    for what, result in runs.items():
        leaked = "\x1b" in result.output or "\x07" in result.output
        assert not leaked, f"{what} printed a raw control: {result.output!r}"
    for what in ("status JOB", "watch"):
        assert "\\x1b]0;pwned\\x07" in runs[what].output, f"{what} hid povray's message: {runs[what].output!r}"
    for what in ("status", "status JOB", "watch"):
        assert "n\\x1b[2J" in runs[what].output, f"{what} hid the name: {runs[what].output!r}"
    for path in ("/", f"/jobs/{job}"):
        status, html = page(client, path)
        assert status == 200 and "\x1b" not in html and "\x07" not in html and "n\\x1b[2J" in html, path
    assert "\\x1b]0;pwned\\x07" in page(client, f"/jobs/{job}")[1]
    raw = json.loads(CliRunner().invoke(cli, ["status", job, "--json"], env=env).output)
    assert raw["name"] == f"n{CLEAR_ATTACK}{TITLE_ATTACK}"
    assert any(TITLE_ATTACK in line for line in raw["errors"])


# --- bounded work per job: refused at submit (nothing stored or queued), and again on the node --------------

def _nothing_stored(settings) -> bool:
    """No job, batch or scene was stored (the audit log's record of the refused submit is all that may be there)."""
    keys = [key for key in redis.Redis.from_url(settings.broker_url, decode_responses=True).scan_iter(
        match=f"{settings.prefix}:*") if key != Keys(settings.prefix).audit()]
    storage = Path(settings.storage)
    return not keys and not (storage.exists() and any(p.is_file() for p in storage.rglob("*")))


def _deep_scene(folder: Path, depth: int) -> Path:
    scene = write_scene(folder, TINY_ANIMATION, "Width=8\nHeight=8\n")
    deep = scene.joinpath(*["d"] * depth)
    deep.mkdir(parents=True)
    (deep / "x.inc").write_text("// deep\n")
    return scene


@pytest.mark.parametrize("ini, args, env, code, message", [
    ("Width=100000\nHeight=8\n", [], {}, 3, "width 100000, more than the limit of 16384"),
    ("Width=12000\nHeight=12000\n", [], {}, 3, "pixels, more than the limit"),
    ("Width=8\nHeight=8\n", ["--frames", "100000000"], {}, 2, "100000000 frames, more than the limit"),
    ("Width=8\nHeight=8\n", ["--frames", "50000", "--count", "1"], {}, 2, "50000 batches, more than the limit"),
    ("Width=64\nHeight=64\n", ["--frames", "3", "--slices", "2"], {"HTTPOV_MAX_BATCHES": "5"}, 2, "6 batches"),
    ("Width=8\nHeight=8\n", [], {"HTTPOV_MAX_WIDTH": "4"}, 3, "width 8, more than the limit of 4"),
    ("Width=8\nHeight=8\n", [], {"HTTPOV_MAX_SCENE_BYTES": "100"}, 3, "more than the limit of 100"),
    ("Width=8\nHeight=8\n", [], {"HTTPOV_MAX_SCENE_FILES": "1"}, 3, "more than the limit of 1"),
])
def test_submit_refuses_work_past_the_limits(tmp_path, settings, ini, args, env, code, message):
    scene = write_scene(tmp_path / "big", TINY_ANIMATION, ini)
    result = CliRunner().invoke(cli, ["submit", str(scene), *args], env={**worker_env(settings), **env})
    assert result.exit_code == code, result.output
    assert message in result.output
    assert _nothing_stored(settings)


def test_submit_refuses_a_scene_too_deep(tmp_path, settings):
    result = CliRunner().invoke(cli, ["submit", str(_deep_scene(tmp_path / "deep", 40))], env=worker_env(settings))
    assert result.exit_code == 3, result.output
    assert "levels deep, more than the limit of 32" in result.output
    assert _nothing_stored(settings)


def test_node_rechecks_limits_and_fails_the_job_at_once(tmp_path, settings, workers):
    """A client with looser limits (or a forged job record) gets past submit: the node refuses the scene before
    extracting it, and the image before rendering, as final failures (one attempt, no retries)."""
    from httpov.celery import make_app
    from httpov.client import Client

    loose = Client(settings.with_(max_scene_depth=100), make_app(settings))
    deep = loose.submit(_deep_scene(tmp_path / "deep", 40))
    big = write_scene(tmp_path / "big", TINY_ANIMATION, "Width=8\nHeight=8\n")
    (big / "data.inc").write_text("// padding\n" * 20_000)
    heavy = loose.submit(big)
    wide = loose.submit(write_scene(tmp_path / "wide", TINY_ANIMATION, "Width=8\nHeight=8\n"))
    key = Keys(settings.prefix).job(wide.spec.id)
    spec = json.loads(loose.store.r.hget(key, "spec"))
    spec["width"] = 100_000
    loose.store.r.hset(key, "spec", json.dumps(spec))
    workers(concurrency=2, settings_=settings.with_(max_scene_bytes=100_000))
    expected = {deep.spec.id: "levels deep, more than the limit of 32",
                heavy.spec.id: "bytes, more than the limit of 100000",
                wide.spec.id: "width 100000, more than the limit of 16384"}
    for job, message in expected.items():
        wait_for(lambda job=job: loose.store.state(job) in ("failed", "done"), 90, "the job to end")
        progress = job_view(loose.store, job)
        assert progress.state == "failed"
        assert any(message in line for line in progress.errors), progress.errors
        assert set(loose.store.batches(job)["attempts"].values()) <= {1}, "a limit is not worth a retry"
    assert not list(settings.cache_dir.rglob("x.inc")) and not list(settings.cache_dir.rglob("data.inc"))


# --- an interrupted submit leaves no job that can never finish ---------------------------------------------

def _interrupted_client(settings, after: int, error: type[BaseException] = KeyboardInterrupt):
    """A client whose queueing stops with `error` once `after` batches are in the real queue (Ctrl-C mid-submit)."""
    from httpov.celery import make_app
    from httpov.client import Client

    class Interrupted(Client):
        def _send(self, spec, batch_ids, *rest):
            super()._send(spec, batch_ids[:after], *rest)
            raise error()

    return Interrupted(settings, make_app(settings))


def _job_of(settings) -> str:
    keys = redis.Redis.from_url(settings.broker_url, decode_responses=True).keys(f"{settings.prefix}:job:*")
    return sorted(k.split(":")[2] for k in keys)[0]


def test_interrupted_submit_fails_its_job_and_nodes_drop_its_batches(tmp_path, settings, client, workers):
    interrupted = _interrupted_client(settings, after=3)
    scene = write_scene(tmp_path / "half", TINY_ANIMATION, "Width=8\nHeight=8\n")
    with pytest.raises(KeyboardInterrupt):
        interrupted.submit(scene, frames=12, count=1)
    job = _job_of(settings)
    assert client.store.state(job) == "failed"
    assert client.store.job_ids() == [] and client.store.active_ids() == []  # never listed
    assert "interrupted" in job_view(client.store, job).errors[0]
    listing = CliRunner().invoke(cli, ["status"], env=worker_env(settings))
    assert "no jobs yet" in listing.output, listing.output
    assert client.store.r.ttl(Keys(settings.prefix).job(job)) > 0  # cleaned up later
    workers(concurrency=1)
    wait_for(lambda: queue_drained(settings), 60, "the node to drop the 3 queued batches")
    assert not (Path(settings.storage) / "jobs" / job).exists(), "a batch of the interrupted job was rendered"
    assert client.store.batches(job)["done"] == {}


def test_a_client_dying_mid_submit_lets_its_job_fail(tmp_path, settings, client, workers):
    """SIGKILL: no cleanup ran. Once the submit lease is gone, the first node to meet a batch fails the job."""
    dying = _interrupted_client(settings, after=2, error=SystemExit)
    dying.store.abandon = lambda *a, **k: "ok"  # a killed client cleans nothing up
    with pytest.raises(SystemExit):
        dying.submit(write_scene(tmp_path / "dead", TINY_ANIMATION, "Width=8\nHeight=8\n"), frames=6, count=1)
    job = _job_of(settings)
    assert client.store.state(job) == "submitting" and client.store.job_ids() == []
    client.store.r.delete(Keys(settings.prefix).submit_lease(job))  # what SUBMIT_LEASE_SECONDS later brings
    workers(concurrency=1)
    wait_for(lambda: client.store.state(job) == "failed", 60, "the node to fail the orphaned job")
    assert "before every batch was queued" in job_view(client.store, job).errors[0]
    wait_for(lambda: queue_drained(settings), 60, "the node to drop its batches")
    assert client.store.batches(job)["done"] == {}


def test_batches_may_render_before_the_last_is_queued(tmp_path, settings, client, workers):
    """A big submit: nodes start on the first batches while the client still queues; the job still ends done."""
    from httpov.celery import make_app
    from httpov.client import Client

    class Slow(Client):
        def _send(self, spec, batch_ids, *rest):
            sent = super()._send(spec, batch_ids[:2], *rest)
            wait_for(lambda: len(self.store.batches(spec.id)["done"]) == 2, 60, "the first batches to render")
            assert self.store.state(spec.id) == "submitting" and self.store.job_ids() == []
            return sent + super()._send(spec, batch_ids[2:], *rest)

    workers(concurrency=2)
    slow = Slow(settings, make_app(settings))
    sub = slow.submit(write_scene(tmp_path / "early", TINY_ANIMATION, "Width=8\nHeight=8\n"), frames=4, count=1)
    assert client.store.job_ids() == [sub.spec.id]
    assert client.wait(sub.spec.id, timeout=90).state == "done"
    assert len(client.fetch(sub.spec.id, tmp_path / "out")) == 4


# --- results are data from other machines: decompression bombs are refused before they are unpacked ------

@dataclass(frozen=True)
class Rendered:
    """A finished one-frame 64x48 job: its farm's settings and client, its id and the path of its stored batch zip."""
    settings: Settings
    client: Client
    job: str
    result: Path


@pytest.fixture(scope="module")
def _rendered_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rendered, bytes]]:
    """The job whose result the bomb tests swap, rendered once for the module (a node's start and a render took
    each test 2-3.5 s), and its batch zip's bytes as the node stored them. Its node is killed once the job is done:
    fetching and the web pages need none."""
    folder = tmp_path_factory.mktemp("bombed")
    with private_settings(folder, lease_seconds=4.0, max_attempts=3, task_time_limit=600) as settings:
        node = start_worker(settings, 1, "node0", folder / "node0.log")
        try:
            client = Client(settings, make_app(settings))
            sub = client.submit(write_scene(folder / "bombed", TINY_ANIMATION, "Width=64\nHeight=48\n"))
            assert client.wait(sub.spec.id, poll=0.1, timeout=90).state == "done"
        finally:
            stop_worker(node, signal.SIGKILL)
        [result] = (Path(settings.storage) / "jobs" / sub.spec.id / "batches").glob("*.zip")
        yield Rendered(settings, client, sub.spec.id, result), result.read_bytes()


@pytest.fixture
def rendered(_rendered_once: tuple[Rendered, bytes]) -> Rendered:
    """The module's finished job, its batch zip put back as its node stored it (an earlier test swapped it)."""
    job, stored = _rendered_once
    job.result.write_bytes(stored)
    return job


def _swap_result(rendered: Rendered, member: str, data: bytes, compress: int = zipfile.ZIP_DEFLATED) -> None:
    """Replace the job's only batch zip in storage by one holding `data` as `member` (what a hostile node stores)."""
    with zipfile.ZipFile(rendered.result, "w", compress) as zf:
        zf.writestr(member, data)


def test_fetch_refuses_a_member_bigger_than_a_frame(tmp_path, rendered):
    _swap_result(rendered, "bombed_0001.png", bytes(64 * 1024**2))  # 64 MiB of zeros, a 64 KB zip
    result = CliRunner().invoke(cli, ["fetch", rendered.job, "-o", str(tmp_path / "out")],
                                env=worker_env(rendered.settings))
    assert result.exit_code == 9, result.output
    assert "would unpack to 67108864 bytes, more than the" in result.output
    assert not (tmp_path / "out" / "bombed_0001.png").exists()


def test_fetch_refuses_too_many_members(tmp_path, rendered):
    with zipfile.ZipFile(rendered.result, "w") as zf:
        for n in range(50):
            zf.writestr(f"x{n}.log", "")
    result = CliRunner().invoke(cli, ["fetch", rendered.job, "-o", str(tmp_path / "out")],
                                env=worker_env(rendered.settings))
    assert result.exit_code == 9 and "holds 50 files, more than its 1 frame(s)" in result.output, result.output


@pytest.mark.parametrize("args", [["--contact-sheet", "sheet.png"], ["--video", "v.gif"], ["-o", "out"]])
def test_fetch_and_media_refuse_a_png_bigger_than_the_job_planned(tmp_path, rendered, args):
    """A 400-megapixel PNG of 50 KB (it crashed the contact sheet with a traceback)."""
    _swap_result(rendered, "bombed_0001.png", bomb_png(20_000, 20_000), zipfile.ZIP_STORED)
    args = [a if not a.endswith((".png", ".gif", "out")) else str(tmp_path / a) for a in args]
    result = CliRunner().invoke(cli, ["fetch", rendered.job, *args], env=worker_env(rendered.settings))
    assert result.exit_code == 9, result.output
    assert "is 20000x20000, not a 64x48 frame of its job: refused" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not (tmp_path / "sheet.png").exists() and not (tmp_path / "v.gif").exists()


def test_media_checks_png_size_before_decoding(tmp_path):
    from httpov import media
    from httpov.errors import ResultError

    frame = tmp_path / "big_0001.png"
    frame.write_bytes(bomb_png(13_000, 13_000))  # 169 megapixels
    with pytest.raises(ResultError, match="13000x13000, more than 67108864 pixels"):
        media.contact_sheet([frame], tmp_path / "sheet.png")
    with pytest.raises(ResultError, match="13000x13000, more than 1000 pixels"):
        media.encode([frame], tmp_path / "v.gif", max_pixels=1000)


def test_web_thumbnail_refuses_a_bomb_once_and_remembers(tmp_path, rendered):
    from httpov import web
    from httpov.errors import ResultError
    from httpov.storage import open_storage

    _swap_result(rendered, "bombed_0001.png", bomb_png(20_000, 20_000), zipfile.ZIP_STORED)

    class Counting(type(open_storage(rendered.settings.storage))):  # the real local storage, counting downloads
        downloads = 0

        def get_bytes(self, key):
            Counting.downloads += 1
            return super().get_bytes(key)

    source = web.StatusSource(rendered.client.store, Counting(rendered.settings.storage))
    for _ in range(3):  # three page refreshes
        with pytest.raises(ResultError, match="20000x20000"):
            source.thumbnail(rendered.job)
    assert Counting.downloads == 1
    from tests.webapp import web_app

    # with a token (an admin): a --public-read reader is a viewer, who may see no job's pictures (#24)
    token = "t" * 20
    bearer = {"Authorization": f"Bearer {token}"}
    browser = web_app(rendered.client, source, tokens=(token,)).test_client()
    for path in (f"/thumb/{rendered.job}.png", f"/jobs/{rendered.job}/thumbs/1.png"):
        response = browser.get(path, headers=bearer)
        assert response.status_code == 422 and b"refused" in response.data, path
    assert Counting.downloads == 2  # the latest frame's thumbnail, and frame 1's in the grid: each refused once
    assert browser.get(f"/thumb/{rendered.job}.png", headers=bearer).status_code == 422 and Counting.downloads == 2
