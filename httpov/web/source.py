"""What the web interface shows, read from Redis and storage: job views, rendered frames and their thumbnails,
each result checked before it is unpacked or decoded (a refused one is remembered, not downloaded again). Each
method asks httpov.client.authorize first, as the Client's do: a job's progress for whoever may VIEW, its pictures
for whoever may DOWNLOAD them (a user: only of their own jobs)."""
from __future__ import annotations

import hashlib
import io
import math
import re
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from httpov.access import Action, Identity, local_operator, require
from httpov.archive import copy_member
from httpov.client import authorize
from httpov.errors import ArchiveError, BadInputError, JobNotFoundError, PageNotFoundError, ResultError
from httpov.media import check_frame, frame_bytes, frame_number, thumbnail_png
from httpov.paths import batch_key, frames_prefix
from httpov.plan import Batch
from httpov.results import LOG_MAX_BYTES
from httpov.storage import Storage
from httpov.store import JobStore
from httpov.text import shown
from httpov.view import JobView, job_view, overview
from httpov.web.charts import Chart, job_timeline

_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
THUMB_SIZE = 320
GRID_THUMB_SIZE = 160
_CACHED = 4096  # thumbnails (or refusals) kept in memory
FRAMES_PER_PAGE = 100  # frames on a page of a job's grid (?page=N)
JOBS_PER_PAGE = 50  # jobs on a page of the jobs page (?page=N), newest first
LOG_LINES = 40  # the last lines of a batch's povray log the frame viewer shows
LOG_LINE_CHARS = 300  # each cut to this many characters
_CACHED_LOGS = 1024  # frames' log lines kept in memory (at most 40 lines of 300 characters each)
_CACHED_VIEWS = 16  # finished jobs' views and timelines kept in memory (each a few KiB of figures and shapes)


def job_id(raw: str) -> str:
    """`raw` if it can be a job id (JobNotFoundError otherwise): never a path, never sent to Redis unchecked."""
    if not _JOB_ID.match(raw):
        raise JobNotFoundError(f"{shown(raw[:40])!r} is not a job id")
    return raw


@dataclass
class FramePage:
    """One page of a job's frame grid: frames `first`..`last` of the job, in order, page `number` of `pages`;
    `rendered` maps each rendered frame of the page to its tag (the result it was read from, '' when unknown:
    a stitched frame)."""

    number: int
    pages: int
    first: int
    last: int
    rendered: dict[int, str] = field(default_factory=dict)

    @property
    def frames(self) -> range:
        return range(self.first, self.last + 1)

    def links(self, around: int = 2) -> list[int | None]:
        """Page numbers to link to: the first, the last and those within `around` of this one; None for a gap."""
        near = range(max(1, self.number - around), min(self.pages, self.number + around) + 1)
        wanted = sorted({1, self.pages, *near})
        out: list[int | None] = []
        for n in wanted:
            if out and n - (out[-1] or 0) > 1:
                out.append(None)
            out.append(n)
        return out


@dataclass
class FramePart:
    """One done batch holding a frame (a sliced frame: one per slice): who rendered it, how long it took, and the
    last lines of povray's log of the batch (untrusted text: control characters written out, lines bounded)."""

    batch: str
    label: str
    node: str
    seconds: float | None  # povray's time on the whole batch
    frames: int  # frames the batch rendered
    finished: float | None
    rows: tuple[int, int] | None
    lines: list[str]  # the frame's part of the log (frame_lines)
    lines_left_out: int  # earlier lines of it not shown
    log_error: str = ""  # why no log is shown ('' when it is)

    @property
    def time_text(self) -> str:
        """povray's time: '2.0 s', or of a batch of several frames '6.0 s for 3 frames (2.0 s a frame)'."""
        if self.seconds is None:
            return "?"
        if self.frames > 1:
            return f"{self.seconds:.1f} s for {self.frames} frames ({self.seconds / self.frames:.1f} s a frame)"
        return f"{self.seconds:.1f} s"

    @property
    def finished_text(self) -> str:
        return "?" if self.finished is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.finished))

    def to_json(self) -> dict[str, object]:
        return {"time_text": self.time_text, "finished_text": self.finished_text, "batch": self.batch,
                "label": self.label, "node": self.node, "seconds": self.seconds,
                "frames": self.frames, "finished": self.finished, "rows": list(self.rows) if self.rows else None,
                "lines": self.lines, "lines_left_out": self.lines_left_out, "log_error": self.log_error}


