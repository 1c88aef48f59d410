"""Stitch a still's rendered row slices (planned by httpov.plan.plan_slices) into one PNG."""
from __future__ import annotations

import itertools
import struct
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import png

from httpov.errors import RenderError, ResultError
from httpov.files import atomic_write
from httpov.results import unpack_batch

# PNG colour types: samples per pixel and a name for messages.
_COLOUR_TYPES = {0: (1, "grey"), 2: (3, "RGB"), 3: (1, "palette"), 4: (2, "grey+alpha"), 6: (4, "RGBA")}
# Chunks of a part that are not copied to the stitched image: the pixel data (rebuilt) and the render time.
_SKIPPED_CHUNKS = {b"IDAT", b"IEND", b"tIME"}


def stitch(parts: Sequence[tuple[Path, int, int]], out: Path) -> None:
    """Write to `out` one PNG made of rows first..last of each part, atomically (files.atomic_write).

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
    with atomic_write(out) as tmp, open(tmp, "wb") as stream:
        if any(image.interlaced for image in images):
            _write_decoded(stream, ordered)
        else:
            _write_scanlines(stream, ordered, images)


def stitch_results(slices: Sequence[tuple[Path, str, int, int]], name: str, width: int, height: int,
                   out: Path) -> None:
    """Write to `out` the frame `name` stitched from its slices' result zips, given as (zip, storage key, first row,
    last row). The zips come from other render nodes: each is checked as fetch checks results (httpov.results
    .unpack_batch: a member count, each member's size, the PNG's header exactly width x height) before anything of
    it is unpacked or decoded; a refused one is RenderError naming the bound (not transient: a retry meets the
    same zip)."""
    with tempfile.TemporaryDirectory(prefix="httpov-stitch-") as tmp:
        parts = []
        for n, (zip_path, key, first, last) in enumerate(slices):
            folder = Path(tmp) / str(n)
            folder.mkdir()
            try:
                images = unpack_batch(zip_path, key, width, height, folder, None)
            except ResultError as exc:
                raise RenderError(f"cannot stitch {name}: {exc}") from None
            found = [image for image in images if image.name == name]
            if not found:
                raise RenderError(f"cannot stitch {name}: the slice result {key} holds no {name}")
            parts.append((found[0], first, last))
        stitch(parts, out)


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
            distance_left, distance_up = abs(estimate - left), abs(estimate - up)
            distance_up_left = abs(estimate - up_left)
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
