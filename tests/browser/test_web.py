"""`httpov web` as a real process (cheroot), a real render node and povray, driven by the system's Chromium through
Playwright: one browser session for the whole module. Log in, submit, watch a job finish live, open a frame, cancel
and delete another job (each asks first, in the page); control without a login or without the CSRF token changes
nothing; hostile names and logs stay inert."""
from __future__ import annotations

import http.client
import io
import json
import secrets
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from httpov.archive import ArchiveLimits, pack_scene
from httpov.local_farm import free_port, start_worker, stop_worker, worker_env
from httpov.settings import Settings
from tests.conftest import REDIS_URL, wait_for, write_scene
from tests.integration.faults import SLOW_SCENE

GREEN = """
#version 3.7;
camera { location <0, 0, -5> look_at <0, 0, 0> }
background { color rgb <0, 1, 0> }
"""
BAR_BLUE = (0x1F, 0x5F, 0xBF)  # .bar .done in httpov/web/static/style.css
PASSWORD = "correct horse battery"
# plan.check_name refuses '/' and '\\' and control characters, not markup: a name may be any of this
HOSTILE_NAME = '<img src=x onerror="window.pwned=1"> & <b>bold'
DIALOGS: list[str] = []
CONSOLE: list[tuple[str, str]] = []  # (type, text) of each console message and uncaught error of the module's page
HOSTILE_LOG = "<img src=x onerror=window.pwned=2><script>window.pwned=3</script>"


def scene_zip(folder: Path, pov: str, ini: str) -> Path:
    write_scene(folder, pov, ini)
    out = folder.with_suffix(".zip")
    pack_scene(folder, out, ArchiveLimits())
    return out


