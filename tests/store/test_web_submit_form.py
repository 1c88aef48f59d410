"""The submit form of one real `httpov web` process (cheroot, real Redis) offers every option of `httpov submit`,
typed: the priorities the account may give, the radiosity modes, the live render pools; a job submitted with every
field has them in its spec and record; a plain user gets no owner field and naming another owner is refused (403);
a priority past the account's max priority is said beside its field, nothing recorded."""
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
from tests.store.test_web_signin import PASSWORD, Server, serving
from tests.store.test_web_submit_warnings import job_keys, submit_form
from tests.store.test_web_tokens import SCENE


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Iterator[Settings]:
    with private_settings(tmp_path_factory.mktemp("form")) as s:
        yield s


@pytest.fixture(scope="module")
def client(settings: Settings):
    from httpov.celery import make_app
    from httpov.client import Client

    return Client(settings, make_app(settings))


@pytest.fixture(scope="module")
def server(tmp_path_factory, settings: Settings, client) -> Iterator[Server]:
    from httpov.web.auth import add_user

    folder = tmp_path_factory.mktemp("form-web")
    add_user(folder / "accounts", "carol", PASSWORD, "admin")
    client.set_limits("bob", max_priority=3)
    client.store.heartbeat("node-gpu", 2, ["gpu"])  # a live render node of pool gpu
    yield from serving(folder, settings, ("alice", "bob"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scene")
    write_scene(folder / "green", SCENE, "Width=16\nHeight=16\nInitial_Frame=1\nFinal_Frame=4\n")
    pack_scene(folder / "green", folder / "green.zip", ArchiveLimits())
    return folder / "green.zip"


def page_of(server: Server, cookie: str) -> str:
    status, _, page = server.http("GET", "/submit", {"Cookie": cookie, "Accept": "text/html"})
    assert status == 200, page
    return page


def options_of(page: str, select: str) -> list[str]:
    found = re.search(rf'<select id="{select}" name="{select}">(.*?)</select>', page, re.S)
    assert found, page
    return [html.unescape(v) for v in re.findall(r'<option value="([^"]*)"', found.group(1))]


def selected(page: str, select: str) -> str | None:
    found = re.search(rf'<select id="{select}" name="{select}">(.*?)</select>', page, re.S)
    assert found
    chosen = re.search(r'<option value="([^"]*)" selected>', found.group(1))
    return chosen.group(1) if chosen else None


def test_every_field_is_offered_typed_and_reaches_the_job(settings, server, client, scene):
    alice = server.session("alice")
    page = page_of(server, alice)
    for name in ("frames", "width", "height", "count", "slice_rows", "time_limit", "max_processes", "max_nodes"):
        assert re.search(rf'<input type="number" id="{name}" name="{name}" value="" step="1" inputmode="numeric" '
                         r'min="1"', page), name
    assert '<input type="text" id="slices" name="slices" value="">' in page  # a number, or auto
    assert f'max="{settings.task_time_limit}"' in page
    assert options_of(page, "priority") == [str(p) for p in range(settings.user_max_priority + 1)]
    assert selected(page, "priority") == "5"
    assert options_of(page, "radiosity_cache") == ["auto", "off", "shared"]
    assert options_of(page, "photons") == ["shared", "off"] and selected(page, "photons") == "shared"
    assert options_of(page, "pool") == ["", "gpu"]  # any, and the live pool
    assert 'id="user"' not in page  # the owner field is the admins'
    assert "<script>" not in page  # the Content-Security-Policy allows no inline script

    fields = {"name": "every-field", "frames": "2", "width": "24", "height": "96", "slices": "3", "priority": "7",
              "radiosity_cache": "off", "photons": "off", "pool": "gpu", "time_limit": "30", "max_processes": "2",
              "max_nodes": "1",
              "any_povray": "1", "strict": "1", "notify": "https://hooks.example.com/a http://127.0.0.1:9/b"}
    status, headers, page = submit_form(server, alice, scene, **fields)
    assert status == 302, page
    job = headers["Location"].rsplit("/", 1)[1]
    spec = client.store.spec(job)
    assert (spec.name, spec.width, spec.height, spec.priority, spec.time_limit) == ("every-field", 24, 96, 7, 30)
    assert (spec.first, spec.last, len(spec.slices or []), spec.any_povray) == (1, 2, 3, True)
    record = redis.Redis.from_url(REDIS_URL, decode_responses=True).hgetall(Keys(settings.prefix).job(job))
    assert record["user"] == "alice" and record["queue"] == settings.pool_queue("gpu")
    assert (record["max_processes"], record["max_nodes"]) == ("2", "1")
    assert json.loads(record["notify"]) == ["https://hooks.example.com/a", "http://127.0.0.1:9/b"]


def test_slices_auto_from_the_form_are_cut_for_the_pools_live_processes(settings, server, client, scene):
    status, headers, page = submit_form(server, server.session("alice"), scene, name="auto", height="256",
                                        slices="auto", pool="gpu")
    assert status == 302, page
    spec = client.store.spec(headers["Location"].rsplit("/", 1)[1])
    assert spec.slices == [(1, 64), (65, 128), (129, 192), (193, 256)]  # 2 a process of the pool's live node's 2
    status, _, page = submit_form(server, server.session("alice"), scene, name="many", slices="many")
    assert status == 400 and "slices must be a whole number or auto" in html.unescape(page)


def test_a_plain_user_may_not_name_another_owner(settings, server, scene):
    before = job_keys(settings)
    status, _, page = submit_form(server, server.session("alice"), scene, name="for-bob", user="bob")
    assert status == 403, page
    assert "only an admin may name another owner" in html.unescape(page)
    assert job_keys(settings) == before


def test_an_admin_names_the_owner_and_may_give_any_priority(settings, server, client, scene):
    carol = server.session("carol")
    page = page_of(server, carol)
    assert 'id="user" name="user"' in page and options_of(page, "priority") == [str(p) for p in range(10)]
    status, headers, page = submit_form(server, carol, scene, name="for-bob", user="bob", priority="9")
    assert status == 302, page
    job = headers["Location"].rsplit("/", 1)[1]
    record = redis.Redis.from_url(REDIS_URL, decode_responses=True).hgetall(Keys(settings.prefix).job(job))
    assert record["user"] == "bob" and client.store.spec(job).priority == 9


def test_a_priority_past_the_accounts_limit_is_said_beside_its_field(settings, server, scene):
    bob = server.session("bob")
    page = page_of(server, bob)
    assert options_of(page, "priority") == ["0", "1", "2", "3"] and selected(page, "priority") == "3"
    before = job_keys(settings)
    stored = sorted(Path(settings.storage).glob("**/*"))
    status, _, page = submit_form(server, bob, scene, name="too-high", priority="5", width="0")
    assert status == 400, page
    said = re.search(r'<span class="error" id="priority-error">(.*?)</span>', page, re.S)
    assert said and "3 (max priority)" in html.unescape(said.group(1)), page
    assert job_keys(settings) == before and sorted(Path(settings.storage).glob("**/*")) == stored
    status, _, page = submit_form(server, bob, scene, name="no-size", width="0")  # each error beside its field
    assert status == 400
    said = re.search(r'<span class="error" id="width-error">(.*?)</span>', page, re.S)
    assert said and "width must be at least 1, got 0" in html.unescape(said.group(1)), page
    assert 'value="0"' in page and job_keys(settings) == before


def test_check_scene_says_what_the_ini_asks_for_and_queues_nothing(settings, server, tmp_path):
    folder = tmp_path / "clocked"
    write_scene(folder, SCENE, "Widht=64\nWidth=16\nHeight=16\nInitial_Frame=1\nFinal_Frame=5\nInitial_Clock=0\n"
                               "Final_Clock=2\nAntialias=on\nAntialias_Threshold=0.3\n")
    scene = tmp_path / "clocked.zip"
    pack_scene(folder, scene, ArchiveLimits())
    alice = server.session("alice")
    before = job_keys(settings)
    stored = sorted(Path(settings.storage).glob("**/*"))
    status, _, page = submit_form(server, alice, scene, check="1", height="8", slices="1")
    assert status == 200, page
    said = {what: html.unescape(value) for what, value in re.findall(r'<dd id="preview-(\w+)">(.*?)</dd>', page)}
    assert said["size"] == "16x8"  # the ini's width, the form's height
    assert said["frames"] == "1-5 (5 of the animation's 1-5)"
    assert said["clock"] == "0 to 2"
    assert said["antialias"] == "on (threshold 0.3)"
    assert said["batches"] == "5 (1 row slice(s) a frame)"
    assert "Widht: did you mean Width?" in html.unescape(page)
    assert job_keys(settings) == before and sorted(Path(settings.storage).glob("**/*")) == stored
    status, _, page = submit_form(server, alice, scene, check="1", width="0")  # an error beside its field
    assert status == 400 and 'id="width-error"' in page


def test_after_from_the_form_waits_and_another_users_job_is_refused(settings, server, client, scene):
    alice, bob = server.session("alice"), server.session("bob")
    status, headers, page = submit_form(server, alice, scene, name="first")
    assert status == 302, page
    first = headers["Location"].rsplit("/", 1)[1]
    status, headers, page = submit_form(server, alice, scene, name="second", after=first, after_anyway="1")
    assert status == 302, page
    second = headers["Location"].rsplit("/", 1)[1]
    assert client.store.state(second) == "waiting"
    record = client.store.record(second)
    assert (record["after"], record["after_anyway"]) == (first, "1")
    status, _, page = server.http("GET", f"/jobs/{second}", {"Cookie": bob, "Accept": "text/html"})
    assert status == 200 and f"waiting for job(s) {first} to be done" in page  # a viewer of it sees what it waits for
    before = job_keys(settings)
    for job in (first, "0123456789ab"):  # alice's job and no job: bob gets the same words
        status, _, page = submit_form(server, bob, scene, name="bobs", after=job, priority="3")
        said = re.search(r'<span class="error" id="after-error">(.*?)</span>', page, re.S)  # beside its field
        assert status == 400 and said, page
        assert html.unescape(said.group(1)).strip() == f"after: there is no job {job} of bob's"  # no CLI flag
    assert job_keys(settings) == before
