"""Splitting a job into batches: frame ranges of an animation, row slices of each frame."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from httpov.errors import BadInputError, SceneError
from httpov.scene import SceneOptions

DEFAULT_WIDTH, DEFAULT_HEIGHT = 320, 240  # POV-Ray's own defaults when an ini names no size
# Adaptive --count (docs/PERFORMANCE.md): a task should last about TARGET_TASK_SECONDS of povray, long enough to
# amortize a task's own cost (Celery, sandbox, storage: tens of ms of CPU) and povray's start (~0.7 s idle,
# hidden by running more render processes than cores), short enough that the tail of a job stays short.
TARGET_TASK_SECONDS = 2.5
POVRAY_START_SECONDS = 0.7  # povray's idle start, paid once per task; measured frame times are net of it
MIN_BATCHES = 8  # a short job is still spread over this many tasks (a 2-core node runs 8 render processes)
FIRST_MAX_COUNT = 4  # before a scene's frame time is known, keep tasks short: a heavy scene stays parallel


@dataclass(frozen=True)
class FrameRange:
    """The animation as POV-Ray sees it (initial..final) and the frames to render (first..last)."""

    initial: int
    final: int
    first: int
    last: int

    @property
    def animated(self) -> bool:
        return self.final > self.initial

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class Batch:
    """One task: frames first..last, and for a sliced job rows row_first..row_last (1-based, inclusive)."""

    first: int
    last: int
    rows: tuple[int, int] | None = None

    @property
    def id(self) -> str:
        frames = f"f{self.first:06d}-{self.last:06d}"
        return frames if self.rows is None else f"{frames}-r{self.rows[0]:05d}-{self.rows[1]:05d}"

    @property
    def label(self) -> str:
        """Human-readable, for Flower and logs."""
        frames = f"frame {self.first}" if self.first == self.last else f"frames {self.first}-{self.last}"
        return frames if self.rows is None else f"{frames} rows {self.rows[0]}-{self.rows[1]}"

    @property
    def frames(self) -> range:
        return range(self.first, self.last + 1)

    @classmethod
    def from_id(cls, batch_id: str) -> "Batch":
        parts = batch_id.split("-")
        try:
            first, last = int(parts[0][1:]), int(parts[1])
            rows = (int(parts[2][1:]), int(parts[3])) if len(parts) == 4 else None
        except (IndexError, ValueError):
            raise BadInputError(f"{batch_id!r} is not a batch id") from None
        return cls(first, last, rows)


def frame_range(options: SceneOptions, frames: int | None = None) -> FrameRange:
    """The frames a job renders: the ini's animation (and subset), or `frames` frames from Initial_Frame."""
    initial = options.integer("Initial_Frame", 1)
    if frames is not None:
        if frames <= 0:
            raise BadInputError(f"--frames must be at least 1, got {frames}")
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


def image_size(options: SceneOptions) -> tuple[int, int]:
    """Width and height in pixels the ini asks for (POV-Ray's 320x240 when it names none)."""
    width = options.integer("Width", DEFAULT_WIDTH)
    height = options.integer("Height", DEFAULT_HEIGHT)
    if width <= 0 or height <= 0:
        raise SceneError(f"the ini asks for a {width}x{height} image")
    return width, height


def frame_seconds(seconds: float, frames: int, batches: int) -> float | None:
    """Seconds of povray per frame, net of its start, from done batches (None when nothing was measured)."""
    if frames <= 0 or batches <= 0:
        return None
    return max(0.01, (seconds - batches * POVRAY_START_SECONDS) / frames)


def adaptive_count(frame_count: int, per_frame: float | None, target: float = TARGET_TASK_SECONDS,
                   min_batches: int = MIN_BATCHES) -> int:
    """Frames per task: about `target` seconds of povray each, but at least `min_batches` tasks per job.

    Without a measurement (`per_frame` None) a task gets at most FIRST_MAX_COUNT frames."""
    spread = math.ceil(frame_count / min_batches)
    if per_frame is None:
        wanted = FIRST_MAX_COUNT
    else:
        wanted = math.floor(max(target - POVRAY_START_SECONDS, per_frame) / per_frame)
    return max(1, min(wanted, spread))


def split(frames: FrameRange, count: int, row_slices: list[tuple[int, int]] | None = None) -> list[Batch]:
    """Batches of `count` frames; with slices, one batch per (frame, slice) instead."""
    if count <= 0:
        raise BadInputError(f"--count must be at least 1, got {count}")
    if row_slices:
        return [Batch(f, f, rows) for f in range(frames.first, frames.last + 1) for rows in row_slices]
    return [
        Batch(start, min(start + count - 1, frames.last))
        for start in range(frames.first, frames.last + 1, count)
    ]


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

    @property
    def frames(self) -> FrameRange:
        return FrameRange(self.initial, self.final, self.first, self.last)

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
    def from_dict(cls, data: dict) -> "JobSpec":
        data = dict(data)
        if data.get("slices"):
            data["slices"] = [tuple(s) for s in data["slices"]]
        return cls(**data)