class Farm:
    """The module's Redis prefix, render node, web server, and what the tests share."""

    def __init__(self, tmp: Path) -> None:
        from httpov.celery import make_app
        from httpov.client import Client
        from httpov.web.auth import add_user

        tag = "httpovtest-" + secrets.token_hex(4)
        self.tmp = tmp
        self.settings = Settings(broker_url=REDIS_URL, state_url=REDIS_URL, storage=str(tmp / "storage"),
                                 prefix=tag, queue=tag, cache_dir=tmp / "cache", lease_seconds=4.0,
                                 max_attempts=2, task_time_limit=600)
        self.client = Client(self.settings, make_app(self.settings))
        self.accounts = tmp / "accounts"
        add_user(self.accounts, "alice", PASSWORD)
        self.token = secrets.token_urlsafe(24)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.jobs: dict[str, str] = {}  # what each test left for the next: green, slow, ...
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        self.procs.append(start_worker(self.settings, 2, "webnode", self.tmp / "node.log"))
        env = {**worker_env(self.settings), "HTTPOV_WEB_TOKENS": self.token}
        self.log = self.tmp / "web.log"
        web = subprocess.Popen([sys.executable, "-m", "httpov.cli", "web", "--port", str(self.port), "--refresh", "1",
                                "--accounts", str(self.accounts)], env=env, stdout=open(self.log, "wb"),
                               stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(web)

        def up() -> bool:
            assert web.poll() is None, self.log.read_text()
            try:
                return self.http("GET", "/api/jobs")[0] == 401
            except OSError:
                return False
        wait_for(up, 30, "httpov web to answer")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_worker(proc, grace=10.0)
        print(self.log.read_text(errors="replace")[-3000:])
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(match=f"{self.settings.prefix}:*", count=1000))
        if keys:
            r.delete(*keys)

    def http(self, method: str, path: str, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request, no redirect followed, no cookie: what a script or another site's page can send."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def state(self, job: str) -> str:
        return self.client.store.state(job)


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    farm = Farm(tmp_path_factory.mktemp("web"))
    try:
        farm.start()
        yield farm
    finally:
        farm.stop()


@pytest.fixture(scope="module")
def page(browser, farm):
    """The one browser session of the module (signed in by the first test)."""
    _, b = browser
    context = b.new_context(base_url=farm.url, viewport={"width": 1000, "height": 700})
    page = context.new_page()
    page.on("dialog", lambda d: (DIALOGS.append(d.message), d.dismiss()))  # an alert() would be a script run
    page.on("console", lambda m: CONSOLE.append((m.type, m.text)))  # a CSP refusal is an error here
    page.on("pageerror", lambda e: CONSOLE.append(("pageerror", str(e))))
    yield page
    context.close()


@pytest.fixture(scope="module")
def api(browser, farm):
    """A script with the bearer token (no cookie)."""
    p, _ = browser
    context = p.request.new_context(base_url=farm.url, extra_http_headers={"Authorization": f"Bearer {farm.token}"})
    yield context
    context.dispose()


SHOTS = Path(__import__("tempfile").gettempdir()) / "httpov-web-shots"  # kept for a person to look at


def not_blank(shot: bytes, name: str) -> Image.Image:
    SHOTS.mkdir(exist_ok=True)
    (SHOTS / f"{name}.png").write_bytes(shot)
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 20, f"the screenshot is blank: {len(colours)} colours"
    return image


def count(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 6) -> int:
    raw = image.tobytes()
    return sum(1 for i in range(0, len(raw), 3) if all(abs(raw[i + k] - colour[k]) <= tolerance for k in range(3)))


def closed(dialog: Any) -> bool:
    """The confirmation dialog closes (Escape, Keep): waited for, as the browser closes it after the key's events."""
    dialog.wait_for(state="hidden", timeout=5000)
    return True


def inert(page: Any) -> None:
    """Nothing a name or a log holds became an element or ran."""
    assert page.locator("img[src='x']").count() == 0
    assert page.locator("main script").count() == 0 and page.locator("main b", has_text="bold").count() == 0
    assert page.evaluate("window.pwned") is None
    assert DIALOGS == []


def test_reading_needs_a_login_and_a_bad_token_is_refused(farm):
    assert "httpov web on http://127.0.0.1:" in farm.log.read_text()  # loopback by default
    status, _, body = farm.http("GET", "/api/jobs")
    assert status == 401 and "sign in" in json.loads(body)["error"]
    status, headers, _ = farm.http("GET", "/", {"Accept": "text/html"})
    assert status == 302 and headers["Location"].startswith("/login")
    assert farm.http("GET", "/api/jobs", {"Authorization": "Bearer not-the-token-at-all"})[0] == 401
    status, _, body = farm.http("GET", "/api/jobs", {"Authorization": f"Bearer {farm.token}"})
    assert status == 200 and json.loads(body) == []


def test_log_in_submit_watch_it_finish_live_and_open_a_frame(farm, page, tmp_path):
    page.goto("/")
    assert "/login" in page.url
    page.fill("#user", "alice")
    page.fill("#password", "not the password")
    page.click("#signin")
    assert page.inner_text("#login-error") == "wrong user name or password"
    page.fill("#user", "alice")
    page.fill("#password", PASSWORD)
    page.click("#signin")
    assert page.url == farm.url + "/" and "signed in as alice" in page.inner_text("header")

    page.goto("/submit")
    page.set_input_files("#scene", str(scene_zip(tmp_path / "green", GREEN, "Width=32\nHeight=24\n+KFI1 +KFF3\n")))
    page.fill("#name", HOSTILE_NAME)
    page.fill("#count", "1")
    page.select_option("#priority", "6")  # typed fields: lists of what this account may choose, numbers
    page.select_option("#radiosity_cache", "off")
    page.select_option("#pool", "")
    page.fill("#time_limit", "120")
    page.fill("#max_processes", "2")
    page.click("#submit")
    assert "/jobs/" in page.url, page.content()
    job = page.url.rsplit("/", 1)[1]
    spec = farm.client.store.spec(job)
    assert (spec.priority, spec.time_limit, spec.width, spec.height) == (6, 120, 32, 24)
    farm.jobs["green"] = job
    assert page.inner_text("h1 .name") == HOSTILE_NAME
    # the job's page follows it by the server's events: no reload, the state and the frame grid change in place
    page.evaluate("window.sameDocument = true")
    page.wait_for_selector("#job .state.done", timeout=180_000)
    page.wait_for_function("() => document.querySelectorAll('#frames a.frame').length === 3", timeout=30_000)
    assert page.get_attribute("#job", "data-feed") == "events"
    assert page.eval_on_selector_all("#frames .frame", "all => all.map(e => e.id)") == ["frame-1", "frame-2", "frame-3"]
    assert page.evaluate("window.sameDocument") is True, "the page reloaded"
    assert "3/3 frames done" in page.inner_text("#job .counts")
    # its timeline, not there when the page was drawn (no batch had started), drawn as batches ended (live.js)
    from playwright.sync_api import expect

    expect(page.locator("#timeline figcaption")).to_contain_text("3 batches done and 0 rendering on 1 render node",
                                                                  timeout=15_000)
    assert page.locator("#timeline-section").is_visible()
    assert page.eval_on_selector_all("#timeline g.lane rect.done", "all => all.length") >= 1
    inert(page)
    shot = not_blank(page.screenshot(full_page=True), "job")
    assert count(shot, (0, 255, 0)) >= 3 * 120 * 90, "the frame thumbnails are not on the page"
    assert page.get_by_text(HOSTILE_NAME, exact=True).first.is_visible()

    with page.expect_navigation():
        page.click("#frame-2")
    assert page.url.endswith(f"/jobs/{job}/frames/2")  # the frame viewer: test_the_frame_viewer_...
    frame = page.context.request.get(f"/jobs/{job}/frames/2.png")
    with Image.open(io.BytesIO(frame.body())) as image:
        assert frame.headers["content-type"] == "image/png" and image.size == (32, 24)
        assert [c for _, c in image.convert("RGB").getcolors()] == [(0, 255, 0)]

    page.goto("/")
    page.wait_for_selector(f"#job-{job} img.thumb")
    page.wait_for_function(f"() => document.querySelector('#job-{job} img.thumb').naturalWidth > 0")
    shot = not_blank(page.screenshot(), "jobs")
    assert page.get_by_text(HOSTILE_NAME, exact=True).first.is_visible()
    assert count(shot, (0, 255, 0)) >= 0.9 * 192 * 144, "the latest frame's thumbnail is not on the jobs page"
    assert count(shot, BAR_BLUE) >= 18 * 300, "the full progress bar of the finished job is not on the page"
    inert(page)

    def download(what: str) -> Any:
        """A download once built (202 with a page that reloads itself while it is being built)."""
        answers = []

        def built() -> bool:
            answers.append(page.context.request.get(f"/jobs/{job}/download/{what}"))
            assert answers[-1].status in (200, 202), answers[-1].text()[:300]
            return answers[-1].status == 200
        wait_for(built, 60, f"the job's {what} to be built")
        return answers[-1]

    downloads = download("frames.zip")
    with zipfile.ZipFile(io.BytesIO(downloads.body())) as zf:
        assert len([n for n in zf.namelist() if n.endswith(".png")]) == 3
    sheet = download("contact-sheet.png")
    assert sheet.ok and Image.open(io.BytesIO(sheet.body())).size[0] >= 2 * 32
    video = download("video.mp4")
    assert video.ok and video.body()[4:8] == b"ftyp", video.text()[:200]  # an MP4 (imageio-ffmpeg is in the test extra)


def test_the_frame_viewer_fits_shows_1_to_1_and_steps_with_the_arrow_keys_in_the_page(farm, page):
    job = farm.jobs["green"]  # frames 1-3 of 32x24, one a batch, rendered by webnode
    seen = len(CONSOLE)
    page.goto(f"/jobs/{job}")
    with page.expect_navigation():
        page.click("#frame-2")
    # functions, not expressions: Playwright evals an expression in the page, which the page's CSP refuses
    loaded = "() => document.getElementById('image').complete && document.getElementById('image').naturalWidth === 32"
    page.wait_for_function(loaded)
    assert page.inner_text("#frame-number") == "2" and page.get_by_text(HOSTILE_NAME, exact=True).is_visible()
    assert "webnode" in page.inner_text("#parts") and "frame 2" in page.inner_text("#parts")
    assert page.inner_text("#logs pre.povlog").strip(), "povray's log of the batch is not shown"
    assert page.get_attribute("#full", "href") == f"/jobs/{job}/frames/2.png"
    fit = page.locator("#image").bounding_box()
    assert fit["width"] > 32 * 4, "fit does not scale the 32-pixel frame to the window"
    shot = not_blank(page.screenshot(), "viewer-fit")
    scale = min(fit["width"] / 32, fit["height"] / 24)  # fit keeps the frame's shape
    assert count(shot, (0, 255, 0)) >= 0.9 * 32 * 24 * scale**2, "the frame is not shown large"
    page.evaluate("window.sameDocument = true")
    page.keyboard.press("f")  # 1:1: its own pixels, the page's address says so (a reload keeps it)
    assert page.locator("#image").bounding_box()["width"] == 32 and page.url.endswith("/frames/2?size=actual")
    assert page.inner_text("#zoom") == "fit"
    page.keyboard.press("ArrowRight")  # the next frame, in the page, still 1:1
    page.wait_for_function("() => document.getElementById('frame-number').textContent === '3'")
    page.wait_for_function(loaded)
    assert page.url.endswith(f"/jobs/{job}/frames/3?size=actual") and "frame 3" in page.inner_text("#parts")
    assert page.get_attribute("#next", "aria-disabled") == "true"
    page.keyboard.press("ArrowRight")  # the last frame: nowhere to go
    page.keyboard.press("ArrowLeft")  # twice at once: the second steps from the frame the first asked for
    page.keyboard.press("ArrowLeft")
    page.wait_for_function("() => document.getElementById('frame-number').textContent === '1'")
    assert page.get_attribute("#prev", "aria-disabled") == "true" and "frame 1" in page.inner_text("#parts")
    page.go_back()  # the browser's history follows the frames shown: 2 if it was shown before the second press, else 3
    page.wait_for_function("() => ['2', '3'].includes(document.getElementById('frame-number').textContent)")
    back = page.inner_text("#frame-number")
    assert page.url.endswith(f"/jobs/{job}/frames/{back}?size=actual") and f"frame {back}" in page.inner_text("#parts")
    page.focus("#zoom")  # the toggle is a link: the keyboard reaches it
    page.keyboard.press("Enter")
    assert page.locator("#image").bounding_box()["width"] == fit["width"] and page.inner_text("#zoom") == "1:1"
    assert page.evaluate("window.sameDocument") is True, "the viewer reloaded the page"
    page.goto(f"/jobs/{job}/frames/3?size=actual")  # the server's page as script found it
    assert page.locator("#image").bounding_box()["width"] == 32
    inert(page)
    # a sliced frame, rendered by the module's node in two slices: which node rendered which rows, over the picture
    sliced = farm.client.submit(write_scene(farm.tmp / "sliced", GREEN, "Width=16\nHeight=64\n"), user="alice",
                                slices=2).spec.id
    wait_for(lambda: farm.state(sliced) == "done", 120, "the sliced frame to be rendered")
    page.goto(f"/jobs/{sliced}/frames/1")
    page.wait_for_selector("#slices.placed")
    shown = page.locator("#image").bounding_box()
    bands = [page.locator("#slices .slice").nth(i).bounding_box() for i in range(2)]
    labels = page.locator("#slices .slice").all_inner_texts()
    assert [label.split("webnode")[0] for label in labels] == ["rows 1-32: ", "rows 33-64: "], labels
    height = shown["height"]  # fit: the frame is as tall as its box, the bands split it where the slices meet
    assert abs(bands[0]["y"] - shown["y"]) < 1 and abs(bands[0]["height"] - height / 2) < 1
    assert abs(bands[1]["y"] - (shown["y"] + height / 2)) < 1 and abs(bands[1]["height"] - height / 2) < 1
    page.keyboard.press("f")  # 1:1: the bands follow the frame's own 64 rows
    page.wait_for_function("() => document.getElementById('slices').getBoundingClientRect().height === 64")
    not_blank(page.screenshot(), "viewer-sliced")
    farm.client.delete(sliced)  # the module's later tests count its jobs
    errors = [m for m in CONSOLE[seen:] if m[0] in ("error", "pageerror")]
    assert errors == [], errors


def test_the_submit_form_shows_each_error_beside_its_field_and_queues_nothing(farm, page):
    before = farm.client.store.job_ids()
    page.goto("/submit")
    page.fill("#frames", "0")
    page.fill("#width", "-3")
    page.click("#submit")
    assert "must be at least 1, got 0" in page.inner_text("#frames-error")
    assert "must be at least 1, got -3" in page.inner_text("#width-error")
    assert "choose a scene zip" in page.inner_text("#scene-error")
    assert page.input_value("#frames") == "0"  # what the user typed is kept
    not_blank(page.screenshot(), "submit-errors")
    assert farm.client.store.job_ids() == before


def signed_in(browser: Any, farm: Farm, name: str, role: str) -> Any:
    """A second browser context, signed in as `name` (an account of `role` made now), its console kept too."""
    from httpov.web.auth import add_user

    add_user(farm.accounts, name, PASSWORD, role)
    _, b = browser
    context = b.new_context(base_url=farm.url, viewport={"width": 1000, "height": 700})
    other = context.new_page()
    other.on("console", lambda m: CONSOLE.append((m.type, m.text)))
    other.on("pageerror", lambda e: CONSOLE.append(("pageerror", str(e))))
    other.goto("/login")
    other.fill("#user", name)
    other.fill("#password", PASSWORD)
    other.click("#signin")
    assert f"signed in as {name}" in other.inner_text("header")
    return other


def test_an_admin_checks_the_scene_then_submits_with_every_field(farm, page, browser, tmp_path):
    """Every option of `httpov submit` in the form, typed, as an admin (the owner field is the admins'): "Check
    scene" says what the ini asks for with the form's options over it and its typo, queuing nothing; strict refuses
    the typo; then the job has every field, renders, and its page says the typo."""
    seen, before = len(CONSOLE), farm.client.store.job_ids()
    green = farm.jobs["green"]  # done: the new job waits for it (after, after-frames) and is released at once
    page.goto("/submit")
    assert page.locator("#user").count() == 0  # alice is a user: no owner field
    ini = ("Widht=640\nWidth=32\nHeight=24\nInitial_Frame=1\nFinal_Frame=4\nInitial_Clock=0\nFinal_Clock=1\n"
           "Antialias=on\nAntialias_Threshold=0.2\n")
    scene = scene_zip(tmp_path / "every", GREEN, ini)
    admin = signed_in(browser, farm, "ada", "admin")
    try:
        admin.goto("/submit")
        assert admin.eval_on_selector_all("#priority option", "all => all.map(o => o.value)") == [
            str(p) for p in range(10)]
        assert admin.eval_on_selector_all("#radiosity_cache option", "all => all.map(o => o.value)") == [
            "auto", "off", "shared"]
        assert admin.eval_on_selector_all("#pool option", "all => all.map(o => o.value)") == [""]  # no pool is live
        for number in ("frames", "width", "height", "count", "slice_rows", "time_limit", "max_processes", "max_nodes"):
            assert admin.get_attribute(f"#{number}", "type") == "number", number

        def fill(strict: bool) -> None:
            admin.set_input_files("#scene", str(scene))
            admin.fill("#name", "every field")
            admin.fill("#frames", "2")
            admin.fill("#width", "16")
            admin.fill("#height", "64")  # two slices of povray's 32-row blocks
            admin.select_option("#radiosity_cache", "off")
            admin.set_checked("#strict", strict)
            admin.fill("#count", "1")
            admin.fill("#slices", "")
            admin.fill("#slice_rows", "32")
            admin.select_option("#priority", "4")
            admin.select_option("#pool", "")
            admin.fill("#time_limit", "60")
            admin.fill("#max_processes", "1")
            admin.fill("#max_nodes", "1")
            admin.fill("#notify", "http://127.0.0.1:9/every-field")
            admin.set_checked("#any_povray", True)
            admin.fill("#user", "alice")
            admin.fill("#after", green)
            admin.fill("#after_frames", green)
            admin.set_checked("#after_anyway", True)

        fill(strict=False)
        admin.click("#check")
        said = {what: admin.inner_text(f"#preview-{what}") for what in ("size", "frames", "clock", "antialias",
                                                                          "batches")}
        assert said["size"] == "16x64" and said["frames"].startswith("1-2 (2 of"), said  # the form's over the ini's
        assert said["clock"] == "0 to 1" and said["antialias"] == "on (threshold 0.2)", said
        assert said["batches"] == "4 (2 row slice(s) a frame)", said
        assert "Widht: did you mean Width?" in admin.inner_text("#preview-warnings")
        assert admin.input_value("#slice_rows") == "32" and admin.input_value("#user") == "alice"  # kept
        assert farm.client.store.job_ids() == before  # nothing queued
        not_blank(admin.screenshot(full_page=True), "submit-check")

        errors = [m for m in CONSOLE[seen:] if m[0] in ("error", "pageerror")]
        assert errors == [], errors

        fill(strict=True)
        admin.click("#submit")
        assert "Widht: did you mean Width?" in admin.inner_text("#scene-error")
        assert farm.client.store.job_ids() == before
        seen = len(CONSOLE)  # the refusal's page came with status 400: a browser may log that as an error

        fill(strict=False)
        with admin.expect_navigation():
            admin.click("#submit")
        assert "/jobs/" in admin.url, admin.content()
        job = admin.url.rsplit("/", 1)[1]
        spec = farm.client.store.spec(job)
        assert (spec.name, spec.first, spec.last, spec.width, spec.height) == ("every field", 1, 2, 16, 64)
        assert (spec.priority, spec.time_limit, spec.any_povray, spec.radiosity) == (4, 60, True, "off")
        assert spec.slices == [(1, 32), (33, 64)]
        record = farm.client.store.record(job)
        assert (record["user"], record["submitted_by"]) == ("alice", "ada")
        assert (record["max_processes"], record["max_nodes"]) == ("1", "1")
        assert json.loads(record["notify"]) == ["http://127.0.0.1:9/every-field"]
        assert (record["after"], record["after_frames"], record["after_anyway"]) == (green, green, "1")
        assert "Widht: did you mean Width?" in admin.inner_text("#warnings")  # the job page says the typo
    finally:
        admin.context.close()
    wait_for(lambda: farm.state(job) == "done", 120, "the job of every field to render")
    page.goto(f"/jobs/{job}")  # its owner's page: the typo, the frames
    assert "Widht: did you mean Width?" in page.inner_text("#warnings") and page.inner_text("#owner") == "alice"
    assert page.eval_on_selector_all("#frames .frame", "all => all.map(e => e.id)") == ["frame-1", "frame-2"]
    inert(page)
    farm.client.delete(job)  # the module's later tests count alice's jobs
    errors = [m for m in CONSOLE[seen:] if m[0] in ("error", "pageerror")]
    assert errors == [], errors


def test_a_big_jobs_frames_and_the_jobs_list_are_paged_in_order(farm, page, tmp_path):
    """120 frames rendered live onto page 2 of their job's page (100 a page), in frame order, no reload; the pager's
    links by click and keyboard; the jobs page, 50 jobs a page, newest first."""
    seen = len(CONSOLE)
    scene = write_scene(tmp_path / "long", GREEN, "Width=8\nHeight=6\nInitial_Frame=1\nFinal_Frame=120\n")
    job = farm.client.submit(scene, user="alice", count=60, name="long one").spec.id  # both batches at once
    page.goto(f"/jobs/{job}?page=2")  # opened while it renders: its frames come in live, each in its place
    page.evaluate("window.sameDocument = true")
    assert page.inner_text("#frames-shown") == "101-120 of 1-120"
    page.wait_for_function("() => document.querySelectorAll('#frames a.frame').length === 20", timeout=120_000)
    assert page.eval_on_selector_all("#frames .frame", "all => all.map(e => e.id)") == [
        f"frame-{n}" for n in range(101, 121)]
    assert page.evaluate("window.sameDocument") is True, "the page reloaded"
    wait_for(lambda: farm.state(job) == "done", 120, "the 120 frames to render")
    with page.expect_navigation():
        page.locator("nav.pager a[rel=prev]").first.click()
    assert page.url.endswith(f"/jobs/{job}?page=1")
    assert page.inner_text("#frames-shown") == "1-100 of 1-120"
    assert page.eval_on_selector_all("#frames .frame", "all => all.map(e => e.id)") == [
        f"frame-{n}" for n in range(1, 101)]
    page.locator("#frame-1").scroll_into_view_if_needed()  # thumbnails load as they come into view
    page.wait_for_function("() => document.querySelector('#frame-1 img').naturalWidth > 0")
    not_blank(page.screenshot(), "job-paged")
    thumbnail = Image.open(io.BytesIO(page.locator("#frame-1 img").screenshot())).convert("RGB")
    assert thumbnail.width >= 80 and count(thumbnail, (0, 255, 0)) >= 0.9 * thumbnail.width * thumbnail.height
    page.locator("nav.pager a[rel=next]").first.focus()  # the pager is plain links: the keyboard follows them
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith(f"/jobs/{job}?page=2") and page.locator("#frames a.frame").count() == 20
    assert page.context.request.get(f"/jobs/{job}?page=3").status == 404  # past the last page

    parked = [farm.client.submit(scene, user="pager", pool="parked", frames=1, name=f"parked {i}").spec.id
              for i in range(50)]  # a pool no node takes: they stay queued, newest last
    try:
        newest_first = [j["id"] for j in page.context.request.get("/api/jobs").json()][::-1]
        page.goto("/")
        first = page.eval_on_selector_all("#jobs .job", "all => all.map(e => e.dataset.job)")
        assert first == newest_first[:50] and first[:50] == parked[::-1]
        with page.expect_navigation():
            page.locator("nav.pager a[rel=next]").first.click()
        second = page.eval_on_selector_all("#jobs .job", "all => all.map(e => e.dataset.job)")
        assert second == newest_first[50:] and job in second and "on page 2" in page.inner_text("h1")
        page.locator("nav.pager a[rel=prev]").first.focus()
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.eval_on_selector_all("#jobs .job", "all => all.map(e => e.dataset.job)") == first
    finally:
        for parked_job in parked:
            farm.client.delete(parked_job, force=True)
        farm.client.delete(job)  # the module's later tests count alice's jobs
    errors = [m for m in CONSOLE[seen:] if m[0] in ("error", "pageerror")]
    assert errors == [], errors


def test_the_api_submits_and_reads_with_a_token_and_names_bad_fields(farm, api, tmp_path):
    scene = scene_zip(tmp_path / "slow", SLOW_SCENE, "Width=64\nHeight=48\nAntialias=on\nAntialias_Threshold=0.05\n"
                                                      "Initial_Frame=1\nFinal_Frame=60\n")
    bad = api.post("/api/jobs", multipart={"scene": {"name": "slow.zip", "mimeType": "application/zip",
                                                    "buffer": scene.read_bytes()}, "frames": "0"})
    assert bad.status == 400 and bad.json()["field"] == "frames"
    bad = api.post("/api/jobs", multipart={"scene": {"name": "slow.zip", "mimeType": "application/zip",
                                                    "buffer": scene.read_bytes()}, "radiosity_cache": "always"})
    assert bad.status == 400 and bad.json()["field"] == "radiosity_cache"
    broken = api.post("/api/jobs", multipart={"scene": {"name": "x.zip", "mimeType": "application/zip",
                                                       "buffer": b"not a zip"}})
    assert broken.status == 400 and broken.json()["field"] == "scene"
    made = api.post("/api/jobs", multipart={"scene": {"name": "slow.zip", "mimeType": "application/zip",
                                                     "buffer": scene.read_bytes()},
                                           "name": "slow one", "count": "1", "priority": "3",
                                           # the token (an admin) submits it for alice, who controls it below:
                                           # a user controls only their own jobs (#24)
                                           "user": "alice"})
    assert made.status == 201, made.text()
    job = made.json()["id"]
    farm.jobs["slow"] = job
    view = api.get(f"/api/jobs/{job}").json()
    assert view["name"] == "slow one" and view["priority"] == 3 and view["frames_total"] == 60
    assert job in [j["id"] for j in api.get("/api/jobs").json()]
    assert [j["id"] for j in api.get("/api/jobs?state=done").json()] == [farm.jobs["green"]]
    assert api.get("/api/jobs/nosuchjob").status == 404
    assert api.get("/api/jobs/..%2F..%2Fetc").status == 404 and api.get("/jobs/..%2F..%2Fetc").status == 404
    assert api.get(f"/api/jobs/{farm.jobs['green']}/frames").json() == [1, 2, 3]
    # delete, nodes, priority and retry of chosen frames: the CLI's library calls
    assert api.delete(f"/api/jobs/{job}").status == 409  # live: refused, as `httpov delete` without --force is
    assert farm.state(job) in ("queued", "running") and job in farm.client.store.job_ids()
    assert [n["state"] for n in api.get("/api/nodes").json() if n["node"].startswith("webnode@")] == ["up"]
    assert api.post(f"/api/jobs/{job}/priority", form={"priority": "11"}).json()["field"] == "priority"
    assert api.post(f"/api/jobs/{job}/priority", form={"priority": "2"}).status == 200  # below green's 5
    assert api.get(f"/api/jobs/{job}").json()["priority"] == 2
    green = farm.jobs["green"]
    assert api.post(f"/api/jobs/{green}/retry", form={"frames": "two"}).json()["field"] == "frames"
    chosen = api.post(f"/api/jobs/{green}/retry", form={"frames": "2-3"})
    assert chosen.status == 200 and chosen.json()["batches_queued"] >= 1, chosen.text()
    wait_for(lambda: farm.state(green) == "done", 120, "frames 2-3 of the green job rendered again")
    assert api.get(f"/api/jobs/{green}/frames").json() == [1, 2, 3]
    assert any("rendered again" in str(h) for h in api.get(f"/api/jobs/{green}").json()["history"])


def test_every_control_endpoint_without_a_login_answers_401_and_changes_nothing(farm, tmp_path):
    job = farm.jobs["slow"]
    ids = farm.client.store.job_ids()
    record = {k: v for k, v in farm.client.store.record(job).items() if k in ("state", "spec")}
    boundary = "b0undary"
    upload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"scene\"; filename=\"s.zip\"\r\n"
              f"Content-Type: application/zip\r\n\r\n").encode() + scene_zip(
        tmp_path / "g", GREEN, "Width=8\nHeight=8\n").read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    multipart = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    calls = [("POST", "/api/jobs", multipart, upload), ("POST", "/submit", multipart, upload),
             ("DELETE", f"/api/jobs/{job}", {}, None)]
    for action in ("cancel", "pause", "resume", "retry", "priority"):
        calls.append(("POST", f"/api/jobs/{job}/{action}", {}, None))
    for action in ("cancel", "pause", "resume", "retry", "delete", "priority"):
        calls.append(("POST", f"/jobs/{job}/{action}", {"Content-Type": "application/x-www-form-urlencoded"},
                      b"action=" + action.encode()))
    for method, path, headers, body in calls:
        for extra in ({}, {"Accept": "text/html"}, {"Authorization": "Bearer wrong-token-of-some-length"}):
            status = farm.http(method, path, {**headers, **extra}, body)[0]
            assert status in (401, 403), f"{method} {path} {extra}: {status}"
    assert farm.client.store.job_ids() == ids
    after = {k: v for k, v in farm.client.store.record(job).items() if k in ("state", "spec")}
    assert after == record and after["state"] in ("queued", "running")


