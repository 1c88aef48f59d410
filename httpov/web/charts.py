"""The pictures of the web pages, as geometry for inline SVG (templates/charts.html): a job's timeline (its batches
on each render node over time, failures and retries marked) and the farm's use (processes busy on each node over the
last hours). Pure: computed from records already read, no I/O. Bounded whatever the job's size: at most `max_lanes`
lanes (the least busy nodes merged into one), bars closer than a pixel merged, marks counted per few pixels, and
at most MAX_BARS of each in a lane (closer ones merged until they fit)."""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from httpov.store.records import Batches

WIDTH = 720  # the plot's width in SVG units, beside the lanes' labels
LABEL = 170  # room for a lane's label on the left
LANE = 22  # a lane's height
GAP = 4  # between lanes
AXIS = 18  # room for the time axis below the lanes
MAX_LANES = 12  # at most this many lanes: the least busy nodes beyond are merged into one
MARK_PX = 4  # marks within this many units are counted as one
MAX_BARS = 60  # at most this many bars (and marks) of a kind in a lane: wider gaps are merged until they fit
NAME_CHARS = 24  # a node's name as a label (whole in its title)
TICKS = 5


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    kind: str  # 'done', 'running'
    title: str


@dataclass(frozen=True)
class Mark:
    x: float
    kind: str  # 'failed', 'retried'
    count: int
    title: str


@dataclass
class Lane:
    name: str  # the node (or 'N other nodes')
    y: float
    bars: list[Bar] = field(default_factory=list)
    marks: list[Mark] = field(default_factory=list)
    area: str = ""  # the farm's use: an SVG path of its processes busy over time
    note: str = ""  # the farm's use: what the lane shows, in words

    @property
    def label(self) -> str:
        return self.name if len(self.name) <= NAME_CHARS else self.name[:NAME_CHARS - 1] + "…"


@dataclass
class Chart:
    """One picture: its lanes within `width` x `height`, time ticks (x, label) below, and `summary`: what it shows
    in words (its SVG desc and the page's text alternative)."""

    width: float
    height: float
    lanes: list[Lane]
    ticks: list[tuple[float, str]]
    summary: str
    left: float = LABEL

    @property
    def axis_y(self) -> float:
        return self.height - AXIS

    def to_json(self) -> dict[str, Any]:
        """The geometry as GET /api/jobs/ID/timeline sends it: what templates/charts.html draws, for static/live.js
        to draw again (each value set as an attribute or as text, never as markup)."""
        return {**asdict(self), "axis_y": self.axis_y,
                "lanes": [{**asdict(lane), "label": lane.label} for lane in self.lanes]}


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at))


def _ticks(start: float, end: float, width: float) -> list[tuple[float, str]]:
    span = end - start
    return [(LABEL + width * i / (TICKS - 1), _clock(start + span * i / (TICKS - 1))) for i in range(TICKS)]


def _lanes_of(busy: Mapping[str, float], max_lanes: int) -> tuple[list[str], dict[str, str]]:
    """The lanes' names, and which lane each node is drawn in: the busiest `max_lanes - 1` nodes their own (all of
    them when they fit), the others together in the last one ('N other nodes'). Lanes in name order, others last."""
    ranked = sorted(busy, key=lambda n: (-busy[n], n))
    if len(ranked) <= max_lanes:
        return sorted(ranked), {n: n for n in ranked}
    kept = sorted(ranked[:max_lanes - 1])
    others = f"{len(ranked) - len(kept)} other nodes"
    return kept + [others], {n: (n if n in kept else others) for n in ranked}


def _merged(spans: list[tuple[float, float, str]], x0: float, scale: float, lane: str, origin: float) -> list[Bar]:
    """Spans (start, end, kind; seconds from `origin`) as bars, those of a kind less than a unit apart merged (with
    how many batches each); then the narrowest gaps closed while a lane would have more than MAX_BARS of a kind."""
    bars: list[Bar] = []
    for kind in ("done", "running"):
        runs = _runs(sorted(s for s in spans if s[2] == kind), scale, 1.0)
        if len(runs) > MAX_BARS:  # the narrowest gaps closed until MAX_BARS are left
            closed = set(sorted(range(len(runs) - 1),
                                key=lambda i: (runs[i + 1][0] - runs[i][1], i))[:len(runs) - MAX_BARS])
            joined = [runs[0]]
            for i, run in enumerate(runs[1:]):
                if i in closed:
                    last = joined[-1]
                    last[1], last[2], last[4] = max(last[1], run[1]), last[2] + run[2], max(last[4], run[4])
                else:
                    joined.append(run)
            runs = joined
        bars += [_bar(run, x0, kind, lane, origin) for run in runs]
    return bars


