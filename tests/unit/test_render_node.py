"""RenderNode's decisions on failures and hand-backs, against an in-memory job store and a stand-in for povray:
no Redis, no povray. What Redis does with these calls (the Lua scripts) is tested by the integration tests."""
from __future__ import annotations

import contextlib
import errno
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from httpov.errors import JobNotFoundError, RenderError, RenderHungError, StorageError
from httpov.paths import batch_key, failed_log_key
from httpov.plan import POVRAY_START_SECONDS, QUICK_START_SECONDS, Batch, JobSpec
from httpov.settings import Settings
from httpov.storage.local import LocalStorage
from httpov.store.jobs import Recorded, Taken
from httpov.worker import room
from httpov.worker.batch import SAME_FAILURE_NODES, RenderNode
from httpov.worker.povray import RenderOutput, frame_file

JOB = "job1"
BATCH = "f000001-000002"
NODE = "celery@a"
SCENE = "scenes/" + "0" * 64 + ".zip"


class FakeStore:
    """The JobStore calls a render node makes, answered from memory; every write is recorded in `calls`."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec_ = spec
        self.job_state = "queued"
        self.start_answer = "ok"
        self.blocked_nodes: set[str] = set()
        self.live: set[str] = {NODE}
        self.attempt = 0
        self.failed_on: dict[str, set[str]] = {}  # signature: nodes
        self.failed: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[Any, ...]] = []

    def spec(self, job_id: str) -> JobSpec:
        if job_id != self.spec_.id:
            raise JobNotFoundError(job_id)
        return self.spec_

    def state(self, job_id: str) -> str:
        return self.job_state

    def cut(self, job_id: str, batch_id: str) -> int | None:  # no slice was re-split
        return None

    def cuts(self, job_id: str) -> dict[str, int]:
        return {}

    def blocked(self, job_id: str) -> set[str]:
        return set(self.blocked_nodes)

    def live_nodes(self, within: float) -> set[str]:
        return set(self.live)

    def draining(self) -> dict[str, float]:
        return dict(getattr(self, "drained", {}))

    def pin_povray(self, job_id: str, version: str) -> str | None:
        self.povray = getattr(self, "povray", None) or version  # the first node's version
        return self.povray

    def count_batch(self, node: str, outcome: str, error: str = "") -> None:
        self.counted = [*getattr(self, "counted", []), outcome]  # `httpov nodes`, not part of `calls`

    def start_batch(self, job_id: str, batch_id: str, token: str, node: str, lease: float, handoff: str = "",
                    hand_back: bool = False, user_max_processes: int = 0) -> str:
        self.calls.append(("start_batch", batch_id, node, hand_back))
        return self.start_answer

    def take_batch(self, job_id: str, batch_id: str, token: str, node: str, lease: float, handoff: str = "",
                   user_max_processes: int = 0, povray: str = "") -> Taken:
        if node in self.blocked_nodes:  # as scripts/start_batch.lua: refused before anything is taken
            return Taken("blocked", 0, False)
        if povray and self.pin_povray(job_id, povray) != povray:
            return Taken(f"povray:{self.povray}", 0, False)
        status = self.start_batch(job_id, batch_id, token, node, lease, handoff, False, user_max_processes)
        if status != "ok":
            return Taken(status, 0, False)
        saved = getattr(self, "checkpoint", lambda *_: None)(job_id, batch_id) is not None
        return Taken(status, self.add_attempt(job_id, batch_id), saved)

    def refresh(self, job_id: str, batch_id: str, token: str, lease: float, progress: float | None = None) -> str:
        return self.job_state

    def add_attempt(self, job_id: str, batch_id: str, by: int = 1) -> int:
        self.attempt += by
        return self.attempt

    def record_failure(self, job_id: str, batch_id: str, node: str, signature: str,
                       block_after: int) -> tuple[int, bool]:
        nodes = self.failed_on.setdefault(signature, set())
        nodes.add(node)
        self.calls.append(("record_failure", batch_id, node))
        return len(nodes), False

    def fail_batch(self, job_id: str, batch_id: str, error: str, lines: list[str], final: bool, node: str,
                   hangs: int = 0, reason: str = "render") -> None:
        self.failed[batch_id] = {"error": error, "lines": lines, "final": final, "node": node, "at": 1.0,
                                 "reason": reason, **({"hangs": hangs} if hangs else {})}
        self.calls.append(("fail_batch", batch_id, final))

    def failure(self, job_id: str, batch_id: str) -> dict[str, Any] | None:
        return self.failed.get(batch_id)

    def done_sample(self, job_id: str, sample: int = 64) -> dict[str, dict[str, Any]]:
        return dict(getattr(self, "done", {}))

    def note(self, job_id: str, text: str, kind: str | None = None) -> None:
        self.history = [*getattr(self, "history", []), {"what": text, "kind": kind}]

    def hold_for_retry(self, job_id: str, batch_id: str, handoff: str, node: str, seconds: float) -> None:
        self.calls.append(("hold_for_retry", batch_id, handoff, seconds))

    def finish_batch(self, job_id: str, batch_id: str, info: dict[str, Any], frames: list[int], token: str,
                     node: str = "") -> str:
        self.calls.append(("finish_batch", batch_id, frames))
        self.result = info["result"]
        return getattr(self, "finish_answer", "done")

    def record_batch(self, job_id: str, batch_id: str, info: dict[str, Any], frames: list[int], token: str,
                     node: str = "", top_up: int | None = None) -> Recorded:
        return Recorded(self.finish_batch(job_id, batch_id, info, frames, token, node))

    def release(self, job_id: str, batch_id: str) -> None:
        self.calls.append(("release", batch_id))

    def park(self, job_id: str, batch_id: str) -> None:
        self.calls.append(("park", batch_id))

    def batches(self, job_id: str) -> dict[str, dict[str, Any]]:
        return {"failed": dict(self.failed)}

    def nodes(self) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
        return {n: 1.0 for n in self.live}, dict(getattr(self, "records", {}))

    def attempts(self, job_id: str, batch_id: str) -> int:
        return self.attempt

    def wait_for_storage(self, job_id: str, batch_id: str, handoff: str, node: str, seconds: float,
                         reason: str) -> None:
        self.calls.append(("wait_for_storage", batch_id, handoff, reason))

    def written(self) -> list[str]:
        return [call[0] for call in self.calls]


class FakeCache:
    """A scene cache holding one scene folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @contextlib.contextmanager
    def use(self, storage: object, key: str) -> Iterator[Path]:
        yield self.folder