def test_a_post_without_the_csrf_token_is_refused(farm, page):
    job = farm.jobs["slow"]
    state = farm.state(job)
    assert state in ("queued", "running")
    request = page.context.request  # the signed-in session's cookie, as a form on another site would send it
    for path, data in ((f"/api/jobs/{job}/pause", None), (f"/jobs/{job}/pause", {"action": "pause"}),
                       (f"/jobs/{job}/cancel", {"csrf_token": "forged"})):
        refused = request.post(path, form=data) if data else request.post(path)
        assert refused.status == 403 and "CSRF" in refused.text(), (path, refused.status)
    assert farm.state(job) == state
    page.goto(f"/jobs/{job}")
    token = page.get_attribute("body", "data-csrf")
    done = request.post(f"/api/jobs/{job}/pause", headers={"X-CSRFToken": token})
    assert done.status == 200 and done.json()["state"] == "paused"
    assert farm.state(job) == "paused"


def test_the_job_page_polls_when_its_event_stream_fails(farm, page):
    job = farm.jobs["slow"]
    assert farm.state(job) == "paused"
    seen = len(CONSOLE)
    page.route("**/api/stream/**", lambda route: route.fulfill(status=204))  # a server that sends no stream
    try:
        page.goto(f"/jobs/{job}")
        page.wait_for_selector("#job[data-feed=poll]", state="attached")
        farm.client.resume(job)
        page.wait_for_selector("#job .state.running")  # polled (every second: --refresh 1)
        farm.client.pause(job)
        page.wait_for_selector("#job .state.paused")
        assert page.get_attribute("#job", "data-feed") == "poll"
    finally:
        page.unroute("**/api/stream/**")
    errors = [m for m in CONSOLE[seen:] if m[0] in ("error", "pageerror")]
    assert errors == [], errors


