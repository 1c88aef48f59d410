"""Rendered frames as something to look at: an MP4 or GIF in frame order, and a contact sheet of thumbnails."""
from __future__ import annotations

import contextlib
import math
import re
import subprocess
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageDraw, ImageFont

from httpov.errors import BadInputError, HttpovError, ResultError
from httpov.results import (  # the core's checks on results (render nodes stitch with them), named here as before
    LOG_MAX_BYTES,  # noqa: F401
    check_frame,  # noqa: F401
    frame_bytes,  # noqa: F401
    png_size,
    unpack_member,  # noqa: F401
)
from httpov.text import shown

Progress = Callable[[int, int], None]

_FRAME_NUMBER = re.compile(r"(\d+)\.png$", re.IGNORECASE)
VIDEO_SUFFIXES = (".mp4", ".gif")
#: The most pixels a frame opened here may have (HTTPOV_MAX_PIXELS' default): frames come from other machines.
MAX_PIXELS = 64 * 1024**2


@contextlib.contextmanager
def open_frame(source: Path | BinaryIO, max_pixels: int = MAX_PIXELS) -> Iterator[Image.Image]:
    """Open a frame for decoding, after checking from its header that it has at most `max_pixels`."""
    label = shown(Path(source).name) if isinstance(source, (str, Path)) else "frame"
    image = None
    try:
        if isinstance(source, (str, Path)):
            with open(source, "rb") as f:
                head = f.read(24)
        else:
            head = source.read(24)
            source.seek(0)
        width, height = png_size(head) or (0, 0)  # other formats: Pillow reads their size below
        if width * height <= max_pixels:
            with warnings.catch_warnings():  # Pillow warns past 89 megapixels; the size is checked right below
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(source)
            width, height = image.size
    except (Image.DecompressionBombError, OSError) as exc:  # UnidentifiedImageError is an OSError
        raise ResultError(f"{label} cannot be read as a frame: {shown(exc)}") from None
    if image is None or width * height > max_pixels:
        if image is not None:
            image.close()
        raise ResultError(f"{label} is {width}x{height}, more than {max_pixels} pixels: refused "
                          "(a frame bigger than its job planned)")
    with image:
        yield image


def frame_number(path: Path | str) -> int:
    """The frame number in a frame file's name (`anim_0007.png` -> 7)."""
    match = _FRAME_NUMBER.search(Path(path).name)
    if not match:
        raise BadInputError(f"{Path(path).name}: not a frame file (expected <name>_<number>.png)")
    return int(match.group(1))


def in_frame_order(images: Sequence[Path]) -> list[Path]:
    """Frame files sorted by their frame number (not by name: padding widths may differ)."""
    return sorted(images, key=frame_number)


