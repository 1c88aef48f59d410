"""`httpov --server URL` with a token: a real `httpov web` process and a real render node, the CLI driven through
CliRunner with HTTPOV_SERVER/HTTPOV_TOKEN given to each call only (and a broker URL that reaches nothing: the remote
CLI never touches Redis). What it prints, its --json and its exit codes are those of the same command run with
direct Redis access; the frames it fetches are the same pixels; a scene upload never holds the scene in memory."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from httpov.cli import cli
from httpov.local_farm import free_port, start_worker, stop_worker, worker_env
from httpov.settings import Settings
from tests.conftest import REDIS_URL, TINY_ANIMATION, pixels, wait_for, write_scene
from tests.integration.faults import slow_scene
from tests.receiver import Receiver

#: Of a job's --json, what may differ between two reads a moment apart (the clock moves on, nodes report).
TIME_DEPENDENT = {"elapsed", "rate", "eta_seconds", "eta_at", "rate_recent", "frame_seconds", "overhead_factor",
                  "running", "frames_running", "render_processes", "batches_queued", "nodes", "batches_running"}


class Farm:
    """The module's farm: Redis prefix, one render node, `httpov web` with accounts alice and bob (users) and their
    API tokens."""

    def __init__(self, tmp: Path) -> None:
        tag = "httpovtest-" + secrets.token_hex(4)
        self.tmp = tmp
        self.settings = Settings(broker_url=REDIS_URL, state_url=REDIS_URL, storage=str(tmp / "storage"),
                                 prefix=tag, queue=tag, cache_dir=tmp / "cache", lease_seconds=4.0, max_attempts=2,
                                 task_time_limit=600)
        self.token = self.bob = ""
        self.url = f"http://127.0.0.1:{free_port()}"
        self.procs: list[subprocess.Popen] = []
        self.home = tmp / "home"  # no config file of the machine's user is read
        self.home.mkdir()

    def start(self) -> None:
        from httpov.web.auth import add_user

        self.procs.append(start_worker(self.settings, 2, "remotenode", self.tmp / "node.log"))
        accounts = self.tmp / "accounts"
        add_user(accounts, "alice", secrets.token_urlsafe(12))
        made = self.direct("web-token", "add", "alice", "--accounts", str(accounts))  # the operator makes it
        assert made.exit_code == 0
        self.token = made.stdout.strip()  # all alice needs: no broker URL, no password
        add_user(accounts, "bob", secrets.token_urlsafe(12))
        self.bob = self.direct("web-token", "add", "bob", "--accounts", str(accounts)).stdout.strip()
        env = {**worker_env(self.settings), "XDG_CONFIG_HOME": str(self.home)}
        env.pop("HTTPOV_CONFIG", None)
        self.log = self.tmp / "web.log"
        port = self.url.rsplit(":", 1)[1]
        web = subprocess.Popen([sys.executable, "-m", "httpov.cli", "web", "--port", port, "--accounts",
                                str(accounts)], env=env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
                               start_new_session=True)
        self.procs.append(web)

        def up() -> bool:
            assert web.poll() is None, self.log.read_text()
            return self.remote("nodes", "--json").exit_code == 0
        wait_for(up, 30, "httpov web to answer")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_worker(proc, grace=10.0)
        print(self.log.read_text(errors="replace")[-3000:])
        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(match=f"{self.settings.prefix}:*", count=1000))
        if keys:
            r.delete(*keys)

    def remote(self, *args: str, token: str | None = None, server: str | None = None) -> Result:
        """The CLI with only a server and a token: its broker URL reaches nothing."""
        env = {"HTTPOV_SERVER": server or self.url, "HTTPOV_TOKEN": self.token if token is None else token,
               "HTTPOV_BROKER_URL": "redis://127.0.0.1:1/0", "XDG_CONFIG_HOME": str(self.home)}
        return _run(args, env)

    def direct(self, *args: str) -> Result:
        """The same command with direct Redis access (an operator's)."""
        return _run(args, {**self.settings.to_env(), "XDG_CONFIG_HOME": str(self.home)})


def _run(args: tuple[str, ...], env: dict[str, str]) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    print(f"$ httpov {' '.join(args)} -> {result.exit_code}\n{result.stdout}{result.stderr}")
    return result


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    farm = Farm(tmp_path_factory.mktemp("remote"))
    try:
        farm.start()
        yield farm
    finally:
        farm.stop()


def _stable(job: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in job.items() if key not in TIME_DEPENDENT}


def test_submit_wait_status_and_fetch_as_with_redis(farm: Farm, tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "tiny", TINY_ANIMATION, "Width=24\nHeight=16\n+KFI1 +KFF3\n")
    submitted = farm.remote("submit", str(scene), "--count", "2", "--wait")
    assert submitted.exit_code == 0
    job = submitted.stdout.split()[1].rstrip(":")
    assert submitted.stdout.startswith(f"job {job}: 3 frame(s) 1-3 at 24x16, up to 2 frame(s) per batch, 2 batch(es)")
    assert "scene uploaded as scenes/" in submitted.stdout
    assert farm.direct("status", job).exit_code == 0  # the farm has it

    remote, direct = farm.remote("status", job, "--json"), farm.direct("status", job, "--json")
    assert remote.exit_code == direct.exit_code == 0
    mine, theirs = json.loads(remote.stdout), json.loads(direct.stdout)
    assert mine.keys() == theirs.keys() and _stable(mine) == _stable(theirs)
    assert mine["state"] == "done" and mine["frames_done"] == 3 and mine["user"] == "alice"  # the token's account
    listed = farm.remote("status", "--json", "--state", "done", "--limit", "5")
    assert [_stable(j) for j in json.loads(listed.stdout)] == \
        [_stable(j) for j in json.loads(farm.direct("status", "--json", "--state", "done", "--limit", "5").stdout)]
    assert farm.remote("status").stdout.splitlines()[0].split() == farm.direct("status").stdout.splitlines()[0].split()
    assert farm.remote("watch", job, "--once").stdout.splitlines()[0] == \
        farm.direct("watch", job, "--once").stdout.splitlines()[0]

    fetched = farm.remote("fetch", job, "--output", str(tmp_path / "remote"))
    assert fetched.exit_code == 0
    assert fetched.stdout == farm.direct("fetch", job, "--output", str(tmp_path / "direct")).stdout.replace(
        str(tmp_path / "direct"), str(tmp_path / "remote"))
    frames = sorted(p.name for p in (tmp_path / "remote").glob("*.png"))
    assert len(frames) == 3 and frames == sorted(p.name for p in (tmp_path / "direct").glob("*.png"))
    for name in frames:
        assert pixels(tmp_path / "remote" / name) == pixels(tmp_path / "direct" / name)
    assert sorted(p.name for p in (tmp_path / "remote" / "logs").iterdir()) == \
        sorted(p.name for p in (tmp_path / "direct" / "logs").iterdir())

    nodes = json.loads(farm.remote("nodes", "--json").stdout)
    assert [n["node"] for n in nodes] == [n["node"] for n in json.loads(farm.direct("nodes", "--json").stdout)]

    deleted = farm.remote("delete", job)
    assert deleted.exit_code == 0 and deleted.stdout.startswith(f"job {job} deleted (done): ")
    assert farm.direct("status", job).exit_code == 4


def test_control_and_exit_codes_as_with_redis(farm: Farm, tmp_path: Path) -> None:
    submitted = farm.remote("submit", str(slow_scene(tmp_path / "slow", 40)), "--count", "1", "--priority", "2")
    assert submitted.exit_code == 0
    job = submitted.stdout.split()[1].rstrip(":")

    # a refusal of a field by the server is said with the flag, as with Redis (the web says the field: test_web_words)
    unknown = farm.remote("submit", str(slow_scene(tmp_path / "after", 1)), "--after", "0123456789ab")
    assert unknown.exit_code == 2, unknown.stderr
    assert unknown.stderr.startswith("httpov: error: --after: there is no job 0123456789ab of alice's\n")

    paused = farm.remote("pause", job)
    assert (paused.exit_code, paused.stdout) == (0, f"job {job} paused\n")
    # another user sees alice's job's progress, and may act on none of it: exit 10, nothing changed
    assert json.loads(farm.remote("status", job, "--json", token=farm.bob).stdout)["user"] == "alice"
    for command in (["cancel", job], ["resume", job], ["priority", job, "5"], ["retry", job],
                    ["delete", job, "--force"], ["fetch", job, "--output", str(tmp_path / "bobs")]):
        theirs = farm.remote(*command, token=farm.bob)
        assert theirs.exit_code == 10 and "bob (user) may not" in theirs.stderr, command
    after = json.loads(farm.direct("status", job, "--json").stdout)
    assert (after["state"], after["priority"]) == ("paused", 2) and not (tmp_path / "bobs").exists()
    assert farm.direct("status", job, "--json").stdout.count('"state": "paused"') == 1
    again = farm.remote("pause", job)  # the same refusal, said the same way, with the same exit code
    assert again.exit_code == farm.direct("pause", job).exit_code == 4
    assert again.stderr.splitlines()[0] == farm.direct("pause", job).stderr.splitlines()[0]
    moved = farm.remote("priority", job, "7")
    assert moved.exit_code == 0 and moved.stdout.startswith(f"job {job}: priority 7, ")
    resumed = farm.remote("resume", job)
    assert resumed.exit_code == 0 and resumed.stdout.startswith(f"job {job} resumed (")
    assert farm.remote("delete", job).exit_code == 4  # a live job, as without --force
    cancelled = farm.remote("cancel", job)
    assert (cancelled.exit_code, cancelled.stdout) == (0, f"job {job} cancelled\n")
    assert json.loads(farm.direct("status", job, "--json").stdout)["state"] == "cancelled"
    assert farm.remote("watch", job).exit_code == farm.direct("watch", job).exit_code == 8
    retried = farm.remote("retry", job, "--frames", "1-2")
    assert retried.exit_code == 0 and retried.stdout == f"job {job}: 2 batch(es) queued again\n"
    assert farm.remote("delete", job, "--force").exit_code == 0

    unknown = farm.remote("status", "nosuchjob")
    assert unknown.exit_code == farm.direct("status", "nosuchjob").exit_code == 4
    assert farm.remote("cancel", "nosuchjob").exit_code == 4
    refused = farm.remote("status", token="not-a-token")
    assert refused.exit_code == 11 and "refused the token" in refused.stderr
    nobody = farm.remote("status", server=f"http://127.0.0.1:{free_port()}")
    assert nobody.exit_code == 5 and "cannot reach the server http://127.0.0.1:" in nobody.stderr
    for command in (["prune", "--older-than", "1d"], ["web"], ["web-user", "add", "bob"], ["flower"], ["logs", job]):
        local_only = farm.remote(*command)
        assert local_only.exit_code == 2 and "does not run with --server" in local_only.stderr


def test_an_upload_is_sent_from_its_file_in_chunks(farm: Farm, tmp_path: Path) -> None:
    from httpov import archive
    from httpov.options import SubmitOptions
    from httpov.remote import CHUNK, RemoteClient

    scene = write_scene(tmp_path / "big", TINY_ANIMATION, "Width=16\nHeight=16\n")
    size = 16 * 1024**2
    (scene / "texture.bin").write_bytes(os.urandom(size))  # incompressible: the zip is as large
    client = RemoteClient(Settings(server=farm.url, token=farm.token))
    options = SubmitOptions.parse({"name": "big"}, client.settings)
    tracemalloc.start()
    try:
        submission = client.submit(scene, options)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert submission.uploaded and submission.spec.name == "big"
    # packing and checking the zip hold a few of archive.CHUNK (zlib's buffers), sending one of remote.CHUNK: a
    # bound that does not grow with the scene (8 or 32 MB alike), far below the scene's size
    assert CHUNK <= archive.CHUNK and peak < 6 * archive.CHUNK < size / 2, f"the submit held {peak} bytes at once"
    assert client.view(submission.spec.id).id == submission.spec.id


def test_the_ini_the_user_names_is_the_one_rendered(farm: Farm, tmp_path: Path) -> None:
    scene = write_scene(tmp_path / "two", TINY_ANIMATION, "Width=16\nHeight=16\n")
    (scene / "wide.ini").write_text("Input_File_Name=scene.pov\nWidth=40\nHeight=8\n")
    submitted = farm.remote("submit", str(scene / "wide.ini"), "--name", "wide")
    assert submitted.exit_code == 0 and " at 40x8, " in submitted.stdout
    job = submitted.stdout.split()[1].rstrip(":")
    assert json.loads(farm.direct("status", job, "--json").stdout)["width"] == 40
    assert farm.remote("delete", job, "--force").exit_code == 0


def test_a_jobs_events_from_the_render_node_arrive_in_order_at_its_notify_url(farm: Farm, tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        scene = write_scene(tmp_path / "tiny", TINY_ANIMATION, "Width=16\nHeight=8\n+KFI1 +KFF2\n")
        submitted = farm.remote("submit", str(scene), "--count", "1", "--notify", f"{receiver.url}/hook", "--wait")
        assert submitted.exit_code == 0
        job = submitted.stdout.split()[1].rstrip(":")
        listed = farm.direct("events", "--job", job, "--json")
        assert listed.exit_code == 0
        events = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [e["kind"] for e in events] == ["submitted", "started", "done"]  # two batches: one start, one done
        assert {e["owner"] for e in events} == {"alice"}
        remote = farm.remote("events", "--job", job, "--json")  # through the API, as another account sees them too
        assert remote.exit_code == 0 and remote.stdout == listed.stdout
        assert farm.remote("events", "--job", job, "--json", token=farm.bob).stdout == listed.stdout
        wait_for(lambda: len(receiver.events("/hook")) >= 3, 20, "the job's webhook to get its events")
        assert receiver.events("/hook") == events
    finally:
        receiver.close()


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_python_api_chains_two_jobs_as_the_pipeline_example_does(farm: Farm, tmp_path: Path) -> None:
    """examples/pipeline.py through the module's `httpov web` as alice (Farm.from_env: HTTPOV_SERVER and
    HTTPOV_TOKEN, a broker URL that reaches nothing): the final job waits for the preview, both render, the events
    come in order, the frames are fetched at each job's size. Then the same jobs through Farm objects: bob's (over
    the API) and an account's with direct Redis access may see them but neither fetch nor cancel them; a job after
    a cancelled one fails, and its wait says so."""
    from httpov import Farm as Api
    from httpov import Job
    from httpov.access import Identity, Role
    from httpov.errors import BadInputError, ForbiddenError, JobFailedError, OptionError

    env = {k: v for k, v in os.environ.items() if not k.startswith("HTTPOV_")}
    env.update({"HTTPOV_SERVER": farm.url, "HTTPOV_TOKEN": farm.token, "HTTPOV_BROKER_URL": "redis://127.0.0.1:1/0",
                "XDG_CONFIG_HOME": str(farm.home)})
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, str(EXAMPLES / "pipeline.py"), str(EXAMPLES / "spinner"), "--out",
                          str(out), "--width", "24", "--height", "16", "--frames", "2"], env=env, capture_output=True,
                         text=True, timeout=180)
    print(run.stdout, run.stderr)
    assert run.returncode == 0
    lines = run.stdout.splitlines()
    preview, final = lines[0].split()[1].rstrip(":"), lines[1].split()[1].rstrip(":")
    assert lines[1].endswith(f"2 frame(s) at 24x16, after {preview}")
    events = [tuple(line.split()[1:3]) for line in lines if line.startswith("event ")]
    assert [kind for kind, job in events if job == preview] == ["submitted", "started", "done"]
    assert [kind for kind, job in events if job == final] == ["submitted", "started", "done"]
    assert events.index(("started", final)) > events.index(("done", preview))  # the final waited for the preview
    assert lines[-2:] == [f"preview {preview} done: 2 frame(s) in {out / 'preview'}",
                          f"final {final} done: 2 frame(s) in {out / 'final'}"]
    for name, size in (("preview", (12, 8)), ("final", (24, 16))):
        frames = sorted((out / name).glob("*.png"))
        assert len(frames) == 2
        for frame in frames:
            width, height, rows = pixels(frame)[:3]
            assert (width, height) == size and len(set(rows)) > 1  # a picture, not a blank

    alice = Api(farm.url, farm.token, settings=Settings())
    bob = Api(server=farm.url, token=farm.bob, settings=Settings())
    direct_bob = Api(settings=farm.settings, who=Identity("bob", Role.USER))
    for someone in (bob, direct_bob):
        job = someone.job(final)  # anyone may see a job's progress
        assert isinstance(job, Job) and (job.width, job.height, job.frames, job.view().state) == (24, 16, 2, "done")
        with pytest.raises(ForbiddenError, match="bob \\(user\\) may not"):
            job.fetch(tmp_path / "bobs")
        with pytest.raises(ForbiddenError):
            someone.cancel(preview)
    assert not list((tmp_path / "bobs").glob("*.png"))
    operator = Api(settings=farm.settings)  # direct access, the local operator: the same interface, the same answers
    assert operator.view(final).to_json()["frames_done"] == alice.view(final).frames_done == 2
    assert [e.kind for e in operator.events(final)] == [e.kind for e in alice.job(final).events()] == \
        ["submitted", "started", "done"]
    with pytest.raises(BadInputError, match="the token says who you are"):
        Api(settings=farm.settings.with_(server=farm.url), who=Identity("bob", Role.USER))

    scene = write_scene(tmp_path / "tiny", TINY_ANIMATION, "Width=16\nHeight=8\n")
    jobs = len(alice.jobs())
    with pytest.raises(OptionError, match="width must be at least 1, got 0"):
        alice.submit(scene, width=0)
    with pytest.raises(TypeError, match="not a submit option: widht"):
        alice.submit(scene, widht=16)
    assert len(alice.jobs()) == jobs  # nothing queued
    held = alice.submit(scene, pool="nowhere")  # no node in that pool: it stays queued, nothing renders
    waiting = alice.submit(scene, after=held)
    assert alice.view(waiting).state == "waiting" and "nowhere" in held.warnings[0]
    with pytest.raises(ForbiddenError):
        bob.cancel(held)
    held.cancel()
    with pytest.raises(JobFailedError, match=f"job {waiting.id} failed"):
        waiting.wait(timeout=30)
    assert [e.kind for e in alice.events(held, waiting, follow=True, timeout=30)] == \
        ["submitted", "submitted", "cancelled", "failed"]
