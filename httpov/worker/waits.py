"""povray's idle polls, cut short: a preload library (waits.c) that a render node builds and checks itself.

POV-Ray 3.7 idles about 0.7 s at start and 0.25 s a frame whatever the frame costs (NOTES.md): its front end and
back end poll each other's message queues in waits of 10-100 ms. waits.c, loaded into povray inside the sandbox
(LD_PRELOAD), makes each thread's polls start at 2 ms and double while they find nothing, so that povray starts and
moves between frames at once while a long render polls as rarely as before; nothing povray computes changes.
Measured with `python scripts/bench_waits.py` (docs/PERFORMANCE.md): a one-frame 32x32 render 0.69 s -> about
0.1 s, thirty frames in one povray 7.6 s -> about 0.7 s, chess2 the same pixels and no more CPU in povray's polling
threads.

A node uses the library only when all of these hold, and otherwise runs povray as it is, saying why once in its log
(HTTPOV_QUICK_WAITS=0 turns it off):
- a C compiler (`cc`) built it from this source, into the cache folder (once per version of the source);
- the renderer is a program, not a script (a stand-in such as scripts/povray-stub.sh sleeps on purpose);
- that povray, in the node's sandbox, rendered a small animation with the library exactly as without it (every
  frame pixel-identical, both exiting 0). The verdict is kept in the cache folder per version of the source and of
  the povray program, so a node checks once, not at each start, and in the background: no batch waits for it.
  A batch whose povray crashes with the library leaves the render process without it (`refuse`): its retry renders
  povray as it is.
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import zlib
from pathlib import Path

from httpov.settings import Settings
from httpov.text import shown
from httpov.worker import room
from httpov.worker.sandbox import script_interpreter

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("waits.c")
#: Where the node looks for a C compiler (not its PATH, which a hostile environment could steer).
COMPILER_PATH = "/usr/local/bin:/usr/bin:/bin"
#: The self-test's scene: an animation, so that povray's waits between frames are exercised too.
_SCENE = ("camera { location <0, 0, -3> look_at 0 } light_source { <2, 4, -3> rgb 1 } "
          "sphere { <clock - 0.5, 0, 0>, 1 pigment { checker rgb 1 rgb <1, 0, 0> scale 0.3 } finish { phong 1 } }\n")
_FRAMES = 3

_Key = tuple[str, tuple]  # (the source's digest, povray's identity)
# per process: (cache folder, key) -> the library to preload, or None
_decided: dict[tuple[Path, _Key], Path | None] = {}
_deciding: set[tuple[Path, _Key]] = set()  # checks this process started in the background


def library_for(settings: Settings, wait: bool = False) -> Path | None:
    """The preload library this node's povray runs with, or None (povray as it is).

    Decided once per node (cache folder) for a given source and povray program, by a check that takes about a
    second: a node's first batches never wait for it. Until its verdict is in the cache folder they run povray as it
    is, while the check runs in the background (one render process of the node checks, the others read its verdict);
    `wait`: decide now (benchmarks, tests)."""
    key = _key(settings)
    if key is None:
        return None
    memo = (settings.cache_dir, key)
    decided = _decided.get(memo, _UNKNOWN)  # one read: another slot may drop it meanwhile
    if decided is not _UNKNOWN:
        if decided is None or decided.is_file():
            return decided
        _decided.pop(memo, None)  # removed while the node runs (its cache folder cleared): built and checked again
    known = _verdict(settings, key)
    if known is not _UNKNOWN:
        _decided[memo] = known
        return known
    if wait:
        _decided[memo] = _decide(settings, key)
        return _decided[memo]
    if memo not in _deciding and not room.disk_fault(settings.cache_dir, settings.min_free_mb):
        # (a node short of room writes nothing into its cache folder: it checks once it has room again)
        _deciding.add(memo)
        threading.Thread(target=_decide_quietly, args=(settings, key), name="httpov quick waits",
                         daemon=True).start()
    return None


def refuse(library: Path, why: str, runs: int) -> None:
    """A povray run with `library` crashed: its render slot runs povray without it for its next `runs` runs (the
    batch's retry too, should it come there; httpov.worker.batch), and this says so. Neither the node's verdict nor
    its other slots change: a scene that crashes povray by itself (out of memory) must not cost the node its quick
    waits for good; the self-test decides at its start."""
    log.warning("httpov: povray runs without quick waits (%s) in this render slot for its next %d runs: %s",
                library.name, runs, shown(why))


def kept(settings: Settings) -> tuple[Path | None, str]:
    """The node's kept decision, read without deciding or writing anything (the health check may run as another
    user than the node, whose cache folder it must not write into): the library, or None, and what to say of it."""
    key = _key(settings)
    if key is None:
        return None, ("without quick waits (HTTPOV_QUICK_WAITS=0)" if not settings.quick_waits
                      else "without quick waits (no povray program to preload them into)")
    found = _verdict(settings, key)
    if found is _UNKNOWN:
        return None, "without quick waits: not checked yet (the node checks them as it starts)"
    if found is None:
        return None, f"without quick waits: {off_reason(settings) or 'their check failed'}"
    return found, "with quick waits"


def off_reason(settings: Settings) -> str | None:
    """Why this node's povray runs without quick waits, from its kept verdict (a failed build or check), for its
    heartbeat (`httpov nodes`, the nodes page); None when they are on, not checked yet, turned off
    (HTTPOV_QUICK_WAITS=0) or meaningless (no povray, a stand-in renderer that is a script)."""
    key = _key(settings)
    verdict = _read(settings, key) if key is not None else None
    return str(verdict.get("why") or "its check failed") if verdict is not None and not verdict.get("ok") else None


def _key(settings: Settings) -> _Key | None:
    """What a decision is kept under: the source's digest and povray's identity; None when there is nothing to
    decide: quick waits turned off, no povray at all (rendering says so: povray.render), or a stand-in renderer that
    is a script (its sleeps are what it is for)."""
    if not settings.quick_waits:
        return None
    program = shutil.which(settings.povray) if "/" not in settings.povray else settings.povray
    if program is None or script_interpreter(os.path.realpath(program)) is not None:
        return None
    return _digest(), _identity(program)


_UNKNOWN = Path("/nonexistent/unknown")  # no verdict yet


def _read(settings: Settings, key: _Key) -> dict | None:
    """The kept verdict, {"ok": ..., "why": ...}, or None (none yet, or unreadable)."""
    try:
        verdict = json.loads(_verdict_path(settings, key).read_text())
    except (OSError, ValueError):
        return None
    return verdict if isinstance(verdict, dict) else None


def _verdict(settings: Settings, key: _Key) -> Path | None:
    """The node's kept verdict: the library, None (refused), or _UNKNOWN (not checked yet)."""
    verdict = _read(settings, key)
    if verdict is None:
        return _UNKNOWN
    if not verdict.get("ok"):
        return None
    library = _library_path(settings.cache_dir / "waits", key[0])
    return library if library.is_file() else _UNKNOWN


