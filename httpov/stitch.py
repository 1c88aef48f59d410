"""Plan a still's row slices on povray's render-block grid and stitch the rendered slices into one PNG."""
from __future__ import annotations

import itertools
import os
import struct
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import png

from httpov.errors import BadInputError, RenderError

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

# PNG colour types: samples per pixel and a name for messages.
_COLOUR_TYPES = {0: (1, "grey"), 2: (3, "RGB"), 3: (1, "palette"), 4: (2, "grey+alpha"), 6: (4, "RGBA")}
# Chunks of a part that are not copied to the stitched image: the pixel data (rebuilt) and the render time.
_SKIPPED_CHUNKS = {b"IDAT", b"IEND", b"tIME"}


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
        raise BadInputError(f"render block size must be at least {MIN_RENDER_BLOCK_SIZE} (povray's minimum), got {block}")
    if (slices is None) == (rows is None):
        raise BadInputError("give exactly one of --slices and --slice-rows")
    blocks = -(-height // block)  # ceil: the last block may be short
    if slices is not None:
        _check_positive_int("--slices", slices)
        if slices > height:
            raise BadInputError(f"cannot cut {height} rows into {slices} slices: --slices must be at most the height")
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
        _check_positive_int("--slice-rows", rows)
        step = max(1, (2 * rows + block) // (2 * block)) * block  # round(rows / block) blocks, at least one
        ends = list(range(step, height, step))
    ends.append(height)
    starts = [1] + [end + 1 for end in ends[:-1]]
    return list(zip(starts, ends))


def is_exact_slice(first: int, last: int, height: int, *, block: int = RENDER_BLOCK_SIZE) -> bool:
    """Whether a slice rendered with +SR<first> +ER<last> matches the same rows of a whole render."""
    return 1 <= first <= last <= height and (first - 1) % block == 0 and (last % block == 0 or last == height)


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


def stitch(parts: Sequence[tuple[Path, int, int]], out: Path) -> None:
    """Write to `out` one PNG made of rows first..last of each part, atomically (temp file + os.replace).

    Each part is a full-size PNG that povray rendered with +SR<first> +ER<last>. Bit depth, colour type, alpha,
    palette and gamma of the parts are kept. Raises RenderError when a part is unreadable, the parts disagree
    in size or format, or their row ranges overlap or leave rows uncovered.

    Rows are copied as PNG scanlines, still filtered, so pixels are never decoded in Python: only the first
    row of each part (whose filter may refer to the black row above it) is decoded and stored unfiltered.
    """
    if not parts:
        raise RenderError("no slices to stitch")
    ordered = sorted(((Path(path), first, last) for path, first, last in parts), key=lambda part: part[1])
    images = [_PngPart.read(path) for path, _first, _last in ordered]
    reference = images[0]
    for (path, _first, _last), image in zip(ordered, images):
        if (image.width, image.height) != (reference.width, reference.height):
            raise RenderError(
                f"slice {path.name} is {image.width}x{image.height}, "
                f"expected {reference.width}x{reference.height} like {ordered[0][0].name}"
            )
        if image.format != reference.format:
            found, expected = image.describe(), reference.describe()
            if found == expected:
                found, expected = "a different palette or transparent colour", "the one of " + ordered[0][0].name
            raise RenderError(f"slice {path.name} has {found}, expected {expected}")
    _check_coverage(ordered, reference.height)

    out = Path(out)
    fd, temp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            if any(image.interlaced for image in images):
                _write_decoded(stream, ordered)
            else:
                _write_scanlines(stream, ordered, images)
        os.replace(temp_name, out)
    except BaseException:
        try:
            os.unlink(temp_name)
        except FileNotFoundError:
            pass
        raise


def _check_coverage(ordered: Sequence[tuple[Path, int, int]], height: int) -> None:
    """Raise RenderError unless the sorted parts cover rows 1..height once each."""
    expected_first = 1
    for path, first, last in ordered:
        if not 1 <= first <= last:
            raise RenderError(f"slice {path.name} has an empty or invalid row range {first}..{last}")
        if first < expected_first:
            raise RenderError(f"slice {path.name} (rows {first}..{last}) overlaps rows before {expected_first}")
        if first > expected_first:
            raise RenderError(f"rows {expected_first}..{first - 1} are covered by no slice")
        expected_first = last + 1
    if expected_first <= height:
        raise RenderError(f"rows {expected_first}..{height} are covered by no slice")
    if expected_first > height + 1:
        raise RenderError(f"slices reach row {expected_first - 1} but the image has only {height} rows")


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadInputError(f"{name} must be a whole number, got {value!r}")
    if value <= 0:
        raise BadInputError(f"{name} must be at least 1, got {value}")


@dataclass
class _PngPart:
    """One slice's PNG as chunks: its header fields, the chunks before the pixel data, the compressed pixels."""

    path: Path
    width: int
    height: int
    bitdepth: int
    colour_type: int
    interlaced: bool
    chunks: list[tuple[bytes, bytes]] = field(default_factory=list)
    idat: bytes = b""

    @classmethod
    def read(cls, path: Path) -> _PngPart:
        try:
            with open(path, "rb") as stream:
                chunks = list(png.Reader(file=stream).chunks())
        except (OSError, png.Error) as error:
            raise RenderError(f"cannot read slice {path}: {error}") from error
        if not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
            raise RenderError(f"cannot read slice {path}: no PNG header")
        width, height, bitdepth, colour_type, compression, filtering, interlace = struct.unpack("!2I5B", chunks[0][1])
        if colour_type not in _COLOUR_TYPES or compression != 0 or filtering != 0 or interlace > 1:
            raise RenderError(f"cannot read slice {path}: unsupported PNG header")
        idat = b"".join(data for tag, data in chunks if tag == b"IDAT")
        if not idat:
            raise RenderError(f"cannot read slice {path}: no pixel data")
        return cls(
            path=path,
            width=width,
            height=height,
            bitdepth=bitdepth,
            colour_type=colour_type,
            interlaced=interlace == 1,
            chunks=[(tag, data) for tag, data in chunks if tag not in _SKIPPED_CHUNKS],
            idat=idat,
        )

    @property
    def format(self) -> tuple[Any, ...]:
        extras = tuple(data for tag, data in self.chunks if tag in (b"PLTE", b"tRNS"))
        return (self.bitdepth, self.colour_type, extras)

    def describe(self) -> str:
        text = f"{self.bitdepth}-bit {_COLOUR_TYPES[self.colour_type][1]}"
        return text + "".join(f" with {tag.decode()}" for tag, _data in self.chunks if tag in (b"PLTE", b"tRNS"))

    @property
    def pixel_bytes(self) -> int:
        """The filter unit: bytes per pixel, at least one."""
        return max(1, _COLOUR_TYPES[self.colour_type][0] * self.bitdepth // 8)

    @property
    def row_bytes(self) -> int:
        """Bytes of one unfiltered row, without the filter-type byte."""
        return (self.width * _COLOUR_TYPES[self.colour_type][0] * self.bitdepth + 7) // 8

    def scanlines(self, rows: int) -> bytes:
        """The first `rows` filtered scanlines (filter-type byte + row bytes each), decompressed."""
        wanted = rows * (self.row_bytes + 1)
        try:
            raw = zlib.decompressobj().decompress(self.idat, wanted)
        except zlib.error as error:
            raise RenderError(f"cannot read slice {self.path}: {error}") from error
        if len(raw) < wanted:
            raise RenderError(f"cannot read slice {self.path}: its pixel data stops before row {rows}")
        return raw


def _write_scanlines(stream: BinaryIO, ordered: Sequence[tuple[Path, int, int]], images: list[_PngPart]) -> None:
    """Write the stitched PNG from the parts' filtered scanlines (non-interlaced parts)."""
    reference = images[0]
    stride = reference.row_bytes + 1
    stream.write(png.signature)
    for tag, data in reference.chunks:
        _write_chunk(stream, tag, data)
    compressor = zlib.compressobj()
    for (path, first, last), image in zip(ordered, images):
        raw = image.scanlines(last)
        begin, end = (first - 1) * stride, last * stride
        if max(raw[begin:end:stride]) > 4:
            raise RenderError(f"cannot read slice {path}: invalid PNG filter type")
        head = raw[begin : begin + stride]
        if first > 1 and head[0] in (2, 3, 4):
            # This filter refers to the row above, which is black in this part: store the row unfiltered.
            head = b"\0" + _unfiltered_row(raw, first - 1, stride, image.pixel_bytes)
        data = compressor.compress(head) + compressor.compress(memoryview(raw)[begin + stride : end])
        if data:
            _write_chunk(stream, b"IDAT", data)
    _write_chunk(stream, b"IDAT", compressor.flush())
    _write_chunk(stream, b"IEND", b"")


def _write_decoded(stream: BinaryIO, ordered: Sequence[tuple[Path, int, int]]) -> None:
    """Write the stitched PNG by decoding every part with pypng: the slow path, for interlaced parts."""
    readers = []
    try:
        for path, _first, _last in ordered:
            reader = png.Reader(filename=str(path))
            readers.append((reader, *reader.read()))
        _reader, width, height, _rows, info = readers[0]
        writer = png.Writer(
            width,
            height,
            greyscale=info["greyscale"],
            alpha=info["alpha"],
            bitdepth=info["bitdepth"],
            palette=info.get("palette"),
            transparent=info.get("transparent"),
            background=info.get("background"),
            gamma=info.get("gamma"),
        )
        rows = (
            itertools.islice(part_rows, first - 1, last)
            for (_r, _w, _h, part_rows, _i), (_path, first, last) in zip(readers, ordered)
        )
        writer.write(stream, itertools.chain.from_iterable(rows))
    except (png.Error, zlib.error) as error:
        raise RenderError(f"cannot read slices {', '.join(p.name for p, _f, _l in ordered)}: {error}") from error
    finally:
        for reader, *_rest in readers:
            reader.file.close()


def _write_chunk(stream: BinaryIO, tag: bytes, data: bytes) -> None:
    stream.write(struct.pack("!I", len(data)) + tag + data + struct.pack("!I", zlib.crc32(data, zlib.crc32(tag))))


def _unfiltered_row(raw: bytes, index: int, stride: int, unit: int) -> bytes:
    """Row `index` (0-based) of filtered scanlines, unfiltered: back to the nearest row that needs no row above."""
    start = index
    while start > 0 and raw[start * stride] in (2, 3, 4):
        start -= 1
    previous = bytes(stride - 1)
    for row in range(start, index + 1):
        offset = row * stride
        previous = _undo_filter(raw[offset], raw[offset + 1 : offset + stride], previous, unit)
    return previous


def _undo_filter(kind: int, line: bytes, previous: bytes, unit: int) -> bytes:
    """Undo one PNG filter (https://www.w3.org/TR/png/#9Filter-types) on one scanline."""
    if kind == 0:
        return line
    if kind == 2:  # Up: bytewise (line + previous) mod 256, on whole rows at once as big integers
        mask = int.from_bytes(b"\x7f" * len(line), "big")
        a, b = int.from_bytes(line, "big"), int.from_bytes(previous, "big")
        return (((a & mask) + (b & mask)) ^ ((a ^ b) & ~mask)).to_bytes(len(line), "big")
    out = bytearray(line)
    if kind == 1:  # Sub
        for i in range(unit, len(out)):
            out[i] = (out[i] + out[i - unit]) & 0xFF
    elif kind == 3:  # Average
        for i in range(len(out)):
            left = out[i - unit] if i >= unit else 0
            out[i] = (out[i] + ((left + previous[i]) >> 1)) & 0xFF
    elif kind == 4:  # Paeth
        for i in range(len(out)):
            left = out[i - unit] if i >= unit else 0
            up = previous[i]
            up_left = previous[i - unit] if i >= unit else 0
            estimate = left + up - up_left
            distance_left, distance_up, distance_up_left = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
            if distance_left <= distance_up and distance_left <= distance_up_left:
                predictor = left
            elif distance_up <= distance_up_left:
                predictor = up
            else:
                predictor = up_left
            out[i] = (out[i] + predictor) & 0xFF
    else:
        raise RenderError(f"invalid PNG filter type {kind}")
    return bytes(out)
