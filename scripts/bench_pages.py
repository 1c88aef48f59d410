"""Benchmark (not a test): the web pages of big jobs, on a real `httpov web` process over a private redis-server and
local storage (#26 item 3).

Jobs are stored and recorded as render nodes leave them (nothing is rendered): a finished job of 10,000 frames
(8x8 pixels, batches of 100), a finished job of 1000 frames (96x72, batches of 50) and one-frame finished jobs up to
500 jobs in all. Reports, for the 10,000-frame job's page and the jobs page, the median and worst server time
(wall time of a GET on this machine's loopback, `--trials` times) and the HTML size; then the time headless Chromium
(Playwright, /usr/bin/chromium) takes to load the 1000-frame job's page fully (its `load` event, and the network idle
after it), cold (a new browser context: no cached thumbnail) and again in the same context. `--repo` measures another
checkout (e.g. main's) with the same procedure.

    python scripts/bench_pages.py [--jobs 500] [--trials 7] [--repo /work/main]
"""
from __future__ import annotations

import argparse
import http.client
import io
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--jobs", type=int, default=500, help="jobs in all on the jobs page")
parser.add_argument("--trials", type=int, default=7)
parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
ARGS = parser.parse_args()
ROOT = ARGS.repo.resolve()
os.chdir(ROOT)
sys.path.insert(0, str(ROOT))


def _png(width: int, height: int, n: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), ((n * 7) % 256, (n * 13) % 256, 128)).save(out, "PNG")
    return out.getvalue()


def _scene(folder: Path, frames: int, width: int, height: int) -> Path:
    folder.mkdir()
    (folder / "scene.pov").write_text("#version 3.7;\nbackground { color rgb <0, 1, 0> }\n")
    (folder / "pov.ini").write_text(f"Input_File_Name=scene.pov\nWidth={width}\nHeight={height}\n"
                                    f"Initial_Frame=1\nFinal_Frame={frames}\n")
    return folder


def _finished_job(client, scene: Path, per_batch: int, width: int, height: int, distinct: bool) -> str:
    """A job of the scene's frames, every batch stored and recorded done as a render node does it."""
    from tests.stored import store_batch

    job = client.submit(scene, count=per_batch).spec.id
    client.store.transition(job, "running")
    same = _png(width, height, 0)
    for batch in client.store.spec(job).batches:
        first, last = (int(part[1:]) for part in batch.split("-")[:2])
        frames = {f"scene_{n:05d}.png": _png(width, height, n) if distinct else same for n in range(first, last + 1)}
        store_batch(client, job, batch, frames, secrets.token_hex(4), node="bench@node")
    assert client.store.state(job) == "done", client.store.state(job)
    return job


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _timed(port: int, path: str, headers: dict[str, str], label: str) -> None:
    times, size = [], 0
    for _ in range(ARGS.trials):
        started = time.monotonic()
        status, body = _get(port, path, headers)
        times.append(time.monotonic() - started)
        assert status == 200, (path, status, body[:300])
        size = len(body)
    print(f"{label:<34} median {statistics.median(times):6.3f} s   worst {max(times):6.3f} s   "
          f"HTML {size / 1024:8.1f} KiB   ({len(times)} GETs of {path})")


def _browser(port: int, token: str, path: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(extra_http_headers={"Authorization": f"Bearer {token}"},
                                          viewport={"width": 1280, "height": 900})
            page = context.new_page()
            images: list[str] = []
            page.on("request", lambda r: images.append(r.url) if ".png" in r.url else None)
            for label in ("cold", "again"):
                images.clear()
                started = time.monotonic()
                page.goto(f"http://127.0.0.1:{port}{path}", wait_until="load", timeout=120_000)
                loaded = time.monotonic() - started
                page.wait_for_load_state("networkidle", timeout=120_000)
                idle = time.monotonic() - started
                print(f"1000-frame job's page in Chromium, {label:<5}: load {loaded:6.3f} s   network idle "
                      f"{idle:6.3f} s   ({len(images)} thumbnail requests)")
        finally:
            browser.close()


def main() -> None:
    from httpov.celery import make_app
    from httpov.client import Client
    from httpov.local_farm import embedded_redis, free_port, stop_worker, worker_env
    from httpov.settings import Settings

    with tempfile.TemporaryDirectory(prefix="httpov-bench-pages-") as name, embedded_redis(Path(name)) as url:
        tmp = Path(name)
        settings = Settings(broker_url=url, state_url=url, storage=str(tmp / "storage"), cache_dir=tmp / "cache")
        client = Client(settings, make_app(settings))
        started = time.monotonic()
        huge = _finished_job(client, _scene(tmp / "huge", 10_000, 8, 8), 100, 8, 8, distinct=False)
        big = _finished_job(client, _scene(tmp / "big", 1000, 96, 72), 50, 96, 72, distinct=True)
        small = _scene(tmp / "small", 1, 8, 8)
        for _ in range(ARGS.jobs - 2):
            _finished_job(client, small, 1, 8, 8, distinct=False)
        print(f"stored {ARGS.jobs} jobs in {time.monotonic() - started:.1f} s (measuring {ROOT})")
        token = secrets.token_urlsafe(24)
        port = free_port()
        log = tmp / "web.log"
        env = {**worker_env(settings), "HTTPOV_WEB_TOKENS": token, "PYTHONPATH": str(ROOT)}
        web = subprocess.Popen([sys.executable, "-m", "httpov.cli", "web", "--port", str(port),
                                "--accounts", str(tmp / "accounts")], env=env, stdout=open(log, "wb"),
                               stderr=subprocess.STDOUT, start_new_session=True)
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/html"}
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if _get(port, "/", headers)[0] == 200:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("httpov web did not answer:\n" + log.read_text())
                time.sleep(0.1)
            _timed(port, f"/jobs/{huge}", headers, "10,000-frame job's page")
            _timed(port, "/", headers, f"jobs page, {ARGS.jobs} jobs")
            _browser(port, token, f"/jobs/{big}")
        finally:
            stop_worker(web, grace=10.0)


if __name__ == "__main__":
    main()