@dataclass
class FrameDetail:
    """What the frame viewer shows of frame `frame` of a job (frames `first`..`last`): whether it is rendered, and
    the done batches that rendered it (a sliced frame's slices, top rows first)."""

    job: str
    frame: int
    first: int
    last: int
    width: int
    height: int
    sliced: bool
    rendered: bool
    parts: list[FramePart] = field(default_factory=list)

    @property
    def prev(self) -> int | None:
        return self.frame - 1 if self.frame > self.first else None

    @property
    def next(self) -> int | None:
        return self.frame + 1 if self.frame < self.last else None

    def grid_page(self, per_page: int = FRAMES_PER_PAGE) -> int:
        """The page of the job's frame grid this frame is on."""
        return (self.frame - self.first) // per_page + 1

    def to_json(self) -> dict[str, object]:
        return {"job": self.job, "frame": self.frame, "first": self.first, "last": self.last, "width": self.width,
                "height": self.height, "sliced": self.sliced, "rendered": self.rendered, "prev": self.prev,
                "next": self.next, "grid_page": self.grid_page(), "parts": [p.to_json() for p in self.parts]}


_RENDERING = re.compile(r"^\s*Rendering frame (\d+) of \d+")


def frame_parts(lines: list[str]) -> dict[int, list[str]]:
    """A batch's povray log split by frame, K (1-based, counting the run's frames) -> its lines: povray starts each
    frame of a run with 'Rendering frame K of N'; what comes before the first is the first frame's."""
    part, parts = 1, dict[int, list[str]]()
    for line in lines:
        found = _RENDERING.match(line)
        if found:
            part = int(found.group(1))
        parts.setdefault(part, []).append(line)
    return parts


def log_tail(lines: list[str], most: int = LOG_LINES, chars: int = LOG_LINE_CHARS) -> tuple[list[str], int]:
    """The last `most` of these log lines, each with its control characters written out and cut to `chars`
    characters; and how many earlier ones were left out."""
    tail = [shown(line[:chars]) + ("…" if len(line) > chars else "") for line in lines[-most:]]
    return tail, max(0, len(lines) - most)


def page_number(raw: str | None, pages: int | None, what: str) -> int:
    """The page `raw` names (1 when none): BadInputError (400) unless a whole number from 1, PageNotFoundError
    (404) past the last of `pages` (None: not known yet). `what`: what is paged, for the message."""
    if raw is None or raw == "":
        return 1
    if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise BadInputError(f"page {shown(raw[:20])!r} is not a page number: {what} are on pages 1-{pages or 'N'}")
    number = int(raw)
    if pages is not None and number > pages:
        raise PageNotFoundError(f"there is no page {number}: {what} are on pages 1-{pages}")
    return number


def _tag(key: str, member: str | int) -> str:
    """A short name of one stored frame (a result's storage key and the frame in it): a new result, a new tag."""
    return hashlib.sha256(f"{key}\0{member}".encode()).hexdigest()[:16]