class FakePovray:
    """Stands in for povray.render: raises `error` (after writing a log, as povray does), else writes the frames."""

    def __init__(self) -> None:
        self.error: RenderError | None = None
        self.runs = 0

    def __call__(self, povray: str, spec: JobSpec, batch: Batch, workdir: Path, threads: int, keep_going: Any,
                 limits: Any = None, time_limit: float | None = None, extra: list[str] | None = None,
                 size: tuple[int, int] | None = None, no_progress: float | None = None,
                 hang_limit: tuple[float, str] | None = None, watcher: Any = None) -> RenderOutput:
        self.runs += 1
        self.watch = (no_progress, hang_limit)
        assert (workdir / "scene" / "scene.pov").read_text() == "// a scene"
        (workdir / "render.log").write_text("povray's log\n")
        if self.error is not None:
            raise self.error
        images = {}
        for frame in batch.frames:
            images[frame] = workdir / f"{frame}.png"
            images[frame].write_bytes(b"png of frame %d" % frame)
        return RenderOutput(images=images, log="povray's log\n", seconds=0.5)


@pytest.fixture
def farm(tmp_path: Path) -> tuple[RenderNode, FakeStore, FakePovray, LocalStorage]:
    spec = JobSpec(id=JOB, name="anim", scene_key=SCENE, root="", pov="scene.pov", options={}, initial=1, final=4,
                   first=1, last=4, width=8, height=8, count=2, batches=[BATCH, "f000003-000004"])
    settings = Settings(storage=str(tmp_path / "store"), cache_dir=tmp_path / "cache", lease_seconds=4.0,
                        max_attempts=3)
    scene = tmp_path / "scene"
    scene.mkdir()
    (scene / "scene.pov").write_text("// a scene")
    store, fake, storage = FakeStore(spec), FakePovray(), LocalStorage(tmp_path / "store")
    node = RenderNode(settings, store, storage, FakeCache(scene), povray_render=fake)  # type: ignore[arg-type]
    return node, store, fake, storage


