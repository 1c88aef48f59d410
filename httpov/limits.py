"""Bounds on the work one job may ask for (image size, frames, batches): checked at submit, and on the node."""
from __future__ import annotations

import math

from httpov.errors import BadInputError, SceneError
from httpov.settings import Settings

_RAISE = "the farm's operator sets the limits: {}"


def check_image(width: int, height: int, settings: Settings) -> None:
    """Raise SceneError if a width x height frame is past the farm's limits."""
    for what, value, limit, name in (("width", width, settings.max_width, "HTTPOV_MAX_WIDTH"),
                                     ("height", height, settings.max_height, "HTTPOV_MAX_HEIGHT"),
                                     ("size", width * height, settings.max_pixels, "HTTPOV_MAX_PIXELS")):
        if value > limit:
            shown = f"{width}x{height} = {value} pixels" if what == "size" else f"{what} {value}"
            raise SceneError(f"the scene asks for a {shown}, more than the limit of {limit}",
                             hint=_RAISE.format(name))


def planned_batches(frames: int, count: int, slices: int) -> int:
    """How many batches a job of `frames` frames splits into, without listing them (plan.split's arithmetic)."""
    return frames * slices if slices else math.ceil(frames / count)


def check_work(frames: int, batches: int, settings: Settings) -> None:
    """Raise BadInputError if a job of `frames` frames in `batches` batches is past the farm's limits."""
    if frames > settings.max_frames:
        raise BadInputError(f"the job has {frames} frames, more than the limit of {settings.max_frames}",
                            hint=_RAISE.format("HTTPOV_MAX_FRAMES"))
    if batches > settings.max_batches:
        raise BadInputError(f"the job splits into {batches} batches, more than the limit of {settings.max_batches}",
                            hint="more frames per batch (--count) or fewer slices; "
                            + _RAISE.format("HTTPOV_MAX_BATCHES"))
