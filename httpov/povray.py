"""Running povray for one batch: the command line, the process tied to its task, and reading its log."""
from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from httpov.errors import RenderError
from httpov.plan import Batch, JobSpec
from httpov.sandbox import RenderLimits, prepare_sandbox
from httpov.scene import ALLOWED_OPTIONS
from httpov.stitch import slice_options

_ERROR = re.compile(r"error", re.I)
CONTROLLED = {"Width", "Height", "Initial_Frame", "Final_Frame", "Subset_Start_Frame", "Subset_End_Frame"}
ALLOWED = set(ALLOWED_OPTIONS.values())
_FRAME_DIGITS = re.compile(r"(\d+)$")


@dataclass
class RenderOutput:
    """What one povray run left: the image of each frame, its log, and how long it took."""

    images: dict[int, Path]
    log: str
    seconds: float


def frame_file(name: str, frame: int, final: int) -> str:
    """The file name a frame carries in results: '<name>_0007.png' (padding follows Final_Frame, at least 4)."""
    width = max(4, len(str(final)))
    return f"{name}_{frame:0{width}d}.png"


def scene_ini(spec: JobSpec, scene_dir: Path) -> str:
    """The scene's allow-listed options as an ini, with paths checked to stay inside the scene (POV-Ray's include
    library is on the library path of the sandbox's own ini, sandbox.povray_ini)."""
    lines = []
    for name, value in sorted(spec.options.items()):
        if name in CONTROLLED or name not in ALLOWED:
            continue  # httpov passes these itself, or a hostile job record slipped them in: never the scene's
        for item in value if isinstance(value, list) else [value]:
            if any(ord(c) < 32 for c in item):
                raise RenderError(f"option {name} holds a control character", transient=False)
            if name in ("Input_File_Name", "Library_Path"):
                item = str(_inside(scene_dir, item, name))
            lines.append(f"{name}={item}")
    return "\n".join(lines) + "\n"


def _inside(scene_dir: Path, relative: str, what: str) -> Path:
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts:
        raise RenderError(f"{what}={relative!r} points outside the scene", transient=False)
    return scene_dir / path


def povray_args(spec: JobSpec, batch: Batch, ini: Path, out_dir: Path, threads: int) -> list[str]:
    """Options httpov controls come after the scene's ini, so the scene cannot override them."""
    args = [str(ini), "-D", "-P", "+O" + str(out_dir / "frame"), "+WT%d" % threads,
            f"+W{spec.width}", f"+H{spec.height}", f"+KFI{spec.initial}", f"+KFF{spec.final}"]
    bits = spec.options.get("Bits_Per_Color")
    args.append("+FN16" if bits == "16" else "+FN")
    if spec.final > spec.initial:
        args += [f"+SF{batch.first}", f"+EF{batch.last}"]
    if batch.rows is not None:
        args += slice_options(batch.rows[0], batch.rows[1], spec.height)
    return args


def render(povray: str, spec: JobSpec, batch: Batch, workdir: Path, threads: int,
           keep_going: Callable[[], bool], limits: RenderLimits | None = None) -> RenderOutput:
    """Render `batch` with the scene copied in workdir/scene; raise RenderError with the log's error lines."""
    scene_dir, out_dir, home = workdir / "scene", workdir / "out", workdir / "home"
    out_dir.mkdir()
    home.mkdir()
    ini = home / "httpov.ini"
    ini.write_text(scene_ini(spec, scene_dir))
    box = prepare_sandbox(scene_dir, out_dir, home, limits or RenderLimits())
    log_path = workdir / "render.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(box.argv([povray, *povray_args(spec, batch, ini, out_dir, threads)]),
                                    cwd=scene_dir, env=box.env, preexec_fn=box.preexec, start_new_session=True,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        except FileNotFoundError:
            raise RenderError(f"povray executable {povray!r} not found on this node", transient=True) from None
        returncode = _wait(proc, keep_going)
    text = log_path.read_text(errors="replace")
    seconds = time.monotonic() - started
    if returncode is None:
        raise RenderError("render stopped: the job was cancelled or paused, or the batch was taken over",
                          transient=False)
    if returncode != 0:
        limit = box.explain_exit(returncode)
        if limit and "output limit" in limit:
            raise RenderError(limit, error_lines(text), transient=False)
        if limit:
            raise RenderError(limit, error_lines(text), transient=True)
        raise failure(returncode, text)
    images = collect(out_dir, batch)
    missing = [f for f in batch.frames if f not in images]
    if missing:
        raise RenderError(f"povray exited 0 but wrote no image for frame(s) {missing}", error_lines(text), True)
    return RenderOutput(images, text, seconds)


def _wait(proc: subprocess.Popen, keep_going: Callable[[], bool], tick: float = 0.5) -> int | None:
    """Wait for povray, waking the moment it exits (a pidfd), and at least every `tick` seconds to ask
    `keep_going`; kill its whole process group when told to stop or when we are interrupted."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfd (old kernel): Popen's polling wait
        pidfd = None
    try:
        while True:
            if pidfd is not None:
                if select.select([pidfd], [], [], tick)[0]:
                    return proc.wait()
            else:
                try:
                    return proc.wait(timeout=tick)
                except subprocess.TimeoutExpired:
                    pass
            if not keep_going():
                kill_group(proc)
                return None
    except BaseException:
        kill_group(proc)
        raise
    finally:
        if pidfd is not None:
            os.close(pidfd)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM povray's process group, SIGKILL it after two seconds."""
    for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def collect(out_dir: Path, batch: Batch) -> dict[int, Path]:
    """Map each image povray wrote to its frame: a number at the end of the name, or the batch's only frame."""
    files = sorted(p for p in out_dir.iterdir() if p.suffix.lower() == ".png")
    if len(files) == 1 and batch.first == batch.last:
        return {batch.first: files[0]}
    images = {}
    for path in files:
        match = _FRAME_DIGITS.search(path.stem)
        if match:
            images[int(match.group(1))] = path
    return images


def failure(returncode: int, log: str) -> RenderError:
    """A scene error (parse error, missing include...) is final; a crash or a kill may pass on another try."""
    lines = error_lines(log)
    if returncode < 0:
        return RenderError(f"povray was killed by signal {-returncode}", lines, transient=True)
    first = next((line for line in lines if _ERROR.search(line)), None)
    if first is not None:
        return RenderError(f"povray failed: {first.strip()}", lines, transient=False)
    return RenderError(f"povray exited with status {returncode}", lines, transient=True)


def error_lines(log: str, context: int = 3) -> list[str]:
    """The log's error lines with a few lines of povray's source context before each, at most 20."""
    lines = log.splitlines()
    keep: list[int] = []
    for i, line in enumerate(lines):
        if _ERROR.search(line):
            keep.extend(range(max(0, i - context), i + 1))
    picked = [lines[i].rstrip() for i in sorted(set(keep))]
    return picked[-20:] if picked else [l.rstrip() for l in lines[-10:]]