def _run(node: RenderNode, name: str = NODE):
    return node.run(JOB, BATCH, token="task-1", node=name)


def test_a_rendered_batch_is_stored_and_recorded(farm):
    node, store, fake, storage = farm
    outcome = _run(node)
    assert outcome.status == "rendered" and fake.runs == 1
    assert store.calls[-1] == ("finish_batch", BATCH, [1, 2])
    with zipfile.ZipFile(storage.root / batch_key(JOB, BATCH, store.result)) as zf:
        assert zf.read(frame_file("anim", 1, 4)) == b"png of frame 1" and f"{BATCH}.log" in zf.namelist()


def test_an_execution_that_lost_its_lease_discards_its_output_and_replaces_nothing(farm):
    node, store, fake, storage = farm
    committed = storage.root / batch_key(JOB, BATCH, "other")  # the execution that took the batch over stored this
    committed.parent.mkdir(parents=True)
    committed.write_bytes(b"the batch's result")
    store.finish_answer = "lost"
    outcome = _run(node)
    assert outcome.status == "discarded" and "discarded" in outcome.detail
    assert [p.name for p in committed.parent.iterdir()] == [committed.name]  # its own zip deleted, no other touched
    assert committed.read_bytes() == b"the batch's result"


def test_a_scene_error_fails_the_job_at_once_and_keeps_povrays_log(farm):
    node, store, fake, storage = farm
    fake.error = RenderError("povray failed: Parse Error: x", lines=["Parse Error: x"])
    outcome = _run(node)
    assert outcome.status == "failed" and outcome.retry_in is None
    assert store.failed[BATCH] == {"error": "povray failed: Parse Error: x", "lines": ["Parse Error: x"],
                                   "final": True, "node": NODE, "at": 1.0, "reason": "render"}
    assert "record_failure" not in store.written()  # the scene's fault, not the node's
    assert (storage.root / failed_log_key(JOB, BATCH)).read_text() == "povray's log\n"


def test_a_transient_failure_is_retried_with_back_off_until_the_attempts_run_out(farm):
    node, store, fake, _ = farm
    fake.error = RenderError("povray was killed", transient=True)
    waits = []
    for _attempt in (1, 2):
        outcome = _run(node, name=NODE)
        assert outcome.status == "retry" and store.failed[BATCH]["final"] is False
        assert store.calls[-1][:3] == ("hold_for_retry", BATCH, "retry:task-1")  # the retry's hand-off
        assert store.calls[-1][3] == outcome.retry_in + node.settings.lease_seconds
        waits.append(outcome.retry_in)
    assert 0 < waits[0] < waits[1] <= 60  # exponential, bounded
    outcome = _run(node)  # attempt 3 of max_attempts 3
    assert outcome.status == "failed" and outcome.retry_in is None
    assert store.failed[BATCH]["final"] is True and store.failed[BATCH]["error"].endswith("(failed 3 times)")
    assert store.failed[BATCH]["reason"] == "transient"  # the metrics' category


def test_the_same_failure_on_several_nodes_fails_the_job_before_its_attempts_run_out(farm):
    node, store, fake, _ = farm
    fake.error = RenderError("povray was killed", transient=True)
    assert _run(node, name="celery@a").status == "retry"
    outcome = _run(node, name="celery@b")  # attempt 2 of 3, but a second node saw the same failure
    assert SAME_FAILURE_NODES == 2 and outcome.status == "failed"
    assert store.failed[BATCH]["final"] is True and "on 2 render nodes" in store.failed[BATCH]["error"]


def test_an_unexpected_exception_on_the_node_counts_as_transient(farm):
    node, store, fake, _ = farm
    fake.error = OSError("No space left on device")  # type: ignore[assignment]
    outcome = _run(node)
    assert outcome.status == "retry" and "OSError: No space left on device" in store.failed[BATCH]["error"]


