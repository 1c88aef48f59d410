"""Unit tests of slice planning and stitching on synthetic PNGs written with pypng."""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Any

import png
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from httpov.errors import BadInputError, RenderError
from httpov.files import TMP_PREFIX
from httpov.plan import RENDER_BLOCK_SIZE, plan_slices, slice_options
from httpov.worker.stitch import stitch

# --- plan_slices -------------------------------------------------------------------------------------------


def is_exact_slice(first: int, last: int, height: int, *, block: int = RENDER_BLOCK_SIZE) -> bool:
    """Whether a slice rendered with +SR<first> +ER<last> matches the same rows of a whole render: it starts on
    povray's render-block grid and ends on it or at the image's last row (docs: the measured slices)."""
    return 1 <= first <= last <= height and (first - 1) % block == 0 and (last % block == 0 or last == height)


def test_is_exact_slice() -> None:
    assert is_exact_slice(1, 32, 80) and is_exact_slice(33, 80, 80) and is_exact_slice(17, 32, 80, block=16)
    assert not is_exact_slice(1, 20, 80) and not is_exact_slice(34, 80, 80) and not is_exact_slice(33, 81, 80)


def _check_plan(plan: list[tuple[int, int]], height: int, block: int = 32) -> None:
    assert plan[0][0] == 1
    assert plan[-1][1] == height
    for (_first, last), (next_first, _next_last) in zip(plan, plan[1:]):
        assert next_first == last + 1
    for first, last in plan:
        assert first <= last
        assert is_exact_slice(first, last, height, block=block)


def test_plan_aligns_boundaries_on_render_blocks() -> None:
    assert plan_slices(80, slices=2) == [(1, 32), (33, 80)]
    assert plan_slices(1080, slices=4) == [(1, 256), (257, 544), (545, 800), (801, 1080)]
    assert plan_slices(96, slices=3) == [(1, 32), (33, 64), (65, 96)]


def test_plan_returns_fewer_slices_when_blocks_run_out() -> None:
    assert plan_slices(80, slices=4) == [(1, 32), (33, 64), (65, 80)]
    assert plan_slices(33, slices=33) == [(1, 32), (33, 33)]
    assert len(plan_slices(1080, slices=100)) == 34
    assert plan_slices(1, slices=1) == [(1, 1)]
    assert plan_slices(20, slices=5) == [(1, 20)]


def test_plan_by_rows_rounds_to_whole_blocks() -> None:
    assert plan_slices(1080, rows=256) == [(1, 256), (257, 512), (513, 768), (769, 1024), (1025, 1080)]
    assert plan_slices(100, rows=1) == [(1, 32), (33, 64), (65, 96), (97, 100)]
    assert plan_slices(100, rows=40) == [(1, 32), (33, 64), (65, 96), (97, 100)]
    assert plan_slices(100, rows=48) == [(1, 64), (65, 100)]
    assert plan_slices(100, rows=5000) == [(1, 100)]


def test_plan_honours_another_block_size() -> None:
    assert plan_slices(40, slices=5, block=8) == [(1, 8), (9, 16), (17, 24), (25, 32), (33, 40)]
    assert plan_slices(40, rows=10, block=4) == [(1, 12), (13, 24), (25, 36), (37, 40)]


