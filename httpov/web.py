"""`httpov web`: a small read-only status page (jobs, progress, ETA, failures, latest frame) and its JSON."""
from __future__ import annotations

import html
import io
import ipaddress
import json
import re
import socket
import threading
import time
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any

from httpov.archive import copy_member
from httpov.errors import (
    ArchiveError,
    BadInputError,
    BrokerUnavailableError,
    HttpovError,
    JobNotFoundError,
    ResultError,
)
from httpov.eta import duration
from httpov.jobs import JobStore, open_store
from httpov.keys import batch_key, frames_prefix
from httpov.media import check_frame, frame_bytes, frame_number, thumbnail_png
from httpov.outage import NOTICE
from httpov.settings import Settings
from httpov.storage import Storage, open_storage
from httpov.text import shown
from httpov.view import JobView, job_view, overview

_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
THUMB_SIZE = 320


class StatusSource:
    """What the page shows, read from Redis and storage; thumbnails are cached per job until a newer frame lands."""

    def __init__(self, store: JobStore, storage: Storage | Callable[[], Storage]) -> None:
        self.store = store
        self._storage = storage
        self._thumbs: dict[str, tuple[str, bytes | ResultError]] = {}  # job: (result key, thumbnail or why not)
        self._lock = threading.Lock()

    @property
    def storage(self) -> Storage:
        if callable(self._storage) and not isinstance(self._storage, Storage):
            self._storage = self._storage()
        return self._storage

    def jobs(self) -> list[JobView]:
        return overview(self.store)

    def job(self, job_id: str) -> JobView:
        return job_view(self.store, job_id)

    def latest_frame(self, job_id: str) -> tuple[str, str] | None:
        """(storage key, member name or '') of the job's most recently rendered whole frame, if any."""
        spec = self.store.spec(job_id)
        if spec.slices:
            keys = [k for k in self.storage.list(frames_prefix(job_id)) if k.endswith(".png")]
            return (max(keys, key=lambda k: frame_number(Path(k))), "") if keys else None
        done = self.store.batches(job_id)["done"]
        if not done:
            return None
        newest = max(done, key=lambda b: done[b].get("finished", 0.0))
        return batch_key(job_id, newest), "*"

    def thumbnail(self, job_id: str) -> bytes | None:
        """A PNG of the job's latest rendered frame (at most THUMB_SIZE pixels a side), or None before any.

        A result that is refused (ResultError: larger than the job's frames, not a PNG) is remembered, so the
        page's refreshes do not download and unpack it again; a newer frame of the job is tried afresh."""
        where = self.latest_frame(job_id)
        if where is None:
            return None
        key, member = where
        with self._lock:
            cached = self._thumbs.get(job_id)
        if cached and cached[0] == key:
            if isinstance(cached[1], ResultError):
                raise cached[1]
            return cached[1]
        try:
            png: bytes | ResultError = self._frame_thumbnail(job_id, key, member)
        except ResultError as exc:
            png = exc
        with self._lock:
            self._thumbs[job_id] = (key, png)
        if isinstance(png, ResultError):
            raise png
        return png

    def _frame_thumbnail(self, job_id: str, key: str, member: str) -> bytes:
        spec = self.store.spec(job_id)
        budget = frame_bytes(spec.width, spec.height)
        data = self.storage.get_bytes(key)
        if member:
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    pngs = [i for i in zf.infolist() if i.filename.endswith(".png")]
                    if not pngs:
                        raise ResultError(f"result {key} holds no frame")
                    newest = max(pngs, key=lambda i: frame_number(PurePosixPath(i.filename).name))
                    out = io.BytesIO()
                    copy_member(zf, newest, out, key, budget)
                    data = out.getvalue()
            except (ArchiveError, zipfile.BadZipFile) as exc:
                raise ResultError(f"result refused: {shown(exc)}") from None
        elif len(data) > budget:
            raise ResultError(f"result {shown(key)} is {len(data)} bytes, more than a frame of its job can be")
        check_frame(data[:24], key, spec.width, spec.height)
        return thumbnail_png(data, THUMB_SIZE, spec.width * spec.height)