def test_a_blocked_node_hands_the_batch_to_a_live_node_that_is_not(farm):
    node, store, fake, _ = farm
    store.blocked_nodes = {NODE}
    store.live = {NODE, "celery@b", "celery@draining"}
    store.drained = {"celery@draining": 1.0}  # about to exit: takes no batch by name
    outcome = _run(node)
    assert outcome.status == "handback" and outcome.send_to == "celery@b"
    assert store.calls == [("start_batch", BATCH, NODE, True)]  # the lease left for the hand-off, nothing else
    assert fake.runs == 0 and store.attempt == 0


def test_a_blocked_node_with_no_other_live_node_fails_the_job(farm):
    node, store, fake, _ = farm
    store.blocked_nodes = {NODE}
    store.failed = {"f000003-000004": {"error": "povray was killed", "lines": ["killed"], "at": 5.0}}
    outcome = _run(node)
    assert outcome.status == "failed" and fake.runs == 0
    assert store.failed[BATCH]["final"] is True and store.failed[BATCH]["lines"] == ["killed"]
    assert "every live render node has failed this job" in store.failed[BATCH]["error"]


def test_a_blocked_node_parks_a_paused_jobs_batch_and_leaves_a_finished_job_alone(farm):
    node, store, fake, _ = farm
    store.blocked_nodes = {NODE}
    store.job_state = "paused"
    assert _run(node).status == "parked" and store.calls == [("park", BATCH)]
    store.calls.clear()
    store.job_state = "cancelled"
    assert _run(node).status == "cancelled" and store.calls == [] and fake.runs == 0


@pytest.mark.parametrize(("answer", "status"), [("paused", "parked"), ("cancelled", "cancelled"),
                                                 ("duplicate", "duplicate"), ("busy", "busy"), ("done", "done")])
def test_a_batch_that_cannot_start_is_not_rendered_or_counted(farm, answer, status):
    node, store, fake, _ = farm
    store.start_answer = answer
    outcome = _run(node)
    assert outcome.status == status and outcome.retry_in is None and outcome.send_to is None
    assert fake.runs == 0 and store.attempt == 0 and store.written() == ["start_batch"]


def test_a_job_gone_from_redis_is_dropped(farm):
    node, store, fake, _ = farm
    outcome = node.run("gone", BATCH, token="task-1", node=NODE)
    assert outcome.status == "missing" and store.calls == [] and fake.runs == 0


def test_a_job_cancelled_while_povray_runs_is_stopped_and_released(farm):
    node, store, fake, _ = farm

    def cancel_then_fail(*args: Any, **kwargs: Any) -> RenderOutput:
        keep_going = args[5]
        store.job_state = "cancelled"
        # povray is asked to stop at its next tick once the lease keeper's thread has read the state (its poll,
        # HTTPOV_STOP_POLL_SECONDS; the stop message wakes it at once, see tests/integration/test_job_control.py)
        deadline = time.monotonic() + 5
        while keep_going() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert keep_going() is False
        raise RenderError("povray was stopped", transient=True)
    node.povray_render = cancel_then_fail
    outcome = _run(node)
    assert outcome.status == "stopped" and outcome.detail == "job cancelled"
    assert store.written() == ["start_batch", "release"]  # no failure recorded against the node or the batch


def _full_after_povray(monkeypatch: pytest.MonkeyPatch, fake: FakePovray, free: int = 3) -> None:
    """The cache folder's filesystem has `free` MiB left once povray has run (it filled the disk)."""
    real = room.free_mib
    monkeypatch.setattr(room, "free_mib", lambda folder: free if fake.runs else real(folder))


def test_a_render_that_fills_the_nodes_disk_goes_to_another_node_and_counts_against_nothing(farm, monkeypatch):
    node, store, fake, _ = farm
    store.live = {NODE, "celery@b"}
    fake.error = RenderError("povray failed: Fatal error in renderer: Frontend halted render.")
    _full_after_povray(monkeypatch, fake)
    outcome = _run(node)
    assert outcome.status == "handback" and outcome.send_to == "celery@b"
    assert "disk full (cache folder, 3 MiB free)" in outcome.detail
    assert store.written() == ["start_batch", "start_batch"]  # its own lease handed over: no failure recorded
    assert store.calls[-1] == ("start_batch", BATCH, NODE, True) and not store.failed and store.attempt == 0
    assert getattr(store, "counted", []) == []  # not a failed batch of this node in `httpov nodes`


