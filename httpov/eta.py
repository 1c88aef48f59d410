"""How far a job is and when it will end, as pure maths on batch records: per-frame times, throughput, ETA and
who renders what (httpov.view builds a job's view from it)."""
from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from httpov.plan import Batch, JobSpec, work_units
from httpov.states import FINISHED, JobState

#: Weight of the newest finished batch in the per-frame time: recent batches count most, because frame
#: cost drifts through an animation (a plain mean of the early frames is what makes ETAs lie).
SMOOTHING = 0.35
#: Finished batches (at least) in the window the measured throughput is taken over.
RATE_WINDOW = 6
#: A cost trend over frame numbers is trusted from this many finished batches, if it explains this much of
#: the spread of their per-frame times (R squared).
TREND_MIN_BATCHES = 4
TREND_MIN_R2 = 0.6


def _samples(done: dict[str, dict[str, Any]], height: int) -> list[tuple[float, float, float, float, float]]:
    """(finished, middle frame, seconds per frame, frames, povray's start) of every finished batch, in the order
    they finished: its seconds net of the start its node recorded (_start), per frame."""
    out = []
    for batch_id, info in done.items():
        units = work_units(batch_id, height)
        if units > 0 and "seconds" in info:
            b = Batch.from_id(batch_id)
            start = _start(info)
            net = max(0.0, float(info["seconds"]) - start)
            out.append((float(info.get("finished", 0.0)), (b.first + b.last) / 2, net / units, units, start))
    return sorted(out)


def _start(info: Mapping[str, Any]) -> float:
    """The povray start a done batch's node counted in its seconds (DoneInfo.start; none in a record of a release
    before it): a batch costs that once, whatever its frames, so a job's one-frame preview batches
    (plan.preview_frames) do not make its frames look dearer."""
    return float(info.get("start", 0.0))


def smoothed_frame_seconds(done: dict[str, dict[str, Any]], height: int) -> float | None:
    """Render seconds per frame, smoothed over finished batches in the order they finished (newest weighs most)."""
    return _smoothed(_samples(done, height))


def _smoothed(samples: list[tuple[float, float, float, float, float]]) -> float | None:
    """smoothed_frame_seconds of these samples (_samples')."""
    estimate: float | None = None
    for _, _, sample, _, _ in samples:
        estimate = sample if estimate is None else SMOOTHING * sample + (1 - SMOOTHING) * estimate
    return estimate


def cost_model(done: dict[str, dict[str, Any]], height: int) -> Callable[[str], float] | None:
    """Predicted render seconds of a batch, from the finished ones: povray's start and its frames; None before any
    batch finished.

    When the cost per frame follows the frame number (a scene that grows heavier through the animation),
    a weighted straight line through (frame, seconds per frame) predicts the frames still to come; otherwise
    the smoothed recent cost per frame does. Predictions stay within half the cheapest and twice the dearest
    frame seen, so a noisy line cannot run away.
    """
    samples = _samples(done, height)
    if not samples:
        return None
    recent = _smoothed(samples) or 0.0  # the records gone over once, not once more for the smoothing
    costs = [s[2] for s in samples]
    low, high = 0.5 * min(costs), 2.0 * max(costs)
    line = _trend(samples)
    start = sum(s[4] for s in samples) / len(samples)  # povray's start, paid once a batch

    def predict(batch_id: str) -> float:
        units = work_units(batch_id, height)
        if line is None:
            return start + recent * units
        b = Batch.from_id(batch_id)
        slope, intercept = line
        return start + min(high, max(low, intercept + slope * (b.first + b.last) / 2)) * units

    return predict


def _trend(samples: list[tuple[float, float, float, float, float]]) -> tuple[float, float] | None:
    """(slope, intercept) of seconds per frame against frame number, if the line explains most of the spread."""
    xs = {s[1] for s in samples}
    if len(samples) < TREND_MIN_BATCHES or len(xs) < 3:
        return None
    w = sum(s[3] for s in samples)
    mx = sum(s[1] * s[3] for s in samples) / w
    my = sum(s[2] * s[3] for s in samples) / w
    sxx = sum(s[3] * (s[1] - mx) ** 2 for s in samples)
    sxy = sum(s[3] * (s[1] - mx) * (s[2] - my) for s in samples)
    syy = sum(s[3] * (s[2] - my) ** 2 for s in samples)
    if sxx <= 0 or syy <= 0:
        return None
    r2 = sxy * sxy / (sxx * syy)
    if r2 < TREND_MIN_R2:
        return None
    slope = sxy / sxx
    return slope, my - slope * mx


