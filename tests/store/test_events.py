"""Job events on a real Redis and one real `httpov web` (cheroot), which is also the farm's webhook deliverer: a job's
events are recorded once (two movers racing to 'done' make one event), in order, and read the same through
`GET /api/events` (JSON and server-sent events from Last-Event-ID) and `httpov events --json`, by its owner and by
another account alike (a request with no account: 401); they are POSTed, signed, to real HTTP receivers started
here: the job's own `notify` URL and the farm-wide ones, a 500 retried, while a receiver that never answers is
dropped with a log line and delays no other. Batches are recorded as a render node does (tests/stored.py)."""
from __future__ import annotations

import hashlib
import hmac
import http.client
import http.server
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from httpov.archive import ArchiveLimits, pack_scene
from httpov.cli import cli
from httpov.client import Client
from httpov.settings import Settings
from httpov.states import JobState, TransitionRefused
from tests.conftest import private_settings, wait_for, write_scene
from tests.receiver import Receiver
from tests.store.test_web_signin import Server, serving
from tests.store.test_web_tokens import SCENE, add, call, multipart
from tests.stored import store_batch

SECRET = "webhook-" + secrets.token_hex(16)
KINDS = ["submitted", "started", "batch-failed", "done", "deleted"]


@pytest.fixture(scope="module")
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    live, hung = Receiver(), Receiver(hang=True)
    yield live, hung
    live.close()
    hung.close()


@pytest.fixture(scope="module")
def settings(tmp_path_factory, receivers) -> Iterator[Settings]:
    live, hung = receivers
    with private_settings(tmp_path_factory.mktemp("events"), webhooks=f"{hung.url}/farm {live.url}/flaky",
                          webhook_secret=SECRET, webhook_retry_seconds=3.0) as s:
        yield s


@pytest.fixture(scope="module")
def server(tmp_path_factory, settings: Settings) -> Iterator[Server]:
    yield from serving(tmp_path_factory.mktemp("events-web"), settings, ("alice", "bob"))


@pytest.fixture(scope="module")
def tokens(settings: Settings, server: Server) -> dict[str, str]:
    return {"alice": add(settings, server, "alice"), "bob": add(settings, server, "bob")}