def test_a_node_short_of_room_takes_no_batch_and_with_no_other_node_waits(farm):
    node, store, fake, _ = farm
    node.settings = node.settings.with_(min_free_mb=10**9)  # more than any disk here
    store.live = {NODE, "celery@b"}
    outcome = _run(node)
    assert outcome.status == "handback" and outcome.send_to == "celery@b" and fake.runs == 0
    assert store.calls == [("start_batch", BATCH, NODE, True)]
    store.calls.clear()
    store.records = {"celery@b": {"fault": "disk full (cache folder, 1 MiB free)"}}  # b has no room either
    outcome = _run(node)
    assert outcome.status == "waiting" and outcome.retry_in and fake.runs == 0
    assert store.calls == [("start_batch", BATCH, NODE, True)]  # the lease left for its own retry, taken only if free
    assert not store.failed and outcome.detail.startswith(f"{NODE}: disk")


@pytest.mark.parametrize("error", [MemoryError(), OSError(errno.ENOSPC, "No space left on device"),
                                   OSError(errno.EDQUOT, "Disk quota exceeded")])
def test_out_of_memory_or_space_on_the_node_is_the_nodes_fault(farm, error):
    node, store, fake, _ = farm
    store.live = {NODE, "celery@b"}
    fake.error = error  # type: ignore[assignment]
    outcome = _run(node)
    assert outcome.status == "handback" and outcome.send_to == "celery@b"
    assert "record_failure" not in store.written() and not store.failed


class FullStorage(LocalStorage):
    def put_file(self, key: str, path: Path) -> None:
        raise StorageError(f"cannot write {key} to {self.root}: No space left on device") from OSError(
            errno.ENOSPC, "No space left on device")

    def check(self) -> None:
        raise StorageError(f"storage directory {self.root} is not writable: No space left on device")


def test_full_storage_holds_the_batch_and_blames_no_node(farm, tmp_path):
    node, store, fake, _ = farm
    node.storage = FullStorage(tmp_path / "store")
    waits = []
    for name in (NODE, "celery@b", NODE, "celery@b"):  # however often, on whichever node
        outcome = _run(node, name=name)
        assert outcome.status == "waiting" and outcome.detail.startswith("waiting for storage: ")
        assert store.calls[-1][0] == "wait_for_storage" and "No space left" in store.calls[-1][3]
        waits.append(outcome.retry_in)
    assert "record_failure" not in store.written() and not store.failed  # no blocklist, no failed attempt
    assert 0 < waits[0] < waits[-1] <= 2 * node.settings.lease_seconds  # back-off, bounded by two leases
    assert getattr(store, "counted", []) == [] and store.attempt == 0  # no attempt of the batch used up
    assert fake.runs == 1  # then storage is probed first: nothing is rendered for naught
    renders = fake.runs
    node.storage = LocalStorage(tmp_path / "store")  # storage is back
    assert _run(node).status == "rendered" and fake.runs == renders + 1


HUNG = "no progress for 120 s: povray used no CPU and wrote nothing (HTTPOV_NO_PROGRESS_SECONDS); it was killed"


def test_a_hung_batch_goes_to_another_live_node_and_a_second_hang_fails_the_job(farm):
    node, store, fake, _ = farm
    store.live = {NODE, "celery@b"}
    fake.error = RenderHungError(HUNG, ["a line"])
    outcome = _run(node)
    assert (outcome.status, outcome.send_to, outcome.hung, outcome.retry_in) == ("retry", "celery@b", True, None)
    assert store.failed[BATCH] == {"error": HUNG, "lines": ["a line"], "final": False, "node": NODE, "at": 1.0,
                                   "hangs": 1, "reason": "hung"}
    assert store.calls[-1] == ("start_batch", BATCH, NODE, True)  # the lease left for the other node's hand-off
    assert store.history == [{"what": f"frames 1-2 hung on {NODE}: {HUNG}", "kind": "hang"}]
    assert store.counted == ["failed", "hung"]  # `httpov nodes` and the nodes page
    outcome = _run(node, name="celery@b")  # hangs there too: the scene's, not a node's
    assert (outcome.status, outcome.hung) == ("failed", True)
    assert store.failed[BATCH]["final"] is True and store.failed[BATCH]["hangs"] == 2
    assert store.failed[BATCH]["error"] == f"{HUNG} (the batch hung 2 times, last on celery@b, before on {NODE})"