def focused(page: Any) -> str:
    """The text of the element that has the keyboard's focus."""
    return page.evaluate("document.activeElement ? document.activeElement.textContent.trim() : ''")


def test_the_job_page_polls_at_once_when_the_server_has_no_stream_to_spare(farm, page):
    """A page drawn when the server had no event stream to spare (HTTPOV_WEB_STREAMS=0, or its bound reached: the
    body's data-streams says so, tests/store/test_web_live.py) polls from the start: no stream is asked for, so no
    refusal (429) shows in the console as an error."""
    job = farm.jobs["slow"]
    assert farm.state(job) == "paused"
    seen, asked = len(CONSOLE), []

    def drawn_without_streams(route: Any) -> None:  # this page as such a server draws it
        response = route.fetch()
        route.fulfill(response=response, body=response.text().replace('data-streams="on"', 'data-streams="off"'))
    page.route(f"**/jobs/{job}", drawn_without_streams)
    page.route("**/api/stream/**", lambda route: (asked.append(route.request.url), route.fulfill(status=429)))
    try:
        page.goto(f"/jobs/{job}")
        assert page.get_attribute("body", "data-streams") == "off"
        page.wait_for_selector("#job[data-feed=poll]", state="attached")
        farm.client.resume(job)
        page.wait_for_selector("#job .state.running")  # polled
        farm.client.pause(job)
        page.wait_for_selector("#job .state.paused")
    finally:
        page.unroute("**/api/stream/**")
        page.unroute(f"**/jobs/{job}")
    assert asked == []
    errors = [m for m in CONSOLE[seen:] if m[0] in ("error", "pageerror")]
    assert errors == [], errors


