"""What a scene zip asks for, read without storing or queuing anything: the image size, frames, clock and
antialiasing its ini sets, with submit's options over them (the web form's 'Check scene')."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from httpov import archive
from httpov.errors import SceneError
from httpov.options import SubmitOptions
from httpov.plan import plan_job
from httpov.scene import SceneOptions, locate_scene
from httpov.settings import Settings
from httpov.text import shown

#: How an ini says yes to Antialias (POV-Ray's booleans).
_YES = ("on", "true", "yes", "1")


@dataclass(frozen=True)
class ScenePreview:
    """The job a submit would make of a scene: its .pov and ini, size, frames (of the animation initial..final), the
    clock of its first and last frame, antialiasing, batches and slices, and the ini's typos."""

    pov: str
    ini: str | None
    width: int
    height: int
    first: int
    last: int
    initial: int
    final: int
    clock: tuple[float, float]
    antialias: str
    batches: int
    slices: int
    warnings: list[str]

    def lines(self) -> list[tuple[str, str]]:
        """(what, value) pairs as a page lists them."""
        frames = f"{self.first}-{self.last}" if self.first != self.last else str(self.first)
        ini = f" (ini {shown(self.ini)})" if self.ini else " (no ini: POV-Ray's defaults)"
        return [("scene", shown(self.pov) + ini),
                ("size", f"{self.width}x{self.height}"),
                ("frames", f"{frames} ({self.last - self.first + 1} of the animation's {self.initial}-{self.final})"),
                ("clock", f"{self.clock[0]:g} to {self.clock[1]:g}"),
                ("antialias", self.antialias),
                ("batches", f"{self.batches}" + (f" ({self.slices} row slice(s) a frame)" if self.slices else ""))]


def _number(scene: SceneOptions, name: str, default: float) -> float:
    value = scene.get(name)
    try:
        return default if value is None else float(value)
    except ValueError:
        raise SceneError(f"the ini sets {name}={value!r}, which is not a number") from None


def _antialias(scene: SceneOptions) -> str:
    if (scene.get("Antialias") or "off").strip().lower() not in _YES:
        return "off"
    said = [f"{what} {scene.get(name)}" for what, name in (("threshold", "Antialias_Threshold"),
                                                            ("depth", "Antialias_Depth"),
                                                            ("method", "Sampling_Method")) if scene.get(name)]
    return "on" + (f" ({', '.join(said)})" if said else "")


def preview(zip_path: Path, options: SubmitOptions, settings: Settings, processes: int = 0) -> ScenePreview:
    """What submitting the scene zip at `zip_path` with `options` would render, checked as submit checks it (the
    archive's limits, the farm's limits on size, frames and batches: SceneError, OptionError, BadInputError), split
    for the live render `processes` the job can have (Client.job_processes); nothing is stored."""
    names = archive.check_archive(zip_path, settings.archive_limits())
    with zipfile.ZipFile(zip_path) as zf:
        layout, scene = locate_scene(names, lambda n: zf.read(n).decode("utf-8", "replace"))
    spec = plan_job(layout, scene, settings, name="preview", frames=options.frames, count=options.count,
                    slices=options.slices, slice_rows=options.slice_rows, priority=options.priority,
                    size=(options.width, options.height), processes=processes)
    start, end = _number(scene, "Initial_Clock", 0.0), _number(scene, "Final_Clock", 1.0)

    def clock(frame: int) -> float:
        span = spec.final - spec.initial
        return start if span <= 0 else start + (end - start) * (frame - spec.initial) / span

    return ScenePreview(layout.pov, layout.ini, spec.width, spec.height, spec.first, spec.last, spec.initial,
                        spec.final, (clock(spec.first), clock(spec.last)), _antialias(scene), len(spec.batches),
                        len(spec.slices or []), scene.typos)