def test_a_hung_batch_on_a_farm_of_one_node_is_tried_again_there(farm):
    node, store, fake, _ = farm
    fake.error = RenderHungError(HUNG)
    outcome = _run(node)
    assert (outcome.status, outcome.send_to, outcome.retry_in) == ("retry", None, node.settings.lease_seconds)
    assert store.calls[-1][:3] == ("hold_for_retry", BATCH, "retry:task-1")
    assert _run(node).status == "failed" and store.failed[BATCH]["final"] is True


def test_povray_is_watched_with_the_no_progress_window_and_a_limit_from_the_jobs_frame_times(farm):
    node, store, fake, _ = farm
    assert _run(node).status == "rendered"
    assert fake.watch == (120.0, None)  # no batch of the job measured yet: only the node's own limit
    store.done = {"f000003-000004": {"seconds": 40.0, "frames": 2}, "f000005-000005": {"seconds": 30.0},
                  "f000006-000006": {"seconds": 10.0}}  # 20, 30 and 10 s a frame: median 20
    assert _run(node).status == "rendered"
    limit, why = fake.watch[1]
    assert limit == 20.0 * 20 * 2 and "HTTPOV_BATCH_TIME_FACTOR" in why  # 20 times the median, two frames
    store.spec_.time_limit = 30  # submit --time-limit: the user's limit, no derived one
    assert _run(node).status == "rendered" and fake.watch[1] is None


def test_a_forged_slice_zip_fails_the_stitching_batch_with_the_bound_named(tmp_path):
    """The frame's last slice is stitched with a slice another node stored: a zip whose frame unpacks to 64 MiB
    (the stitch step read it whole and took 4 GiB of RSS: issue #25). The batch fails, once and for good, naming
    the bound; the node carries on; no frame is stored."""
    import io

    from httpov.paths import frame_key

    slices = [(1, 8), (9, 16)]
    ids = [Batch(1, 1, rows).id for rows in slices]
    spec = JobSpec(id=JOB, name="still", scene_key=SCENE, root="", pov="scene.pov", options={}, initial=1, final=1,
                   first=1, last=1, width=8, height=16, count=1, batches=ids, slices=slices)
    frame = frame_file("still", 1, 1)
    storage = LocalStorage(tmp_path / "store")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(frame, bytes(64 * 1024**2), compresslevel=1)
    storage.put_bytes(batch_key(JOB, ids[0], "other"), bomb.getvalue())

    class SlicedStore(FakeStore):
        def slice_done(self, job_id: str, frame: int, batch_id: str) -> int:
            return len(slices)

        def owns(self, *args: Any) -> bool:
            return True

        def done_infos(self, job_id: str, batch_ids: list[str]) -> dict[str, Any]:
            return {b: {"result": "other"} for b in batch_ids}

    def povray_render(povray: str, spec: JobSpec, batch: Batch, workdir: Path, *args: Any,
                      **kwargs: Any) -> RenderOutput:
        return _green_frame(spec, workdir)

    scene = tmp_path / "scene"
    scene.mkdir()
    settings = Settings(storage=str(tmp_path / "store"), cache_dir=tmp_path / "cache", lease_seconds=4.0)
    store = SlicedStore(spec)
    node = RenderNode(settings, store, storage, FakeCache(scene), povray_render=povray_render)  # type: ignore[arg-type]
    outcome = node.run(JOB, ids[1], token="task-1", node=NODE)
    assert outcome.status == "failed" and outcome.retry_in is None, outcome
    error = store.failed[ids[1]]["error"]
    assert error.startswith(f"cannot stitch {frame}: result refused: {batch_key(JOB, ids[0], 'other')}: member "), error
    assert "would unpack to 67108864 bytes, more than the" in error and store.failed[ids[1]]["final"]
    assert not storage.exists(frame_key(JOB, frame)) and "finish_batch" not in store.written()