def test_cancel_and_delete_ask_first_in_the_page_and_act_only_when_confirmed(farm, page):
    job = farm.jobs["slow"]
    seen = len(CONSOLE)
    page.goto(f"/jobs/{job}")
    assert page.inner_text("h1 .name") == "slow one" and farm.state(job) == "paused"
    not_blank(page.screenshot(), "job-cancel")
    # Cancel opens a dialog in the page that names the job and what goes; the focus is on the button that acts
    dialog = page.locator("#confirm-cancel")
    page.click("#cancel")
    assert dialog.is_visible()
    said = dialog.inner_text()
    assert f"Cancel job slow one ({job})?" in said
    assert "dropped from the queue" in said and "povrays are killed" in said
    assert "frames already rendered, kept" in said
    assert focused(page) == f"Cancel job slow one ({job})"
    not_blank(page.screenshot(), "job-cancel-confirm")
    page.keyboard.press("Escape")  # closes it: nothing done, the focus back on Cancel
    assert closed(dialog) and focused(page) == "Cancel" and farm.state(job) == "paused"
    page.click("#cancel")
    page.click("#confirm-cancel .keep")
    assert closed(dialog) and farm.state(job) == "paused"
    # the job moves on while its page is open (resumed elsewhere): the dialog drawn for 'paused' would say what no
    # longer holds, so Cancel opens the server's confirmation page, drawn now, instead
    farm.client.resume(job)
    page.wait_for_selector("#job[data-state=running]", state="attached")
    assert page.get_attribute("#job", "data-feed") == "events"  # pushed: the page did not poll
    with page.expect_navigation():
        page.click("#cancel")
    assert page.url.startswith(f"{farm.url}/jobs/{job}/confirm/cancel")
    assert f"Cancel job slow one ({job})?" in page.inner_text("#confirm-cancel")
    assert focused(page) == f"Cancel job slow one ({job})"  # autofocus
    page.click("#confirm-cancel .keep")
    assert page.url == f"{farm.url}/jobs/{job}" and farm.state(job) == "running"
    page.click("#cancel")
    assert dialog.is_visible()
    with page.expect_navigation():
        page.keyboard.press("Enter")  # confirmed from the keyboard
    page.wait_for_selector("#job .state.cancelled")
    assert "cancel done, now cancelled" in page.inner_text(".flash")
    assert farm.state(job) == "cancelled"
    page.click("#resume")  # not allowed from cancelled: said on the page, nothing changed
    assert "not paused" in page.inner_text(".flash.error")
    assert farm.state(job) == "cancelled"

    # Delete: what goes (frames, storage, record), Escape keeps the job, the dialog's button deletes it
    dialog = page.locator("#confirm-delete")
    page.click("#delete")
    said = dialog.inner_text()
    assert f"Delete job slow one ({job})?" in said and "rendered frames" in said and "storage" in said
    assert "cannot be undone" in said and focused(page) == f"Delete job slow one ({job})"
    page.keyboard.press("Escape")
    assert closed(dialog) and job in farm.client.store.job_ids()
    page.click("#delete")
    with page.expect_navigation():
        page.click("#confirm-delete .do")
    assert page.url == farm.url + "/" and f"job {job} deleted" in page.inner_text(".flash")
    assert job not in farm.client.store.job_ids()

    # without script (or from a link), the confirmation is a page of its own; 'Keep the job' goes back
    green = farm.jobs["green"]
    page.goto(f"/jobs/{green}/confirm/delete")
    assert f"Delete job {HOSTILE_NAME} ({green})" in page.inner_text("#confirm-delete")
    assert focused(page) == f"Delete job {HOSTILE_NAME} ({green})"  # autofocus
    inert(page)
    page.click("#confirm-delete .keep")
    assert page.url == f"{farm.url}/jobs/{green}" and farm.state(green) == "done"
    errors = [m for m in CONSOLE[seen:] if m[0] in ("error", "pageerror")]
    assert errors == [], errors


