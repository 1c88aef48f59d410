"""Splitting a job into batches: frame ranges of an animation, row slices of each frame."""
from __future__ import annotations

import bisect
import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from httpov.errors import BadInputError, OptionError, Problem, SceneError, literal
from httpov.paths import JOB_ID, SCENE_KEY  # noqa: F401 (plan.JOB_ID, plan.SCENE_KEY: where they were first)
from httpov.scene import SceneLayout, SceneOptions
from httpov.settings import BATCH_ORDERS

if TYPE_CHECKING:
    from httpov.settings import Settings

DEFAULT_WIDTH, DEFAULT_HEIGHT = 320, 240  # POV-Ray's own defaults when an ini names no size
# Adaptive --count (docs/PERFORMANCE.md): a task should last about TARGET_TASK_SECONDS of povray, long enough to
# amortize a task's own cost (Celery, sandbox, storage: tens of ms of CPU) and povray's start (~0.7 s idle,
# hidden by running more render processes than cores), short enough that the tail of a job stays short.
TARGET_TASK_SECONDS = 2.5
POVRAY_START_SECONDS = 0.7  # povray's idle start, paid once per task; measured frame times are net of it
QUICK_START_SECONDS = 0.1  # the same with the node's quick waits (httpov.worker.waits; scripts/bench_waits.py)
MIN_BATCHES = 8  # a short job is still spread over this many tasks (a 2-core node runs 8 render processes)
FIRST_MAX_COUNT = 4  # before a scene's frame time is known, keep tasks short: a heavy scene stays parallel
#: Options whose values are paths inside the scene.
PATH_OPTIONS = ("Input_File_Name", "Library_Path")
MAX_NAME = 200
#: The batch id of a frame's pre-pass (radiosity, photons) ends in this ('f000001-000001-pre').
PREPASS_SUFFIX = "pre"
#: submit --radiosity-cache: 'auto' gives a sliced radiosity job one pre-pass per frame, shared by its slices;
#: 'off' renders every slice with its own radiosity (bands at the slice edges); 'shared' computes one cache for a
#: whole animation whose geometry and lights do not move (a camera fly-through), loaded by every frame.
RADIOSITY_MODES = ("auto", "off", "shared")
#: How a job's slices or frames get their radiosity, as recorded in its spec: 'off', 'prepass' (per frame) or
#: 'shared' (one cache for every frame).
RADIOSITY_PLANS = ("off", "prepass", "shared")
#: How a job's slices get their photons, as recorded in its spec: 'off' (each shoots its own) or 'shared' (each
#: sliced frame's pre-pass shoots them once into a photon map its slices load: httpov.photons).
PHOTON_PLANS = ("off", "shared")
#: Bumped whenever the pre-pass recipe changes, so a stored radiosity cache of an older recipe is not reused.
PREPASS_RECIPE = "rfo-as_off-noaa/2"  # 2: detection by samples, empty cache without a real pretrace (#27)


@dataclass(frozen=True)
class FrameRange:
    """The animation as POV-Ray sees it (initial..final) and the frames to render (first..last)."""

    initial: int
    final: int
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class Batch:
    """One task: frames first..last, and for a sliced job rows row_first..row_last (1-based, inclusive); or the
    pre-pass of one frame of a sliced radiosity or photon job (`prepass`), which computes what every slice of it
    loads (a radiosity cache, a photon map)."""

    first: int
    last: int
    rows: tuple[int, int] | None = None
    prepass: bool = False

    @property
    def id(self) -> str:
        frames = f"f{self.first:06d}-{self.last:06d}"
        if self.prepass:
            return f"{frames}-{PREPASS_SUFFIX}"
        return frames if self.rows is None else f"{frames}-r{self.rows[0]:05d}-{self.rows[1]:05d}"

    @property
    def label(self) -> str:
        """Human-readable, for Flower and logs."""
        frames = f"frame {self.first}" if self.first == self.last else f"frames {self.first}-{self.last}"
        if self.prepass:
            return f"{frames} pre-pass"
        return frames if self.rows is None else f"{frames} rows {self.rows[0]}-{self.rows[1]}"

    @property
    def frames(self) -> range:
        return range(self.first, self.last + 1)

    def ending_at(self, cut: int | None) -> Batch:
        """This slice as a re-split left it, ending at row `cut` (JobStore.cuts); itself when it is no slice, or
        `cut` is None or not one of its rows before its last."""
        if cut is None or self.rows is None or not self.rows[0] <= cut < self.rows[1]:
            return self
        return Batch(self.first, self.last, (self.rows[0], cut))

    @classmethod
    def from_id(cls, batch_id: str) -> Batch:
        return _batch_of(batch_id)


@lru_cache(maxsize=1 << 16)
def _batch_of(batch_id: str) -> Batch:
    """Batch.from_id, remembered: a big job's views parse each of its ids several times (a Batch is immutable)."""
    parts = batch_id.split("-")
    try:
        first, last = int(parts[0][1:]), int(parts[1])
        if len(parts) == 3 and parts[2] == PREPASS_SUFFIX:
            return Batch(first, last, prepass=True)
        if len(parts) not in (2, 4):
            raise ValueError(batch_id)
        rows = (int(parts[2][1:]), int(parts[3])) if len(parts) == 4 else None
    except (IndexError, ValueError):
        raise BadInputError(f"{batch_id!r} is not a batch id") from None
    return Batch(first, last, rows)


def parse_frame_range(text: str) -> tuple[int, int]:
    """'5-9' -> (5, 9), '7' -> (7, 7) (`retry --frames`); BadInputError for anything else."""
    first, sep, last = text.strip().partition("-")
    try:
        span = (int(first), int(last) if sep else int(first))
    except ValueError:
        raise OptionError.of("frames", f"{{0}} {literal(repr(text))}: give a frame (7) or a range (5-9)") from None
    if span[0] > span[1]:
        raise OptionError.of("frames", f"{{0}} {literal(repr(text))}: the first frame comes after the last")
    return span


