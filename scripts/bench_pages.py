"""Benchmark (not a test): the web pages of big jobs, on a real `httpov web` process over a private redis-server and
local storage (#26 item 3).

Jobs are stored and recorded as render nodes leave them (nothing is rendered): a finished job of 10,000 frames
(8x8 pixels, batches of 100), a finished job of 10,000 batches of one frame each on 40 render nodes, every 50th
failed once (its page's timeline; no zip stored), a running job of 10,000 frames in batches of 4, half of them
done and 80 rendering (a live job's page is read afresh at every request), 40 nodes with 6 hours of use (the nodes
page's picture), a finished job of 1000 frames (96x72, batches of 50) and one-frame finished jobs up to 500 jobs in
all. Reports, for the 10,000-frame job's page, the 10,000-batch job's page, the running job's page, the nodes page
and the jobs page, the median and worst
server time (wall time of a GET on this machine's loopback, `--trials` times; the first GET apart: a finished job's
view is remembered by the server after it) and the HTML size; the pictures' own
work (the timeline of 10,000 batches, the farm's use); then the time headless Chromium (Playwright,
/usr/bin/chromium) takes to load the 1000-frame job's page fully (its `load` event, and the network idle after it),
cold (a new browser context: no cached thumbnail) and again in the same context. `--repo` measures another checkout
(e.g. main's) with the same procedure.

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


def _timeline_job(client, scene: Path, nodes: int) -> str:
    """A job of the scene's frames, a batch a frame (10,000 batches: the job page's timeline at its biggest), each
    recorded done (no zip stored) on one of `nodes` render nodes of 4 processes each, as a farm of them would have
    rendered it over the last hours (each batch 20-60 s; every 50th a second attempt); the last 20 failed once and
    left failed."""
    job = client.submit(scene, count=1).spec.id
    client.store.transition(job, "running")
    ids = client.store.spec(job).batches
    free = [time.time() - 3 * 3600.0] * (nodes * 4)  # each process's next start
    for i, batch in enumerate(ids[:-20]):
        slot = min(range(len(free)), key=free.__getitem__)
        start, seconds = free[slot], 20.0 + (i * 37) % 41
        free[slot] = start + seconds + 0.5
        node, frame = f"node{slot // 4:02d}@bench", int(batch.split("-")[0][1:])
        assert client.store.start_batch(job, batch, f"r{i}", node, 600.0) == "ok"
        client.store.finish_batch(job, batch, {"node": node, "seconds": seconds, "frames": 1, "started": start,
                                               "finished": start + seconds, "attempt": 2 if i % 50 == 0 else 1,
                                               "result": f"r{i}"}, [frame], f"r{i}")
    for i, batch in enumerate(ids[-20:]):
        node = f"node{i:02d}@bench"
        assert client.store.start_batch(job, batch, f"t{i}", node, 600.0) == "ok"
        client.store.fail_batch(job, batch, "povray failed: bench", [], final=False, node=node)
    client.store.transition(job, "done")
    return job


def _running_job(client, scene: Path, nodes: int) -> str:
    """A job of the scene's frames in batches of 4 (the adaptive count's most for a new scene), running: half its
    batches recorded done (no zip stored) on `nodes` render nodes, 2 a node rendering. A live job's view is read
    afresh at each request (its ETA moves), so its page is never remembered."""
    job = client.submit(scene, count=4).spec.id
    client.store.transition(job, "running")
    ids = client.store.spec(job).batches
    now = time.time()
    for i, batch in enumerate(ids[:len(ids) // 2]):
        node, first = f"node{i % nodes:02d}@bench", int(batch.split("-")[0][1:])
        assert client.store.start_batch(job, batch, f"r{i}", node, 600.0) == "ok"
        start = now - 3600.0 + i
        client.store.finish_batch(job, batch, {"node": node, "seconds": 8.0, "frames": 4, "started": start,
                                               "finished": start + 8.0, "attempt": 1, "result": f"r{i}"},
                                  list(range(first, first + 4)), f"r{i}")
    for i, batch in enumerate(ids[len(ids) // 2:len(ids) // 2 + 2 * nodes]):
        assert client.store.start_batch(job, batch, f"s{i}", f"node{i % nodes:02d}@bench", 600.0) == "ok"
    assert client.store.state(job) == "running"
    return job


def _busy_nodes(client, nodes: int) -> None:
    """`nodes` render nodes, each with a sample of its processes busy for every minute of the last 6 hours."""
    now = time.time()
    for n in range(nodes):
        for minute in range(360):
            at = now - now % 60 - minute * 60
            client.store.heartbeat(f"node{n:02d}@bench", processes=8, busy=(at, (minute * 7 + n) % 9))


def _charts(client, job: str) -> None:
    """The pictures' own work, in this process: the 10,000-batch job's timeline from its records (read once)."""
    from httpov.web.charts import farm_use, job_timeline

    batches = client.store.batches(job)
    times = []
    for _ in range(ARGS.trials):
        started = time.monotonic()
        chart = job_timeline(batches, time.time())
        times.append(time.monotonic() - started)
    assert chart is not None
    shapes = sum(len(lane.bars) + len(lane.marks) for lane in chart.lanes)
    print(f"{'timeline of 10,000 batches (pure)':<34} median {statistics.median(times):6.3f} s   "
          f"{len(chart.lanes)} lanes, {shapes} bars and marks")
    from httpov.web.source import StatusSource

    def fresh() -> StatusSource:  # a new web server's: nothing remembered of a finished job's view yet
        return StatusSource(client.store, lambda: client.storage, client.settings.live_node_seconds)

    for label, kind in (("job view alone (as before)", "job"), ("job view + timeline", "job_with_timeline")):
        times = []
        for _ in range(ARGS.trials):
            call = getattr(fresh(), kind)
            started = time.monotonic()
            call(job)
            times.append(time.monotonic() - started)
        print(f"{label:<34} median {statistics.median(times):6.3f} s   (10,000-batch job, in process, read afresh)")
    started = time.monotonic()
    use = farm_use(*client.store.node_use(time.time() - 6 * 3600), now=time.time(), hours=6)
    assert use is not None
    print(f"{'farm use, 40 nodes x 6 h (read+draw)':<34} once   {time.monotonic() - started:6.3f} s   "
          f"{len(use.lanes)} lanes, {sum(len(lane.area) for lane in use.lanes) / 1024:.1f} KiB of outlines")


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
          f"first {times[0]:6.3f} s   HTML {size / 1024:8.1f} KiB   ({len(times)} GETs of {path})")


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
        timeline = _timeline_job(client, _scene(tmp / "timeline", 10_000, 8, 8), 40)
        running = _running_job(client, _scene(tmp / "running", 10_000, 8, 8), 40)
        try:
            _busy_nodes(client, 40)
        except TypeError:  # --repo of a release before the farm's use was kept
            pass
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
            from tests.webapp import wait_answering

            wait_answering(lambda: _get(port, "/", headers)[0], log)
            _timed(port, f"/jobs/{huge}", headers, "10,000-frame job's page")
            _timed(port, f"/jobs/{timeline}", headers, "10,000-batch job's page (timeline)")
            _timed(port, f"/jobs/{running}", headers, "running 10,000-frame job's page")
            _timed(port, "/nodes", headers, "nodes page, 40 nodes (use, 6 h)")
            if (ROOT / "httpov" / "web" / "charts.py").exists():
                _charts(client, timeline)
            _timed(port, "/", headers, f"jobs page, {ARGS.jobs} jobs")
            _browser(port, token, f"/jobs/{big}")
        finally:
            stop_worker(web, grace=10.0)


if __name__ == "__main__":
    main()
