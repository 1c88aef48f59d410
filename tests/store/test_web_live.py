"""Live pages' event streams on one real `httpov web` process (cheroot, real Redis), read with a plain HTTP client:
a job's event arrives when a batch is recorded done, without asking again; the streams are bounded per account and
in all (429: the page polls, and polling still answers); a stream ends when its session does; anonymous readers and
bad tokens get nothing, an unknown job 404; the watchdog of slow requests leaves a stream be; the store's stamp of a
job changes with what its page shows. No render node: batches are recorded as a render node does."""
from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator

import pytest

from httpov.settings import Settings
from tests.conftest import private_settings, wait_for, write_scene
from tests.store.test_web_signin import PASSWORD, Server, serving
from tests.stored import store_batch

STREAMS = 3  # HTTPOV_WEB_STREAMS of the module's server (2 an account)


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Iterator[Settings]:
    # a client has 1 s to send its request (HTTPOV_WEB_REQUEST_SECONDS): a stream lasts longer, uncut by the watchdog
    with private_settings(tmp_path_factory.mktemp("live"), web_streams=STREAMS, web_request_seconds=1.0) as s:
        yield s


@pytest.fixture(scope="module")
def client(settings: Settings):
    from httpov.celery import make_app
    from httpov.client import Client

    return Client(settings, make_app(settings))


@pytest.fixture(scope="module")
def server(tmp_path_factory, settings: Settings) -> Iterator[Server]:
    # a view is read at most every second (--refresh 1: a polling page's pace), else on a change of its stamp
    yield from serving(tmp_path_factory.mktemp("live-web"), settings, ("bob", "carol", "dave"), "--refresh", "1",
                       signed_in=True)


@pytest.fixture
def job(client, tmp_path) -> str:
    """A queued job of bob's: two batches of one 8x8 frame each."""
    scene = write_scene(tmp_path / "scene", "#version 3.7;\nbackground { color rgb <0, 1, 0> }\n",
                        "Width=8\nHeight=8\nInitial_Frame=1\nFinal_Frame=2\n")
    return client.submit(scene, user="bob", count=1).spec.id


def done(client, job: str, n: int) -> None:
    """Record batch `n` of the job done, as a render node does."""
    if client.store.state(job) == "queued":
        client.store.transition(job, "running")
    store_batch(client, job, client.store.spec(job).batches[n], None, f"r{n}")


class Stream:
    """One event stream, read as it comes: (event name, data) at a time."""

    def __init__(self, server: Server, path: str, headers: dict[str, str]) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream", **headers})
        self.response = self.conn.getresponse()
        self.status, self.headers = self.response.status, self.response.headers
        self.lines: list[str] = []  # every line read, `retry:` and comments too

    def next(self) -> tuple[str, str]:
        """The next event (a comment is skipped); its data's lines joined."""
        name, data = "message", []
        while True:
            line = self.response.readline().decode()
            assert line, "the stream ended"
            self.lines.append(line)
            line = line.rstrip("\n")
            if line == "" and (data or name != "message"):
                return name, "\n".join(data)
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])

    def until(self, name: str) -> str:
        while True:
            got, data = self.next()
            if got == name:
                return data

    def close(self) -> None:
        self.conn.close()


def cookie(server: Server, who: str) -> dict[str, str]:
    return {"Cookie": server.cookies[who]}  # type: ignore[attr-defined]


def place(server: Server, path: str, who: str) -> Stream:
    """A stream of `who`'s once the server has a place for it: a stream closed by the test before is given back
    within the server's next check (1 s), so a test that opens one first waits for it rather than racing it."""
    opened: list[Stream] = []

    def given() -> bool:
        stream = Stream(server, path, cookie(server, who))
        if stream.status == 429:
            stream.close()
            return False
        opened.append(stream)
        return True
    wait_for(given, 10, f"a place for {who}'s stream (the last test's closed)")
    return opened[0]


def test_an_event_arrives_when_a_batch_is_recorded_done_without_asking_again(server, client, job):
    stream = place(server, f"/api/stream/jobs/{job}", "bob")
    try:
        assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.headers["Cache-Control"] == "no-store"
        first = json.loads(stream.until("job"))
        assert stream.lines[0] == "retry: 3000\n"  # the browser reconnects 3 s after a stream's end
        assert (first["id"], first["frames_done"], first["state"]) == (job, 0, "queued")
        done(client, job, 0)
        started = time.monotonic()
        view = json.loads(stream.until("job"))
        assert (view["frames_done"], view["state"]) == (1, "running")
        assert time.monotonic() - started < 5  # within a check or two (1 s each), long before a page would poll
        done(client, job, 1)
        view = json.loads(stream.until("job"))
        assert (view["frames_done"], view["state"]) == (2, "done")
        # the jobs list streams too, with GET /api/jobs's filters
        listed = Stream(server, "/api/stream/jobs?state=done", cookie(server, "carol"))
        try:
            assert job in [j["id"] for j in json.loads(listed.until("jobs"))]
        finally:
            listed.close()
    finally:
        stream.close()