def frame_range(options: SceneOptions, frames: int | None = None) -> FrameRange:
    """The frames a job renders: the ini's animation (and subset), or `frames` frames from Initial_Frame."""
    initial = options.integer("Initial_Frame", 1)
    if frames is not None:
        if frames <= 0:
            raise OptionError.of("frames", f"{{0}} must be at least 1, got {frames}")
        final = initial + frames - 1
    else:
        final = options.integer("Final_Frame", initial)
    if final < initial:
        raise SceneError(f"the ini's Final_Frame ({final}) is before its Initial_Frame ({initial})")
    first = _subset(options.get("Subset_Start_Frame"), initial, final, initial)
    last = _subset(options.get("Subset_End_Frame"), initial, final, final)
    first, last = max(first, initial), min(last, final)
    if first > last:
        raise SceneError(f"the ini's frame subset is empty (frames {first} to {last})")
    return FrameRange(initial, final, first, last)


def _subset(value: str | None, initial: int, final: int, default: int) -> int:
    """POV-Ray reads a subset bound as a frame number, or as a fraction of the animation when it has a point."""
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SceneError(f"the ini's frame subset {value!r} is not a number") from None
    if "." in value and 0.0 <= number <= 1.0:
        return initial + round(number * (final - initial))
    return int(number)


def image_size(options: SceneOptions, size: tuple[int | None, int | None] = (None, None)) -> tuple[int, int]:
    """Width and height in pixels the ini asks for (POV-Ray's 320x240 when it names none), each replaced by `size`'s
    where given (submit --width/--height)."""
    width = options.integer("Width", DEFAULT_WIDTH) if size[0] is None else size[0]
    height = options.integer("Height", DEFAULT_HEIGHT) if size[1] is None else size[1]
    if width <= 0 or height <= 0:
        raise SceneError(f"the ini asks for a {width}x{height} image")
    return width, height


def net_seconds(info: Mapping[str, Any]) -> float:
    """A done batch's seconds of povray net of povray's start: its record's seconds less the start its node paid
    (its `start`: POVRAY_START_SECONDS, or QUICK_START_SECONDS with quick waits; a record of a release before it
    has none and is taken for the first)."""
    return float(info.get("seconds", 0.0)) - float(info.get("start", POVRAY_START_SECONDS))


def frame_seconds(seconds: float, frames: int, batches: int) -> float | None:
    """Seconds of povray per frame from done batches' seconds net of povray's start (net_seconds), their frames and
    their number (None when nothing was measured)."""
    if frames <= 0 or batches <= 0:
        return None
    return max(0.01, seconds / frames)


def adaptive_count(frame_count: int, per_frame: float | None, target: float = TARGET_TASK_SECONDS,
                   min_batches: int = MIN_BATCHES) -> int:
    """Frames per task: about `target` seconds of povray each, but at least `min_batches` tasks per job. A job that
    `min_batches` tasks of at most twice `target` seconds hold gets exactly that one round of tasks rather than two
    or more shorter ones: a render process pays povray's start once per task, and a second round pays it again
    (measured on `diffuse`, 26 frames: one round of 4-frame tasks took 0.71-0.90x the time of two rounds of 2-frame
    ones, docs/PERFORMANCE.md).

    Without a measurement (`per_frame` None) a task gets at most FIRST_MAX_COUNT frames."""
    spread = math.ceil(frame_count / min_batches)
    if per_frame is None:
        wanted = FIRST_MAX_COUNT
    else:
        wanted = math.floor(max(target - POVRAY_START_SECONDS, per_frame) / per_frame)
        if wanted < spread and POVRAY_START_SECONDS + spread * per_frame <= 2 * target:
            wanted = spread  # one round
    return max(1, min(wanted, spread))


def split(frames: FrameRange, count: int, row_slices: list[tuple[int, int]] | None = None,
          tail: int = 0) -> list[Batch]:
    """Batches of `count` frames; with slices, one batch per (frame, slice) instead. `tail`: the render processes
    the job is planned for, whose last batches shrink (tail_sizes) so that they end together."""
    if count <= 0:
        raise OptionError.of("count", f"{{0}} must be at least 1, got {count}")
    if row_slices:
        return [Batch(f, f, rows) for f in range(frames.first, frames.last + 1) for rows in row_slices]
    if tail > 0:
        batches, start = [], frames.first
        for size in tail_sizes(frames.count, count, tail):
            batches.append(Batch(start, start + size - 1))
            start += size
        return batches
    return [
        Batch(start, min(start + count - 1, frames.last))
        for start in range(frames.first, frames.last + 1, count)
    ]


#: preview_order's first level after the first and last batch: fifths (its middle first), then tenths, twentieths...
_FIRST_BINS = 5


def preview_order(batch_ids: Sequence[str]) -> list[str]:
    """A job's batches in the order to hand them out so that the frames done early cover the whole animation:
    the first and last batch, then one batch in each fifth of the timeline (the middle first), then in each tenth
    not yet covered, each twentieth, and so on (the batch nearest each such bin's centre). A batch keeps its
    neighbouring frames (povray's start is paid once per batch); the batches of one frame range (a sliced frame's
    slices, a radiosity pre-pass before its slices) stay together in their given order. After the first 10 batches
    (10% of a job of 100 or more) every tenth of the timeline holds a rendered frame."""
    groups: dict[tuple[int, int], list[str]] = {}
    for batch_id in batch_ids:
        batch = Batch.from_id(batch_id)
        groups.setdefault((batch.first, batch.last), []).append(batch_id)
    spans = sorted(groups)
    if len(spans) <= 2:
        return [b for span in spans for b in groups[span]]
    start = spans[0][0]
    length = spans[-1][1] - start + 1
    middles = [(first + last) / 2 - start for first, last in spans]  # frame offsets, ascending
    order = _coarse_to_fine(middles, length)
    return [b for i in order for b in groups[spans[i]]]


