"""What users do with jobs: submit, watch, fetch, control. The CLI is a thin layer over this class."""
from __future__ import annotations

import contextlib
import functools
import io
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from httpov import archive, paths, results, user_limits
from httpov.access import Action, Identity, check_name, local_operator, require
from httpov.after import After, settle, to_hold, waits_for
from httpov.after import check as check_after
from httpov.audit import AuditLog, Entry, age, audited
from httpov.errors import (
    ArchiveError,
    BadInputError,
    BrokerUnavailableError,
    ForbiddenError,
    JobFailedError,
    JobStateError,
    OptionError,
    ResultError,
    SceneError,
    UnknownIniKeyError,
)
from httpov.events import DEFAULT_LIMIT as EVENTS_LIMIT
from httpov.events import Event, EventLog
from httpov.ini_keys import unknown_key_warnings
from httpov.options import SubmitOptions
from httpov.outage import through_outage
from httpov.photons import NotShareable, check_others, insertion_point
from httpov.plan import (
    AUTO,
    Batch,
    JobSpec,
    check_spec,
    handout_order,
    history_key,
    image_size,
    plan_job,
    prepass_ids,
    radiosity_digest,
    safe_name,
    waiting_for_prepass,
    wrappable,
)
from httpov.references import shared_keys, use_shared
from httpov.scene import SceneLayout, SceneOptions, locate_scene, mentions
from httpov.settings import Settings
from httpov.states import FINISHED, LIVE, JobState, TransitionRefused
from httpov.storage import Storage, open_storage
from httpov.store import JobStore, open_store
from httpov.text import shown
from httpov.view import JobView, follow, job_view, overview

if TYPE_CHECKING:
    from celery import Celery

    from httpov.retention import Deleted

Progress = Callable[[JobView], None]


def authorize(store: JobStore, who: Identity | None, action: Action, job_id: str) -> str:
    """The job's owner, once `who` (None: the local operator) may do `action` to it: ForbiddenError otherwise,
    nothing done; JobNotFoundError when there is no such job. Every method below that acts on a job asks it first,
    and so does the web's source of frames and thumbnails: this is where authorization is applied."""
    owner = store.owner(job_id)
    require(who or local_operator(), action, owner, job_id)
    return owner


@dataclass
class Submission:
    """A job just queued, and what the user should be told about it."""

    spec: JobSpec
    uploaded: bool
    ignored: list[str]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        s = self.spec
        what = f"{s.frame_count} frame(s) {s.first}-{s.last}" if s.frame_count > 1 else f"frame {s.first}"
        how = (f"{len(s.slices)} slice(s) per frame" if s.slices else f"up to {s.count} frame(s) per batch")
        return f"{s.id}: {what} at {s.width}x{s.height}, {how}, {len(s.batches)} batch(es)"


# what the audit log says of each action (httpov.audit.audited): asked, from a call's arguments; done, from its result
def _submitted(given: Mapping[str, Any], submission: Submission, entry: Entry) -> None:
    s, options = submission.spec, given.get("options")
    owner = options.user if options is not None else given.get("given", {}).get("user")
    entry.job = s.id
    entry.done = (f"{s.name}: {s.frame_count} frame(s) {s.first}-{s.last}, priority {s.priority}"
                  + (f", for {owner}" if owner and owner != (given.get("who") or local_operator()).name else ""))


def _frames(given: Mapping[str, Any]) -> str:
    frames = given.get("frames")
    return f"frames {frames[0]}-{frames[1]}" if frames else ""


def _queued(given: Mapping[str, Any], queued: int, entry: Entry) -> None:
    entry.done = f"{queued} batch(es) queued"


def _requeued(given: Mapping[str, Any], requeued: int, entry: Entry) -> None:
    entry.done = f"{requeued} batch(es) requeued"


def _priority(given: Mapping[str, Any]) -> str:
    return f"priority {given['priority']}"


def _moved(given: Mapping[str, Any], moved: int, entry: Entry) -> None:
    entry.done = f"{moved} queued batch(es) moved"


def _force(given: Mapping[str, Any]) -> str:
    return "--force" if given.get("force") else ""


def _deleted(given: Mapping[str, Any], deleted: Deleted, entry: Entry) -> None:
    entry.done = (f"{deleted.objects} stored object(s), {deleted.redis_keys} Redis key(s), scene "
                  f"{'deleted' if deleted.scene_deleted else 'kept'}")


def _prune_asked(given: Mapping[str, Any]) -> str:
    return f"finished more than {age(given['older_than'])} ago, {','.join(given.get('states') or FINISHED)}"


def _pruned(given: Mapping[str, Any], deleted: list[Deleted], entry: Entry) -> None:
    entry.skip = bool(given.get("dry_run"))  # a dry run changes nothing
    entry.jobs, entry.done = [d.job_id for d in deleted], f"{len(deleted)} job(s) deleted"


def _limits_asked(given: Mapping[str, Any]) -> str:
    changes = ", ".join(f"{k} {v}" for k, v in (given.get("given") or {}).items() if v is not None)
    return f"{given['name']}" + (f": {changes}" if changes else "")


def _limits_now(given: Mapping[str, Any], entry_now: dict[str, object], entry: Entry) -> None:
    entry.done = "now " + (", ".join(f"{k} {v}" for k, v in entry_now.items()) or "no limit set")


