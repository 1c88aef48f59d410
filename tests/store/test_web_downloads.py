"""A job's downloads on one real `httpov web --public-read` process (cheroot, real Redis, local storage): built once
per job state off the request thread and kept under the job's prefix in storage (a second request builds nothing and
gets the same bytes; many at once share one build), built anew once the job is rendered again, deleted with the job;
another user and an anonymous reader are refused (403) and build nothing. No render node: the frames are stored and
recorded as a render node would."""
from __future__ import annotations

import io
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from httpov import paths
from tests.conftest import wait_for, write_scene
from tests.store.test_web_signin import Server
from tests.stored import store_batch
from tests.webapp import web_farm

SIDE = 8  # pixels: the frames


settings, client, server = web_farm("downloads", ("bob", "carol"), "--public-read", signed_in=True)


def _png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), colour).save(out, "PNG")
    return out.getvalue()


def _render(client, job: str, colour: tuple[int, int, int], result: str) -> None:
    """Store and record the job's one batch as a render node does (its own result name), in `colour`."""
    batch = client.store.spec(job).batches[0]
    if client.store.state(job) != "running":
        client.store.transition(job, "running")
    store_batch(client, job, batch, {"scene_1.png": _png(colour)}, result)
    assert client.store.state(job) == "done"


@pytest.fixture
def job(client, tmp_path) -> str:
    """A finished one-frame job of bob's, green."""
    scene = write_scene(tmp_path / "scene", "#version 3.7;\nbackground { color rgb <0, 1, 0> }\n",
                        f"Width={SIDE}\nHeight={SIDE}\n")
    made = client.submit(scene, user="bob", count=1).spec.id
    _render(client, made, (0, 200, 0), "first")
    return made


def get(server: Server, path: str, who: str | None) -> tuple[int, dict[str, str], bytes]:
    """One GET as a script sends it (JSON errors), as `who` (None: anonymous)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Accept": "application/json"}
    if who:
        headers["Cookie"] = server.cookies[who]  # type: ignore[attr-defined]
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.headers), response.read()
    finally:
        conn.close()


def download(server: Server, job: str, what: str, who: str = "bob") -> bytes:
    """The download once it is built: 202 (with Retry-After) while it is being built, then 200."""
    answers: list[tuple[int, dict[str, str], bytes]] = []

    def ready() -> bool:
        answers.append(get(server, f"/jobs/{job}/download/{what}", who))
        status, headers, body = answers[-1]
        assert status in (200, 202), (status, body[:300])
        if status == 202:
            assert int(headers["Retry-After"]) >= 1 and b"being built" in body
        return status == 200
    wait_for(ready, 60, f"{what} of job {job} to be built")
    return answers[-1][2]


def stored(client, job: str) -> dict[str, int]:
    """The job's stored downloads: key -> the inode and change time of its file (a new build is a new file)."""
    found = {}
    for key in client.storage.list(paths.downloads_prefix(job)):
        status = (Path(client.settings.storage) / key).stat()
        found[key] = (status.st_ino, status.st_mtime_ns)
    return found


def builds(server: Server, job: str, what: str, at_least: int = 0) -> int:
    """The server's "built" lines for the download; with `at_least`, once that many are written: the server logs a
    build after storing it and deleting its older builds, so the download may be served a moment before its line."""
    def count() -> int:
        return sum(f"built {what} of job {job}" in line for line in server.log_lines())
    if at_least:
        wait_for(lambda: count() >= at_least, 10, f"{at_least} build line(s) of {what} of job {job}")
    return count()


def test_a_download_is_built_once_and_then_served_from_storage(server, client, job):
    first = download(server, job, "frames.zip")
    with zipfile.ZipFile(io.BytesIO(first)) as zf:
        assert zf.namelist() == ["scene_1.png"]
    assert builds(server, job, "frames.zip", at_least=1) == 1  # logged once stored and older builds deleted
    objects = stored(client, job)
    assert len(objects) == 1 and next(iter(objects)).endswith("-frames.zip")
    second = get(server, f"/jobs/{job}/download/frames.zip", "bob")
    assert second[0] == 200 and second[2] == first  # at once, the same bytes
    assert stored(client, job) == objects and builds(server, job, "frames.zip", at_least=1) == 1  # nothing built again


def test_the_apis_results_zip_is_built_once_too_with_the_logs(server, client, job):
    """`httpov --server URL fetch`'s download: the frames and the batch logs, built once, refused to another user."""
    path = f"/api/jobs/{job}/results.zip"
    wait_for(lambda: get(server, path, "bob")[0] == 200, 30, "results.zip to be built")
    status, _, first = get(server, path, "bob")
    with zipfile.ZipFile(io.BytesIO(first)) as zf:
        batch = client.store.spec(job).batches[0]
        assert sorted(zf.namelist()) == sorted(["scene_1.png", f"logs/{batch}.log"])
    assert get(server, path, "bob")[2] == first and builds(server, job, "results.zip", at_least=1) == 1
    assert get(server, path, "carol")[0] == 403 and get(server, path, None)[0] == 403


def test_requests_at_once_share_one_build(server, client, job):
    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(lambda _: download(server, job, "contact-sheet.png"), range(8)))
    assert len(set(bodies)) == 1 and Image.open(io.BytesIO(bodies[0])).size[0] >= SIDE
    assert builds(server, job, "contact-sheet.png", at_least=1) == 1 and len(stored(client, job)) == 1