#: How many batches preview_order hands out as it is (first, last, one per fifth and per tenth of the timeline)
#: before the rest go largest first: after them every tenth of the animation has a frame on its way.
PREVIEW_BATCHES = 12


def handout_order(spec: JobSpec, batch_ids: Sequence[str]) -> list[str]:
    """Batches of job `spec` in the order they go on its pending list: preview_order, or as given (frame order) for
    a job submitted with HTTPOV_BATCH_ORDER=frames. In preview order the job's preview frames (preview_frames) lead,
    coarse-to-fine, then preview_order of the rest, the batches of more frames before those of fewer (a stable sort:
    the preview order within a size, a frame's slices together): the tail's shrunken batches (tail_sizes) are handed
    out last, where they let the processes end together, and not early where the timeline put them, and what runs
    beside the lead ends after it. Unless the lead has a frame in every tenth (a retry's frames may not, nor a job
    whose only one-frame batches are its tail's), the first PREVIEW_BATCHES of the rest keep their place."""
    if spec.order != "preview":
        return list(batch_ids)
    lead = _preview_lead(batch_ids)
    led = set(lead)
    order = preview_order([b for b in batch_ids if b not in led])
    keep = 0 if len(lead) == 10 else PREVIEW_BATCHES  # behind a lead in every tenth, what runs beside it is larger
    rest = sorted(order[keep:], key=lambda b: -len(Batch.from_id(b).frames))
    return lead + order[:keep] + rest


#: A job of at least this many frames in batches of several frames gets preview frames (preview_frames): with fewer,
#: 10% of its frames cannot hold one frame in each tenth of its timeline.
PREVIEW_MIN_FRAMES = 100
#: The most of its render processes' time a job of one batch size (--count) gives to the batches its preview frames
#: add (preview_pays).
PREVIEW_COST = 0.03


def preview_pays(frames: int, batches: int, per_frame: float | None) -> bool:
    """Whether the up to ten batches a job of one batch size (--count) gets more for its preview frames
    (preview_frames) cost its render processes at most PREVIEW_COST of their time, each paying povray's start
    (QUICK_START_SECONDS) once more, given the scene's measured seconds `per_frame`. Where frames are so cheap that
    povray's start is what batching saves, the batches keep their neighbouring frames (they are still handed out
    coarse-to-fine: handout_order). A scene not measured yet gets its preview frames."""
    if per_frame is None:
        return True
    return 10 * QUICK_START_SECONDS <= PREVIEW_COST * (frames * per_frame + batches * QUICK_START_SECONDS)


def preview_frames(batches: list[Batch], frames: FrameRange) -> list[Batch]:
    """`batches` (an animation's, frames first to last) laid out again so that each tenth of the timeline holds a
    one-frame batch, which handout_order hands out first: once 10% of the job's frames are done, every tenth of the
    animation has one, whatever the batch size (preview_order alone needs 100 or more batches). The sizes of `batches`
    are kept, largest first along the timeline, and the first batch that starts in a tenth is one of its one-frame
    batches (a tail's, tail_sizes: at no batch more), or a frame cut off the smallest (one batch more: at most ten,
    for batches of one size); no batch runs over a whole tenth. A job of fewer than PREVIEW_MIN_FRAMES frames, of
    single frames, of slices, or of batches longer than a tenth of it (cut in each tenth, such a job would get
    several batches more for each it has) is kept as it is."""
    if frames.count < PREVIEW_MIN_FRAMES or any(b.rows is not None or b.prepass for b in batches) or \
            all(b.first == b.last for b in batches) or max(len(b.frames) for b in batches) > frames.count // 10:
        return batches
    left = sorted(len(b.frames) for b in batches)  # the sizes not laid out yet, ascending: they add up to the frames

    def take(most: int) -> int:
        """The largest size left up to `most`; else the smallest cut to `most`, its rest put back."""
        at = bisect.bisect_right(left, most)
        if at:
            return left.pop(at - 1)
        bisect.insort(left, left.pop(0) - most)
        return most

    tenths = _tenths(frames.first, frames.last)
    out: list[Batch] = []
    frame, shown = frames.first, -1  # the last tenth given its one-frame batch
    while frame <= frames.last:
        tenth = (frame - frames.first) * 10 // frames.count
        if tenth > shown:
            size, shown = take(1), tenth
        else:  # ends before the next tenth's last frame, so that a batch starts in it
            size = take(tenths[tenth + 1][1] - frame if tenth < 9 else frames.last - frame + 1)
        out.append(Batch(frame, frame + size - 1))
        frame += size
    return out