@pytest.fixture(scope="module")
def job(tmp_path_factory, settings: Settings, server: Server, tokens: dict[str, str], receivers) -> str:
    """bob's job of two batches, submitted through the API with a `notify` URL; one attempt fails, one batch is
    stored, two movers race it to 'done'; then bob deletes it (alice may not)."""
    live, _ = receivers
    tmp = tmp_path_factory.mktemp("events-job")
    folder = write_scene(tmp / "scene", SCENE, "Width=8\nHeight=8\nInitial_Frame=1\nFinal_Frame=2\n")
    pack_scene(folder, tmp / "scene.zip", ArchiveLimits())
    body, kind = multipart({"name": "evented", "count": "1", "notify": f"{live.url}/job"}, tmp / "scene.zip")
    status, made = call(server, "POST", "/api/jobs", tokens["bob"], body, {"Content-Type": kind})
    assert status == 201, made
    job_id, [first, _] = made["id"], made["spec"]["batches"]
    node = Client(settings)
    assert node.store.start_batch(job_id, first, "attempt-1", "n@h", 600.0) == "ok"
    node.store.fail_batch(job_id, first, "povray: <parse error>", [], False, "n@h")
    store_batch(node, job_id, first, None, "attempt-2")

    answers: list[str] = []

    def finish() -> None:  # as two nodes that both saw the last batch done
        try:
            node.store.transition(job_id, JobState.DONE)
            answers.append("ok")
        except TransitionRefused:
            answers.append("refused")
    racers = [threading.Thread(target=finish) for _ in range(2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(answers) == ["ok", "refused"]

    status, refused = call(server, "DELETE", f"/api/jobs/{job_id}", tokens["alice"])
    assert status == 403, refused
    status, deleted = call(server, "DELETE", f"/api/jobs/{job_id}", tokens["bob"])
    assert status == 200, deleted
    return job_id


def test_a_jobs_events_are_recorded_once_in_order_and_read_alike_by_api_and_cli(server, tokens, settings, job):
    status, owners = call(server, "GET", f"/api/events?job={job}", tokens["bob"])
    assert status == 200, owners
    assert [e["kind"] for e in owners] == KINDS  # one 'done' for two racers; alice's refused delete is none
    assert all(e["job"] == job and e["owner"] == "bob" for e in owners)
    ids = [tuple(map(int, e["id"].split("-"))) for e in owners]
    assert ids == sorted(set(ids))
    assert owners[2]["detail"].endswith("povray: <parse error>") and "notify" not in owners[0]

    # another account sees the same events (every role may view every job); no account: 401
    assert call(server, "GET", f"/api/events?job={job}", tokens["alice"]) == (200, owners)
    status, _, refused = server.http("GET", "/api/events", {"Accept": "application/json"})
    assert status == 401, refused
    status, bad = call(server, "GET", "/api/events?after=x;DROP", tokens["alice"])
    assert status == 400 and "event id" in json.dumps(bad)

    # the CLI with direct Redis access, one JSON object a line
    done = CliRunner().invoke(cli, ["events", "--job", job, "--json"], env=settings.to_env())
    assert done.exit_code == 0, done.output
    assert [json.loads(line) for line in done.output.splitlines()] == owners
    later = CliRunner().invoke(cli, ["events", "--job", job, "--after", owners[2]["id"]], env=settings.to_env())
    assert later.exit_code == 0, later.output
    assert [line.split()[2] for line in later.output.splitlines()] == ["done", "deleted"]


def test_the_event_stream_resumes_after_last_event_id_and_is_bounded(server, tokens, job):
    status, owners = call(server, "GET", f"/api/events?job={job}", tokens["alice"])
    assert status == 200
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", f"/api/events?job={job}", headers={
            "Authorization": f"Bearer {tokens['alice']}", "Accept": "text/event-stream",
            "Last-Event-ID": owners[1]["id"]})
        response = conn.getresponse()
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        frames: list[dict[str, str]] = []
        frame: dict[str, str] = {}
        while len(frames) < 3:
            line = response.readline().decode().rstrip("\n")
            if not line and frame:
                frames.append(frame)
                frame = {}
            elif line and not line.startswith((":", "retry:")):
                key, _, value = line.partition(": ")
                frame[key] = value
        # each stream holds one of the server's few threads: an account's third at once is answered 429, Retry-After
        second, third, fourth = (http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(3))
        try:
            headers = {"Authorization": f"Bearer {tokens['bob']}", "Accept": "text/event-stream"}
            for held in (second, third):
                held.request("GET", "/api/events", headers=headers)
                assert held.getresponse().status == 200
            fourth.request("GET", "/api/events", headers=headers)
            refused = fourth.getresponse()
            assert refused.status == 429 and refused.headers["Retry-After"]
            assert "bob has 2 live streams open already: try again later" in refused.read().decode()
        finally:
            for conn_ in (second, third, fourth):
                conn_.close()
    finally:
        conn.close()
    assert [f["id"] for f in frames] == [e["id"] for e in owners[2:]]
    assert [json.loads(f["data"]) for f in frames] == owners[2:]


def test_webhooks_get_every_event_signed_in_order_past_a_500_and_a_receiver_that_never_answers(
        server, tokens, receivers, job):
    live, hung = receivers
    status, owners = call(server, "GET", f"/api/events?job={job}", tokens["bob"])
    assert status == 200
    # the job's own URL and the farm-wide one that answers 500 first, each event once it is answered 2xx, in order;
    # the farm-wide receiver listed first never answers, and delays neither
    wait_for(lambda: len(live.events("/job")) >= len(KINDS) and len(live.events("/flaky")) >= len(KINDS), 20,
             "the webhooks to arrive")
    assert live.events("/job") == owners
    farm = [e for e in live.events("/flaky") if e["job"] == job]
    assert farm == owners and live.refused == [owners[0]["id"]]  # answered 500 first, then sent again
    # all of them while the hung receiver's first POST still waited for its answer (3 s, the retry time)
    assert hung.arrived and max(live.arrived) < hung.arrived[0] + 3.0
    for _, headers, body in live.posts:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Httpov-Signature"], expected)
        assert headers["Content-Type"] == "application/json"
    # the log names the receiver by its scheme, host and port: a URL's path often holds the receiver's own secret
    wait_for(lambda: any(f"webhook {hung.url}/...: event" in line and "dropped" in line
                         for line in server.log_lines()), 20, "the hung receiver's events dropped with a log line")
    assert not any("/farm" in line or "/flaky" in line for line in server.log_lines())