class Client:
    """Talks to Redis (job state and queue) and storage on the user's behalf. The methods that act take the keyword
    `who` (httpov.access.Identity; None: the local operator) and are recorded in the audit log as it (httpov.audit)."""

    def __init__(self, settings: Settings, celery: Celery | None = None, storage: Storage | None = None,
                 store: JobStore | None = None) -> None:
        self.settings = settings
        self._celery = celery
        self._storage = storage
        self.store = store or open_store(settings)

    @property
    def celery(self) -> Celery:
        """The Celery app that queues batches, built on first use: cancel, pause and status never import Celery."""
        if self._celery is None:
            from httpov.celery import make_app

            self._celery = make_app(self.settings)
        return self._celery

    @functools.cached_property
    def audit(self) -> AuditLog | None:
        """The audit log that the methods which act write to (httpov.audit), in the job store's Redis; HTTPOV_KEEP_DAYS
        bounds it."""
        redis = getattr(self.store, "r", None)  # None: a test's stand-in store
        return AuditLog(redis, self.store.p, self.settings.keep_days) if redis is not None else None

    @functools.cached_property
    def event_log(self) -> EventLog:
        """The job events (httpov.events), in the job store's Redis; HTTPOV_KEEP_DAYS bounds them."""
        return EventLog(self.store.r, self.store.p, self.settings.keep_days)

    def events(self, job_id: str | None = None, after: str | None = None, limit: int = EVENTS_LIMIT,
               who: Identity | None = None) -> list[Event]:
        """The job events `who` may see (of `job_id`), oldest first: the `limit` after event id `after`, or the newest
        `limit`."""
        return self.event_log.events(who or local_operator(), job_id, after, limit)

    def follow_events(self, job_id: str | None = None, after: str | None = None, wait: float = 5.0,
                      until: float | None = None, who: Identity | None = None) -> Iterator[Event | None]:
        """The job events `who` may see as they come (after event id `after`, else from now on); None after each
        `wait` seconds with none, until the time `until` (None: for ever)."""
        return self.event_log.follow(who or local_operator(), job_id, after, wait, until)

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            self._storage = open_storage(self.settings.storage)
        return self._storage

    # submit
    @audited("submit", done=_submitted)
    def submit(self, source: Path, options: SubmitOptions | None = None, *,
               limits: archive.ArchiveLimits | None = None, scene_file: str | None = None,
               who: Identity | None = None,
               **given: object) -> Submission:
        """Check the scene, store it once by content hash, record the job and queue its batches.

        The job is owned by `who` (None: the local operator, named by the login name), or by `options.user` when
        `who` is an admin (the record keeps who submitted it for them); anyone else naming another owner is
        ForbiddenError before anything is read or stored.

        `options`: how to render it (httpov.options.SubmitOptions, built by SubmitOptions.parse, which checks every
        option and lets each surface word its errors); a library caller may give them as keywords instead
        (`count=1, slices=4`), checked by the same parse (OptionError). What the scene alone decides (slices past
        its height, the farm's limits on frames and batches) is checked here, by plan_job. `scene_file`: the .ini
        or .pov of a zip to render, as when a user names one file of a folder (`httpov --server` sends it so).
        The owner's limits (httpov.user_limits: max jobs, max priority) are checked first: ForbiddenError naming the
        limit. `who`: who submits (None: the local operator). An ini key that is no POV-Ray option (a typo:
        httpov.ini_keys) is warned of ('Widht: did you mean Width?', in Submission.warnings and the job's history),
        or with `options.strict` refused (UnknownIniKeyError) before anything is stored."""
        if given and options is not None:
            raise TypeError("give the submit options as a SubmitOptions or as keywords, not both")
        if options is None:
            options = SubmitOptions.parse(given, self.settings)
        who = who or local_operator()
        require(who, Action.SUBMIT)
        owner = options.user or who.name
        if owner != who.name and not who.admin:
            raise ForbiddenError(f"{shown(who.name)} ({who.role}) may not submit a job for {shown(owner)}: only an "
                                 "admin may name another owner", hint="leave the user out: the job is yours")
        check_name(owner, "job owner")  # an account named before the one name rule (`_ops`) cannot own jobs
        pool, radiosity_cache = options.pool, options.radiosity_cache
        self.check_user_limits(owner, options.priority, who)
        after = After(options.after, options.after_frames or "", options.after_anyway)
        if after:  # an unknown or hidden job is refused before anything is read or stored
            check_after(self.store, who, after)
        limits = limits or self.settings.archive_limits()
        with tempfile.TemporaryDirectory(prefix="httpov-submit-") as tmp:
            zip_path, prefer, names = _scene_archive(Path(source), Path(tmp), limits)
            if scene_file is not None:
                prefer = _scene_file(scene_file, names)
            with zipfile.ZipFile(zip_path) as zf:
                layout, scene = locate_scene(names, lambda n: zf.read(n).decode("utf-8", "replace"), prefer)
                named = mentions(names, zf.read) if radiosity_cache != "off" or options.photons != "off" else set()
                radiosity = radiosity_cache != "off" and "radiosity" in named
                unshared = _photons_unshared(names, zf.read, layout) if options.photons != "off" and \
                    "photons" in named else None
            typos = scene.typos  # 'Widht: did you mean Width?': warned of, kept with the job; refused when strict
            if typos and options.strict:
                said = "; ".join(unknown_key_warnings(scene.unknown, ignored=False))
                raise UnknownIniKeyError(f"the scene's ini has a key that is no POV-Ray ini option: {said}",
                                         hint="correct the key in the ini, or submit without strict to render with "
                                              "its line ignored")
            scene_key = paths.scene_key(archive.file_sha256(zip_path))
            self.store.ping()
            self.storage.check()
            spec = self._plan(layout, scene, options.name or _default_name(Path(source), layout), options, scene_key)
            spec.time_limit = options.time_limit
            spec.any_povray = options.any_povray
            notes = self._plan_radiosity(spec, radiosity_cache if radiosity else "off")
            if after.frames and unshared == "":  # a pre-pass cannot wait for another job's frames: see _queue_job
                unshared = "--after-frames: a pre-pass cannot wait for another job's frames"
            notes += _plan_photons(spec, unshared)
            if radiosity_cache == "shared" and not radiosity:
                notes.append("--radiosity-cache shared: no file of the scene names radiosity, nothing to share")
            check_spec(spec)  # what a render node will check again: refuse here, before anything is stored
            self.store.use_scene(spec.scene_key, spec.id)  # before trusting a stored zip: see references.py
            try:
                use_shared(self.store, spec)  # its radiosity caches
                uploaded = not self.storage.exists(spec.scene_key)
                if uploaded:
                    self.storage.put_file(spec.scene_key, zip_path)
            except BaseException:
                with contextlib.suppress(Exception):
                    for key in shared_keys(spec):  # nothing was stored for this job: let go of it all
                        self.store.drop_scene(key, spec.id)
                        self.store.scene_deleted(key)
                raise
        queue = self.settings.pool_queue(pool) if pool else ""
        warnings = list(typos)  # kept with the job (its history), so that its page says them too
        if pool and pool not in self.store.live_pools(within=self.settings.live_node_seconds):
            warnings.append(f"no live render node is in pool {pool!r}: the job waits until one joins "
                            f"(HTTPOV_POOLS={pool} on a render node)")
        self._queue_job(spec, user=owner, queue=queue, max_processes=options.max_processes or 0,
                        max_nodes=options.max_nodes or 0, submitted_by=who.name, operator=who.operator,
                        warnings=warnings, notify=list(options.notify), after=after, who=who)
        if after.jobs:
            notes.append(f"waits for job(s) {', '.join(after.jobs)} to be done (state waiting)")
        if after.frames:
            notes.append(f"each frame waits for the same frame of job {after.frames}")
        return Submission(spec, uploaded, scene.ignored, _choices(layout, spec) + notes, warnings)

    def _plan_radiosity(self, spec: JobSpec, mode: str) -> list[str]:
        """Give a sliced radiosity job one pre-pass per frame (mode 'shared': one for the whole job) ahead of its
        batches, unless its cache is stored already (an earlier job of the same scene, options and size); answers
        notes for the user. A render node's probe still decides: a scene that renders without radiosity gets an
        empty cache and its slices render as they would without one."""
        if mode == "off" or not wrappable(spec.pov) or (mode == "auto" and not spec.slices):
            return []
        if mode == "shared" and spec.frame_count > 1:
            spec.radiosity, frames = "shared", [spec.first]
        elif spec.slices:
            spec.radiosity, frames = "prepass", list(range(spec.first, spec.last + 1))
        else:
            return ["--radiosity-cache shared: a single whole frame has no radiosity to share"]
        def stored(frame: int) -> bool:  # by a pre-pass of this farm, which recorded its hash: a file planted
            key = paths.radiosity_key(radiosity_digest(spec, frame))  # under the key alone gets a pre-pass anew
            return self.store.cache_sha256(key) is not None and self.storage.exists(key)
        todo = [f for f in frames if not stored(f)]
        spec.batches = [Batch(f, f, prepass=True).id for f in todo] + spec.batches
        shared = f"one radiosity cache computed on frame {spec.first} and loaded by every frame"
        what = shared if spec.radiosity == "shared" else "one radiosity pre-pass per frame, loaded by its slices"
        reused = len(frames) - len(todo)
        return [f"{what}" + (f" ({reused} cache(s) stored by an earlier job reused)" if reused else "")
                + " (--radiosity-cache off: none)"]

    def _queue_job(self, spec: JobSpec, user: str = "", queue: str = "", max_processes: int = 0,
                   max_nodes: int = 0, submitted_by: str = "", operator: bool = False,
                   warnings: list[str] | None = None, notify: list[str] | None = None, after: After | None = None,
                   who: Identity | None = None) -> None:
        """Record the job unlisted with its batches pending, queue its first window of them (the render nodes top it
        up as batches end: httpov.dispatch), then list it; an interrupted submit (Ctrl-C, an error) fails the job
        so nodes drop what was queued, and a client that dies lets its submit lease run out."""
        after = after or After()
        held: list[str] = []
        if after:  # submit --after: published 'waiting', nothing pending; --after-frames: frames not done held
            check_after(self.store, who or local_operator(), after, spec.id)
            if after.frames and spec.radiosity != "off":
                raise OptionError.of("after_frames", "{0}: a job with a radiosity pre-pass cannot wait for "
                                     "another job's frames", hint="submit it with the radiosity cache off")
            held = to_hold(self.store, spec, after.frames) if after.frames else []
        pending = [] if after.jobs else handout_order(spec, [b for b in spec.batches if b not in set(held)])
        # a slice waiting for its frame's radiosity pre-pass is put on the pending list by that pre-pass
        self.store.create(spec, user=user, queue=queue, max_processes=max_processes,
                          pending=waiting_for_prepass(spec, pending), max_nodes=max_nodes,
                          submitted_by=submitted_by, operator=operator, warnings=warnings, notify=notify,
                          after=after.fields() if after else None, held=held)
        sent = [0]

        def sending(count: int) -> None:
            sent[0] = count
            self.store.keep_submitting(spec.id)
        try:
            sent[0] = self._top_up(spec, sending)
            self.store.publish(spec.id)
            if after and settle(self.store, spec.id):  # what it waits for is done already (or was meanwhile)
                self._top_up(spec)
        except BaseException as exc:
            with contextlib.suppress(Exception):  # Redis gone too: the submit lease runs out instead
                if self.store.abandon(spec.id, f"the submit was interrupted ({type(exc).__name__}) after about "
                                               f"{sent[0]} of {len(spec.batches)} batches were queued") == "ok":
                    from httpov.references import drop_scene

                    drop_scene(self.store, self.storage, spec)  # its record expires: it keeps no scene forever
            raise

    def _plan(self, layout: SceneLayout, scene: SceneOptions, name: str, options: SubmitOptions,
              scene_key: str = "") -> JobSpec:
        """plan_job, with the scene's measured frame time (earlier jobs of the same scene at the same size, read from
        their done batches) when frames per batch are to follow it, or (a --count) whether preview frames pay."""
        measured = (0.0, 0, 0)
        size = (options.width, options.height)  # --width/--height: instead of the ini's
        if scene_key and options.slice_rows is None and (
                options.slices is None or options.slices == AUTO and options.count is None):
            measured = self.store.frame_times(history_key(scene_key, *image_size(scene, size)))
        slice_times = None
        if options.count is None and options.slice_rows is None and options.slices == AUTO and scene_key:
            # auto slices follow the scene's cost row by row too
            slice_times = self.store.slice_times(history_key(scene_key, *image_size(scene, size)))
        return plan_job(layout, scene, self.settings, name=name, scene_key=scene_key, frames=options.frames,
                        count=options.count, slices=options.slices, slice_rows=options.slice_rows,
                        priority=options.priority, size=size, measured=measured,
                        processes=self.job_processes(options), slice_times=slice_times)

    def job_processes(self, options: SubmitOptions) -> int:
        """The live render processes a job submitted with `options` can have, which plan_job sizes it by (an
        animation's tail, auto slices, whether its batches all start in one round: plan.preview_frames): its pool's,
        or the farm's, at most its --max-processes; 0 while no render node is live."""
        everyone, pools = self.store.render_processes(within=self.settings.live_node_seconds)
        processes = pools.get(options.pool, 0) if options.pool else everyone
        return min(processes, options.max_processes) if options.max_processes and processes else processes

    # looking at jobs
    def wait(self, job_id: str, on_progress: Progress | None = None, poll: float = 0.5,
             timeout: float | None = None, on_outage: Callable[[str], None] | None = None,
             who: Identity | None = None) -> JobView:
        """Block until the job is finished, telling `on_progress` its view (httpov.view.JobView: progress and ETA)
        at each poll; raise JobFailedError unless every frame rendered. While Redis does not answer (a restart) it
        keeps trying for up to settings.outage_seconds, telling `on_outage` once per outage."""
        through_outage(lambda: authorize(self.store, who, Action.VIEW, job_id), self.settings.outage_seconds,
                       on_outage)
        deadline = None if timeout is None else time.monotonic() + timeout
        sweep_every, last_sweep = self.settings.sweep_seconds, time.monotonic()
        while True:
            progress = through_outage(lambda: job_view(self.store, job_id, live_within=self.settings.live_node_seconds),
                                      self.settings.outage_seconds, on_outage)
            if on_progress:
                on_progress(progress)
            if progress.ended:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise JobFailedError(f"job {job_id} still {progress.state} after {timeout:.0f}s")
            if time.monotonic() - last_sweep >= sweep_every:  # as often as a worker sweeps, no more
                through_outage(self.reap, self.settings.outage_seconds, on_outage)
                last_sweep = time.monotonic()
            time.sleep(poll)
        if progress.state != JobState.DONE:
            raise job_failed(progress)
        return progress

    def view(self, job_id: str, who: Identity | None = None) -> JobView:
        """`httpov status JOB`: the job as it is now (anyone who may VIEW sees any job's progress)."""
        authorize(self.store, who, Action.VIEW, job_id)
        return job_view(self.store, job_id, live_within=self.settings.live_node_seconds)

    def views(self, states: list[str] | None = None, name: str | None = None, user: str | None = None,
              limit: int | None = None, who: Identity | None = None, skip: int = 0) -> list[JobView]:
        """`httpov status`: the newest `limit` jobs (None: all) in `states`, named like `name`, of `user`, after the
        newest `skip` of them, oldest first: everyone's, for anyone who may VIEW."""
        require(who or local_operator(), Action.VIEW)
        return overview(self.store, states=states, name=name, user=user, limit=limit,
                        live_within=self.settings.live_node_seconds, skip=skip)

    def job_count(self, who: Identity | None = None) -> int:
        """How many jobs the farm lists."""
        require(who or local_operator(), Action.VIEW)
        return len(self.store.job_ids())

    def state(self, job_id: str, who: Identity | None = None) -> str:
        authorize(self.store, who, Action.VIEW, job_id)
        return self.store.state(job_id)

    def follow(self, job_id: str, poll: float = 1.0, timeout: float | None = None,
               on_outage: Callable[[str], None] | None = None, who: Identity | None = None) -> Iterator[JobView]:
        """`httpov watch`: the job's view every `poll` seconds until it ends (httpov.view.follow), riding out a
        Redis outage."""
        authorize(self.store, who, Action.VIEW, job_id)
        return follow(self.store, job_id, poll=poll, timeout=timeout, outage=self.settings.outage_seconds,
                      on_outage=on_outage, live_within=self.settings.live_node_seconds)

    def nodes(self, who: Identity | None = None) -> list[dict]:
        """`httpov nodes --json`: the render nodes seen in the last hour."""
        from httpov.nodes import farm_nodes

        require(who or local_operator(), Action.NODES)
        return farm_nodes(self.store, self.settings.lease_seconds)

    @audited("node.drain", lambda given: str(given["node"]))
    def drain_node(self, node: str, who: Identity | None = None) -> str:
        """`httpov nodes drain NODE` (admins): the node takes no new batch, finishes those it renders and exits
        (httpov.worker.reaper). NODE is its full name or the part before '@'; answers the full name."""
        from httpov.nodes import node_named

        require(who or local_operator(), Action.ADMIN)
        found = node_named(self.nodes(who), node)
        self.store.drain_node(found)
        return found

    def metrics(self, who: Identity | None = None) -> bytes:
        """`httpov metrics`, `/metrics`: the farm's Prometheus metrics, read from Redis now (httpov.metrics)."""
        from httpov.metrics import exposition

        require(who or local_operator(), Action.NODES)
        return exposition(self.store, self.settings.live_node_seconds)

    def fetch(self, job_id: str, output: Path, on_file: Callable[[int, int], None] | None = None,
              who: Identity | None = None) -> list[Path]:
        """Download every rendered frame as a PNG into `output` and the batch logs (failed batches' too) into
        `output/logs`; a job with no rendered frame is JobFailedError (failed, cancelled) or JobStateError.

        Results come from other machines: a batch zip holding more files than its frames and log, a member
        larger than a frame of the job can be, or a PNG not of the job's size is refused (ResultError) before
        it is unpacked or decoded."""
        authorize(self.store, who, Action.DOWNLOAD, job_id)
        spec = self.store.spec(job_id)
        output = Path(output)
        (output / "logs").mkdir(parents=True, exist_ok=True)
        records = self.store.batches(job_id)["done"]  # each done batch's result, as its record names it
        keys = sorted(paths.batch_key(job_id, b, info.get("result", "")) for b, info in records.items())
        frame_keys = self.storage.list(paths.frames_prefix(job_id)) if spec.slices else []
        for key in self.storage.list(paths.logs_prefix(job_id)):  # povray's logs of failed attempts
            self.storage.get_file(key, output / "logs" / PurePosixPath(key).name)
        total, images = len(keys) + len(frame_keys), []
        with tempfile.TemporaryDirectory(prefix="httpov-fetch-") as tmp:
            for done, key in enumerate(keys, 1):
                local = Path(tmp) / "batch.zip"
                try:
                    self.storage.get_file(key, local)
                except FileNotFoundError:  # recorded, then deleted with its job meanwhile
                    continue
                images += results.unpack_batch(local, key, spec.width, spec.height, output, output / "logs",
                                               frames=not spec.slices)  # a sliced job's frames: stitched below
                if on_file:
                    on_file(done, total)
            for done, key in enumerate(frame_keys, len(keys) + 1):
                target = output / PurePosixPath(key).name
                self.storage.get_file(key, target)
                with open(target, "rb") as f:
                    results.check_frame(f.read(24), key, spec.width, spec.height)
                if target.stat().st_size > results.frame_bytes(spec.width, spec.height):
                    raise ResultError(f"result {shown(key)} is {target.stat().st_size} bytes, more than a "
                                      f"{spec.width}x{spec.height} frame can be: refused")
                images.append(target)
                if on_file:
                    on_file(done, total)
        if not images:
            state = self.store.state(job_id)
            error = JobFailedError if state in (JobState.FAILED, JobState.CANCELLED) else JobStateError
            raise error(f"job {job_id} is {state} and has no rendered frame",
                        hint=f"`httpov status {job_id}` shows why; `httpov fetch {job_id} --output DIR` keeps its logs")
        return sorted(images)

    def logs(self, job_id: str, frame: int | None = None, failed: bool = False,
             who: Identity | None = None) -> list[BatchLog]:
        """povray's logs of the job's batches, in batch order: of every batch, or of those holding `frame` (a sliced
        frame's slices); for a failed batch its last failed attempt's. With `failed`, only failed attempts' logs
        (of batches rendered after failing too). Only the chosen batches' zips are downloaded."""
        authorize(self.store, who, Action.DOWNLOAD, job_id)
        spec = self.store.spec(job_id)
        if frame is not None and not spec.first <= frame <= spec.last:
            raise OptionError.of("frame", f"{{0}} {frame}: job {job_id} renders frames {spec.first}-{spec.last}")
        chosen = [b for b in spec.batches if frame is None or frame in Batch.from_id(b).frames]
        recorded = self.store.batches(job_id)
        failures, done = recorded["failed"], recorded["done"]
        found: list[BatchLog] = []
        with tempfile.TemporaryDirectory(prefix="httpov-logs-") as tmp:
            for batch_id in chosen:
                label = Batch.from_id(batch_id).label
                failed_key = paths.failed_log_key(job_id, batch_id)
                if batch_id in failures or failed:
                    try:
                        text = self.storage.get_bytes(failed_key) if self.storage.exists(failed_key) else b""
                    except FileNotFoundError:
                        text = b""
                    if text or batch_id in failures:
                        error = failures[batch_id].get("error", "") if batch_id in failures else ""
                        found.append(BatchLog(batch_id, label, "failed", text[-results.LOG_MAX_BYTES:].decode(
                            "utf-8", "replace") or "(no log stored)", error))
                if failed:
                    continue
                local = Path(tmp) / "batch.zip"
                key = paths.batch_key(job_id, batch_id, done.get(batch_id, {}).get("result", ""))
                try:
                    self.storage.get_file(key, local)
                except FileNotFoundError:
                    continue  # not rendered (yet)
                found.append(BatchLog(batch_id, label, "rendered", _batch_log(local, key, batch_id)))
        return found

    # job control
    @audited("cancel")
    def cancel(self, job_id: str, who: Identity | None = None) -> None:
        """Queued batches are dropped when they come up; running povrays are killed the moment their nodes hear of
        it (the transition publishes the stop; HTTPOV_STOP_POLL_SECONDS is the fallback)."""
        authorize(self.store, who, Action.CONTROL, job_id)
        try:
            self.store.transition(job_id, JobState.CANCELLED)
        except TransitionRefused as exc:
            raise JobStateError(f"job {job_id} is already {exc.current}") from exc
        self._settle_waiters(job_id)  # jobs waiting for it fail (or, --after-anyway, go on) now, not at a sweep

    def _settle_waiters(self, job_id: str) -> None:
        """Release or fail the jobs that wait for job `job_id` (httpov.after); the sweeps do it otherwise. Celery
        is imported (to queue those released) only when a job waits: cancel stays a cheap command."""
        if not waits_for(self.store, job_id):
            return
        from httpov.dispatch import settle_dependents

        settle_dependents(self.celery, self.store, self.settings.queue, self.settings.lease_seconds, of=job_id,
                          user_cap=self.settings.user_max_processes or 0)

    @audited("pause")
    def pause(self, job_id: str, who: Identity | None = None) -> None:
        """Batches not yet sent are set aside at once, queued ones as they come up; running ones finish."""
        authorize(self.store, who, Action.CONTROL, job_id)
        try:
            self.store.transition(job_id, JobState.PAUSED)
        except TransitionRefused as exc:
            raise JobStateError(f"job {job_id} is {exc.current}: only a queued or running job pauses") from exc
        self.store.note(job_id, "paused", kind="pause")  # its elapsed time stops until resume (eta.active_seconds)
        self.store.park_pending(job_id)  # what was never sent is set aside at once

    @audited("resume", done=_requeued)
    def resume(self, job_id: str, who: Identity | None = None) -> int:
        """Queue the batches set aside while paused; answers how many."""
        authorize(self.store, who, Action.CONTROL, job_id)
        try:
            self.store.transition(job_id, JobState.RUNNING, only_from=(JobState.PAUSED,))
        except TransitionRefused as exc:
            raise JobStateError(f"job {job_id} is {exc.current}, not paused") from exc
        self.store.note(job_id, "resumed", kind="resume")
        spec = self.store.spec(job_id)
        parked = self.store.unpark(job_id)
        if len(self.store.batches(job_id)["done"]) >= len(spec.batches):  # its last batches finished while paused
            with contextlib.suppress(TransitionRefused):
                self.store.transition(job_id, JobState.DONE, only_from=(JobState.RUNNING,))
        # first in line again, sent as the window allows
        self.store.pend(job_id, waiting_for_prepass(spec, handout_order(spec, parked)))
        self._top_up(spec)
        return len(parked)

    @audited("retry", _frames, _queued)
    def retry(self, job_id: str, frames: tuple[int, int] | None = None, who: Identity | None = None) -> int:
        """Re-render only the batches that failed or are missing, or with `frames` (first, last) every batch holding
        one of those frames (a sliced frame's slices), done ones too: their new results replace the old ones
        object by object (each store is atomic) and the job's history says what was rendered again. Answers how
        many batches were queued."""
        authorize(self.store, who, Action.CONTROL, job_id)
        spec = self.store.spec(job_id)
        if frames is not None and not spec.first <= frames[0] <= frames[1] <= spec.last:
            raise OptionError.of("frames", f"{{0}} {frames[0]}-{frames[1]}: job {job_id} renders frames "
                                           f"{spec.first}-{spec.last}")
        ended = self.store.record(job_id).get("finished")
        try:
            self.store.transition(job_id, JobState.RUNNING, only_from=FINISHED)
        except TransitionRefused as exc:
            raise JobStateError(f"job {job_id} is {exc.current}: wait for it to finish or cancel it") from exc
        if ended:  # the time it lay finished is no time it rendered (eta.active_seconds)
            self.store.note(job_id, "retried", kind="retry", since=float(ended))
        batches = self.store.batches(job_id)
        pinned = self.store.record(job_id).get("povray")
        if pinned and not any(info.get("povray") == pinned for info in batches["done"].values()):
            self.store.unpin_povray(job_id)  # nothing rendered with it (a broken node started the job): choose again
        if frames is None:
            todo = [b for b in spec.batches if b not in batches["done"]]
        else:
            wanted = set(range(frames[0], frames[1] + 1))
            todo = [b for b in spec.batches if wanted & set(Batch.from_id(b).frames)]
            freed = sum(int(batches["done"][b].get("bytes", 0)) for b in todo if b in batches["done"])
            self.store.render_again(job_id, todo, sorted(wanted), bool(spec.slices), freed)
            for batch_id in todo:  # no record names these results now: each new one is stored under its own name
                if batch_id in batches["done"]:
                    with contextlib.suppress(ResultError):  # a result that is not one name: nothing of the job's
                        self.storage.delete(paths.batch_key(job_id, batch_id,
                                                            batches["done"][batch_id].get("result", "")))
            what = f"frame {frames[0]}" if frames[0] == frames[1] else f"frames {frames[0]}-{frames[1]}"
            self.store.note(job_id, f"{what} rendered again ({len(todo)} batch(es))")
        self.store.reset_failures(job_id, todo)  # attempts, failures and the job's node blocklist
        self.store.unpark(job_id)
        # a fresh window: older messages of the job are stale
        self.store.pend(job_id, waiting_for_prepass(spec, handout_order(spec, todo)), replace=True)
        if not todo:
            with contextlib.suppress(TransitionRefused):
                self.store.transition(job_id, JobState.DONE, only_from=(JobState.RUNNING,))
        self._top_up(spec)
        return len(todo)

    @audited("delete", _force, _deleted)
    def delete(self, job_id: str, force: bool = False, who: Identity | None = None) -> Deleted:
        """Delete a finished job's Redis keys, stored results and logs, and its scene once no job uses it; a live
        or paused job is JobStateError unless `force`, which cancels it first (httpov.retention.delete_job)."""
        from httpov.retention import delete_job

        authorize(self.store, who, Action.DELETE, job_id)
        state = self.store.state(job_id)
        if state in (*LIVE, JobState.PAUSED, JobState.WAITING):
            if not force:
                raise JobStateError(f"job {job_id} is {state}: cancel it before deleting it",  # the page's words
                                    hint=f"`httpov delete --force {job_id}` cancels it first")  # the CLI's
            with contextlib.suppress(JobStateError):  # finished meanwhile
                self.cancel(job_id, who)
        self._settle_waiters(job_id)  # a job done: its waiters go on before it is gone (after: they would fail)
        deleted = delete_job(self.store, self.storage, job_id)
        self._settle_waiters(job_id)  # jobs still waiting for it fail: it is gone
        return deleted

    @audited("prune", _prune_asked, _pruned)
    def prune(self, older_than: float, states: tuple[str, ...] = FINISHED, dry_run: bool = False,
              who: Identity | None = None) -> list[Deleted]:
        """Delete (or list, with `dry_run`) the finished jobs older than `older_than` seconds: everyone's, so an
        admin's (or the local operator's) to do."""
        from httpov.retention import prune

        require(who or local_operator(), Action.DELETE)
        return prune(self.store, self.storage, older_than, states, dry_run)

    @audited("priority", _priority, _moved)
    def set_priority(self, job_id: str, priority: int, who: Identity | None = None) -> int:
        """Change a queued (or running, or paused) job's priority; its batches still queued follow. Answers how
        many batches were queued again at the new priority. A priority above the owner's max priority is
        ForbiddenError, but for an admin (`who`; None: the local operator)."""
        from httpov.dispatch import reprioritize

        owner = authorize(self.store, who, Action.CONTROL, job_id)
        user_limits.check_priority(self.user_limits_of(owner), priority, owner, who or local_operator(),
                                   what=f"job {job_id}")
        return reprioritize(self.celery, self.store, job_id, self.settings.queue, priority)

    # per-user limits (admins set them; submit and set_priority check them, render nodes and fair share follow them)
    def user_limits_of(self, user: str) -> user_limits.Limits:
        """The limits that bind `user`: their entry over the `*` entry over the farm's settings."""
        return user_limits.resolve(self.store.user_limits(), user, user_limits.farm_defaults(self.settings))

    def check_user_limits(self, owner: str, priority: int, who: Identity) -> None:
        """ForbiddenError naming the limit if a new job of `owner` at `priority` is past their limits."""
        limits = self.user_limits_of(owner)
        user_limits.check_priority(limits, priority, owner, who)
        if limits.max_jobs:
            user_limits.check_jobs(limits, self.store.live_jobs_of(owner), owner)

    def list_limits(self, who: Identity | None = None) -> dict[str, dict[str, object]]:
        """Every stored entry (name or `*` -> the fields it sets), and `defaults`: the farm's settings (admins)."""
        require(who or local_operator(), Action.ADMIN)
        stored = {name: {k: v for k, v in vars(user_limits.UserLimits.from_json(raw)).items() if v is not None}
                  for name, raw in sorted(self.store.user_limits().items())}
        return {"defaults": vars(user_limits.farm_defaults(self.settings)), "users": stored}

    @audited("limits.set", _limits_asked, _limits_now)
    def set_limits(self, name: str, who: Identity | None = None, **given: int | float | None) -> dict[str, object]:
        """Set some of a user's (or `*`'s) limits (admins): max_processes, max_jobs, max_priority, weight; the
        others stay as stored. Answers the entry now."""
        require(who or local_operator(), Action.ADMIN)
        name = user_limits.check_entry_name(name)
        unknown = sorted(set(given) - {"max_processes", "max_jobs", "max_priority", "weight"})
        if unknown:
            raise BadInputError(f"no such limit: {', '.join(unknown)}")
        entry = user_limits.UserLimits.from_json(self.store.user_limits().get(name)).changed(**given)
        self.store.set_user_limits(name, entry.to_json())
        return {k: v for k, v in vars(entry).items() if v is not None}

    @audited("limits.clear", _limits_asked)
    def clear_limits(self, name: str, who: Identity | None = None) -> bool:
        """Remove a user's (or `*`'s) entry (admins): the defaults apply again. Answers whether there was one."""
        require(who or local_operator(), Action.ADMIN)
        name = user_limits.check_entry_name(name)
        had = name in self.store.user_limits()
        self.store.set_user_limits(name, None)
        return had

    def reap(self, node: str | None = None) -> list[tuple[str, str]]:
        """Requeue batches whose render node is gone (any worker or waiting client may sweep); a render node
        passes its name, which also tells the others it is alive."""
        from httpov.dispatch import sweep

        return sweep(self.celery, self.store, self.settings.queue, self.settings.lease_seconds,
                     self.settings.max_attempts, self.settings.sweep_seconds, node,
                     user_cap=self.settings.user_max_processes or 0)

    def _top_up(self, spec: JobSpec, on_sent: Callable[[int], None] | None = None) -> int:
        """The job joins its user's jobs (dispatch.make_room): send its next pending batches until its window is
        full; answers how many were sent."""
        from httpov.dispatch import make_room

        part = make_room(self.celery, self.store, spec.id, self.settings.queue, self.settings.lease_seconds,
                         self.settings.user_max_processes or 0)
        _, batch_ids = self.store.top_up(spec.id, part)
        return self._send(spec, batch_ids, on_sent)

    def _send(self, spec: JobSpec, batch_ids: list[str], on_sent: Callable[[int], None] | None = None,
              requeued: bool = False) -> int:
        """Queue batches (`requeued`: ahead of the job's others); a broker that does not answer is
        BrokerUnavailableError, not a traceback."""
        from kombu.exceptions import OperationalError

        from httpov.dispatch import enqueue

        batch_ids = waiting_for_prepass(spec, batch_ids)  # a pre-pass queues the slices that load its cache
        if not batch_ids:
            return 0
        queue = self.store.queue_of(spec.id) or self.settings.queue
        try:
            return enqueue(self.celery, spec, batch_ids, queue, on_sent, requeued)
        except OperationalError as exc:
            raise BrokerUnavailableError(f"cannot queue batches of job {spec.id}: {exc}") from exc