def test_anonymous_readers_bad_tokens_and_unknown_jobs_get_nothing(server, job):
    for headers in ({}, {"Authorization": "Bearer not-a-token-of-this-server"}, {"Cookie": "httpov_session=forged"}):
        for path in (f"/api/stream/jobs/{job}", "/api/stream/jobs"):
            stream = Stream(server, path, headers)
            try:
                body = stream.response.read().decode()
                assert stream.status == 401 and stream.headers["Content-Type"] == "application/json", body
                assert job not in body
            finally:
                stream.close()
    stream = Stream(server, "/api/stream/jobs/nosuchjob", cookie(server, "bob"))
    try:
        assert stream.status == 404 and "nosuchjob" in stream.response.read().decode()
    finally:
        stream.close()


def test_the_bound_refuses_extra_streams_and_polling_still_answers(server, job):
    path = f"/api/stream/jobs/{job}"
    opened: list[Stream] = []

    def reopened() -> bool:  # a stream closed by its browser gives its place back within a check (1 s)
        again = Stream(server, path, cookie(server, "bob"))
        if again.status == 200:
            opened.append(again)
            return True
        again.close()
        return False
    def streams_said(who: str) -> str:  # what the job's page tells its script (live.js polls at once when "off")
        status, _, body = server.http("GET", f"/jobs/{job}", {**cookie(server, who), "Accept": "text/html"})
        assert status == 200, body[:300]
        found = re.search(r'<body [^>]*data-streams="(on|off)"', body)
        assert found, body[:500]
        return found.group(1)
    try:
        wait_for(reopened, 10, "a place for bob's stream (the last test's closed)")
        assert streams_said("bob") == "on"
        opened.append(Stream(server, path, cookie(server, "bob")))
        assert [s.status for s in opened] == [200, 200]
        assert (streams_said("bob"), streams_said("carol")) == ("off", "on")  # bob's 2 an account are open
        refused = Stream(server, path, cookie(server, "bob"))  # a third of bob's: past 2 an account
        assert refused.status == 429 and "polls instead" in json.loads(refused.response.read())["error"]
        refused.close()
        opened.append(Stream(server, path, cookie(server, "carol")))
        assert opened[-1].status == 200
        refused = Stream(server, path, cookie(server, "carol"))  # past HTTPOV_WEB_STREAMS in all
        assert refused.status == 429 and "HTTPOV_WEB_STREAMS" in json.loads(refused.response.read())["error"]
        refused.close()
        assert streams_said("dave") == "off"  # the server's bound is reached: dave's page polls from the start
        for who in ("bob", "carol"):  # the threads left answer the page's polling
            status, _, body = server.http("GET", f"/api/jobs/{job}", cookie(server, who))
            assert status == 200 and json.loads(body)["id"] == job
        opened.pop(0).close()  # a page left: its place is given back at once, with no write to find it
        started = time.monotonic()
        wait_for(reopened, 10, "the closed stream's place given back")
        assert time.monotonic() - started < 3
    finally:
        for stream in opened:
            stream.close()


def test_a_stream_ends_when_its_session_does(server, job):
    from httpov.web.auth import add_user

    stream = place(server, f"/api/stream/jobs/{job}", "dave")
    try:
        assert stream.status == 200
        stream.until("job")
        add_user(server.accounts, "dave", PASSWORD + " changed")  # a new password ends dave's sessions
        assert stream.until("end") == ""  # within the stream's next check (3 s: past HTTPOV_WEB_REQUEST_SECONDS)
        assert stream.response.readline() == b""  # and the server closed it
    finally:
        stream.close()
    assert server.http("GET", f"/api/jobs/{job}", cookie(server, "dave"))[0] == 401


def test_the_stamp_changes_with_what_a_page_shows_and_only_then(client, job, tmp_path):
    store = client.store
    seen = [store.stamps([job])]

    def changed() -> bool:
        seen.append(store.stamps([job]))
        return seen[-1] != seen[-2]
    assert not changed()  # nothing happened
    store.transition(job, "running")
    assert changed()
    batch = store.spec(job).batches[0]
    assert store.start_batch(job, batch, "r0", "n@h", 600.0) == "ok"
    assert changed()  # a batch rendering
    assert not changed()
    client.set_priority(job, 7)
    assert changed()
    client.pause(job)
    assert changed()
    scene = write_scene(tmp_path / "other", "#version 3.7;\n", "Width=8\nHeight=8\n")
    client.submit(scene, user="carol", count=1)
    assert changed()  # the job list grew