def test_a_job_rendered_again_builds_anew_and_drops_the_old_build(server, client, job):
    green = download(server, job, "contact-sheet.png")
    before = stored(client, job)
    client.retry(job, frames=(1, 1))
    _render(client, job, (200, 0, 0), "second")  # the batch rendered again: red
    red = download(server, job, "contact-sheet.png")
    assert red != green
    colours = {colour for _, colour in Image.open(io.BytesIO(red)).convert("RGB").getcolors(10_000)}
    assert (200, 0, 0) in colours and (0, 200, 0) not in colours
    assert builds(server, job, "contact-sheet.png", at_least=2) == 2
    after = stored(client, job)
    assert len(after) == 1 and set(after) != set(before)  # built anew, the old build deleted


def test_delete_removes_the_jobs_downloads(server, client, job):
    download(server, job, "frames.zip")
    download(server, job, "contact-sheet.png")
    assert len(stored(client, job)) == 2
    client.delete(job)
    assert client.storage.list(paths.job_prefix(job)) == []
    assert get(server, f"/jobs/{job}/download/frames.zip", "bob")[0] == 404


@pytest.mark.parametrize("who", ["carol", None])
def test_another_user_and_an_anonymous_reader_are_refused_and_build_nothing(server, client, job, who):
    status, _, body = get(server, f"/jobs/{job}/download/frames.zip", who)
    asking = "carol (user)" if who else "(public) (viewer)"
    assert status == 403, body[:300]
    assert f"{asking} may not download job {job} (owned by bob)".encode() in body, body
    assert stored(client, job) == {} and builds(server, job, "frames.zip") == 0


# --- the builders, in this process: a build held on purpose shows what a request gets meanwhile ----------------

class HeldClient:
    """The module's real client (Redis, storage), whose fetch waits for `release` and counts its calls; its builds
    run in this process."""

    def __init__(self, real) -> None:
        import threading

        self.real, self.store, self.storage, self.settings = real, real.store, real.storage, real.settings
        self.release = threading.Event()
        self.fetches = 0
        self.error: Exception | None = None

    def make(self, job: str, what: str, key: str, who) -> None:
        """The build in this process (the server runs it in a process of its own)."""
        from httpov.web.build import build_download

        build_download(self, job, what, key, who)

    def fetch(self, *args, **kwargs):
        self.fetches += 1
        assert self.release.wait(30)
        if self.error is not None:
            raise self.error
        return self.real.fetch(*args, **kwargs)


def test_a_download_being_built_is_answered_at_once_with_202_and_a_page_that_reloads(client, job):
    from httpov.web import Gate, StatusSource, Web, create_app
    from httpov.web.downloads import Downloads

    held = HeldClient(client)
    downloads = Downloads(held, 1, wait=0.05, make=held.make)
    token = "t" * 24
    source = StatusSource(client.store, lambda: client.storage, client.settings.live_node_seconds)
    app = create_app(Web(client=client, source=source, gate=Gate(None, [token], True), downloads=downloads))
    browser = app.test_client()
    path = f"/jobs/{job}/download/frames.zip"
    bearer = {"Authorization": f"Bearer {token}"}
    started = time.monotonic()
    page = browser.get(path, headers={**bearer, "Accept": "text/html"})
    assert time.monotonic() - started < 1.0
    text = page.get_data(as_text=True)
    assert page.status_code == 202 and page.headers["Retry-After"] == "3"
    assert '<meta http-equiv="refresh" content="3">' in text and f"frames.zip of job {job} is being built" in text
    answer = browser.get(path, headers={**bearer, "Accept": "application/json"})
    assert answer.status_code == 202 and answer.json == {"building": "frames.zip", "job": job, "retry_after": 3,
                                                         "message": f"frames.zip of job {job} is being built"}
    held.release.set()
    wait_for(lambda: browser.get(path, headers=bearer).status_code == 200, 30, "the zip to be built")
    assert held.fetches == 1 and downloads.builds == 1


def test_builds_queue_up_to_a_bound_and_a_refused_result_is_not_built_again(client, tmp_path):
    from httpov.errors import ResultError, ServerBusyError
    from httpov.web.downloads import QUEUED_PER_BUILDER, Downloads

    held = HeldClient(client)
    downloads = Downloads(held, 1, wait=0.0, make=held.make)
    scene = write_scene(tmp_path / "scene", "#version 3.7;\n", f"Width={SIDE}\nHeight={SIDE}\n")
    jobs = []
    for n in range(1 + QUEUED_PER_BUILDER):  # one building, the others in line
        jobs.append(client.submit(scene, user="bob", count=1).spec.id)
        _render(client, jobs[-1], (0, 0, 200), f"r{n}")
        assert downloads.get(jobs[-1], "frames.zip", None) is None
    extra = client.submit(scene, user="bob", count=1).spec.id
    _render(client, extra, (0, 0, 200), "extra")
    with pytest.raises(ServerBusyError, match=r"building 9 downloads already.*HTTPOV_WEB_BUILDS=1"):
        downloads.get(extra, "frames.zip", None)
    assert downloads.get(jobs[0], "frames.zip", None) is None  # the same download: joins its build, refused nothing
    held.error = ResultError("result x is 20000x20000, not a 8x8 frame of its job: refused")
    held.release.set()
    wait_for(lambda: not downloads.building, 30, "the builds to end")
    for _ in range(3):
        with pytest.raises(ResultError, match="20000x20000"):
            downloads.get(jobs[0], "frames.zip", None)
    assert held.fetches == 1 + QUEUED_PER_BUILDER  # one per download: the refusal is remembered, not built again