def measured_rate(done: dict[str, dict[str, Any]], height: int, since: float, until: float) -> float:
    """Frames per wall-clock second over the last few finished batches (it falls when nodes stop)."""
    records = sorted((info.get("finished", 0.0), batch) for batch, info in done.items())
    if not records:
        return 0.0
    window = records[-RATE_WINDOW:]
    before = records[-RATE_WINDOW - 1][0] if len(records) > RATE_WINDOW else since
    span = until - before
    units = sum(work_units(batch, height) for _, batch in window)
    return units / span if span > 0 else 0.0


def overhead_factor(done: dict[str, dict[str, Any]], processes: int) -> float:
    """How much longer a batch holds its render process than povray's own time says (scene copy, zip, upload,
    queue), from the spacing of recent finishes: with k processes busy, n finishes a span T apart took about
    k*T of process time for the render seconds of the last n-1. 1.0 when it cannot be told; at most 2."""
    if processes <= 0:
        return 1.0
    records = sorted((float(info.get("finished", 0.0)), float(info.get("seconds", 0.0))) for info in done.values())
    window = records[-max(RATE_WINDOW, 2 * processes + 1):]
    if len(window) < processes + 2:
        return 1.0
    span = window[-1][0] - window[0][0]
    render = sum(seconds for _, seconds in window[1:])
    if span <= 0 or render <= 0:
        return 1.0
    return min(2.0, max(1.0, processes * span / render))


def schedule(slot_free: list[float], tasks: list[float]) -> float:
    """When the last of `tasks` (durations, in order) ends on slots free after `slot_free` seconds."""
    if not slot_free:
        return float("inf") if tasks else 0.0
    heap = list(slot_free)
    heapq.heapify(heap)
    end = max(heap)
    for duration in tasks:
        start = heapq.heappop(heap)
        heapq.heappush(heap, start + duration)
        end = max(end, start + duration)
    return end