@dataclass
class BatchLog:
    """povray's log of one batch: of its rendered result, or of its last failed attempt (with the error)."""

    batch: str
    label: str
    kind: str  # 'rendered' or 'failed'
    text: str
    error: str = ""


def _batch_log(zip_path: Path, key: str, batch_id: str) -> str:
    """The log inside a batch's result zip, checked as fetch checks results (a bounded, sane member)."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            info = zf.getinfo(f"{batch_id}.log")
            sink = io.BytesIO()
            archive.copy_member(zf, info, sink, key, results.LOG_MAX_BYTES)
    except KeyError:
        raise ResultError(f"result {shown(key)} holds no log") from None
    except (ArchiveError, zipfile.BadZipFile) as exc:
        raise ResultError(f"result refused: {shown(exc)}") from None
    return sink.getvalue().decode("utf-8", "replace")


def job_failed(view: JobView) -> JobFailedError:
    """The error for a job that ended without every frame (`submit --wait`, `watch`: exit code 8)."""
    if view.state == JobState.CANCELLED:
        return JobFailedError(f"job {view.id} cancelled with {view.frames_done}/{view.frames_total} "
                              "frame(s) rendered", hint=f"`httpov retry {view.id}` renders the rest")
    first = view.errors[0] if view.errors else ""
    return JobFailedError(f"job {view.id} {view.state}: {view.frames_failed} frame(s) failed"
                          + (f": {first}" if first else ""), hint=f"`httpov status {view.id}` shows the log")


def _scene_archive(source: Path, tmp: Path,
                   limits: archive.ArchiveLimits) -> tuple[Path, str | None, list[str]]:
    """A checked zip of the scene, the .ini/.pov the user named when they gave a file, and the zip's files."""
    if not source.exists():
        raise SceneError(f"{source}: no such file or directory")
    suffix = source.suffix.lower()
    if source.is_dir() or suffix in (".ini", ".pov"):
        out = tmp / "scene.zip"
        names = archive.pack_scene(source, out, limits)  # packs a file's folder, and checks the zip
        return out, None if source.is_dir() else source.name, names
    if suffix == ".zip" or zipfile.is_zipfile(source):
        return source, None, archive.check_archive(source, limits)
    raise SceneError(f"{source}: not a scene (give a .zip, a folder, or a .ini/.pov file)")


