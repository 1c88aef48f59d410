"""`httpov fetch --video/--contact-sheet`: frames rendered by real nodes, encoded by imageio-ffmpeg's ffmpeg,
decoded again and checked frame by frame by colour."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from httpov import media
from httpov.cli import cli
from httpov.errors import BadInputError
from httpov.local_farm import worker_env
from tests.conftest import write_scene

# Each frame is one flat colour: frame n of 5 has red n/5 and blue 1-n/5, so frame order shows in the colours.
FLAT = """
#version 3.7;
camera { location <0, 0, -5> look_at <0, 0, 0> }
background { color rgb <clock, 0, 1 - clock> }
"""
INI = "Width=34\nHeight=26\nAntialias=off\nInitial_Frame=1\nFinal_Frame=5\nInitial_Clock=0.2\nFinal_Clock=1\n"


def close(a: tuple, b: tuple, tolerance: int = 12) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b))


def decode_video(path: Path) -> tuple[tuple[int, int], list[tuple[int, int, int]]]:
    """(size, centre pixel of every frame) of a video, decoded by ffmpeg to raw RGB."""
    exe = media.ffmpeg_exe()
    probe = subprocess.run([exe, "-i", str(path)], capture_output=True, text=True)
    size = next(tuple(int(v) for v in word.rstrip(",").split("x")) for line in probe.stderr.splitlines()
                if "Video:" in line for word in line.split() if word.rstrip(",").count("x") == 1
                and word.rstrip(",").replace("x", "").isdigit())
    raw = subprocess.run([exe, "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    w, h = size
    frame_bytes = w * h * 3
    centres = []
    for i in range(len(raw) // frame_bytes):
        at = i * frame_bytes + (h // 2 * w + w // 2) * 3
        centres.append(tuple(raw[at:at + 3]))
    return size, centres


def test_fetch_encodes_video_gif_and_contact_sheet_in_frame_order(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "flat", FLAT, INI)
    workers(concurrency=2)
    sub = client.submit(scene, count=2)
    client.wait(sub.spec.id, timeout=180)
    env = worker_env(settings)
    mp4, gif, sheet = tmp_path / "out" / "flat.mp4", tmp_path / "out" / "flat.gif", tmp_path / "out" / "sheet.png"

    result = CliRunner().invoke(cli, ["fetch", sub.spec.id, "--output", str(tmp_path / "frames"), "--video",
                                      str(mp4), "--fps", "5", "--contact-sheet", str(sheet)], env=env)
    assert result.exit_code == 0, result.output
    # the colours povray gave frames 1-5 (gamma-encoded): red rising, blue falling
    expected = []
    names = sorted(p.name for p in (tmp_path / "frames").glob("*.png"))
    assert names == [f"flat_{n:04d}.png" for n in range(1, 6)]
    for name in names:
        with Image.open(tmp_path / "frames" / name) as frame:
            expected.append(frame.convert("RGB").getpixel((17, 13)))
    assert [c[0] for c in expected] == sorted(c[0] for c in expected) and len(set(expected)) == 5, expected
    assert f"{mp4}: 5 frame(s) at 5 fps" in result.output and "encoding flat.mp4, frame 5/5" in result.output
    size, centres = decode_video(mp4)
    assert size == (34, 26)  # even sizes are kept as they are
    assert len(centres) == 5
    for n, (got, want) in enumerate(zip(centres, expected), 1):
        assert close(got, want), f"video frame {n} is {got}, expected about {want}"

    gifres = CliRunner().invoke(cli, ["fetch", sub.spec.id, "--video", str(gif), "--fps", "10"], env=env)
    assert gifres.exit_code == 0, gifres.output
    with Image.open(gif) as anim:
        assert anim.n_frames == 5 and anim.size == (34, 26)
        colours = []
        for i in range(anim.n_frames):
            anim.seek(i)
            colours.append(anim.convert("RGB").getpixel((17, 13)))
            assert anim.info["duration"] == 100
    assert all(close(got, want, 3) for got, want in zip(colours, expected)), colours

    # the contact sheet: 3 columns of 34x26 thumbnails (smaller than --thumb, so kept at their size)
    with Image.open(sheet) as image:
        sheet_rgb = image.convert("RGB")
    cell_w, cell_h = 34 + 8, 26 + 8 + 14
    assert sheet_rgb.size == (3 * cell_w, 2 * cell_h)
    for i, want in enumerate(expected):
        x, y = (i % 3) * cell_w + 4 + 17, (i // 3) * cell_h + 4 + 13
        assert sheet_rgb.getpixel((x, y)) == want, f"thumbnail {i + 1} is not frame {i + 1}"


def test_video_of_odd_sized_frames_missing_ones_and_wrong_names(tmp_path):
    frames = []
    for n, colour in ((10, (255, 0, 0)), (9, (0, 255, 0)), (2, (0, 0, 255))):  # frames 3-8 missing, names unsorted
        path = tmp_path / f"odd_{n:02d}.png" if n != 10 else tmp_path / "odd_010.png"
        Image.new("RGB", (15, 9), colour).save(path)
        frames.append(path)
    out = media.encode(frames, tmp_path / "odd.mp4", fps=2)
    size, centres = decode_video(out)
    assert size == (16, 10)  # padded to even for yuv420p
    # frame order, each missing frame holding the one before it: blue (2, held for 3-8), green (9), red (10)
    assert [c.index(max(c)) for c in centres] == [2] * 7 + [1, 0]

    with pytest.raises(BadInputError, match="no rendered frames"):
        media.encode([], tmp_path / "none.mp4")
    with pytest.raises(BadInputError, match=".mp4 or .gif"):
        media.encode(frames, tmp_path / "x.avi")
    Image.new("RGB", (8, 8)).save(tmp_path / "big_0011.png")
    with pytest.raises(BadInputError, match="one size"):
        media.encode([*frames, tmp_path / "big_0011.png"], tmp_path / "mixed.mp4")


def test_fetch_without_a_destination_is_refused_with_a_hint(settings):
    result = CliRunner().invoke(cli, ["fetch", "abc"], env=worker_env(settings))
    assert result.exit_code == 2
    assert "fetch needs somewhere to put the frames" in result.output and "hint: give --output" in result.output