def render_page(jobs: list[JobView], refresh: int, now: float | None = None, notice: str = "") -> str:
    """The status page: one card per job, newest first, refreshing itself every `refresh` seconds; `notice`
    (Redis unreachable) stands in for the cards."""
    now = time.time() if now is None else now
    cards = "\n".join(_card(j, now) for j in reversed(jobs)) or '<p class="empty">No jobs yet: `httpov submit`.</p>'
    if notice:
        cards = f'<p class="notice">{html.escape(notice)}</p>'
    stamp = time.strftime("%H:%M:%S", time.localtime(now))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{int(refresh)}">
<title>httpov: {len(jobs)} job(s)</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 16px; background: #f4f4f4; color: #222; }}
h1 {{ font-size: 20px; margin: 0 0 12px; }}
.job {{ display: flex; gap: 16px; background: #fff; border: 1px solid #ccc; border-radius: 6px; padding: 12px;
        margin-bottom: 12px; }}
.thumb {{ width: 192px; height: 144px; object-fit: contain; image-rendering: pixelated; background: #222;
          flex: none; }}
.nothumb {{ width: 192px; height: 144px; background: #ddd; flex: none; display: flex; align-items: center;
            justify-content: center; color: #777; }}
.info {{ flex: 1; min-width: 0; }}
.bar {{ height: 18px; background: #e2e2e2; border-radius: 3px; overflow: hidden; display: flex; margin: 6px 0; }}
.bar .done {{ background: #1f5fbf; }} .bar .failed {{ background: #c62828; }} .bar .run {{ background: #9bb8e6; }}
.state {{ font-weight: bold; padding: 1px 6px; border-radius: 3px; color: #fff; background: #666; }}
.state.done {{ background: #2e7d32; }} .state.failed, .state.cancelled {{ background: #c62828; }}
.state.running, .state.queued {{ background: #1f5fbf; }} .state.paused {{ background: #b26a00; }}
pre {{ background: #fff3f3; border-left: 3px solid #c62828; padding: 4px 8px; margin: 4px 0; white-space: pre-wrap;
       font-size: 12px; }}
.notice {{ background: #fff3cd; border-left: 3px solid #b26a00; padding: 8px; }} .muted {{ color: #666; }} table {{ border-collapse: collapse; }} td {{ padding: 0 10px 0 0; }}
</style></head>
<body><h1>httpov <span class="muted">{len(jobs)} job(s), updated {stamp}, refreshes every {int(refresh)} s</span></h1>
{cards}
</body></html>
"""


def _e(text: object) -> str:
    """Untrusted text for HTML: control characters made visible (httpov.text.shown), then escaped."""
    return html.escape(shown(text))


def _card(j: JobView, now: float) -> str:
    e = _e
    total = max(1, j.frames_total)
    done_pct = 100.0 * j.frames_done / total
    failed_pct = 100.0 * j.frames_failed / total
    run_pct = min(100.0 - done_pct - failed_pct, 100.0 * j.frames_running / total)
    thumb = (f'<img class="thumb" src="/thumb/{e(j.id)}.png?n={j.frames_done}" alt="latest frame of {e(j.name)}">'
             if j.frames_done or j.batches_done else '<div class="nothumb">no frame yet</div>')
    if j.state in ("queued", "running"):
        eta_text = "ETA " + duration(j.eta_seconds)
        if j.eta_at:
            eta_text += time.strftime(" (at %H:%M:%S)", time.localtime(j.eta_at))
        elif j.idle:
            eta_text += " (no render node is taking its batches)"
    elif j.state == "done" and j.finished:
        eta_text = time.strftime("finished at %H:%M:%S", time.localtime(j.finished))
    else:
        eta_text = j.state
    running = "".join(f"<tr><td>{e(r.label)}</td><td>{e(r.node)}</td><td>{duration(r.elapsed)}"
                      f"</td></tr>" for r in j.running)
    failures = "".join(
        f"<div><b>{e(f.what)}</b> on {e(f.where)}{'' if f.final else ' (will retry)'}: {e(f.error)}"
        f"<pre>{chr(10).join(e(line) for line in f.lines)}</pre></div>"
        for f in j.failure_groups())
    prepass = f"<div>pre-pass: {e(j.prepass.kind)} {j.prepass.done}/{j.prepass.total}</div>" if j.prepass else ""
    return f"""<div class="job" id="job-{e(j.id)}">
{thumb}
<div class="info">
<div><b>{e(j.name)}</b> <span class="muted">{e(j.id)}</span> <span class="state {e(j.state)}">{e(j.state)}</span></div>
<div class="bar"><div class="done" style="width:{done_pct:.2f}%"></div><div class="failed" style="width:{failed_pct:.2f}%"></div><div class="run" style="width:{max(0.0, run_pct):.2f}%"></div></div>
<div>{j.frames_done}/{j.frames_total} frames done, {j.frames_failed} failed, {j.frames_running} rendering;
{j.rate_recent:.2f} frames/s; {e(eta_text)}; {j.width}x{j.height}</div>
{prepass}
{f'<table class="running">{running}</table>' if running else ''}
{f'<div class="failures">{failures}</div>' if failures else ''}
</div></div>"""


def make_server(source: StatusSource, host: str = "127.0.0.1", port: int = 8080, refresh: int = 3) -> ThreadingHTTPServer:
    """An HTTP server for the page (/), its JSON (/api/jobs, /api/jobs/JOB) and thumbnails (/thumb/JOB.png)."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "httpov-web"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: a page refreshing is not news
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            try:
                if path in ("/", "/index.html"):
                    self._send(200, "text/html; charset=utf-8", render_page(source.jobs(), refresh).encode())
                elif path == "/api/jobs":
                    self._json(200, [j.to_json() for j in source.jobs()])
                elif path.startswith("/api/jobs/"):
                    self._json(200, source.job(_job_id(path[len("/api/jobs/"):])).to_json())
                elif path.startswith("/thumb/") and path.endswith(".png"):
                    png = source.thumbnail(_job_id(path[len("/thumb/"):-4]))
                    if png is None:
                        self._json(404, {"error": "no frame of this job is rendered yet"})
                    else:
                        self._send(200, "image/png", png)
                else:
                    self._json(404, {"error": f"no page {path}", "hint": "try / or /api/jobs"})
            except (JobNotFoundError, BadInputError) as exc:
                self._json(404, {"error": str(exc), "hint": exc.hint})
            except BrokerUnavailableError as exc:  # a Redis restart: the page keeps reloading until it is back
                message = f"{NOTICE} every {refresh} s: {exc}"
                if path in ("/", "/index.html"):
                    self._send(503, "text/html; charset=utf-8", render_page([], refresh, notice=message).encode())
                else:
                    self._json(503, {"error": message, "hint": exc.hint})
            except ResultError as exc:  # a hostile or damaged frame: refused, and remembered (StatusSource.thumbnail)
                self._json(422, {"error": str(exc), "hint": exc.hint})
            except HttpovError as exc:
                self._json(503, {"error": str(exc), "hint": exc.hint})

        def _json(self, code: int, data: Any) -> None:
            self._send(code, "application/json", json.dumps(data, indent=1).encode())

        def _send(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    return Server((host, port), Handler)


def _job_id(raw: str) -> str:
    if not _JOB_ID.match(raw):
        raise BadInputError(f"{raw[:40]!r} is not a job id")
    return raw


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8080, refresh: int = 3,
          ready: Callable[[str], None] | None = None) -> None:
    """Serve the status page until interrupted; `ready` is told the page's URL once it listens."""
    if refresh < 1:
        raise BadInputError(f"--refresh must be at least 1 second, got {refresh}")
    store = open_store(settings)
    store.ping()
    source = StatusSource(store, lambda: open_storage(settings.storage))
    try:
        server = make_server(source, host, port, refresh)
    except OSError as exc:
        raise HttpovError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                          hint="pick another --port, or stop what is using this one") from None
    address = f"[{host}]" if ":" in host else host
    if ready:
        ready(f"http://{address}:{server.server_address[1]}/")
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