def _tenths(first: int, last: int) -> list[tuple[int, int]]:
    """The frames (first, last) of each tenth of the timeline first..last (a frame f is in tenth (f - first) * 10 //
    its frames), for a timeline of at least 10 frames."""
    n = last - first + 1
    starts = [first + -(-k * n // 10) for k in range(11)]
    return [(starts[k], starts[k + 1] - 1) for k in range(10)]


def _preview_lead(batch_ids: Sequence[str]) -> list[str]:
    """The preview frames among `batch_ids` (preview_frames), coarse-to-fine over the timeline: the first one-frame
    batch in each tenth of the span of `batch_ids` (a retry's frames, a resumed job's parked ones), when that span is
    at least PREVIEW_MIN_FRAMES frames and some batch holds several; none otherwise (preview_order covers it)."""
    whole = [b for b in map(Batch.from_id, batch_ids) if b.rows is None and not b.prepass]
    if all(b.first == b.last for b in whole):
        return []
    first, last = min(b.first for b in whole), max(b.last for b in whole)
    if last - first + 1 < PREVIEW_MIN_FRAMES:
        return []
    singles = sorted(b.first for b in whole if b.first == b.last)
    frames = []  # each tenth's first one-frame batch, where it has one
    for lo, hi in _tenths(first, last):
        at = bisect.bisect_left(singles, lo)
        if at < len(singles) and singles[at] <= hi:
            frames.append(singles[at])
    order = _coarse_to_fine([float(f - first) for f in frames], float(last - first + 1)) if len(frames) > 2 else \
        range(len(frames))
    return [Batch(frames[i], frames[i]).id for i in order]


def _coarse_to_fine(positions: list[float], length: float) -> list[int]:
    """Indices of `positions` (ascending, each within 0..length) in preview order (see preview_order)."""
    n = len(positions)
    order, chosen = [0, n - 1], {0, n - 1}
    bins = _FIRST_BINS
    while len(order) < n:
        bin_of = [min(bins - 1, int(p * bins / length)) for p in positions]
        covered = {bin_of[i] for i in chosen}
        nearest: dict[int, int] = {}
        for i in range(n):
            b = bin_of[i]
            if i in chosen or b in covered:
                continue
            centre = (b + 0.5) * length / bins
            if b not in nearest or abs(positions[i] - centre) < abs(positions[nearest[b]] - centre):
                nearest[b] = i
        width = (bins - 1).bit_length()
        for b in sorted(nearest, key=lambda b: (_reversed_bits(b, width), b)):  # spread over the timeline
            order.append(nearest[b])
            chosen.add(nearest[b])
        if bins >= 4 * n:  # positions closer than any bin (cannot happen for distinct frame ranges)
            order += [i for i in range(n) if i not in chosen]
            break
        bins *= 2
    return order


def _reversed_bits(value: int, width: int) -> int:
    """`value`'s lowest `width` bits in reverse order (bit-reversal: 1, 2, 3 of 3 bits -> 4, 2, 6)."""
    return int(format(value, f"0{width}b")[::-1], 2) if width else 0


#: The tail of an animation (docs/PERFORMANCE.md "The animation's tail"): a batch holds at most the frames left /
#: (TAIL_SHARE x the render processes), so the last batches shrink to one frame and the processes end together
#: (guided self-scheduling) instead of the job waiting for the last full batch of its costliest frames.
TAIL_SHARE = 2


def tail_sizes(frames: int, count: int, processes: int) -> list[int]:
    """Frames in each batch, in order: `count` each until the frames left, shared between TAIL_SHARE x `processes`,
    come to less; then that share (at least one frame). A job whose batches of `count` all start at once (no more
    of them than `processes`) keeps them: shrinking them would only add a round of povray starts (adaptive_count's
    one round)."""
    if math.ceil(frames / count) <= processes:
        return [min(count, frames - start) for start in range(0, frames, count)]
    sizes, left = [], frames
    while left > 0:
        size = max(1, min(count, left, math.ceil(left / (TAIL_SHARE * max(1, processes)))))
        sizes.append(size)
        left -= size
    return sizes


def history_key(scene_key: str, width: int, height: int) -> str:
    """Jobs of one scene at one size share their measured frame times."""
    return f"{scene_key}:{width}x{height}"


@dataclass
class JobSpec:
    """Everything a render node needs to render any batch of a job; stored once in Redis as JSON."""

    id: str
    name: str
    scene_key: str
    root: str
    pov: str
    options: dict[str, str | list[str]]
    initial: int
    final: int
    first: int
    last: int
    width: int
    height: int
    count: int
    slices: list[tuple[int, int]] | None = None
    priority: int = 5
    created: float = 0.0
    batches: list[str] = field(default_factory=list)
    time_limit: int | None = None  # seconds a batch may run (submit --time-limit), within the node's own limit
    radiosity: str = "off"  # RADIOSITY_PLANS: whether slices (or frames) load a radiosity pre-pass's cache
    photons: str = "off"  # PHOTON_PLANS: whether a sliced frame's slices load its pre-pass's photon map
    any_povray: bool = False  # False: every batch rendered by the povray version of the first node (its pixels)
    order: str = "preview"  # BATCH_ORDERS: how its batches are handed out (handout_order)

    @property
    def history(self) -> str:
        """Jobs of one scene at one size share measured frame times (adaptive batch size)."""
        return history_key(self.scene_key, self.width, self.height)

    @property
    def frame_count(self) -> int:
        return self.last - self.first + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> JobSpec:
        try:
            data = dict(data)
            if data.get("slices"):
                data["slices"] = [tuple(s) for s in data["slices"]]
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise SceneError(f"the job record is malformed: {exc}") from None


def safe_name(name: str) -> str:
    """A job name reduced to [A-Za-z0-9_.-] for file names; a job name is display text, never a path."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._")[:MAX_NAME] or "job"


def check_name(name: object) -> None:
    """Refuse a job name with control characters or path separators (BadInputError, exit 2)."""
    if not isinstance(name, str) or not name.strip():
        raise BadInputError("the job name is empty")
    if len(name) > MAX_NAME:
        raise BadInputError(f"the job name is {len(name)} characters long: at most {MAX_NAME}")
    if any(ord(c) < 32 or ord(c) == 127 or c in "/\\" for c in name):
        raise BadInputError(f"the job name {name!r} holds a control character or a path separator",
                            hint="a name is display text: use letters, digits, spaces, '_', '-', '.'")


def inside_path(value: str, what: str) -> str:
    """`value` as a relative path that stays inside the scene (SceneError otherwise); answers it normalised."""
    path = PurePosixPath(value)
    if (not value or any(ord(c) < 32 for c in value) or path.is_absolute() or ".." in path.parts
            or "\\" in value):
        hint = " (POV-Ray's include library is always on the path)" if what == "Library_Path" else ""
        raise SceneError(f"{what}={value!r} points outside the scene: give a path relative to the scene's "
                         f"folder{hint}")
    return path.as_posix()


def check_spec(spec: JobSpec) -> None:
    """Every field a render node acts on, checked before it touches files or takes a lease (a job record in Redis
    may be forged); also run at submit. Raises BadInputError (name) or SceneError (scene, paths, frames)."""
    check_name(spec.name)
    if not isinstance(spec.any_povray, bool):
        raise SceneError(f"any_povray {spec.any_povray!r} is not true or false")
    if spec.order not in BATCH_ORDERS:
        raise SceneError(f"batch order {spec.order!r} is not one of {', '.join(BATCH_ORDERS)}")
    if not isinstance(spec.id, str) or not JOB_ID.match(spec.id):
        raise SceneError(f"job id {spec.id!r} is not a job id")
    if not isinstance(spec.scene_key, str) or not SCENE_KEY.match(spec.scene_key):
        raise SceneError(f"scene key {spec.scene_key!r} is not scenes/<sha256>.zip")
    if not isinstance(spec.root, str) or (spec.root and (inside_path(spec.root, "root") + "/" != spec.root)):
        raise SceneError(f"scene root {spec.root!r} is not one folder inside the scene")
    if not isinstance(spec.pov, str):
        raise SceneError("the job's .pov is not a file name")
    inside_path(spec.pov, "Input_File_Name")
    if not isinstance(spec.options, dict):
        raise SceneError("the job's options are not a table")
    for option in PATH_OPTIONS:
        value = spec.options.get(option)
        for item in value if isinstance(value, list) else [] if value is None else [value]:
            if not isinstance(item, str):
                raise SceneError(f"{option} is not text")
            inside_path(item.strip().strip('"'), option)
    numbers = (spec.initial, spec.final, spec.first, spec.last, spec.width, spec.height, spec.count)
    if any(type(n) is not int for n in numbers):
        raise SceneError("the job's frames, size or count are not whole numbers")
    if not (spec.initial <= spec.first <= spec.last <= spec.final) or spec.width <= 0 or spec.height <= 0:
        raise SceneError(f"frames {spec.first}-{spec.last} of {spec.initial}-{spec.final} at "
                         f"{spec.width}x{spec.height} is not a job povray can render")
    if type(spec.priority) is not int or not 0 <= spec.priority <= 9:
        raise SceneError(f"priority {spec.priority!r} is not 0-9")
    for rows in spec.slices or []:
        if len(rows) != 2 or any(type(r) is not int for r in rows) or not 1 <= rows[0] <= rows[1] <= spec.height:
            raise SceneError(f"slice {rows!r} is not a row range of the {spec.height}-row image")
    if spec.time_limit is not None and (type(spec.time_limit) is not int or spec.time_limit <= 0):
        raise SceneError(f"time limit {spec.time_limit!r} is not a number of seconds")
    if spec.radiosity not in RADIOSITY_PLANS:
        raise SceneError(f"radiosity plan {spec.radiosity!r} is not one of {', '.join(RADIOSITY_PLANS)}")
    if spec.radiosity != "off" and not wrappable(spec.pov):
        raise SceneError(f"the scene file name {spec.pov!r} cannot be included by a radiosity wrapper")
    if spec.photons not in PHOTON_PLANS:
        raise SceneError(f"photon plan {spec.photons!r} is not one of {', '.join(PHOTON_PLANS)}")
    if spec.photons != "off" and (not spec.slices or spec.radiosity == "shared" or not wrappable(spec.pov)):
        raise SceneError("a shared photon map is only planned for the slices of a frame")


def check_record(job_id: str, spec: JobSpec) -> JobSpec:
    """The spec read from job `job_id`'s record, checked as a render node checks it before rendering and a delete
    before deleting (check_spec, and the record names its own job): SceneError otherwise."""
    check_spec(spec)
    if spec.id != job_id:
        raise SceneError(f"the record of job {job_id!r} names job {spec.id!r}")
    return spec


def check_batch(spec: JobSpec, batch_id: object) -> Batch:
    """The batch, if it is one the job planned (a forged message may name any frames); BadInputError otherwise."""
    if not isinstance(batch_id, str) or not isinstance(spec.batches, list) or batch_id not in spec.batches:
        raise BadInputError(f"batch {batch_id!r} is not one job {spec.id} planned")
    batch = Batch.from_id(batch_id)
    if batch.prepass and ((spec.radiosity == "off" and spec.photons == "off") or batch.first != batch.last):
        raise BadInputError(f"batch {batch_id!r}: job {spec.id} has no pre-pass of that kind")
    rows_ok = batch.rows is None or 1 <= batch.rows[0] <= batch.rows[1] <= spec.height
    if not (spec.first <= batch.first <= batch.last <= spec.last) or not rows_ok:
        raise BadInputError(f"batch {batch_id!r} lies outside job {spec.id}'s frames or rows")
    return batch


# povray 3.7 renders in square blocks of Render_Block_Size (+BS) pixels, 32 by default, 4 at least. With
# antialiasing method 1 (the default) the pixels on a block's edges depend on where the block ends, and the
# block grid starts at the render window's first row/column (+SR/+SC), not at row 1 of the image (POV-Ray
# issue #377). A slice therefore stitches pixel-identical to a whole render only when it starts one row
# after a multiple of the block size and ends on a multiple of it (or on the last row of the image).
# Measured with 3.7.0.10: the same holds for columns (+SC/+EC); +BS changes the pixels of a whole render too, so
# slices must use the scene's block size; without antialiasing or with +AM2 any boundary is exact, but +AM2
# gives other pixels than +AM1, so httpov cannot switch to it behind the user's back.
RENDER_BLOCK_SIZE = 32
MIN_RENDER_BLOCK_SIZE = 4


def plan_slices(
    height: int,
    *,
    slices: int | None = None,
    rows: int | None = None,
    block: int = RENDER_BLOCK_SIZE,
) -> list[tuple[int, int]]:
    """Split rows 1..height into 1-based inclusive (first, last) slices that stitch pixel-identical.

    Give exactly one of `slices` (how many slices) or `rows` (rows per slice). Every boundary between two
    slices falls on a multiple of `block`, povray's Render_Block_Size (pass the scene's +BS if it sets one).
    So an image of height H has at most ceil(H / block) slices: asking for more returns that many (a 1080-row
    frame gives at most 34 slices). `rows` is rounded to the nearest multiple of `block`, at least one block;
    the last slice holds whatever rows remain. Boundaries for `slices` are the multiples of `block` nearest to
    an even split, so slices differ in size by about one block at most.
    """
    _check_positive_int("height", height)
    _check_positive_int("block", block)
    if block < MIN_RENDER_BLOCK_SIZE:
        raise BadInputError(f"render block size must be at least {MIN_RENDER_BLOCK_SIZE} (povray's minimum), "
                            f"got {block}")
    if (slices is None) == (rows is None):
        raise OptionError([Problem(("slices", "slice_rows"), "give exactly one of {0} and {1}")])
    blocks = -(-height // block)  # ceil: the last block may be short
    if slices is not None:
        _check_positive_int("slices", slices, option=True)
        if slices > height:
            raise OptionError.of("slices", f"cannot cut {height} rows into {slices} slices: {{0}} must be at most "
                                           "the height")
        count = min(slices, blocks)
        ends: list[int] = []
        previous = 0
        for i in range(1, count):
            nearest = (2 * i * height + count * block) // (2 * count * block)  # round(i*height / count / block)
            k = max(previous + 1, min(nearest, blocks - count + i))
            ends.append(k * block)
            previous = k
    else:
        assert rows is not None
        _check_positive_int("slice_rows", rows, option=True)
        step = max(1, (2 * rows + block) // (2 * block)) * block  # round(rows / block) blocks, at least one
        ends = list(range(step, height, step))
    ends.append(height)
    starts = [1] + [end + 1 for end in ends[:-1]]
    return list(zip(starts, ends))


#: submit --slices auto (docs/PERFORMANCE.md "Slices sized by the farm"): this many slices per live render process,
#: so that the last slices to finish are short next to the frame (a greedy farm ends within one slice of the ideal).
#: Render processes outnumber cores (4 per core by default), so 2 a process is 8 a core; measured with 4 processes on
#: 2 cores, 8 slices of a still took 0.85-0.94x the wall time of 16 (each slice costs a start, a parse, a full image).
SLICES_PER_PROCESS = 2
#: ... but no slice shorter than this many seconds of povray when the scene's cost is known: each slice pays
#: povray's start and the scene's parse again.
MIN_SLICE_SECONDS = 1.0
#: Render processes assumed while no render node has said how many it runs (as dispatch.MIN_PROCESSES).
ASSUMED_PROCESSES = 2
#: The word --slices takes for "sized by the farm".
AUTO = "auto"


def auto_slice_count(height: int, processes: int, frame_seconds: float | None = None,
                     block: int = RENDER_BLOCK_SIZE) -> int:
    """How many slices --slices auto cuts a frame into: SLICES_PER_PROCESS per live render process, at most one per
    render block; when the frame's cost is known, no more than makes slices of MIN_SLICE_SECONDS (and never fewer
    than the processes, so every process has a slice)."""
    processes = max(1, processes or ASSUMED_PROCESSES)
    count = SLICES_PER_PROCESS * processes
    if frame_seconds is not None:
        count = min(count, max(processes, math.floor(frame_seconds / MIN_SLICE_SECONDS)))
    return max(1, min(count, -(-height // block)))


def slice_costs(done: list[tuple[str, float]], height: int) -> list[float] | None:
    """A frame's cost row by row (seconds of povray per row) from done slices of earlier jobs of the same scene at the
    same size: (batch id, seconds net of povray's start: net_seconds) pairs. Each slice's time is spread evenly over
    its rows; a row several slices covered gets their mean. None when no slice covered every row (nothing to plan
    from)."""
    total, times = [0.0] * height, [0] * height
    for batch_id, seconds in done:
        batch = Batch.from_id(batch_id)
        if batch.rows is None or batch.prepass or not 1 <= batch.rows[0] <= batch.rows[1] <= height:
            continue
        rows = batch.rows[1] - batch.rows[0] + 1
        per_row = max(0.0, seconds) / rows / (batch.last - batch.first + 1)
        for row in range(batch.rows[0] - 1, batch.rows[1]):
            total[row] += per_row
            times[row] += 1
    if not all(times):
        return None
    return [t / n for t, n in zip(total, times)]


def even_cost_slices(costs: list[float], count: int, block: int = RENDER_BLOCK_SIZE) -> list[tuple[int, int]]:
    """Rows 1..len(costs) cut on the block grid into at most `count` slices whose costliest is as cheap as the grid
    allows (`costs`: seconds per row): a cheap band (a sky) becomes one slice, a costly one several. A slice holds
    at least one block, so a single costly block bounds it."""
    height = len(costs)
    blocks = [sum(costs[start:start + block]) for start in range(0, height, block)]
    count = max(1, min(count, len(blocks)))
    if sum(blocks) <= 0:
        return plan_slices(height, slices=count, block=block)

    def cut(cap: float) -> list[int]:  # greedy: each slice takes blocks while it stays within cap; its ends
        ends, held = [], 0.0
        for index, cost in enumerate(blocks):
            if index and held + cost > cap:
                ends.append(index)
                held = 0.0
            held += cost
        return ends
    low, high = max(blocks), sum(blocks)  # the best cap lies between: bisect it
    for _ in range(60):
        middle = (low + high) / 2
        if len(cut(middle)) + 1 <= count:
            high = middle
        else:
            low = middle
    bounds = [end * block for end in cut(high)] + [height]
    starts = [1] + [b + 1 for b in bounds[:-1]]
    return list(zip(starts, bounds))


def auto_slices(height: int, processes: int, costs: list[float] | None = None, frame_seconds: float | None = None,
                block: int = RENDER_BLOCK_SIZE) -> list[tuple[int, int]]:
    """--slices auto: the frame cut for the live render processes. With the scene's measured cost per row (from its
    earlier sliced renders, see slice_costs) the slices are of equal cost, and no more than make MIN_SLICE_SECONDS
    each; without, SLICES_PER_PROCESS per process of equal rows (fewer if the scene's whole frames' measured time,
    `frame_seconds`, makes them shorter than MIN_SLICE_SECONDS), so that a costly band of rows is itself cut into
    several slices and the last slice to finish is short."""
    if costs is not None and len(costs) == height:
        return even_cost_slices(costs, auto_slice_count(height, processes, sum(costs), block), block)
    return plan_slices(height, slices=auto_slice_count(height, processes, frame_seconds, block), block=block)


def slice_options(first: int, last: int, height: int) -> list[str]:
    """povray options that render rows first..last (1-based, inclusive) of an image `height` rows high.

    Returns no options for the whole image. povray reads a value of 1.0 or less as a fraction of the image, so
    +ER1 means the last row: a slice ending at row 1 of a taller image cannot be asked for. +SR past +ER
    makes povray hang; both are refused here.
    """
    if not 1 <= first <= last <= height:
        raise BadInputError(f"slice rows {first}..{last} are not inside an image of {height} rows")
    if first == 1 and last == height:
        return []
    if last == 1:
        raise BadInputError("povray reads +ER1 as 'the last row': a slice cannot end at row 1 of a taller image")
    return [f"+SR{first}", f"+ER{last}"]


def _check_positive_int(name: str, value: Any, option: bool = False) -> None:
    """A whole number of at least 1; `option`: `name` is a submit option's field (OptionError: each surface names
    it its own way), else BadInputError."""
    problem = None
    if isinstance(value, bool) or not isinstance(value, int):
        problem = f"{{0}} must be a whole number, got {literal(repr(value))}"
    elif value <= 0:
        problem = f"{{0}} must be at least 1, got {value}"
    if problem is not None:
        raise OptionError.of(name, problem) if option else BadInputError(problem.format(name))


# Radiosity pre-pass (docs/RADIOSITY.md). A sliced radiosity frame rendered slice by slice runs povray's pretrace
# over each slice's rows only, so the indirect light differs from slice to slice and the edges show as bands.
# Instead one pre-pass batch per frame renders the whole image once (no AA) with Radiosity_File_Name=... +RFO,
# and every slice loads that file (+RFI) with its own pretrace reduced to one pass (a footer that merges with
# the scene's radiosity block): the stitched frame is then within noise of a single render.


def wrappable(pov: str) -> bool:
    """Whether a wrapper scene can `#include` this .pov by name (a POV-Ray string: no quote, no backslash)."""
    return isinstance(pov, str) and '"' not in pov and "\\" not in pov and not any(ord(c) < 32 for c in pov)


def prepass_ids(spec: JobSpec) -> list[str]:
    """The job's pre-pass batches."""
    return [b for b in spec.batches if b.endswith(f"-{PREPASS_SUFFIX}")]