def test_a_notify_url_that_is_no_http_url_is_refused_naming_it(server, tokens, tmp_path):
    folder = write_scene(tmp_path / "scene", SCENE, "Width=8\nHeight=8\n")
    pack_scene(folder, tmp_path / "scene.zip", ArchiveLimits())
    body, kind = multipart({"name": "bad-hook", "notify": "file:///etc/passwd"}, tmp_path / "scene.zip")
    status, refused = call(server, "POST", "/api/jobs", tokens["bob"], body, {"Content-Type": kind})
    assert status == 400 and "file:///etc/passwd" in json.dumps(refused), refused
    done = CliRunner().invoke(cli, ["submit", str(folder), "--notify", "gopher://x/"],
                              env={"HTTPOV_PREFIX": "unused-" + secrets.token_hex(3)})
    assert done.exit_code != 0 and "http:// or https://" in done.output, done.output



def test_every_move_of_a_job_is_one_event_and_a_failure_says_why(store):
    from httpov.access import Identity, Role
    from httpov.events import EventLog
    from tests.store.test_store import _spec

    store.create(_spec("j1"), user="carol", notify=["https://hooks.example.com/x"])
    store.publish("j1")
    for new in (JobState.PAUSED, JobState.RUNNING, JobState.CANCELLED, JobState.RUNNING, JobState.CANCELLED,
                JobState.DELETING, JobState.DELETING):  # pause, resume, cancel, retry, cancel, delete, a delete rerun
        store.transition("j1", new)
    with pytest.raises(TransitionRefused):
        store.transition("j1", JobState.PAUSED)  # refused: no event
    store.create(_spec("j2"), user="carol")
    assert store.abandon("j2", "the submit was interrupted") == "ok"

    store.create(_spec("j3"), user="carol")  # a batch starts before its submit is over, then fails for good
    assert store.start_batch("j3", "f000001-000001", "t", "n@h", 60.0) == "ok"
    assert store.publish("j3") == "submitting"
    store.fail_batch("j3", "f000001-000001", "povray: out of memory", [], True, "n@h")

    log = EventLog(store.r, store.p)
    viewer = Identity("vic", Role.VIEWER)  # another account, of the least role: every job's events are its to see
    seen = [(e.job, e.kind, e.owner, e.detail) for e in log.events(viewer)]
    assert seen == [("j1", "submitted", "carol", ""), ("j1", "paused", "carol", ""), ("j1", "resumed", "carol", ""),
                    ("j1", "cancelled", "carol", ""), ("j1", "retried", "carol", ""), ("j1", "cancelled", "carol", ""),
                    ("j1", "deleted", "carol", ""),
                    ("j2", "submitted", "carol", ""), ("j2", "failed", "carol", "the submit was interrupted"),
                    ("j3", "submitted", "carol", ""), ("j3", "started", "carol", ""),
                    ("j3", "batch-failed", "carol", "batch f000001-000001: povray: out of memory"),
                    ("j3", "failed", "carol", "batch f000001-000001: povray: out of memory")]
    assert [e.kind for e in log.events(viewer, job="j2")] == ["submitted", "failed"]
    first = log.events(viewer, limit=1)
    assert [(e.job, e.kind) for e in first] == [("j3", "failed")]  # the newest
    assert [e.kind for e in log.events(viewer, after=first[0].id)] == []
    # following (`httpov events --follow`): what came after an event, then None for each wait with nothing new
    submitted = next(e for e in log.events(viewer, job="j3") if e.kind == "submitted")
    followed = list(log.follow(viewer, "j3", after=submitted.id, wait=0.1, until=time.time() + 0.3))
    assert [e.kind for e in followed if e is not None] == ["started", "batch-failed", "failed"] and followed[-1] is None


