"""`httpov web` as a real process, looked at by headless Chromium: the screenshot must show the frame and the bar."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from html import escape as html_escape
from pathlib import Path

import pytest
from PIL import Image

from httpov.local import free_port, stop_worker, worker_env
from tests.conftest import PARSE_ERROR, wait_for, write_scene

GREEN = """
#version 3.7;
camera { location <0, 0, -5> look_at <0, 0, 0> }
background { color rgb <0, 1, 0> }
"""
BAR_BLUE = (0x1F, 0x5F, 0xBF)  # .bar .done in httpov/web.py


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise pytest.UsageError("chromium is not installed: apt-get install -y chromium (or run .ci/run)")
    return found


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def screenshot(url: str, out: Path, tmp: Path) -> Image.Image:
    argv = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp / 'chromium-profile'}", f"--screenshot={out}", "--window-size=1000,700",
            "--hide-scrollbars", url]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.exists(), f"chromium wrote no screenshot: {result.stderr[-2000:]}"
    with Image.open(out) as image:
        return image.convert("RGB")


def rgb_pixels(image: Image.Image) -> list[tuple[int, int, int]]:
    raw = image.convert("RGB").tobytes()
    return [tuple(raw[i:i + 3]) for i in range(0, len(raw), 3)]


def count(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 6) -> int:
    return sum(1 for px in rgb_pixels(image) if all(abs(a - b) <= tolerance for a, b in zip(px, colour)))


@pytest.fixture
def web_server(settings, tmp_path):
    port = free_port()
    log = open(tmp_path / "web.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "httpov.cli", "web", "--port", str(port), "--refresh", "2"],
                            env=worker_env(settings), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "web.log").read_text()
        try:
            return get(url + "api/jobs")[0] == 200
        except OSError:
            return False

    try:
        wait_for(up, 20, "httpov web to answer")
        yield url
    finally:
        stop_worker(proc, grace=10.0)  # the whole process group, killed if it does not stop
        log.seek(0)
        print(log.read())


def test_status_page_shows_jobs_progress_failures_and_the_latest_frame(tmp_path, settings, client, workers,
                                                                       web_server):
    url = web_server
    assert f"httpov status page on {url}" in (tmp_path / "web.log").read_text()  # loopback by default
    good = client.submit(write_scene(tmp_path / "green", GREEN, "Width=32\nHeight=24\n+KFI1 +KFF3\n"), count=1)
    bad = client.submit(write_scene(tmp_path / "broken", PARSE_ERROR, "Width=16\nHeight=16\n"), name="broken")
    workers(concurrency=2)
    client.wait(good.spec.id, timeout=180)
    wait_for(lambda: client.store.state(bad.spec.id) == "failed", 120, "the broken job to fail")

    status, kind, body = get(url + "api/jobs")
    assert status == 200 and kind == "application/json"
    jobs = {j["id"]: j for j in json.loads(body)}
    assert jobs[good.spec.id]["state"] == "done" and jobs[good.spec.id]["frames_done"] == 3
    assert jobs[bad.spec.id]["state"] == "failed" and jobs[bad.spec.id]["failed"][0]["lines"]

    status, kind, body = get(url + f"thumb/{good.spec.id}.png")
    assert status == 200 and kind == "image/png"
    with Image.open(io.BytesIO(body)) as thumb:
        assert thumb.size == (32, 24) and set(rgb_pixels(thumb)) == {(0, 255, 0)}
    assert get(url + f"thumb/{bad.spec.id}.png")[0] == 404  # nothing rendered
    assert get(url + "api/jobs/nosuchjob")[0] == 404
    assert get(url + "api/jobs/..%2F..%2Fetc")[0] == 404

    status, kind, page = get(url)
    html = page.decode()
    assert status == 200 and kind.startswith("text/html")
    assert '<meta http-equiv="refresh" content="2">' in html
    assert "3/3 frames done" in html and "broken" in html
    error_lines = jobs[bad.spec.id]["failed"][0]["lines"]
    assert any(line and html_escape(line) in html for line in error_lines), "povray's error lines are on the page"

    shot = screenshot(url, tmp_path / "page.png", tmp_path)
    green = count(shot, (0, 255, 0))
    blue = count(shot, BAR_BLUE)
    print(f"screenshot {shot.size}: {green} frame-green pixels, {blue} progress-bar pixels")
    assert green >= 0.9 * 192 * 144, "the latest frame's thumbnail is not on the page"
    assert blue >= 18 * 300, "the full progress bar of the finished job is not on the page"
    # the thumbnail is drawn where its job's card is: left of the bar, in the same band of rows
    greens = [i for i, px in enumerate(rgb_pixels(shot)) if px == (0, 255, 0)]
    blues = [i for i, px in enumerate(rgb_pixels(shot)) if all(abs(a - b) <= 6 for a, b in zip(px, BAR_BLUE))]
    w = shot.size[0]
    assert max(i % w for i in greens) < min(i % w for i in blues)
    assert min(i // w for i in greens) <= min(i // w for i in blues) <= max(i // w for i in greens)