def waiting_for_prepass(spec: JobSpec, batch_ids: list[str]) -> list[str]:
    """The batches of `batch_ids` to queue now: a slice whose frame's pre-pass is among them waits, since that
    pre-pass queues every slice of its frame when it has stored its cache (a shared pre-pass: every batch)."""
    pending = {Batch.from_id(b) for b in batch_ids if b.endswith(f"-{PREPASS_SUFFIX}")}
    if not pending:
        return list(batch_ids)
    shared = spec.radiosity == "shared"
    frames = {f for p in pending for f in p.frames}
    return [b for b in batch_ids if Batch.from_id(b) in pending
            or not (shared or Batch.from_id(b).first in frames)]


def released_by(spec: JobSpec, prepass: Batch) -> list[str]:
    """The batches a finished pre-pass queues: its frame's slices (a shared pre-pass: every other batch)."""
    return [b for b in spec.batches if not b.endswith(f"-{PREPASS_SUFFIX}")
            and (spec.radiosity == "shared" or Batch.from_id(b).first == prepass.first)]


def radiosity_digest(spec: JobSpec, frame: int) -> str:
    """What the radiosity cache a batch of `frame` loads depends on: the scene, its options, size and clock (the
    frame; for a cache shared by every frame, the frame its pre-pass rendered), and the pre-pass recipe. Jobs
    that agree on all of it share the stored cache."""
    if spec.radiosity == "shared":
        frame = spec.first
    what = {"scene": spec.scene_key, "root": spec.root, "pov": spec.pov, "options": spec.options,
            "size": [spec.width, spec.height], "animation": [spec.initial, spec.final], "frame": frame,
            "shared": spec.radiosity == "shared", "recipe": PREPASS_RECIPE}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