def ffmpeg_exe() -> str:
    """The ffmpeg binary that the imageio-ffmpeg package ships (installs from PyPI, no system ffmpeg needed)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise HttpovError("making a video needs the imageio-ffmpeg package",
                         hint="pip install 'httpov[video]' (or pip install imageio-ffmpeg)") from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as exc:
        raise HttpovError(f"imageio-ffmpeg found no ffmpeg binary: {exc}",
                         hint="reinstall imageio-ffmpeg for this platform, or set IMAGEIO_FFMPEG_EXE") from None


def encode(images: Sequence[Path], output: Path, fps: float = 24.0, on_frame: Progress | None = None,
           max_pixels: int = MAX_PIXELS) -> Path:
    """Encode the frames in frame order into `output`: H.264 MP4 (`.mp4`) or an animated GIF (`.gif`); a frame of
    more than `max_pixels` is refused (ResultError) before it is decoded. A frame missing between two rendered ones
    (not rendered yet: a running job hands its batches out coarse-to-fine; or failed) is filled by holding the frame
    before it, so the video keeps the animation's timing: a job 10% done already plays the whole animation."""
    output = Path(output)
    suffix = output.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise BadInputError(f"{output.name}: a video must end in .mp4 or .gif")
    if not images:
        raise BadInputError("there are no rendered frames to encode", hint="`httpov status JOB` shows why")
    if fps <= 0:
        raise BadInputError(f"--fps must be greater than 0, got {fps}")
    frames = in_frame_order(images)
    with open_frame(frames[0], max_pixels) as first:
        width, height = first.size
    if suffix == ".mp4":
        # yuv420p (what players accept) needs even sizes: pad by one black row/column when odd
        codec = ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18",
                 "-movflags", "+faststart"]
    else:
        codec = ["-vf", "split[a][b];[a]palettegen=stats_mode=full[p];[b][p]paletteuse=dither=none",
                 "-loop", "0"]
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = [ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-", *codec, str(output)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        numbers = [frame_number(path) for path in frames]
        for n, path in enumerate(frames, 1):
            with open_frame(path, max_pixels) as image:
                if image.size != (width, height):
                    raise BadInputError(f"{path.name} is {image.size[0]}x{image.size[1]}, the first frame "
                                        f"{width}x{height}: frames of one video must have one size")
                pixels = _rgb(image).tobytes()
            held = numbers[n] - numbers[n - 1] if n < len(frames) else 1  # itself and the missing frames after it
            for _ in range(max(1, held)):
                proc.stdin.write(pixels)
            if on_frame:
                on_frame(n, len(frames))
        proc.stdin.close()
    except BrokenPipeError:
        pass
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.wait() != 0:
        last = err.strip().splitlines()[-1] if err.strip() else ""
        raise HttpovError(f"ffmpeg could not encode {output.name}: {last}",
                          hint="run again with fewer frames or another suffix; ffmpeg's message is above")
    return output


def contact_sheet(images: Sequence[Path], output: Path, thumb: int = 160, columns: int | None = None,
                  on_frame: Progress | None = None, max_pixels: int = MAX_PIXELS) -> Path:
    """One PNG with a thumbnail of every frame (at most `thumb` pixels wide or high), in frame order, labelled;
    a frame of more than `max_pixels` is refused (ResultError) before it is decoded."""
    if not images:
        raise BadInputError("there are no rendered frames for a contact sheet", hint="`httpov status JOB` shows why")
    if thumb <= 0:
        raise BadInputError(f"--thumb must be greater than 0, got {thumb}")
    frames = in_frame_order(images)
    thumbs = []
    for n, path in enumerate(frames, 1):
        with open_frame(path, max_pixels) as image:
            small = _rgb(image)
            small.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
            thumbs.append((frame_number(path), small))
        if on_frame:
            on_frame(n, len(frames))
    columns = columns or max(1, math.ceil(math.sqrt(len(thumbs))))
    rows = math.ceil(len(thumbs) / columns)
    font = ImageFont.load_default()
    label_h = 14
    cell_w = max(t.size[0] for _, t in thumbs) + 8
    cell_h = max(t.size[1] for _, t in thumbs) + 8 + label_h
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for i, (number, small) in enumerate(thumbs):
        x, y = (i % columns) * cell_w + 4, (i // columns) * cell_h + 4
        sheet.paste(small, (x, y))
        draw.text((x, y + small.size[1] + 2), str(number), fill=(230, 230, 230), font=font)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(output)
    return output


def thumbnail_png(image_bytes: bytes, size: int = 320, max_pixels: int = MAX_PIXELS) -> bytes:
    """A PNG at most `size` pixels on a side (8-bit RGB) from a frame's PNG bytes (at most `max_pixels`)."""
    import io

    with open_frame(io.BytesIO(image_bytes), max_pixels) as image:
        small = _rgb(image)
        small.thumbnail((size, size), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        small.save(out, format="PNG")
        return out.getvalue()


def _rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB of any PNG povray writes (16-bit, grey, alpha)."""
    if image.mode.startswith("I"):  # 16-bit grey
        return image.convert("I").point(lambda v: v * (1 / 257)).convert("L").convert("RGB")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (0, 0, 0))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")