def test_a_checkpoint_povray_cannot_continue_from_is_dropped_and_the_batch_renders_from_the_start(farm, tmp_path):
    """A trusted checkpoint whose state makes povray fail (a state of another image size aborted povray here): the
    same execution renders the batch again from the start, says so in the batch's log, and forgets the checkpoint."""
    import hashlib

    from httpov.paths import checkpoint_key

    node, store, fake, storage = farm
    node.__dict__["povray_version"] = "3.7.0.10"
    archive = tmp_path / "saved.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("frame1.pov-state", b"a state povray aborts on")
    storage.put_file(checkpoint_key(JOB, BATCH), archive)
    saved = {"sha256": hashlib.sha256(archive.read_bytes()).hexdigest(), "bytes": archive.stat().st_size,
             "povray": "3.7.0.10", "node": "celery@gone", "frames": [], "frame": 1, "fraction": 0.5}
    store.checkpoint = lambda job_id, batch_id: saved if batch_id == BATCH else None  # type: ignore[attr-defined]
    store.drop_checkpoint = lambda job_id, batch_id: store.calls.append(("drop_checkpoint", batch_id))  # type: ignore[attr-defined]
    runs: list[list[str]] = []

    def povray_render(povray: str, spec: JobSpec, batch: Batch, workdir: Path, *args: Any, watcher: Any = None,
                      **kw: Any) -> RenderOutput:
        out = workdir / f"out{len(runs)}"
        out.mkdir()
        runs.append(watcher.start(out))
        if "+C" in runs[-1]:
            assert (out / "frame1.pov-state").read_bytes() == b"a state povray aborts on"
            raise RenderError("povray was killed by signal 6", transient=True)
        return fake(povray, spec, batch, workdir, *args)

    node.povray_render = povray_render
    outcome = _run(node)
    assert outcome.status == "rendered" and runs == [["+C"], []]
    assert ("drop_checkpoint", BATCH) in store.calls and not storage.exists(checkpoint_key(JOB, BATCH))
    with zipfile.ZipFile(storage.root / batch_key(JOB, BATCH, store.result)) as zf:
        said = zf.read(f"{BATCH}.log").decode()
    assert "continuing frames 1-2 from its checkpoint failed (povray was killed by signal 6)" in said, said


def test_a_slice_re_split_before_its_node_was_lost_renders_only_up_to_its_cut(tmp_path):
    """A requeued slice that was re-split (its node lost after the cut) renders its rows up to the cut only: povray
    is asked for rows 1-32 of 1-96, the new slice having the rest; its job and its frame wait for the new slice."""

    slices = [(1, 96), (97, 128)]
    ids = [Batch(1, 1, rows).id for rows in slices]
    spec = JobSpec(id=JOB, name="still", scene_key=SCENE, root="", pov="scene.pov", options={}, initial=1, final=1,
                   first=1, last=1, width=8, height=128, count=1, batches=ids, slices=slices)
    asked: list[Any] = []

    class CutStore(FakeStore):
        def cut(self, job_id: str, batch_id: str) -> int | None:
            return 32 if batch_id == ids[0] else None

        def cuts(self, job_id: str) -> dict[str, int]:
            return {ids[0]: 32}

        def slice_done(self, job_id: str, frame: int, batch_id: str) -> int:
            return 2  # of 3 delivered slices: the new one (rows 33-96) is not in

    def povray_render(povray: str, spec: JobSpec, batch: Batch, workdir: Path, *args: Any,
                      **kwargs: Any) -> RenderOutput:
        asked.append(batch.rows)
        return _green_frame(spec, workdir)

    scene = tmp_path / "scene"
    scene.mkdir()
    settings = Settings(storage=str(tmp_path / "store"), cache_dir=tmp_path / "cache", lease_seconds=4.0)
    store = CutStore(spec)
    node = RenderNode(settings, store, LocalStorage(tmp_path / "store"), FakeCache(scene),  # type: ignore[arg-type]
                      povray_render=povray_render)
    outcome = node.run(JOB, ids[0], token="task-1", node=NODE)
    assert outcome.status == "rendered", outcome
    assert asked == [(1, 32)]
    assert ("finish_batch", ids[0], []) in store.calls  # recorded done, no frame stitched yet