def plan_job(layout: SceneLayout, options: SceneOptions, settings: Settings, *, name: str, scene_key: str = "",
             frames: int | None = None, count: int | None = None, slices: int | str | None = None,
             slice_rows: int | None = None, priority: int = 5,
             size: tuple[int | None, int | None] = (None, None), measured: tuple[float, int, int] = (0.0, 0, 0),
             job_id: str | None = None, created: float | None = None, processes: int = 0,
             slice_times: list[tuple[str, float]] | None = None) -> JobSpec:
    """A job split into batches, checked against the farm's limits: its frame range (`frames` sets Final_Frame),
    image size (the ini's, or `size`'s width and height where given: submit --width/--height), row slices (`slices`
    or `slice_rows`; `slices` 'auto': auto_slices for the farm's live render `processes` and the scene's done slices
    of earlier jobs, `slice_times`: JobStore.slice_times), and frames per batch. Without `count`, frames per batch
    follow the scene's measured frame time (`measured`: JobStore.frame_times of history_key(scene_key, w, h)), and
    the last batches shrink for the live render `processes` (tail_sizes)."""
    from httpov import limits

    fr = frame_range(options, frames)
    width, height = image_size(options, size)
    try:
        limits.check_image(width, height, settings)
    except SceneError as exc:  # a size given with the job, not the ini's: said as that option's problem
        given = [name for name, value in zip(("width", "height"), size) if value is not None]
        if not given:
            raise
        field = "height" if given == ["height"] or height > settings.max_height >= width else "width"
        said = str(exc).replace("the scene asks", "the job asks").replace("{", "{{").replace("}", "}}")
        raise OptionError.of(field, "{0}: " + said, exc.hint) from None
    limits.check_work(fr.count, 0, settings)
    row_slices = None
    if slices == AUTO:
        row_slices = auto_slices(height, processes, slice_costs(slice_times or [], height), frame_seconds(*measured))
    elif slices is not None or slice_rows is not None:
        row_slices = plan_slices(height, slices=slices if isinstance(slices, int) else None, rows=slice_rows)
    tail = 0
    if row_slices:
        count = count or 1
    elif count is None:  # adaptive: its last batches shrink for the live render processes (a --count is exact)
        count, tail = adaptive_count(fr.count, frame_seconds(*measured)), processes or ASSUMED_PROCESSES
    limits.check_work(fr.count, limits.planned_batches(fr.count, count, len(row_slices or [])), settings)
    batches = split(fr, count, row_slices, tail)
    if len(batches) > settings.max_batches:  # the tail's extra batches would pass the farm's limit: none then
        batches = split(fr, count, row_slices)
    if settings.batch_order == "preview" and (processes or ASSUMED_PROCESSES) < len(batches) <= \
            settings.max_batches - 10 and (tail or preview_pays(fr.count, len(batches), frame_seconds(*measured))):
        # (one round of the processes starts every batch at once: no preview to give)
        batches = preview_frames(batches, fr)  # none more with a tail, at most ten more without
    return JobSpec(
        id=job_id or secrets.token_hex(5), name=name, scene_key=scene_key, root=layout.root, pov=layout.pov,
        options=options.options, initial=fr.initial, final=fr.final, first=fr.first, last=fr.last,
        width=width, height=height, count=count, slices=row_slices, priority=priority,
        created=time.time() if created is None else created, batches=[b.id for b in batches],
        order=settings.batch_order,
    )