def test_a_deliverer_that_dies_mid_retry_leaves_its_event_to_the_next_which_sends_it(store):
    from httpov.webhooks import GROUP, Deliverer

    live = Receiver()
    first = second = None
    try:
        first = Deliverer(store.r, store.p, [f"{live.url}/flaky"], None, retry_seconds=60.0).start()
        store.r.xadd(store.keys.events(), {"kind": "done", "job": "j9", "owner": "o", "detail": "", "notify": "[]"})
        wait_for(lambda: live.refused, 10, "the first try (answered 500)")
        first.stop()  # dies during its back-off: the event is neither sent nor acknowledged
        assert live.events("/flaky") == []
        assert store.r.xpending(store.keys.events(), GROUP)["pending"] == 1
        store.r.delete(store.keys.claim("webhooks"))  # its claim runs out
        second = Deliverer(store.r, store.p, [f"{live.url}/flaky"], None, retry_seconds=60.0).start()
        wait_for(lambda: live.events("/flaky"), 10, "the next deliverer to send the event again")
        assert [e["kind"] for e in live.events("/flaky")] == ["done"]
        wait_for(lambda: store.r.xpending(store.keys.events(), GROUP)["pending"] == 0, 10, "the event acknowledged")
    finally:
        for deliverer in (first, second):
            if deliverer is not None:
                deliverer.stop()
        live.close()


def test_a_receiver_that_keeps_failing_is_retried_with_back_off_then_dropped_with_a_log_line(store, caplog):
    """Every POST answered 500: tried again after 0.5 s, 1 s, 2 s (doubling), never after the retry time; then the
    event is dropped for that URL with a warning naming the tries, and acknowledged (not sent again)."""
    from httpov.webhooks import FIRST_BACKOFF, GROUP, Deliverer

    down = Receiver()
    deliverer = None
    try:
        with caplog.at_level(logging.WARNING, logger="httpov.webhooks"):
            deliverer = Deliverer(store.r, store.p, [f"{down.url}/down"], None, retry_seconds=4.0).start()
            store.r.xadd(store.keys.events(),
                         {"kind": "failed", "job": "j7", "owner": "o", "detail": "", "notify": "[]"})
            wait_for(lambda: any("dropped after" in r.getMessage() for r in caplog.records), 20,
                     "the event dropped with a log line")
        tries = list(down.arrived)
        gaps = [later - earlier for earlier, later in zip(tries, tries[1:])]
        # tries at about 0, 0.5, 1.5, 3.5 s (a loaded machine only lengthens a gap), none once the 4 s were over
        assert 3 <= len(tries) <= 5, gaps
        for n, gap in enumerate(gaps[:3]):
            assert gap >= FIRST_BACKOFF * 2**n - 0.05, gaps
        assert tries[-1] - tries[0] < 4.0 + 0.5, gaps
        (line,) = [r.getMessage() for r in caplog.records if "dropped after" in r.getMessage()]
        assert f"webhook {down.url}/...: event" in line and f"after {len(tries)} tries in 4 s: HTTP 500" in line
        assert down.posts == []
        wait_for(lambda: store.r.xpending(store.keys.events(), GROUP)["pending"] == 0, 10, "the event acknowledged")
    finally:
        if deliverer is not None:
            deliverer.stop()
        down.close()


def test_httpov_events_follow_prints_each_new_event_as_it_comes(settings: Settings):
    """`httpov events --job ID --follow --json` as a process: the job's events so far, then each later one, one JSON
    object a line, while it keeps running."""
    import queue
    import subprocess
    import sys

    from httpov.local_farm import worker_env
    from tests.store.test_store import _spec

    store = Client(settings).store
    job_id = "follow" + secrets.token_hex(3)
    store.create(_spec(job_id), user="carol")
    follower = subprocess.Popen([sys.executable, "-m", "httpov.cli", "events", "--job", job_id, "--follow", "--json"],
                                env=worker_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in follower.stdout or ():
            lines.put(line)
    threading.Thread(target=read, daemon=True).start()

    def next_event() -> dict:
        try:
            return json.loads(lines.get(timeout=20))
        except queue.Empty:
            follower.kill()
            raise AssertionError(f"no event printed; stderr: {follower.communicate()[1]}") from None
    try:
        assert (next_event()["kind"], follower.poll()) == ("submitted", None)
        store.publish(job_id)
        store.transition(job_id, JobState.PAUSED)
        assert next_event() | {"at": 0, "id": ""} == {"id": "", "at": 0, "kind": "paused", "job": job_id,
                                                      "owner": "carol", "detail": ""}
        store.transition(job_id, JobState.CANCELLED)
        assert next_event()["kind"] == "cancelled" and follower.poll() is None  # still following
    finally:
        follower.terminate()
        follower.wait(10)