def _runs(ordered: list[tuple[float, float, str]], scale: float, gap: float) -> list[list[float]]:
    """Ordered spans merged when less than `gap` units apart: [x from, x to, batches, time from, time to]."""
    runs: list[list[float]] = []
    for start, end, _ in ordered:
        sx, ex = start * scale, end * scale
        if runs and sx <= runs[-1][1] + gap:
            run = runs[-1]
            run[1], run[2], run[4] = max(run[1], ex), run[2] + 1, max(run[4], end)
        else:
            runs.append([sx, ex, 1, start, end])
    return runs


def _bar(run: list[float], x0: float, kind: str, lane: str, origin: float) -> Bar:
    n = int(run[2])
    what = "rendering" if kind == "running" else "done"
    title = f"{lane}: {n} batch{'es' if n > 1 else ''} {what}, {_clock(origin + run[3])}-{_clock(origin + run[4])} UTC"
    return Bar(x=round(x0 + run[0], 1), width=round(max(1.0, run[1] - run[0]), 1), kind=kind, title=title)


def _marks(points: list[tuple[float, str, str]], x0: float, scale: float, lane: str, origin: float) -> list[Mark]:
    """Points (at: seconds from `origin`, kind, what) as marks, those of a kind within MARK_PX units counted as one."""
    step = float(MARK_PX)
    while True:  # wider buckets while a lane would have more than MAX_BARS marks
        buckets: dict[tuple[str, int], list[tuple[float, str]]] = {}
        for at, kind, what in points:
            buckets.setdefault((kind, int(at * scale // step)), []).append((at, what))
        if len(buckets) <= MAX_BARS:
            break
        step *= 2
    marks = []
    for (kind, _), found in sorted(buckets.items(), key=lambda item: (item[0][1], item[0][0])):
        found.sort()
        first = found[0][0]
        what = found[0][1] if len(found) == 1 else f"{len(found)} batches {kind}"
        marks.append(Mark(x=round(x0 + first * scale, 1), kind=kind, count=len(found),
                          title=f"{lane}: {what} at {_clock(origin + first)} UTC"))
    return marks


def job_timeline(batches: Batches, now: float, width: float = WIDTH, max_lanes: int = MAX_LANES) -> Chart | None:
    """A job's batches on each render node over time (None before any batch started): a done batch from its start
    (`started`, else its end less povray's seconds) to its end, a running one until `now`; a failure marked where it
    happened, a retried batch (a later attempt, or one requeued from a lost node) where its done execution began."""
    spans: dict[str, list[tuple[float, float, str]]] = {}
    points: dict[str, list[tuple[float, str, str]]] = {}
    requeued = batches.get("requeued", {})
    for batch, info in batches["done"].items():
        end = float(info.get("finished") or 0.0)
        if not end or not info.get("node"):
            continue
        start = min(end, float(info.get("started") or end - float(info.get("seconds") or 0.0)))
        node = str(info["node"])
        spans.setdefault(node, []).append((start, end, "done"))
        if int(info.get("attempt") or 1) > 1 or requeued.get(batch):
            points.setdefault(node, []).append((start, "retried", f"batch {batch} retried"))
    for running in batches["running"].values():
        started = float(running.get("started") or 0.0)
        if started and running.get("node"):
            spans.setdefault(str(running["node"]), []).append((min(started, now), now, "running"))
    for batch, failed in batches["failed"].items():
        at = float(failed.get("at") or 0.0)
        if at and failed.get("node"):
            points.setdefault(str(failed["node"]), []).append((at, "failed", f"batch {batch} failed"))
    times = [t for s in spans.values() for span in s for t in span[:2]] + [p[0] for ps in points.values() for p in ps]
    if not times:
        return None
    start, end = min(times), max(times)
    span = max(end - start, 1.0)
    scale = width / span
    busy = {node: sum(b - a for a, b, _ in s) for node, s in spans.items()}
    busy.update({node: busy.get(node, 0.0) for node in points})
    names, lane_of = _lanes_of(busy, max_lanes)
    lanes = [Lane(name=name, y=i * (LANE + GAP)) for i, name in enumerate(names)]
    by_name = {lane.name: lane for lane in lanes}
    grouped_spans: dict[str, list[tuple[float, float, str]]] = {}
    grouped_points: dict[str, list[tuple[float, str, str]]] = {}
    for node, s in spans.items():
        grouped_spans.setdefault(lane_of[node], []).extend((a - start, b - start, k) for a, b, k in s)
    for node, ps in points.items():
        grouped_points.setdefault(lane_of[node], []).extend((at - start, k, w) for at, k, w in ps)
    for name, lane in by_name.items():
        lane.bars = _merged(grouped_spans.get(name, []), LABEL, scale, name, start)
        lane.marks = _marks(grouped_points.get(name, []), LABEL, scale, name, start)
    done = len(batches["done"])
    failures = sum(1 for ps in points.values() for p in ps if p[1] == "failed")
    retried = sum(1 for ps in points.values() for p in ps if p[1] == "retried")
    summary = (f"{done} batch{'es' if done != 1 else ''} done and {len(batches['running'])} rendering on "
               f"{len(busy)} render node{'s' if len(busy) != 1 else ''}, {failures} failed, {retried} retried, from "
               f"{_clock(start)} to {_clock(end)} UTC")
    return Chart(width=LABEL + width, height=len(lanes) * (LANE + GAP) + AXIS, lanes=lanes,
                 ticks=_ticks(start, start + span, width), summary=summary)


def _area(steps: list[tuple[float, float, float]], start: float, scale: float, base: float) -> str:
    """An SVG path's `d`: the steps (from, to, share of LANE) as one outline standing on `base`, equal neighbours
    joined, down to the base across a gap: a few characters a minute, whatever the lane holds."""
    out: list[str] = []
    x_end, y_now = None, base
    for a, b, share in steps:
        xa, xb, y = round(LABEL + (a - start) * scale, 1), round(LABEL + (b - start) * scale, 1), \
            round(base - LANE * share, 1)
        if x_end is None or xa - x_end > 0.5:  # the first step, or one after a gap: from the base
            if x_end is not None:
                out.append(f"V{base}")
            out.append(f"M{xa} {base}")
            y_now = base
        if y != y_now:
            out.append(f"V{y}")
            y_now = y
        if out[-1].startswith("H"):  # level with the last step: one line
            out.pop()
        out.append(f"H{xb}")
        x_end = xb
    if out:
        out.append(f"V{base}Z")
    return "".join(out)


def farm_use(samples: Mapping[str, list[tuple[float, float]]], processes: Mapping[str, int], now: float,
             hours: float, width: float = WIDTH, max_lanes: int = MAX_LANES) -> Chart | None:
    """Processes busy on each render node over the last `hours` (None when no node said): `samples` are each node's
    (minute's start, mean processes busy in it); each lane one outline (Lane.area), its height the share of the
    node's `processes` busy, in eighths. Nodes beyond `max_lanes` share one lane (their processes summed)."""
    start = now - hours * 3600
    kept = {node: [(at, busy) for at, busy in s if at >= start - 60] for node, s in samples.items()}
    kept = {node: s for node, s in kept.items() if s}
    if not kept:
        return None
    scale = width / (hours * 3600)
    names, lane_of = _lanes_of({node: sum(b for _, b in s) for node, s in kept.items()}, max_lanes)
    lanes = [Lane(name=name, y=i * (LANE + GAP)) for i, name in enumerate(names)]
    for lane in lanes:
        nodes = [n for n in kept if lane_of[n] == lane.name]
        capacity = max(1, sum(max(processes.get(n, 0), 1) for n in nodes))
        minutes: dict[float, float] = {}
        for n in nodes:
            for at, busy in kept[n]:
                minutes[at] = minutes.get(at, 0.0) + busy
        steps = []  # (from, to, share busy) of each minute in the picture
        for at in sorted(minutes):
            a, b = max(at, start), min(at + 60, now)
            if b > a:
                steps.append((a, b, round(min(1.0, minutes[at] / capacity) * 8) / 8))  # in eighths
        lane.area = _area(steps, start, scale, float(lane.y + LANE))
        peak = max(minutes.values())
        lane.note = (f"{lane.name}: {sum(minutes.values()) / len(minutes):.1f} of {capacity} processes busy on "
                     f"average, {peak:g} at most")
    mean = {n: sum(b for _, b in s) / len(s) for n, s in kept.items()}
    summary = (f"processes busy on {len(kept)} render node{'s' if len(kept) != 1 else ''} over the last {hours:g} "
               f"hours, from {_clock(start)} to {_clock(now)} UTC: "
               + ", ".join(f"{n} {mean[n]:.1f} of {max(processes.get(n, 0), 1)} on average"
                           for n in sorted(mean)[:max_lanes]))
    return Chart(width=LABEL + width, height=len(lanes) * (LANE + GAP) + AXIS, lanes=lanes,
                 ticks=_ticks(start, now, width), summary=summary)
