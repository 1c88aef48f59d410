"""Issue #26 item 6: the web speaks its own words. A bad submit or retry through one real `httpov web` process (real
Redis) names the form's field, never a command-line flag nor a temporary path of the server; the CLI says the same
problems with its flags. Another account's retry is refused before its frames are looked at."""
from __future__ import annotations

import html
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from httpov.archive import ArchiveLimits, pack_scene
from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.settings import Settings
from tests.conftest import private_settings, write_scene
from tests.store.test_web_signin import Server, serving
from tests.store.test_web_submit_warnings import submit_form
from tests.store.test_web_tokens import SCENE, add, call, multipart


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Iterator[Settings]:
    with private_settings(tmp_path_factory.mktemp("words")) as s:
        yield s


@pytest.fixture(scope="module")
def server(tmp_path_factory, settings: Settings) -> Iterator[Server]:
    yield from serving(tmp_path_factory.mktemp("words-web"), settings, ("alice", "bob"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("small")
    write_scene(folder / "small", SCENE, "Width=16\nHeight=16\n")
    pack_scene(folder / "small", folder / "small.zip", ArchiveLimits())
    return folder / "small.zip"


def _in_web_words(text: str) -> None:
    assert "--" not in text and tempfile.gettempdir() + "/" not in text, text


def test_a_bad_submit_names_the_form_field_in_the_api_and_on_the_page(settings, server, scene):
    token = add(settings, server, "alice")
    body, kind = multipart({"slices": "99"}, scene)  # only the scene can tell: 99 slices of a 16-row image
    status, refused = call(server, "POST", "/api/jobs", token, body, {"Content-Type": kind})
    assert status == 400 and isinstance(refused, dict), refused
    assert refused["field"] == "slices" and list(refused["errors"]) == ["slices"], refused
    assert "cannot cut 16 rows into 99 slices: slices must be at most the height" in refused["errors"]["slices"]
    _in_web_words(refused["error"])
    body, kind = multipart({"slices": "2", "slice_rows": "8"}, scene)
    status, refused = call(server, "POST", "/api/jobs", token, body, {"Content-Type": kind})
    assert status == 400 and "give exactly one of slices and slice_rows" in refused["error"], refused
    _in_web_words(refused["error"])
    status, _, page = submit_form(server, server.session("alice"), scene, slices="99")
    assert status == 400
    said = re.search(r'<span class="error" id="slices-error">(.*?)</span>', page, re.S)
    assert said and "slices must be at most the height" in html.unescape(said.group(1)), page
    _in_web_words(html.unescape(said.group(1)))


def test_a_bad_retry_names_the_frames_field_and_another_account_is_refused_first(settings, server, scene):
    token = add(settings, server, "alice")
    body, kind = multipart({"name": "mine"}, scene)
    status, made = call(server, "POST", "/api/jobs", token, body, {"Content-Type": kind})
    assert status == 201, made
    job = made["id"]
    form = "application/x-www-form-urlencoded"
    status, cancelled = call(server, "POST", f"/api/jobs/{job}/cancel", token, b"", {"Content-Type": form})
    assert status == 200, cancelled
    for frames, said in (("x", "frames 'x': give a frame (7) or a range (5-9)"),
                         ("5-9", f"frames 5-9: job {job} renders frames 1-1")):
        status, refused = call(server, "POST", f"/api/jobs/{job}/retry", token, f"frames={frames}".encode(),
                               {"Content-Type": form})
        assert status == 400 and refused["field"] == "frames" and said in refused["error"], refused
        _in_web_words(refused["error"])
    status, refused = call(server, "POST", f"/api/jobs/{job}/retry", add(settings, server, "bob"), b"frames=5-9",
                           {"Content-Type": form})
    assert status == 403 and "frames" not in refused["error"], refused  # bob may not; his frames are not looked at
    # the CLI says the same with its flags
    done = CliRunner().invoke(cli, ["retry", job, "--frames", "5-9"], env=worker_env(settings))
    assert done.exit_code == 2 and f"--frames 5-9: job {job} renders frames 1-1" in done.output, done.output


def test_deleting_a_live_job_says_to_cancel_it_in_the_pages_words(settings, server, scene):
    token = add(settings, server, "alice")
    body, kind = multipart({"name": "live"}, scene)
    status, made = call(server, "POST", "/api/jobs", token, body, {"Content-Type": kind})
    assert status == 201, made
    status, refused = call(server, "DELETE", f"/api/jobs/{made['id']}", token)
    assert status == 409 and "is queued: cancel it before deleting it" in refused["error"], refused
    _in_web_words(refused["error"])
    done = CliRunner().invoke(cli, ["delete", made["id"]], env=worker_env(settings))
    assert done.exit_code == 4 and f"`httpov delete --force {made['id']}` cancels it first" in done.output


def test_an_error_page_gives_the_pages_hint_and_the_api_the_command_lines(settings, server):
    """A page refused by the library (no such job) hints in the browser's words; the API keeps the library's hint,
    which `httpov --server` shows."""
    alice = server.session("alice")
    for path in ("/jobs/0123456789ab", "/jobs/0123456789ab/frames/3", "/jobs/0123456789ab/confirm/delete"):
        status, _, raw = server.http("GET", path, {"Cookie": alice, "Accept": "text/html"})
        main = html.unescape(re.search(r"<main>(.*?)</main>", raw, re.S).group(1))
        assert status == 404 and "no job with id '0123456789ab'" in main, main
        assert "hint: the jobs page lists the jobs" in main and "httpov" not in main, main
        _in_web_words(main)
    status, refused = call(server, "GET", "/api/jobs/0123456789ab", add(settings, server, "alice"))
    assert status == 404 and refused["kind"] == "JobNotFoundError"
    assert refused["hint"] == "`httpov status` lists the jobs"