def _decide_quietly(settings: Settings, key: _Key) -> None:
    try:
        _decided[(settings.cache_dir, key)] = _decide(settings, key)
    except Exception as exc:  # a background check: never let it end the render process; povray runs as it is
        log.warning("httpov: povray runs without quick waits: its check failed: %s", shown(str(exc)))
        _decided[(settings.cache_dir, key)] = None


def _decide(settings: Settings, key: _Key) -> Path | None:
    folder = settings.cache_dir / "waits"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "a") as lock:  # the node's render processes start together: one builds and tests
        fcntl.flock(lock, fcntl.LOCK_EX)
        known = _verdict(settings, key)
        if known is not _UNKNOWN:
            return known
        why: str | None = "not built"
        try:
            library = _build(folder, key[0])
            why = _check(settings, library)
        except OSError as exc:
            why = f"{type(exc).__name__}: {exc}"
        path = _verdict_path(settings, key)
        written = path.with_name(f".{path.name}.{os.getpid()}")
        written.write_text(json.dumps({"ok": why is None, "why": why or ""}))
        os.replace(written, path)  # whole, for the node's other render processes that read it without the lock
        if why is not None:
            log.warning("httpov: povray runs without quick waits (it idles about 0.7 s a run and 0.25 s a frame): "
                        "%s", shown(why))
            return None
        log.info("httpov: povray runs with quick waits (%s)", library)
        return library