@lru_cache(maxsize=1 << 16)
def work_units(batch_id: str, height: int) -> float:
    """A batch's work in frames: its frame count, or for a row slice the fraction of a frame it covers (remembered,
    as Batch.from_id: a big job's view asks it of each batch three times)."""
    batch = Batch.from_id(batch_id)
    if batch.prepass:  # renders no frame of the job (its time shows in the slices' wait)
        return 0.0
    frames = batch.last - batch.first + 1
    if batch.rows is None or height <= 0:
        return float(frames)
    return frames * (batch.rows[1] - batch.rows[0] + 1) / height


def batch_time_limit(done: dict[str, dict[str, Any]], height: int, batch_id: str, factor: float,
                     floor: float) -> float | None:
    """A batch's own time limit from the job's measured frame times: `factor` times the median seconds per frame of
    its finished batches, times the batch's frames (a slice: its share of a frame), at least `floor` seconds. None
    before any batch of the job finished, and for a pre-pass (it renders no frame of the job)."""
    return time_limit(unit_median(done, height), height, batch_id, factor, floor)


def unit_median(done: dict[str, dict[str, Any]], height: int) -> float | None:
    """The median seconds per frame (work_units) of the job's finished batches `done`; None before any."""
    costs = sorted(float(info["seconds"]) / units_done for b, info in done.items()
                   if "seconds" in info and (units_done := work_units(b, height)) > 0)
    if not costs:
        return None
    middle = len(costs) // 2
    return costs[middle] if len(costs) % 2 else (costs[middle - 1] + costs[middle]) / 2