def _green_frame(spec: JobSpec, workdir: Path) -> RenderOutput:
    """What a stand-in povray renders of a one-frame job: frame 1, all green, of the job's size."""
    from PIL import Image

    Image.new("RGB", (spec.width, spec.height), (0, 200, 0)).save(workdir / "1.png")
    return RenderOutput(images={1: workdir / "1.png"}, log="povray's log\n", seconds=0.5)


@pytest.mark.parametrize(("library", "runs", "start"), [
    (None, 1, POVRAY_START_SECONDS),  # povray as it is
    ("/httpov-preload.so", 1, QUICK_START_SECONDS),  # with the node's quick waits
    ("/httpov-preload.so", 2, 2 * QUICK_START_SECONDS),  # a slice a re-split cut: povray ran twice
])
def test_a_done_record_says_the_povray_starts_its_seconds_include(farm, monkeypatch, library, runs, start):
    """Later jobs of the scene plan from frame times net of povray's start (plan.net_seconds): the done record says
    what the batch paid, by how its node ran povray and how many times."""
    from dataclasses import replace

    from httpov.worker import povray, waits

    node, store, fake, _ = farm
    monkeypatch.setattr(waits, "library_for", lambda settings: None if library is None else Path(library))
    monkeypatch.setattr(povray, "render", lambda *args, preload=None, node_limit=None, home=None, out=None, **kw:
                        replace(fake(*args, **kw), runs=runs))
    infos: list[dict[str, Any]] = []
    finish = store.finish_batch
    store.finish_batch = lambda job_id, batch_id, info, *rest: infos.append(info) or finish(  # type: ignore[method-assign]
        job_id, batch_id, info, *rest)
    node.povray_render = node._povray
    assert _run(node).status == "rendered"
    assert [info["start"] for info in infos] == [pytest.approx(start)] and infos[0]["seconds"] == 0.5


def test_a_crash_with_quick_waits_leaves_that_slot_without_them_and_its_siblings_with_them(farm, monkeypatch):
    """A node's slots are threads of one process: the slot whose povray crashed with the preload library renders
    without it for its next runs (the crash may be the scene's), the node's other slots keep it."""
    from httpov.worker import povray, waits
    from httpov.worker.batch import WITHOUT_WAITS_RUNS

    node, _store, fake, _ = farm
    library = Path("/httpov-preload.so")
    monkeypatch.setattr(waits, "library_for", lambda settings: library)
    preloads: list[Path | None] = []

    def render(*args: Any, preload: Path | None = None, node_limit: Any = None, home: Any = None, out: Any = None,
               **kw: Any) -> RenderOutput:
        preloads.append(preload)
        return fake(*args, **kw)
    monkeypatch.setattr(povray, "render", render)
    node.povray_render = node._povray
    sibling = node.sibling()
    fake.error = RenderError("povray crashed (segmentation fault)", transient=True)
    _run(node)
    fake.error = None
    assert _run(node).status == "rendered"
    assert _run(sibling).status == "rendered"
    assert preloads == [library, None, library], "the crashed slot without the library, its sibling with it"
    assert node._without_waits == WITHOUT_WAITS_RUNS - 1


def test_no_povray_starts_once_the_batch_is_past_the_nodes_time_limit(farm, monkeypatch):
    """The node's time limit counts from the batch's take, over all of its povray runs (a probe and a pass, a
    checkpoint's render again): past it, none starts, and the batch fails for good."""
    import time

    from httpov.worker import povray

    node, *_ = farm
    started: list[object] = []
    monkeypatch.setattr(povray, "render", lambda *args, **kw: started.append(kw) or RenderOutput({}, "", 0.0))
    node._deadline = time.monotonic() - 1
    with pytest.raises(RenderError, match="ran past the render node's time limit") as raised:
        node._povray("povray")
    assert started == [] and not raised.value.transient
    node._deadline = time.monotonic() + 100
    node._povray("povray")
    assert 99 < started[0]["node_limit"][0] <= 100, "the time the batch has left"
