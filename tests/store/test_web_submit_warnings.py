"""The submit form of one real `httpov web` process (cheroot, real Redis) and an ini typo: the job page lists
'Widht: did you mean Width?' (kept with the job, so every later look shows it), another account sees the same
warnings with the job's progress but none of its pictures or controls, and the form's strict box refuses the scene
with the warning beside the scene field, nothing recorded or stored."""
from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from httpov.archive import ArchiveLimits, pack_scene
from httpov.settings import Settings
from httpov.store.keys import Keys
from tests.conftest import REDIS_URL, private_settings, write_scene
from tests.store.test_web_signin import Server, serving
from tests.store.test_web_tokens import SCENE, add, call, multipart

TYPO = "Widht: did you mean Width? (the ini's line is ignored)"


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Iterator[Settings]:
    with private_settings(tmp_path_factory.mktemp("warnings")) as s:
        yield s


@pytest.fixture(scope="module")
def server(tmp_path_factory, settings: Settings) -> Iterator[Server]:
    yield from serving(tmp_path_factory.mktemp("warnings-web"), settings, ("alice", "bob"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("typo")
    write_scene(folder / "typo", SCENE, "Widht=640\nWidth=16\nHeight=16\n")
    pack_scene(folder / "typo", folder / "typo.zip", ArchiveLimits())
    return folder / "typo.zip"


def submit_form(server: Server, cookie: str, scene: Path, **fields: str) -> tuple[int, dict, str]:
    """The submit page as a browser sends it: the form (for its CSRF token), then the POST of the file and fields."""
    status, headers, page = server.http("GET", "/submit", {"Cookie": cookie, "Accept": "text/html"})
    assert status == 200, page
    cookie = (headers.get("Set-Cookie") or cookie).split(";")[0]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf, page
    body, kind = multipart({"csrf_token": csrf.group(1), **fields}, scene)
    status, headers, page = server.http("POST", "/submit", {"Cookie": cookie, "Accept": "text/html",
                                                             "Content-Type": kind}, body)
    return status, dict(headers), page


def warnings_on(page: str) -> list[str]:
    listed = re.search(r'<ul id="warnings">(.*?)</ul>', page, re.S)
    return [html.unescape(w) for w in re.findall(r'<li class="warning">(.*?)</li>', listed.group(1))] if listed else []


def job_keys(settings: Settings) -> list[str]:
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    return [k for k in r.scan_iter(match=f"{settings.prefix}:job:*")]


def test_the_job_page_lists_the_ini_typo_for_its_owner_and_for_another_account(settings, server, scene):
    alice = server.session("alice")
    status, headers, page = submit_form(server, alice, scene, name="typo")
    assert status == 302, page
    job = headers["Location"].rsplit("/", 1)[1]
    status, _, page = server.http("GET", f"/jobs/{job}", {"Cookie": alice, "Accept": "text/html"})
    assert status == 200 and warnings_on(page) == [TYPO]
    assert 'id="pause"' in page and 'id="no-pictures"' not in page  # her job: its controls and pictures
    assert "16x16" in page  # the typo did not set the size
    # bob may look at any job's progress (Action.VIEW): he sees the warnings as he sees its failures, but not its
    # pictures nor its controls
    bob = server.session("bob")
    status, _, page = server.http("GET", f"/jobs/{job}", {"Cookie": bob, "Accept": "text/html"})
    assert status == 200 and warnings_on(page) == [TYPO]
    assert 'id="no-pictures"' in page and 'id="pause"' not in page and 'id="delete"' not in page
    # the JSON a script reads keeps the line in the job's history (kind "warning"), as Redis does
    status, view = call(server, "GET", f"/api/jobs/{job}", add(settings, server, "alice"))
    assert status == 200 and isinstance(view, dict)
    assert [(h["kind"], h["what"]) for h in view["history"]] == [("warning", TYPO)]
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    assert [json.loads(line)["what"] for line in r.lrange(Keys(settings.prefix).history(job), 0, -1)] == [TYPO]


def test_the_api_answers_the_warning_and_strict_refuses_the_scene(settings, server, scene, tmp_path):
    token = add(settings, server, "bob")
    body, kind = multipart({"name": "typo-api"}, scene)
    status, made = call(server, "POST", "/api/jobs", token, body, {"Content-Type": kind})
    assert status == 201 and isinstance(made, dict) and made["warnings"] == [TYPO], made
    before = job_keys(settings)
    stored = sorted(Path(settings.storage).glob("**/*"))
    body, kind = multipart({"name": "strict", "strict": "1"}, scene)
    status, refused = call(server, "POST", "/api/jobs", token, body, {"Content-Type": kind})
    assert status == 400 and isinstance(refused, dict), refused
    assert "Widht: did you mean Width?" in refused["error"], refused
    # and the form's strict box: the page again, the warning beside the scene field, nothing recorded or stored
    status, _, page = submit_form(server, server.session("alice"), scene, name="strict", strict="1")
    assert status == 400
    said = re.search(r'<span class="error" id="scene-error">(.*?)</span>', page, re.S)
    assert said and "Widht: did you mean Width?" in html.unescape(said.group(1)), page
    assert 'id="strict" name="strict" value="1" checked' in page
    assert job_keys(settings) == before and sorted(Path(settings.storage).glob("**/*")) == stored


def test_a_running_frames_povray_progress_shows_on_the_job_page_for_its_owner_and_another_account(settings, server,
                                                                                                   scene):
    """A still whose only batch a render node reported 36% rendered (the share its lease refresh carries): the job's
    page says so to its owner and to any account that may look at its progress, and the API's JSON has it."""
    from httpov.store import JobStore

    alice = server.session("alice")
    status, headers, page = submit_form(server, alice, scene, name="progress")
    assert status == 302, page
    job = headers["Location"].rsplit("/", 1)[1]
    store = JobStore(redis.Redis.from_url(REDIS_URL, decode_responses=True), settings.prefix)
    (batch,) = store.spec(job).batches
    assert store.start_batch(job, batch, "exec/1", "node-a@h", 60.0) == "ok"  # a render node took it
    assert store.refresh(job, batch, "exec/1", 60.0, progress=0.36) == "running"
    for who in ("alice", "bob"):
        status, _, page = server.http("GET", f"/jobs/{job}", {"Cookie": server.session(who), "Accept": "text/html"})
        assert status == 200
        counts = re.search(r'<span class="counts">(.*?)</span>', page, re.S)
        assert counts and "0/1 frames done, 0 failed, 1 rendering; 36% rendered" in html.unescape(counts.group(1))
        assert "frame 1 (36%)" in page, who
    status, view = call(server, "GET", f"/api/jobs/{job}", add(settings, server, "bob"))
    assert status == 200 and isinstance(view, dict)
    assert view["frames_rendering"] == 0.36 and view["running"][0]["rendered"] == 0.36