def _scene_file(name: str, names: list[str]) -> str:
    """`name` if it is an .ini or .pov at the top of the scene zip (at its root or in its one top folder)."""
    if "/" in name or "\\" in name or not name.lower().endswith((".ini", ".pov")) or \
            not any(n == name or n.count("/") == 1 and n.endswith("/" + name) for n in names):
        raise SceneError(f"the scene has no {shown(name)!r} at its top to render (an .ini or .pov file)")
    return name


def _photons_unshared(names: list[str], read: Callable[[str], bytes], layout: SceneLayout) -> str:
    """Why the photons of a scene that names them cannot be shared ('': they can), by the text of its files
    (httpov.photons); a render node checks its copy again and its probe says whether photons are shot."""
    main = layout.root + layout.pov
    try:
        check_others([n for n in names if n != main], read)
        insertion_point(read(main).decode("utf-8", "replace"))
    except NotShareable as exc:
        return str(exc)
    return ""


def _plan_photons(spec: JobSpec, unshared: str | None) -> list[str]:
    """Give each frame of a sliced photon job a pre-pass (the one its radiosity has, or one of its own) whose photon
    map its slices load; answers notes for the user. Whole frames, and frames of a job that shares one radiosity
    cache, shoot their own photons (moving lights and objects need them: README, "Photons")."""
    if unshared is None or not spec.slices:
        return []
    if spec.radiosity == "shared":
        return ["photons are not shared with --radiosity-cache shared: every slice shoots its own"]
    if unshared or not wrappable(spec.pov):
        why = unshared or f"the scene file name {spec.pov!r} cannot be included by a wrapper"
        return [f"photons are not shared ({why}): every slice shoots its own, as a single render does"]
    spec.photons = "shared"
    prepasses = {Batch(f, f, prepass=True).id for f in range(spec.first, spec.last + 1)} | set(prepass_ids(spec))
    spec.batches = sorted(prepasses) + [b for b in spec.batches if b not in prepasses]
    return ["one pre-pass per frame shoots its photons once into a map its slices load (--photons off: every "
            "slice shoots its own)"]


def _choices(layout: SceneLayout, spec: JobSpec) -> list[str]:
    """What httpov chose for a scene that has no ini, so that the user is not surprised by it."""
    if layout.ini is not None:
        return []
    return [f"the scene has no ini: rendering {layout.pov!r} at {spec.width}x{spec.height} (POV-Ray's default "
            f"size), {spec.frame_count} frame(s); a pov.ini sets Input_File_Name, Width, Height and the frames"]


def _default_name(source: Path, layout: SceneLayout) -> str:
    stem = source.stem if source.suffix else source.name
    if stem in ("pov", "scene", "") and layout.root:
        stem = layout.root.rstrip("/")
    return safe_name(stem)