def test_revoking_a_token_asks_first_in_the_page(farm, page):
    seen = len(CONSOLE)
    page.goto("/tokens")
    page.fill("#label", "laptop")
    page.click("#make-token")
    token = page.inner_text("#token-value")
    row = page.locator("#tokens tr.token").last
    token_id = row.get_attribute("data-token")
    dialog = page.locator(f"#confirm-revoke-{token_id}")
    row.locator("button.revoke").click()
    assert dialog.is_visible() and f"Revoke token {token_id} of alice (laptop)?" in dialog.inner_text()
    assert focused(page) == f"Revoke token {token_id}"
    page.keyboard.press("Escape")
    assert closed(dialog)
    row.locator("button.revoke").click()
    dialog.locator(".keep").click()
    assert closed(dialog)
    assert farm.http("GET", "/api/jobs", {"Authorization": f"Bearer {token}"})[0] == 200  # kept
    row.locator("button.revoke").click()
    with page.expect_navigation():
        dialog.locator(".do").click()
    assert f"token {token_id} (laptop) of alice revoked" in page.inner_text(".flash")
    assert farm.http("GET", "/api/jobs", {"Authorization": f"Bearer {token}"})[0] == 401
    errors = [m for m in CONSOLE[seen:] if m[0] in ("error", "pageerror")]
    assert errors == [], errors