class StatusSource:
    """Job views (the same as `httpov status --json`), frames and thumbnails for the pages and the API."""

    def __init__(self, store: JobStore, storage: Storage | Callable[[], Storage],
                 live_within: float | None = None) -> None:
        self.store = store
        self.live_within = live_within  # the farm's Settings.live_node_seconds (None: the default lease's)
        self._storage = storage
        # (job, frame or None for the latest, size): (result key, PNG or why it was refused)
        self._thumbs: OrderedDict[tuple[str, int | None, int], tuple[str, bytes | ResultError]] = OrderedDict()
        self._lock = threading.Lock()
        # (result key, frame of the batch): log_tail, or why there is no log
        self._logs: OrderedDict[tuple[str, int], tuple[list[str], int, str]] = OrderedDict()
        # finished job: (its stamp when read, its view, its timeline)
        self._finished: OrderedDict[str, tuple[str, JobView, Chart | None]] = OrderedDict()

    @property
    def storage(self) -> Storage:
        if callable(self._storage) and not isinstance(self._storage, Storage):
            self._storage = self._storage()
        return self._storage

    # job views: the same JobView as `httpov status` (its to_json() is `status --json` and the API's)
    def jobs(self, state: str | None = None, user: str | None = None, who: Identity | None = None,
             skip: int = 0, limit: int | None = None) -> list[JobView]:
        """Every job (or the newest `limit` after the newest `skip`), oldest first; only those in `state` and of
        `user` when given."""
        require(who or local_operator(), Action.VIEW)
        return overview(self.store, states=[state] if state else None, user=user or None,
                        live_within=self.live_within, skip=skip, limit=limit)

    def job(self, job: str, who: Identity | None = None) -> JobView:
        """The job's view (GET /api/jobs/ID, the live pages' feed): a finished job's is remembered (see _viewed)."""
        return self._viewed(job, who, timeline=False)[0]

    def job_with_timeline(self, job: str, who: Identity | None = None) -> tuple[JobView, Chart | None]:
        """The job's view and its timeline (charts.job_timeline: progress, for whoever may VIEW it), from one read."""
        return self._viewed(job, who, timeline=True)

    def _viewed(self, job: str, who: Identity | None, timeline: bool) -> tuple[JobView, Chart | None]:
        """The job's view, and its timeline when asked for (a live job's) or finished. A finished job changes only by
        a retry or a deletion (its record: JobStore.stamps reads that alone), so its view and timeline are remembered
        under its stamp, read before the snapshot: a change between the two leaves an older stamp remembered, and the
        next request reads the job again. A live job's view moves with time (its ETA, a stall): read each time."""
        job = job_id(job)
        authorize(self.store, who, Action.VIEW, job)
        stamp = self.store.stamps([job], ended=frozenset([job]))
        with self._lock:
            cached = self._finished.get(job)
        if cached is not None and cached[0] == stamp:
            return cached[1], cached[2]
        now = time.time()
        snapshot = self.store.snapshot(job)
        view = job_view(self.store, job, now, live_within=self.live_within, snapshot=snapshot)
        chart = job_timeline(snapshot[2], now) if timeline or view.ended else None
        if view.ended:
            with self._lock:
                self._finished[job] = (stamp, view, chart)
                self._finished.move_to_end(job)
                while len(self._finished) > _CACHED_VIEWS:
                    self._finished.popitem(last=False)
        return view, chart

    # frames
    def frames(self, job: str, who: Identity | None = None) -> list[int]:
        """The job's rendered frame numbers, in order (progress: what is done, not the pictures)."""
        authorize(self.store, who, Action.VIEW, job_id(job))
        return [int(f) for f in self.store.batches(job_id(job))["frames"]]

    def frame_page(self, job: str, raw_page: str | None, who: Identity | None = None,
                   per_page: int = FRAMES_PER_PAGE) -> FramePage:
        """Page `raw_page` (?page=N; none: the first) of the job's frames in frame order, with the rendered ones'
        tags (progress: whoever may VIEW the job; the pictures themselves are asked for DOWNLOAD)."""
        authorize(self.store, who, Action.VIEW, job_id(job))
        spec = self.store.spec(job)
        pages = max(1, math.ceil(spec.frame_count / per_page))
        number = page_number(raw_page, pages, f"job {job}'s frames")
        first = spec.first + (number - 1) * per_page
        page = FramePage(number, pages, first, min(spec.last, first + per_page - 1))
        if spec.slices:
            done = set(self.store.batches(job)["frames"])
            page.rendered = {n: "" for n in page.frames if n in done}
            return page
        # the done records of the page's batches only (one HMGET): a page's work, whatever the job's size
        held_by = {b: Batch.from_id(b) for b in spec.batches}
        wanted = [b for b, held in held_by.items()
                  if not held.prepass and held.last >= page.first and held.first <= page.last]
        for batch, info in self.store.done_infos(job, wanted).items():
            if info is None:
                continue
            held = held_by[batch]
            key = batch_key(job, batch, info.get("result", ""))
            for n in range(max(held.first, page.first), min(held.last, page.last) + 1):
                page.rendered[n] = _tag(key, n)
        return page

    def frame_detail(self, job: str, frame: int, who: Identity | None = None) -> FrameDetail:
        """Frame `frame` of the job for the viewer: whether it is rendered, which batches rendered it (node, time,
        rows of a slice) and their povray logs' last lines; for whoever may DOWNLOAD the job's pictures (logs are
        files of the job, as `httpov logs` reads them). PageNotFoundError for a frame the job does not render."""
        authorize(self.store, who, Action.DOWNLOAD, job_id(job))
        spec = self.store.spec(job)
        if not spec.first <= frame <= spec.last:
            raise PageNotFoundError(f"job {job} has no frame {frame}: it renders frames {spec.first}-{spec.last}")
        done = self.store.done(job)
        holding = sorted((b for b in done if not Batch.from_id(b).prepass and frame in Batch.from_id(b).frames),
                         key=lambda b: Batch.from_id(b).rows or (0, 0))
        rendered = (frame in self.store.batches(job)["frames"]) if spec.slices else bool(holding)
        detail = FrameDetail(job, frame, spec.first, spec.last, spec.width, spec.height, bool(spec.slices), rendered)
        for batch in holding:
            info, held = done[batch], Batch.from_id(batch)
            lines, left_out, error = self._log(batch_key(job, batch, info.get("result", "")), batch,
                                               frame - held.first + 1, len(held.frames))
            detail.parts.append(FramePart(batch, held.label, shown(info.get("node", "?")), info.get("seconds"),
                                          info.get("frames", len(held.frames)), info.get("finished"), held.rows,
                                          lines, left_out, error))
        return detail

    def _log(self, key: str, batch: str, index: int, count: int) -> tuple[list[str], int, str]:
        """The last lines of the `index`th frame's part (frame_parts; all of it when it has none: one frame, or
        povray stopped before) of the povray log in the result zip of a batch of `count` frames, read and checked
        as `httpov logs` reads it; how many were left out, and why there is none ('' when there is). Every frame's
        part is remembered at once: the zip is read once for all its frames."""
        with self._lock:
            if (key, index) in self._logs:
                return self._logs[key, index]
        try:
            with zipfile.ZipFile(io.BytesIO(self.storage.get_bytes(key))) as zf:
                out = io.BytesIO()
                copy_member(zf, zf.getinfo(f"{batch}.log"), out, key, LOG_MAX_BYTES)
            lines = [line for line in out.getvalue().decode("utf-8", "replace").splitlines() if line.strip()]
            parts = frame_parts(lines)
            found = {i: (*log_tail(parts.get(i) or lines), "") for i in range(1, count + 1)}
        except FileNotFoundError:
            return [], 0, "its result is not in storage"  # not remembered: it may be stored again
        except KeyError:
            found = dict.fromkeys(range(1, count + 1), ([], 0, "its result holds no log"))
        except (ArchiveError, zipfile.BadZipFile) as exc:
            found = dict.fromkeys(range(1, count + 1), ([], 0, f"its result was refused: {shown(exc)}"))
        with self._lock:
            for i, part in found.items():
                self._logs[key, i] = part
            while len(self._logs) > _CACHED_LOGS:
                self._logs.popitem(last=False)
        return found[index]

    def _where(self, job: str, frame: int | None) -> tuple[str, str | int] | None:
        """(storage key, '' for a stitched frame or the frame number inside a batch zip, or '*' for its newest)."""
        spec = self.store.spec(job)
        if spec.slices:
            keys = [k for k in self.storage.list(frames_prefix(job)) if k.endswith(".png")]
            if frame is not None:
                keys = [k for k in keys if frame_number(PurePosixPath(k).name) == frame]
            return (max(keys, key=lambda k: frame_number(PurePosixPath(k).name)), "") if keys else None
        done = {b: info for b, info in self.store.done(job).items()
                if not Batch.from_id(b).prepass}  # a radiosity pre-pass renders no frame of the job
        if frame is None:
            if not done:
                return None
            newest = max(done, key=lambda b: done[b].get("finished", 0.0))
            return batch_key(job, newest, done[newest].get("result", "")), "*"
        holding = [b for b in done if frame in Batch.from_id(b).frames]
        return (batch_key(job, holding[0], done[holding[0]].get("result", "")), frame) if holding else None

    def frame_png(self, job: str, frame: int, who: Identity | None = None) -> bytes:
        """The full PNG of one rendered frame (JobNotFoundError when it is not rendered), checked first."""
        authorize(self.store, who, Action.DOWNLOAD, job_id(job))
        where = self._where(job_id(job), frame)
        if where is None:
            raise JobNotFoundError(f"frame {frame} of job {job} is not rendered")
        return self._read_frame(job, *where)

    def thumbnail(self, job: str, frame: int | None = None, size: int = THUMB_SIZE,
                  who: Identity | None = None) -> bytes | None:
        """A PNG at most `size` pixels a side of one frame, or of the newest rendered (`frame` None); None before any.

        A result that is refused (ResultError: larger than the job's frames, not a PNG) is remembered, so the
        page's refreshes do not download and unpack it again; a newer result of the job is tried afresh."""
        authorize(self.store, who, Action.DOWNLOAD, job_id(job))
        where = self._where(job_id(job), frame)
        return None if where is None else self._thumbnail(job, frame, size, where)

    def tagged_thumbnail(self, job: str, frame: int, size: int = GRID_THUMB_SIZE, who: Identity | None = None,
                         known: Collection[str] = ()) -> tuple[str, bytes | None] | None:
        """(tag, PNG) of one frame's thumbnail; the PNG is None when the tag is among `known` (the browser's copy is
        still this frame's: nothing is read from storage). None when the frame is not rendered. The tag is the one
        frame_page gives the frame; '' for a stitched frame (no tag: it keeps its storage name)."""
        authorize(self.store, who, Action.DOWNLOAD, job_id(job))
        where = self._where(job_id(job), frame)
        if where is None:
            return None
        tag = _tag(*where) if where[1] != "" else ""  # a stitched frame keeps its name when rendered again
        return tag, None if tag and tag in known else self._thumbnail(job, frame, size, where)

    def _thumbnail(self, job: str, frame: int | None, size: int, where: tuple[str, str | int]) -> bytes:
        cache_key = (job, frame, size)
        with self._lock:
            cached = self._thumbs.get(cache_key)
        if cached and cached[0] == where[0]:
            if isinstance(cached[1], ResultError):
                raise cached[1]
            return cached[1]
        spec = self.store.spec(job)
        try:
            png: bytes | ResultError = thumbnail_png(self._read_frame(job, *where), size, spec.width * spec.height)
        except ResultError as exc:
            png = exc
        with self._lock:
            self._thumbs[cache_key] = (where[0], png)
            while len(self._thumbs) > _CACHED:
                self._thumbs.popitem(last=False)
        if isinstance(png, ResultError):
            raise png
        return png

    def _read_frame(self, job: str, key: str, member: str | int) -> bytes:
        """A frame's PNG bytes from a stitched frame or a batch zip, refused (ResultError) before it is unpacked
        or decoded when it is larger than a frame of the job can be or is not a PNG of the job's size."""
        spec = self.store.spec(job)
        budget = frame_bytes(spec.width, spec.height)
        data = self.storage.get_bytes(key)
        if member != "":
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    pngs = [i for i in zf.infolist() if i.filename.endswith(".png")]
                    if member != "*":
                        pngs = [i for i in pngs if frame_number(PurePosixPath(i.filename).name) == member]
                    if not pngs:
                        raise ResultError(f"result {shown(key)} holds no such frame")
                    chosen = max(pngs, key=lambda i: frame_number(PurePosixPath(i.filename).name))
                    out = io.BytesIO()
                    copy_member(zf, chosen, out, key, budget)
                    data = out.getvalue()
            except (ArchiveError, zipfile.BadZipFile) as exc:
                raise ResultError(f"result refused: {shown(exc)}") from None
        elif len(data) > budget:
            raise ResultError(f"result {shown(key)} is {len(data)} bytes, more than a frame of its job can be")
        check_frame(data[:24], key, spec.width, spec.height)
        return data