def estimate(spec: JobSpec, state: str, batches: Mapping[str, Any], now: float, started: float,
             finished: float | None = None) -> dict[str, Any]:
    """ETA, rate and per-node work of a job from JobStore.batches() records (a pure function of them).

    The ETA plays the remaining batches onto the render processes working now: each running batch ends
    when its frames' expected time has passed (expected from the smoothed per-frame time, and never less than
    it has already run), and each queued batch goes to the process that frees first. With no finished batch
    yet, or no process working on the job, there is no honest ETA and it is None.
    """
    done, running = batches.get("done", {}), batches.get("running", {})
    final_failed = {b for b, info in batches.get("failed", {}).items() if info.get("final")}
    height = spec.height
    queued = [b for b in spec.batches if b not in done and b not in running and b not in final_failed]
    framed = [b for b in queued if work_units(b, height) > 0] or sorted(b for b in running if work_units(b, height) > 0)
    # the cost model predicts batches still to end: a finished job with none (a done one) has no use for it, and a big
    # job's page is spared going over every record twice more for it
    model = cost_model(done, height) if running or framed or state not in FINISHED else None
    factor = overhead_factor(done, len(running)) if model is not None else 1.0
    predict = (lambda b: model(b) * factor) if model is not None else None  # noqa: E731
    # povray's own word on each running batch: the share of its pixels rendered (its node's lease refresh)
    rendered = {b: _share(info.get("progress")) for b, info in running.items()}
    if predict is None and state not in FINISHED:  # no batch done yet: the running batches' pace, as povray says it
        paces = sorted(max(0.0, now - float(info.get("started", now))) / share / work_units(b, height)
                       for b, info in running.items() if (share := rendered[b]) and work_units(b, height) > 0)
        if paces:
            pace = paces[len(paces) // 2]
            predict = lambda b: pace * work_units(b, height)  # noqa: E731
    if state in FINISHED and finished is not None:  # a finished job: its frames over its whole time
        span = finished - started
        rate = sum(work_units(b, height) for b in done) / span if span > 0 else 0.0
    else:  # frames are still coming: the recent rate, which falls when nodes stop
        rate = measured_rate(done, height, started, now)

    running_view = []
    slot_free = []
    for batch_id, info in sorted(running.items()):
        elapsed = max(0.0, now - float(info.get("started", now)))
        expected = predict(batch_id) if predict is not None else None
        share = rendered[batch_id]
        if share:  # povray said how far it is: the batch ends at this pace
            expected = elapsed / share
        elif expected is not None and elapsed > expected:
            # running longer than expected: frames got heavier; assume it is at most half way
            expected = 2 * elapsed
        remaining = max(0.0, expected - elapsed) if expected is not None else None
        slot_free.append(remaining if remaining is not None else 0.0)
        running_view.append({
            "batch": batch_id, "label": Batch.from_id(batch_id).label, "node": info.get("node", "?"),
            "elapsed": round(elapsed, 1), "expected": round(expected, 1) if expected is not None else None,
            "progress": (round(min(0.99, share), 3) if share is not None
                         else round(min(0.99, elapsed / expected), 3) if expected else None),
            "retrying": bool(info.get("retrying")),
            "rendered": share,
        })
    upcoming = framed[0] if framed else None
    per_frame = (predict(upcoming) / work_units(upcoming, height) if predict is not None and upcoming
                 else smoothed_frame_seconds(done, height))

    eta: float | None
    if state == JobState.DONE:
        eta = 0.0
    elif state in FINISHED or state == JobState.PAUSED or predict is None:
        eta = None
    elif queued and not running:
        eta = None  # no render process is taking this job's batches now
    else:
        eta = schedule(slot_free, [predict(b) for b in queued])

    nodes: dict[str, dict[str, Any]] = {}
    rows: dict[str, int] = {}  # rows a node rendered in slices (a frame's share each)
    whole: dict[str, int] = {}  # frames it rendered whole

    def node(name: str) -> dict[str, Any]:
        return nodes.setdefault(name, {"batches_done": 0, "frames_done": 0.0, "seconds": 0.0, "running": []})

    for batch_id, info in done.items():
        name = info.get("node", "?")
        n = node(name)
        n["batches_done"] += 1
        n["frames_done"] += work_units(batch_id, height)
        n["seconds"] += float(info.get("seconds", 0.0))
        b = Batch.from_id(batch_id)
        if not b.prepass:
            if b.rows is None:
                whole[name] = whole.get(name, 0) + b.last - b.first + 1
            else:
                rows[name] = rows.get(name, 0) + (b.last - b.first + 1) * (b.rows[1] - b.rows[0] + 1)
    for item in running_view:
        share = item["rendered"]
        node(item["node"])["running"].append(item["label"] + (f" ({share:.0%})" if share is not None else ""))
    for name, n in nodes.items():
        n["frames_done"] = round(n["frames_done"], 3)
        n["seconds"] = round(n["seconds"], 3)
        n["work"] = work_text(whole.get(name, 0), rows.get(name, 0), height)

    frames_running = sorted({f for b in running for f in Batch.from_id(b).frames})
    return {
        "eta_seconds": None if eta is None else round(eta, 1),
        "eta_at": None if eta is None else round(now + eta, 1),
        "frame_seconds": None if per_frame is None else round(per_frame, 4),
        "overhead_factor": round(factor, 3),
        "rate_recent": round(rate, 4),
        "render_processes": len(running),
        "frames_running": len(frames_running),
        # frames' worth of the running batches povray rendered: 0.36 for a frame 36% rendered (the job's percent)
        "frames_rendering": round(sum(share * work_units(b, height) for b, share in rendered.items() if share), 3),
        "batches_queued": len(queued),
        "running": running_view,
        "nodes": dict(sorted(nodes.items())),
    }


def work_text(frames: int, rows: int, height: int) -> str:
    """What a render node rendered of a job, for people: '3 frames', '40 of 64 rows', '2 frames and 40 of 64 rows'
    (`rows` of sliced frames `height` rows high, counted in whole frames' worth and the rows left over)."""
    if height > 0 and rows:
        frames, rows = frames + rows // height, rows % height
    parts = [f"{frames} frame{'' if frames == 1 else 's'}"] if frames or not rows else []
    if rows:
        parts.append(f"{rows} of {height} rows")
    return " and ".join(parts)


def active_seconds(started: float, end: float, history: Sequence[Mapping[str, Any]]) -> float:
    """Seconds from `started` to `end` that the job was live: without the time it lay paused (a 'pause' line until
    the next 'resume', or until `end` if none came) and the gaps between finishing and a retry ('retry' lines,
    from `since` to `at`). Lines before `started` count from `started`; lines are in the order they were written."""
    gaps: list[tuple[float, float]] = []
    paused_at: float | None = None
    for line in history:
        kind, at = line.get("kind"), float(line.get("at", 0.0))
        if kind == "pause" and paused_at is None:
            paused_at = at
        elif kind == "resume" and paused_at is not None:
            gaps.append((paused_at, at))
            paused_at = None
        elif kind == "retry" and line.get("since") is not None:
            if paused_at is not None:  # paused, then cancelled, then retried: the pause ended with the job
                gaps.append((paused_at, float(line["since"])))
                paused_at = None
            gaps.append((float(line["since"]), at))
    if paused_at is not None:
        gaps.append((paused_at, end))
    left_out = sum(max(0.0, min(b, end) - max(a, started)) for a, b in gaps)
    return max(0.0, end - started - left_out)


def duration(seconds: float | None) -> str:
    """'?' , '42s', '3m05s', '2h04m' for people."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _share(value: object) -> float | None:
    """A running batch's rendered share as its node wrote it (0-1), or None for none or anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        return None
    return float(value)