def test_a_hostile_povray_log_stays_inert_text(farm, page, api, tmp_path):
    pov = f'#version 3.7;\n#error "{HOSTILE_LOG}"\n'
    scene = scene_zip(tmp_path / "evil", pov, "Width=8\nHeight=8\n")
    made = api.post("/api/jobs", multipart={"scene": {"name": "evil.zip", "mimeType": "application/zip",
                                                     "buffer": scene.read_bytes()}, "name": "evil log"})
    job = made.json()["id"]
    wait_for(lambda: farm.state(job) == "failed", 120, "the hostile scene to fail")
    assert api.get(f"/thumb/{job}.png").status == 404 and api.get(f"/jobs/{job}/frames/1.png").status == 404
    answers = []
    wait_for(lambda: answers.append(api.get(f"/jobs/{job}/download/frames.zip")) or answers[-1].status != 202, 60,
             "the zip's build to end")  # built off the request: 202 with Retry-After until then
    assert answers[-1].status == 409  # nothing rendered: said, not a 500
    page.goto(f"/jobs/{job}")
    logs = page.locator("#failures").inner_text()
    assert HOSTILE_LOG in logs, logs
    inert(page)
    not_blank(page.screenshot(), "job-failed")
    assert page.get_by_text("evil log", exact=True).first.is_visible()