def _build(folder: Path, digest: str) -> Path:
    """waits.c compiled into folder/waits-<digest>.so (kept: a node builds each version once)."""
    library = _library_path(folder, digest)
    if library.is_file():
        return library
    compiler = shutil.which("cc", path=COMPILER_PATH) or shutil.which("gcc", path=COMPILER_PATH)
    if compiler is None:
        raise FileNotFoundError("no C compiler (cc) to build it: install the Debian package gcc")
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        built = Path(tmp) / "waits.so"
        done = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(built), str(SOURCE), "-ldl"],
                              capture_output=True, text=True, timeout=120,
                              env={"PATH": COMPILER_PATH, "LANG": "C"})
        if done.returncode != 0:
            raise OSError(f"{compiler} could not build {SOURCE.name}: {done.stderr.strip()[-500:]}")
        os.replace(built, library)
    return library


def _check(settings: Settings, library: Path) -> str | None:
    """None when povray renders the self-test animation with `library` exactly as without it, else why not."""
    from httpov.errors import RenderError

    plain: list[bytes] = []
    quick: list[bytes] = []
    for preload, frames in ((None, plain), (library, quick)):
        try:
            output = render_check(settings, frames=_FRAMES, preload=preload)
        except RenderError as exc:
            return (f"povray failed the self-test {'with' if preload else 'without'} {library.name}: "
                    f"{exc}{': ' + ' / '.join(exc.lines[-3:]) if exc.lines else ''}")
        frames.extend(pixels for _, pixels in sorted(output[0].items()))
    if plain != quick:
        return f"povray's pixels differ with {library.name} in the self-test"
    return None


def render_check(settings: Settings, frames: int = 1,
                 preload: Path | None = None) -> tuple[dict[int, bytes], float]:
    """Render the self-test's small scene (`frames` frames, 8x8) exactly as a batch is rendered: the same povray,
    sandbox, limits and output checks. Answers each frame's pixels (its PNG's image data, without the date povray
    writes into the file) and povray's seconds."""
    from httpov.plan import Batch, JobSpec
    from httpov.worker import povray
    from httpov.worker.sandbox import RenderLimits

    spec = JobSpec(id="check", name="check", scene_key="", root="", pov="check.pov",
                   options={"Input_File_Name": "check.pov"}, initial=1, final=frames, first=1, last=frames,
                   width=8, height=8, count=frames, batches=[f"f000001-{frames:06d}"])
    with tempfile.TemporaryDirectory(prefix="httpov-check-") as tmp:
        (Path(tmp) / "scene").mkdir()
        (Path(tmp) / "scene" / "check.pov").write_text(_SCENE)
        output = povray.render(settings.povray, spec, Batch(1, frames), Path(tmp), 1, lambda: True,
                               RenderLimits.from_settings(settings), preload=preload)
        return {frame: png_pixels(path) for frame, path in output.images.items()}, output.seconds


def png_pixels(path: Path) -> bytes:
    """The decompressed image data of a PNG (its IDAT chunks): two files with the same pixels from the same encoder
    give the same bytes, whatever text chunks they carry."""
    data, pos, idat = path.read_bytes(), 8, []
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat.append(data[pos + 8:pos + 8 + length])
        pos += 12 + length
    return zlib.decompress(b"".join(idat))


def _library_path(folder: Path, digest: str) -> Path:
    return folder / f"waits-{digest}.so"


def _verdict_path(settings: Settings, key: _Key) -> Path:
    name = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
    return settings.cache_dir / "waits" / f"verdict-{name}.json"


@functools.cache
def _digest() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]


def _identity(program: str) -> tuple:
    real = os.path.realpath(program)
    try:
        found = os.stat(real)
    except OSError:
        return (real,)
    return (real, found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns)