def time_limit(median: float | None, height: int, batch_id: str, factor: float, floor: float) -> float | None:
    """batch_time_limit from the job's median seconds per frame (unit_median)."""
    units = work_units(batch_id, height)
    if median is None or units <= 0:
        return None
    return max(floor, factor * median * units)


# --- the re-split of a running slice (docs/PERFORMANCE.md "The re-split") ---
#: A running slice is split only when at least this many block rows remain past the block row it renders now.
RESPLIT_MIN_BLOCK_ROWS = 2


def resplit_cut(rows: tuple[int, int], done: float, block: int = RENDER_BLOCK_SIZE,
                min_blocks: int = RESPLIT_MIN_BLOCK_ROWS) -> int | None:
    """Where a running slice of rows `rows` (first, last) with the share `done` (0-1) of its pixels rendered ends
    if it gives its remaining rows' second half to a new slice: a row on the slice's own block grid (the grid
    starts at its first row: POV-Ray issue #377), past the block row it renders now, so that both halves stitch
    pixel-identical to one render. None when fewer than `min_blocks` block rows remain past that block row."""
    first, last = rows
    height = last - first + 1
    done_rows = int(max(0.0, min(1.0, done)) * height) // block * block  # whole block rows finished
    current = min(last, first + done_rows + block - 1)  # the last row of the block row it renders now
    whole_left = (last - current) // block  # whole block rows past it (a short last block row is not counted)
    if whole_left < min_blocks:
        return None
    return current + (whole_left + 1) // 2 * block  # the odd block row to the slice that goes on


def split_batch_id(batch_id: str, cut: int) -> str:
    """The id of the new slice that renders the rows of slice `batch_id` past `cut`."""
    batch = Batch.from_id(batch_id)
    if batch.rows is None or not batch.rows[0] <= cut < batch.rows[1]:
        raise BadInputError(f"batch {batch_id!r} has no row {cut} to end at")
    return Batch(batch.first, batch.last, (cut + 1, batch.rows[1])).id


def delivered_slices(slices: list[tuple[int, int]], frame: int, cuts: dict[str, int]) -> list[tuple[str, int, int]]:
    """The slices of `frame` as they are delivered once the re-splits `cuts` (batch id -> the row it now ends at)
    were made: (batch id, first row, last row) each, in row order. A slice cut at row c delivers rows first..c; the
    new slice of rows c+1..last (itself perhaps cut again) delivers the rest."""
    out = []
    for rows in slices:
        batch_id = Batch(frame, frame, rows).id
        while True:
            first, last = Batch.from_id(batch_id).rows or rows
            cut = cuts.get(batch_id)
            if cut is None or not first <= cut < last:
                out.append((batch_id, first, last))
                break
            out.append((batch_id, first, cut))
            batch_id = Batch(frame, frame, (cut + 1, last)).id
    return out