def test_the_nodes_page_and_the_user_filter(farm, page, api):
    seen = len(CONSOLE)
    page.goto("/nodes")
    row = page.locator("#nodes tr.node").first
    assert row.locator(".name").inner_text().startswith("webnode@") and row.locator(".state").inner_text() == "up"
    not_blank(page.screenshot(), "nodes")
    # the pictures, inline SVG: the node's use (its heartbeats' samples) and the green job's timeline (its batches
    # on this node), drawn with no console error (the page's CSP allows no inline style or script)
    assert page.locator("#farm-use svg[role=img] g.lane[data-node^='webnode@']").is_visible()
    page.goto(f"/jobs/{farm.jobs['green']}")
    records = farm.client.store.done(farm.jobs["green"]).values()  # the node noted when each batch began
    assert all(r["started"] <= r["finished"] for r in records) and len(records) == 3
    assert page.locator("#timeline g.lane[data-node^='webnode@'] rect.done").count() >= 1
    # drawn green: a done bar is 18 px high and at least 1 px wide, however short the batches against the job's span
    # (90 px where it asked for 100 once, for bars a few px wide)
    assert count(not_blank(page.locator("#timeline").screenshot(), "timeline"), (0x3A, 0x7D, 0x44)) >= 18
    assert [m for m in CONSOLE[seen:] if m[0] in ("error", "pageerror")] == []
    mine = api.get("/api/jobs?user=alice").json()  # jobs submitted in the browser are the signed-in user's
    assert mine and {j["user"] for j in mine} == {"alice"}
    assert api.get("/api/jobs?user=nobody").json() == []
    page.goto("/?user=nobody")
    assert page.locator("#jobs .job").count() == 0 and page.input_value("#user-filter") == "nobody"
    page.goto("/?user=alice")
    assert page.locator("#jobs .job").count() == len(mine)


def test_the_login_and_jobs_pages_are_drawn(farm, browser):
    _, b = browser
    context = b.new_context(base_url=farm.url)
    try:
        anonymous = context.new_page()
        anonymous.goto("/")
        assert "/login" in anonymous.url
        not_blank(anonymous.screenshot(), "login")
        assert anonymous.locator("#signin").is_visible()
    finally:
        context.close()


def test_an_admin_drains_the_render_node_from_the_nodes_page_after_confirming(farm, page, browser):
    """Last in the module: the module's render node drains and exits. Alice (a user) has no Drain button."""
    from httpov.web.auth import add_user

    seen = len(CONSOLE)
    page.goto("/nodes")
    assert page.locator("#nodes button.drain").count() == 0
    add_user(farm.accounts, "ada", PASSWORD, "admin")
    _, b = browser
    context = b.new_context(base_url=farm.url)
    try:
        admin = context.new_page()
        admin.on("console", lambda m: CONSOLE.append((m.type, m.text)))
        admin.goto("/login")
        admin.fill("#user", "ada")
        admin.fill("#password", PASSWORD)
        admin.click("#signin")
        admin.goto("/nodes")
        row = admin.locator("#nodes tr.node").first
        node = row.get_attribute("data-node")
        dialog = admin.locator(f'[id="confirm-drain-{node}"]')
        row.locator("button.drain").click()
        assert dialog.is_visible() and f"Drain render node {node}?" in dialog.inner_text()
        dialog.locator(".keep").click()
        assert closed(dialog) and not farm.client.store.draining()
        row.locator("button.drain").click()
        with admin.expect_navigation():
            dialog.locator(".do").click()
        assert f"render node {node} is draining" in admin.inner_text(".flash")
        wait_for(lambda: farm.procs[0].poll() is not None, 60, "the drained node to exit")
        assert farm.procs[0].returncode == 0
        admin.goto("/nodes")
        assert admin.locator("#nodes tr.node .state").first.inner_text() == "stopped"
    finally:
        context.close()
    errors = [m for m in CONSOLE[seen:] if m[0] in ("error", "pageerror")]
    assert errors == [], errors