@given(height=st.integers(1, 5000), slices=st.integers(1, 200), block=st.sampled_from([4, 16, 32, 64]))
def test_plan_by_slices_properties(height: int, slices: int, block: int) -> None:
    if slices > height:
        with pytest.raises(BadInputError):
            plan_slices(height, slices=slices, block=block)
        return
    plan = plan_slices(height, slices=slices, block=block)
    _check_plan(plan, height, block)
    blocks = -(-height // block)
    assert len(plan) == min(slices, blocks)
    sizes = [last - first + 1 for first, last in plan]
    # Near an even split: no slice more than one block bigger than an even share rounded up to blocks.
    assert max(sizes) <= (-(-height // len(plan)) // block + 2) * block


@given(height=st.integers(1, 5000), rows=st.integers(1, 6000))
def test_plan_by_rows_properties(height: int, rows: int) -> None:
    plan = plan_slices(height, rows=rows)
    _check_plan(plan, height)
    step = max(32, (rows + 16) // 32 * 32)  # nearest multiple of 32, halves up
    assert all(last - first + 1 == step for first, last in plan[:-1])
    assert plan[-1][1] - plan[-1][0] + 1 <= step


@pytest.mark.parametrize(
    "height, kwargs, words",
    [
        (80, {"slices": 0}, "slices"),
        (80, {"slices": -2}, "slices"),
        (80, {"rows": 0}, "rows"),
        (80, {"rows": -1}, "rows"),
        (10, {"slices": 11}, "at most the height"),
        (80, {}, "exactly one"),
        (80, {"slices": 2, "rows": 32}, "exactly one"),
        (0, {"slices": 1}, "height"),
        (80, {"slices": 2.5}, "whole number"),
        (80, {"slices": True}, "whole number"),
        (80, {"slices": 2, "block": 2}, "at least 4"),
    ],
)
def test_plan_rejects_bad_input(height: int, kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(BadInputError, match=words):
        plan_slices(height, **kwargs)


def test_slice_options() -> None:
    assert slice_options(1, 80, 80) == []
    assert slice_options(1, 1, 1) == []
    assert slice_options(33, 80, 80) == ["+SR33", "+ER80"]
    assert slice_options(1, 32, 80) == ["+SR1", "+ER32"]
    with pytest.raises(BadInputError, match="row 1"):
        slice_options(1, 1, 80)
    with pytest.raises(BadInputError):
        slice_options(40, 39, 80)
    with pytest.raises(BadInputError):
        slice_options(1, 81, 80)


# --- stitch ------------------------------------------------------------------------------------------------

# (greyscale, alpha, bitdepth) of the formats tested, and the number of samples per pixel.
FORMATS = {
    "rgb8": (False, False, 8),
    "rgba16": (False, True, 16),
    "rgb16": (False, False, 16),
    "grey8": (True, False, 8),
    "greyalpha8": (True, True, 8),
    "grey1": (True, False, 1),
}


def _image(width: int, height: int, greyscale: bool, alpha: bool, bitdepth: int) -> list[list[int]]:
    planes = (1 if greyscale else 3) + (1 if alpha else 0)
    top = 2**bitdepth - 1
    return [
        [(x * 7 + y * 13 + p * 31 + x * y) % (top + 1) for x in range(width) for p in range(planes)]
        for y in range(height)
    ]


def _write(path: Path, pixels: list[list[int]], width: int, greyscale: bool, alpha: bool, bitdepth: int,
           **extra: Any) -> None:
    writer = png.Writer(width, len(pixels), greyscale=greyscale, alpha=alpha, bitdepth=bitdepth, **extra)
    with open(path, "wb") as stream:
        writer.write(stream, pixels)


def _read(path: Path) -> tuple[int, int, list[list[int]], dict[str, Any]]:
    width, height, rows, info = png.Reader(filename=str(path)).read()
    return width, height, [list(row) for row in rows], info


def _parts(
    tmp_path: Path, pixels: list[list[int]], width: int, fmt: tuple[bool, bool, int], ranges: list[tuple[int, int]],
    **extra: Any
) -> list[tuple[Path, int, int]]:
    """Write one full-size PNG per range with the rows outside it black, as povray 3.7 does."""
    parts = []
    for index, (first, last) in enumerate(ranges):
        black = [0] * len(pixels[0])
        rows = [row if first <= y + 1 <= last else black for y, row in enumerate(pixels)]
        path = tmp_path / f"part{index}.png"
        _write(path, rows, width, *fmt, **extra)
        parts.append((path, first, last))
    return parts


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_stitch_rebuilds_the_image_in_its_own_format(tmp_path: Path, name: str) -> None:
    fmt = FORMATS[name]
    width, height = 13, 70
    pixels = _image(width, height, *fmt)
    parts = _parts(tmp_path, pixels, width, fmt, [(1, 32), (33, 64), (65, 70)])
    out = tmp_path / "out.png"
    stitch(parts, out)
    out_width, out_height, out_pixels, info = _read(out)
    assert (out_width, out_height) == (width, height)
    assert (info["greyscale"], info["alpha"], info["bitdepth"]) == fmt
    assert out_pixels == pixels


def test_stitch_takes_parts_in_any_order_and_odd_ranges(tmp_path: Path) -> None:
    fmt = FORMATS["rgb8"]
    pixels = _image(9, 10, *fmt)
    parts = _parts(tmp_path, pixels, 9, fmt, [(1, 1), (2, 7), (8, 10)])
    stitch(list(reversed(parts)), tmp_path / "out.png")
    assert _read(tmp_path / "out.png")[2] == pixels


def test_stitch_takes_rows_only_from_each_part_range(tmp_path: Path) -> None:
    """Rows outside a part's range must not leak in even when they are not black."""
    fmt = FORMATS["grey8"]
    pixels = _image(5, 6, *fmt)
    noise = [[255] * 5 for _ in range(6)]
    top, bottom = tmp_path / "top.png", tmp_path / "bottom.png"
    _write(top, pixels[:3] + noise[3:], 5, *fmt)
    _write(bottom, noise[:3] + pixels[3:], 5, *fmt)
    stitch([(top, 1, 3), (bottom, 4, 6)], tmp_path / "out.png")
    assert _read(tmp_path / "out.png")[2] == pixels


def test_stitch_keeps_gamma_and_a_single_part(tmp_path: Path) -> None:
    fmt = FORMATS["rgb8"]
    pixels = _image(4, 3, *fmt)
    parts = _parts(tmp_path, pixels, 4, fmt, [(1, 3)], gamma=0.45455)
    stitch(parts, tmp_path / "out.png")
    _w, _h, out_pixels, info = _read(tmp_path / "out.png")
    assert out_pixels == pixels
    assert info["gamma"] == pytest.approx(0.45455, abs=1e-5)


def test_stitch_keeps_a_palette(tmp_path: Path) -> None:
    palette = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
    pixels = [[(x + y) % 4 for x in range(6)] for y in range(5)]
    parts = []
    for index, (first, last) in enumerate([(1, 2), (3, 5)]):
        path = tmp_path / f"p{index}.png"
        rows = [row if first <= y + 1 <= last else [0] * 6 for y, row in enumerate(pixels)]
        with open(path, "wb") as stream:
            png.Writer(6, 5, palette=palette, bitdepth=2).write(stream, rows)
        parts.append((path, first, last))
    stitch(parts, tmp_path / "out.png")
    _w, _h, out_pixels, info = _read(tmp_path / "out.png")
    assert out_pixels == pixels
    assert [tuple(entry) for entry in info["palette"]] == palette


def test_stitch_replaces_an_existing_output_and_leaves_no_temp(tmp_path: Path) -> None:
    fmt = FORMATS["rgb8"]
    pixels = _image(4, 40, *fmt)
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    stitch(_parts(tmp_path, pixels, 4, fmt, [(1, 32), (33, 40)]), out)
    assert _read(out)[2] == pixels
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "part0.png", "part1.png"]


@pytest.mark.parametrize(
    "ranges, words",
    [
        ([(1, 32), (30, 40)], "overlaps"),
        ([(1, 32), (1, 40)], "overlaps"),
        ([(1, 20), (25, 40)], r"rows 21\.\.24 are covered by no slice"),
        ([(2, 40)], r"rows 1\.\.1 are covered by no slice"),
        ([(1, 32)], r"rows 33\.\.40 are covered by no slice"),
        ([(1, 32), (33, 41)], "only 40 rows"),
        ([(1, 32), (34, 33)], "invalid row range"),
        ([(0, 32), (33, 40)], "invalid row range"),
    ],
)
def test_stitch_refuses_bad_coverage(tmp_path: Path, ranges: list[tuple[int, int]], words: str) -> None:
    fmt = FORMATS["rgb8"]
    pixels = _image(4, 40, *fmt)
    parts = _parts(tmp_path, pixels, 4, fmt, [(1, 40)] * len(ranges))
    parts = [(path, first, last) for (path, _f, _l), (first, last) in zip(parts, ranges)]
    out = tmp_path / "out.png"
    with pytest.raises(RenderError, match=words):
        stitch(parts, out)
    assert not out.exists()


def test_stitch_refuses_no_parts(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="no slices"):
        stitch([], tmp_path / "out.png")


@pytest.mark.parametrize(
    "other, words",
    [
        ((5, 40, FORMATS["rgb8"]), "is 5x40, expected 4x40"),
        ((4, 41, FORMATS["rgb8"]), "is 4x41, expected 4x40"),
        ((4, 40, FORMATS["rgb16"]), "b.png has 16-bit RGB, expected 8-bit RGB"),
        ((4, 40, (False, True, 8)), "b.png has 8-bit RGBA, expected 8-bit RGB"),
        ((4, 40, FORMATS["grey8"]), "b.png has 8-bit grey, expected 8-bit RGB"),
    ],
)
def test_stitch_refuses_parts_that_disagree(tmp_path: Path, other: tuple[int, int, tuple[bool, bool, int]],
                                            words: str) -> None:
    fmt = FORMATS["rgb8"]
    first = tmp_path / "a.png"
    second = tmp_path / "b.png"
    _write(first, _image(4, 40, *fmt), 4, *fmt)
    width, height, other_fmt = other
    _write(second, _image(width, height, *other_fmt), width, *other_fmt)
    out = tmp_path / "out.png"
    with pytest.raises(RenderError, match=words):
        stitch([(first, 1, 32), (second, 33, 40)], out)
    assert not out.exists()


def test_stitch_refuses_missing_and_corrupt_parts(tmp_path: Path) -> None:
    fmt = FORMATS["rgb8"]
    good = tmp_path / "good.png"
    _write(good, _image(4, 40, *fmt), 4, *fmt)
    out = tmp_path / "out.png"
    with pytest.raises(RenderError, match="cannot read slice"):
        stitch([(good, 1, 32), (tmp_path / "missing.png", 33, 40)], out)
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not a png at all")
    with pytest.raises(RenderError, match="cannot read slice"):
        stitch([(good, 1, 32), (garbage, 33, 40)], out)
    assert not out.exists()


def test_stitch_refuses_a_truncated_part_and_cleans_up(tmp_path: Path) -> None:
    """A part whose header is fine but whose pixel data is cut short fails while writing: no output, no temp."""
    fmt = FORMATS["rgb8"]
    width, height = 64, 40
    pixels = [[(x * 37 + y * 101 + p * 53) % 256 for x in range(width) for p in range(3)] for y in range(height)]
    good, cut = tmp_path / "good.png", tmp_path / "cut.png"
    _write(good, pixels, width, *fmt, compression=0)
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    out = tmp_path / "out.png"
    with pytest.raises(RenderError, match="cannot read slice"):
        stitch([(good, 1, 32), (cut, 33, 40)], out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.png", "good.png"]
    assert not any(name.startswith(TMP_PREFIX) for name in os.listdir(tmp_path))


def test_stitch_refuses_a_different_palette(tmp_path: Path) -> None:
    pixels = [[(x + y) % 4 for x in range(6)] for y in range(5)]
    paths = []
    for name, palette in (("a.png", [(0, 0, 0), (9, 9, 9), (1, 2, 3), (4, 5, 6)]),
                          ("b.png", [(0, 0, 0), (8, 8, 8), (1, 2, 3), (4, 5, 6)])):
        with open(tmp_path / name, "wb") as stream:
            png.Writer(6, 5, palette=palette, bitdepth=2).write(stream, pixels)
        paths.append(tmp_path / name)
    with pytest.raises(RenderError, match="b.png has a different palette"):
        stitch([(paths[0], 1, 2), (paths[1], 3, 5)], tmp_path / "out.png")


@pytest.mark.parametrize("name", ["rgb8", "rgba16"])
def test_stitch_interlaced_parts(tmp_path: Path, name: str) -> None:
    fmt = FORMATS[name]
    pixels = _image(11, 40, *fmt)
    parts = _parts(tmp_path, pixels, 11, fmt, [(1, 32), (33, 40)], interlace=True)
    stitch(parts, tmp_path / "out.png")
    _w, _h, out_pixels, info = _read(tmp_path / "out.png")
    assert out_pixels == pixels
    assert (info["greyscale"], info["alpha"], info["bitdepth"]) == fmt


# --- parts whose scanlines use every PNG filter type (povray's libpng picks one per row) ----------------------


def _paeth(left: int, up: int, up_left: int) -> int:
    estimate = left + up - up_left
    options = [(abs(estimate - left), 0, left), (abs(estimate - up), 1, up), (abs(estimate - up_left), 2, up_left)]
    return min(options)[2]


def _filter_row(kind: int, row: bytes, previous: bytes, unit: int) -> bytes:
    out = bytearray()
    for i, value in enumerate(row):
        left = row[i - unit] if i >= unit else 0
        up = previous[i]
        up_left = previous[i - unit] if i >= unit else 0
        predictor = [0, left, up, (left + up) // 2, _paeth(left, up, up_left)][kind]
        out.append((value - predictor) & 0xFF)
    return bytes([kind]) + bytes(out)


def _encode(path: Path, rows: list[list[int]], width: int, bitdepth: int, colour_type: int, filters: list[int]) -> None:
    """Write a PNG whose row y is filtered with filters[y], with a gAMA and a tIME chunk."""
    samples = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    unit = max(1, samples * bitdepth // 8)
    raw = b""
    previous = bytes((width * samples * bitdepth + 7) // 8)
    for row, kind in zip(rows, filters):
        if bitdepth == 16:
            data = b"".join(value.to_bytes(2, "big") for value in row)
        elif bitdepth == 8:
            data = bytes(row)
        else:
            bits = "".join(format(value, f"0{bitdepth}b") for value in row)
            bits += "0" * (-len(bits) % 8)
            data = int(bits, 2).to_bytes(len(bits) // 8, "big")
        raw += _filter_row(kind, data, previous, unit)
        previous = data

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + tag + data + struct.pack("!I", zlib.crc32(tag + data))

    header = struct.pack("!2I5B", width, len(rows), bitdepth, colour_type, 0, 0, 0)
    path.write_bytes(
        png.signature
        + chunk(b"IHDR", header)
        + chunk(b"gAMA", struct.pack("!I", 45455))
        + chunk(b"tIME", bytes([7, 234, 1, 2, 3, 4, 5]))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


FILTERED_FORMATS = {"rgb8": (8, 2), "rgba16": (16, 6), "grey2": (2, 0), "greyalpha8": (8, 4)}


@pytest.mark.parametrize("name", sorted(FILTERED_FORMATS))
@pytest.mark.parametrize(
    "pattern",
    ["none", "sub", "up", "average", "paeth", "mixed", "up-chain"],
)
def test_stitch_parts_with_every_filter_type(tmp_path: Path, name: str, pattern: str) -> None:
    bitdepth, colour_type = FILTERED_FORMATS[name]
    greyscale, alpha = colour_type in (0, 4), colour_type in (4, 6)
    width, height = 7, 20
    ranges = [(1, 4), (5, 13), (14, 14), (15, 20)]
    pixels = _image(width, height, greyscale, alpha, bitdepth)
    top = 2**bitdepth - 1
    if pattern == "mixed":
        filters = [(3 * y + 1) % 5 for y in range(height)]
    elif pattern == "up-chain":  # a Paeth row at each boundary, Up rows above it back to a Paeth row 1
        filters = [4] + [2] * (height - 1)
        for first, _last in ranges:
            filters[first - 1] = 4
    else:
        filters = [["none", "sub", "up", "average", "paeth"].index(pattern)] * height
    parts = []
    for index, (first, last) in enumerate(ranges):
        # Outside its range a part holds other pixels, so a wrong row above a boundary shows in the result.
        rows = [row if first <= y + 1 <= last else [(top - value) // 2 for value in row]
                for y, row in enumerate(pixels)]
        path = tmp_path / f"part{index}.png"
        _encode(path, rows, width, bitdepth, colour_type, filters)
        assert _read(path)[2] == rows  # the test's encoder is right: pypng decodes what it wrote
        parts.append((path, first, last))
    out = tmp_path / "out.png"
    stitch(parts, out)
    _w, _h, out_pixels, info = _read(out)
    assert out_pixels == pixels
    assert (info["bitdepth"], info["greyscale"], info["alpha"]) == (bitdepth, greyscale, alpha)
    assert info["gamma"] == pytest.approx(0.45455, abs=1e-5)
    assert b"tIME" not in out.read_bytes()
    if bitdepth == 8:  # a second, independent decoder accepts the file too
        with Image.open(out) as image:
            image.load()
            assert image.size == (width, height)


# --- stitch_results: slices' zips from other render nodes, checked as fetch checks results (issue #25) -------

FRAME = "still_1.png"
SLICES = [(1, 32), (33, 40)]
STITCH_IN_A_SMALL_PROCESS = """
import resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (300 * 1024**2, 300 * 1024**2))
from httpov.errors import RenderError
from httpov.worker.stitch import stitch_results
folder = Path(sys.argv[1])
slices = [(folder / f"{n}.zip", f"jobs/j/batches/f000001-000001-r{first:05d}-{last:05d}.zip", first, last)
          for n, (first, last) in enumerate([(1, 32), (33, 40)])]
try:
    stitch_results(slices, "still_1.png", 16, 40, folder / "out.png")
    print("STITCHED")
except RenderError as exc:
    print("REFUSED", exc)
# VmHWM: this process image's own peak (ru_maxrss also counts the forking parent's memory, kept across exec)
print("PEAK", next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) // 1024)
"""


def _zeros(zf: Any, name: str, size: int) -> None:
    """A member of `size` zero bytes, deflated (1 MiB of zeros is about 1 KB), written a few MiB at a time."""
    import zipfile

    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    info._compresslevel = 1  # type: ignore[attr-defined]  # zipfile's own field: the fastest deflate
    block = bytes(4 * 1024**2)
    with zf.open(info, "w", force_zip64=True) as member:
        for _ in range(size // len(block)):
            member.write(block)


def _slice_zips(folder: Path, forged: Any = None) -> list[tuple[Path, str, int, int]]:
    """Two slices' result zips of a 16x40 still, as render nodes store them; the second one's members written by
    `forged(zipfile)` instead: what a hostile node stores."""
    import zipfile

    fmt = FORMATS["rgb8"]
    parts = _parts(folder, _image(16, 40, *fmt), 16, fmt, SLICES)
    slices = []
    for n, (png_path, first, last) in enumerate(parts):
        batch = f"f000001-000001-r{first:05d}-{last:05d}"
        path = folder / f"{n}.zip"
        with zipfile.ZipFile(path, "w") as zf:
            if n == 1 and forged is not None:
                forged(zf)
            else:
                zf.write(png_path, FRAME, zipfile.ZIP_STORED)
                zf.writestr(f"{batch}.log", "povray's log\n")
        slices.append((path, f"jobs/j/batches/{batch}.zip", first, last))
    return slices


def _huge_header(zf: Any) -> None:
    from tests.bombs import bomb_png

    zf.writestr(FRAME, bomb_png(20_000, 20_000))


def _many(zf: Any) -> None:
    for n in range(50):
        zf.writestr(f"x{n}.log", b"")


def test_stitch_results_stitches_checked_slices(tmp_path: Path) -> None:
    from httpov.worker.stitch import stitch_results

    slices = _slice_zips(tmp_path)
    stitch_results(slices, FRAME, 16, 40, tmp_path / "out.png")
    assert _read(tmp_path / "out.png")[2] == _image(16, 40, *FORMATS["rgb8"])


@pytest.mark.parametrize("forged, words", [
    (lambda zf: _zeros(zf, FRAME, 512 * 1024**2), "would unpack to 536870912 bytes, more than the"),  # a zip bomb
    (_huge_header, "is 20000x20000, not a 16x40 frame of its job: refused"),  # 400 megapixels in its header
    (_many, "holds 50 files, more than its 1 frame(s) and log: refused"),
], ids=["zip bomb", "huge PNG header", "50 members"])
def test_stitch_results_refuses_a_forged_slice_before_unpacking_it_in_little_memory(tmp_path: Path, forged, words):
    """The stitch runs in a process limited to 300 MiB of address space: a slice zip whose frame unpacks to 512 MiB,
    or whose PNG header claims 20000x20000, is refused with the bound named, before it is decompressed (the
    stitch step read the whole member into memory and took 4 GiB: issue #25)."""
    import subprocess
    import sys

    _slice_zips(tmp_path, forged)
    done = subprocess.run([sys.executable, "-c", STITCH_IN_A_SMALL_PROCESS, str(tmp_path)], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    print(done.stdout)
    assert done.stdout.startswith(f"REFUSED cannot stitch {FRAME}: result"), done.stdout
    assert words in done.stdout, done.stdout
    assert int(done.stdout.split("PEAK")[1]) < 200, done.stdout  # MiB: nothing of the bomb was decompressed
    assert not (tmp_path / "out.png").exists()
