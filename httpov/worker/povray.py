"""Running povray for one batch: the command line, the process tied to its task, and reading its log."""
from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import select
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from httpov.errors import RenderError, RenderHungError
from httpov.files import write_once
from httpov.plan import PATH_OPTIONS, Batch, JobSpec, inside_path, safe_name, slice_options
from httpov.scene import ALLOWED_OPTIONS
from httpov.text import shown
from httpov.worker.sandbox import RenderLimits, kill_group, prepare_sandbox
from httpov.worker.workdir import empty

_ERROR = re.compile(r"error", re.I)
_WARNING = re.compile(r"Possible Parse Error|warning", re.I)
_WHERE = re.compile(r"File '[^']*' line \d+:")
_CONTINUED = re.compile(r"^ \S")
#: povray's words when an allocation failed: C++'s bad_alloc (a parse error), a thread it could not start, its own.
_OUT_OF_MEMORY = re.compile(r"bad_alloc|thread_resource_error|out of memory", re.I)
CONTROLLED = {"Width", "Height", "Initial_Frame", "Final_Frame", "Subset_Start_Frame", "Subset_End_Frame"}
ALLOWED = set(ALLOWED_OPTIONS.values())
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: The render state povray keeps while it renders (+C continues from it): frame.pov-state, or frame<N>.pov-state
#: for a frame of an animation (+SF/+EF)
STATE_FILE = re.compile(r"^frame(\d*)\.pov-state$")


#: povray's progress lines: the frame of the run it starts (groups 1-2), the pixels of the frame done (groups 3-4)
_PROGRESS = re.compile(rb"Rendering frame (\d+) of (\d+)|Rendered (\d+) of (\d+) pixels")


class RunProgress:
    """How far one povray run got, from its log read as it grows: the frame it renders (1-based within the run,
    0 before the first) and the share of that frame's pixels done ('Rendered 30720 of 43200 pixels')."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.frame = 0
        self.fraction = 0.0
        self._offset = 0
        self._tail = b""
        self._done = 0  # the pixels povray last said it had rendered of the current frame
        self._restored = 0  # of those, the ones a continued run (+C) took from its state and does not count

    def update(self) -> RunProgress:
        """Read what povray wrote since the last call."""
        try:
            with open(self.log, "rb") as f:
                f.seek(self._offset)
                new = f.read(1 << 20)
        except OSError:
            return self
        self._offset += len(new)
        text = self._tail + new
        cut = max(text.rfind(b"\r"), text.rfind(b"\n"))
        self._tail = text[cut + 1:][-200:] if cut >= 0 else text[-200:]
        for match in _PROGRESS.finditer(text[:cut + 1] if cut >= 0 else b""):
            if match.group(1) is not None:
                if int(match.group(1)) != self.frame:  # a new frame (a continued run says its own frame again)
                    self.frame, self.fraction = max(self.frame, int(match.group(1))), 0.0
                    self._done, self._restored = 0, 0
            else:
                self._done, of = self._restored + int(match.group(3)), int(match.group(4))
                self.frame = max(self.frame, 1)
                self.fraction = min(1.0, self._done / of) if of > 0 else 0.0
        return self

    def continued(self) -> None:
        """povray was interrupted and continues from its state (+C, a re-split's shorter slice): its counter then
        counts only the pixels it renders itself, out of all of its rows, so the ones it had are added to it."""
        self.update()
        self._restored = self._done


class Watcher(Protocol):
    """Told of a run as it starts and as it goes (httpov.worker.checkpoint.Checkpoints)."""

    def start(self, out_dir: Path) -> list[str]:
        """Before povray starts, its output folder made: povray options to add (continuing a saved render)."""
        ...

    def tick(self, out_dir: Path, run: RunProgress) -> None:
        """While povray runs (every tick of the render's wait)."""
        ...


@dataclass
class RenderOutput:
    """What one povray run left: the image of each frame, its log, and how long it took."""

    images: dict[int, Path]
    log: str
    seconds: float
    runs: int = 1  # povray runs it took (2: a slice a re-split cut, continued with +C), each paying povray's start


def version(executable: str) -> str:
    """povray's version as it says it ('3.7.0.10.unofficial'), or 'unknown' if it does not say: asked once a process
    for each program file (its inode, size and modification time: a povray upgraded under a running node is asked
    again), and again a minute after it did not say."""
    path = shutil.which(executable) or executable
    try:
        found = os.stat(path)
        identity: tuple = (path, found.st_ino, found.st_size, found.st_mtime_ns)
    except OSError:
        return "unknown"
    known = _versions.get(identity)
    if known is None or (known[0] == "unknown" and time.monotonic() - known[1] > 60):
        known = _versions[identity] = (_ask_version(path), time.monotonic())
    return known[0]


_versions: dict[tuple, tuple[str, float]] = {}  # the program file's identity -> (its version, when asked)


def _ask_version(executable: str) -> str:
    try:
        done = subprocess.run([executable, "--version"], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = re.search(rb"POV-Ray\s+v?(\d[\w.+-]*)", done.stdout + b"\n" + done.stderr)
    return found.group(1).decode("ascii", "replace")[:64] if found else "unknown"


@functools.cache
def httpov_version() -> str:
    """The installed httpov's version (read once per process: the package metadata is parsed each time it is
    asked, about 2.5 ms of CPU)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("httpov")
    except PackageNotFoundError:
        return "unknown"


def frame_file(name: str, frame: int, final: int) -> str:
    """The file name a frame carries in results: '<name>_0007.png', the job name reduced to safe characters
    (plan.safe_name: a name is never a path), padding following Final_Frame (at least 4 digits)."""
    width = max(4, len(str(final)))
    return f"{safe_name(name)}_{frame:0{width}d}.png"


def scene_ini(spec: JobSpec, scene_dir: Path) -> str:
    """The scene's allow-listed options as an ini, with paths checked to stay inside the scene (POV-Ray's include
    library is on the library path of the sandbox's own ini, sandbox.povray_ini). Paths stay relative to the scene,
    povray's working folder, so its messages name files as the scene does (`File 'sub/main.pov' line 7`)."""
    lines = []
    for name, value in sorted(spec.options.items()):
        if name in CONTROLLED or name not in ALLOWED:
            continue  # httpov passes these itself, or a hostile job record slipped them in: never the scene's
        for item in value if isinstance(value, list) else [value]:
            if any(ord(c) < 32 for c in item):
                raise RenderError(f"option {name} holds a control character", transient=False)
            if name in PATH_OPTIONS:
                item = inside_path(item, name)  # relative: povray runs in the scene
            lines.append(f"{name}={item}")
    return "\n".join(lines) + "\n"


def povray_args(spec: JobSpec, batch: Batch, ini: Path, out_dir: Path, threads: int) -> list[str]:
    """Options httpov controls come after the scene's ini, so the scene cannot override them."""
    args = [str(ini), "-D", "-P", "+O" + str(out_dir / "frame"), f"+WT{threads}",
            f"+W{spec.width}", f"+H{spec.height}", f"+KFI{spec.initial}", f"+KFF{spec.final}"]
    bits = spec.options.get("Bits_Per_Color")
    args.append("+FN16" if bits == "16" else "+FN")
    if spec.final > spec.initial:
        args += [f"+SF{batch.first}", f"+EF{batch.last}"]
    if batch.rows is not None:
        args += slice_options(batch.rows[0], batch.rows[1], spec.height)
    return args


def render(povray: str, spec: JobSpec, batch: Batch, workdir: Path, threads: int,
           keep_going: Callable[[], bool], limits: RenderLimits | None = None,
           time_limit: float | None = None, extra: list[str] | None = None,
           size: tuple[int, int] | None = None, no_progress: float | None = None,
           hang_limit: tuple[float, str] | None = None, watcher: Watcher | None = None,
           preload: Path | None = None, node_limit: tuple[float, str] | None = None,
           home: Path | None = None, out: Path | None = None) -> RenderOutput:
    """Render `batch` with the scene copied in workdir/scene; raise RenderError with the log's error lines.

    povray writes into a folder of its own whose name the scene cannot guess; only the frames of the batch are
    taken from it, each checked to be a PNG of the job's size. `limits` bound the memory of the run and the bytes
    and files it may write (the scene's #write included: it can write nowhere else); `time_limit` (seconds) stops
    a batch that runs longer. `extra` options come last (httpov's own: a radiosity wrapper scene and file), `size`
    is the image size they ask for when it is not the job's (a probe). `no_progress` (seconds): povray is killed
    as hung when its CPU time, its log and its output all stood still that long (RenderHungError); `hang_limit`
    (seconds, why): a time limit past which the batch is taken for hung too (one derived from the job's measured
    frame times). `watcher` is told of the run's start (its options come last) and of its progress. `preload`: the
    library povray runs with (httpov.worker.waits), or None. `node_limit` (seconds left, what limit): the render
    node's own time limit for the batch, past which povray is stopped and the batch fails (Celery's soft time limit
    does that only in a prefork pool, never in its threads pool, the node's default). `home`: the folder of
    povray's confs and the job's ini (a render slot keeps one for all its batches, apart from `workdir`), or None
    for workdir/home. `out`: povray's output folder in `workdir` (a render slot keeps one for a job's batches, its
    name as hard to guess, though the job's own log may name it), emptied first (of what an earlier run of the batch
    left: a pre-pass's probe); None, or one that cannot be emptied, for a new one."""
    limits = limits or RenderLimits()
    scene_dir, out_dir = workdir / "scene", out
    if out_dir is None or not empty(out_dir):
        out_dir = workdir / f"out-{secrets.token_hex(8)}"
        out_dir.mkdir()
    home = home or workdir / "home"
    home.mkdir(exist_ok=True)  # a pre-pass runs povray twice in one work folder (probe, then the pass)
    ini = home / "httpov.ini"
    write_once(ini, scene_ini(spec, scene_dir))
    box = prepare_sandbox(scene_dir, out_dir, home, limits, preload=preload)
    usage = OutputUsage(limits, (scene_dir, out_dir))
    log_path = workdir / "render.log"
    started = time.monotonic()
    why: list[str] = []
    hung: list[str] = []
    progress: Progress | None = None
    run = RunProgress(log_path)
    resume = watcher.start(out_dir) if watcher is not None else []
    # a re-split (httpov.store.JobStore.resplit): `keep_going.cut()` names the row this slice now ends at; povray is
    # interrupted (SIGINT: it writes its .pov-state) and continued with +C up to that row
    cutter: Callable[[], int | None] | None = getattr(keep_going, "cut", None)
    cuts: list[int] = []
    proc: subprocess.Popen | None = None  # the povray that runs now
    runs = 0  # povrays started

    def watch() -> bool:
        now = time.monotonic()
        if watcher is not None:
            watcher.tick(out_dir, run.update())
        if time_limit is not None and now - started > time_limit:
            why.append(f"the batch ran past the job's time limit of {time_limit:g} s (set at submit: its time limit); "
                       "povray was stopped")
            return False
        if node_limit is not None and now - started > node_limit[0]:
            why.append(f"the batch ran past {node_limit[1]}; povray was stopped")
            return False
        if hang_limit is not None and now - started > hang_limit[0]:
            hung.append(f"the batch ran past its time limit of {hang_limit[0]:.0f} s ({hang_limit[1]}); "
                        "povray was killed")
            return False
        over = usage.over()
        if over:
            why.append(over)
            return False
        if progress is not None and progress.stalled((usage.last, _size(log_path)), now):
            hung.append(f"no progress for {no_progress:g} s: povray used no CPU and wrote nothing "
                        "(HTTPOV_NO_PROGRESS_SECONDS); it was killed")
            return False
        go = keep_going()
        if go and cutter is not None and not cuts and batch.rows is not None:
            cut = cutter()
            if cut is not None and batch.rows[0] <= cut < batch.rows[1]:
                cuts.append(cut)
                if proc is not None:
                    interrupt(proc, povray)
        return go

    def run_povray(rendered: Batch, more: list[str], mode: str, note: str = "") -> int | None:
        """Run povray on `rendered` with the options `more` last, its log in log_path (opened with `mode`, after
        `note`); its exit code, None if watch() stopped it."""
        nonlocal proc, progress, runs
        runs += 1
        with open(log_path, mode) as log:
            if note:
                log.write(note.encode())
                log.flush()
            try:
                args = [*povray_args(spec, rendered, ini, out_dir, threads), *(extra or []), *more]
                proc = box.start([povray, *args], cwd=scene_dir, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT)
            except FileNotFoundError:
                raise RenderError(f"povray executable {povray!r} not found on this node", transient=True) from None
            if no_progress is not None:
                progress = Progress(proc.pid, no_progress, time.monotonic())
            return _wait(proc, watch, tick=getattr(keep_going, "tick", 0.5), wake=getattr(keep_going, "fileno", None))

    returncode = run_povray(batch, resume, "wb")
    if cuts and returncode not in (0, None) and not why and not hung and batch.rows is not None:
        # interrupted for the re-split: the rows it lacks up to the cut, from its state (from the start without one;
        # an animation's frame keeps its state as frame<N>.pov-state)
        state = ["+C"] if any(STATE_FILE.match(path.name) for path in out_dir.iterdir()) else []
        if state:
            run.continued()  # its progress goes on from where it was, not from 0
        returncode = run_povray(batch.ending_at(cuts[0]), state, "ab",
                                f"\nhttpov: re-split: this slice now ends at row {cuts[0]}; povray continues "
                                f"{'from its state (+C)' if state else 'from the start'}\n")
    text = log_path.read_text(errors="replace")
    seconds = time.monotonic() - started
    if hung:  # a hang may be this node's (a stopped or starved process) or the scene's: tried once elsewhere
        raise RenderHungError(hung[0], error_lines(text, scene_dir))
    if why or returncode is None:
        if why:  # a limit of the batch: the same scene would meet it again, so final
            raise RenderError(why[0], error_lines(text, scene_dir), transient=False)
        raise RenderError("render stopped: the job was cancelled or paused, or the batch was taken over",
                          transient=False)
    limit = box.explain_exit(returncode) if returncode != 0 else None
    over = usage.over()
    if over or (limit and "output limit" in limit):
        raise RenderError(over or limit or "", error_lines(text, scene_dir), transient=False)
    if returncode != 0:
        if _OUT_OF_MEMORY.search(text):  # a limit of the batch, like the bytes: final
            raise RenderError(limits.out_of_memory(), error_lines(text, scene_dir), transient=False)
        if limit:
            raise RenderError(limit, error_lines(text, scene_dir), transient=True)
        raise failure(returncode, text, scene_dir)
    images = collect(out_dir, spec, batch)
    missing = [f for f in batch.frames if f not in images]
    if missing:
        raise RenderError(f"povray exited 0 but wrote no image for frame(s) {missing}",
                          error_lines(text, scene_dir), True)
    width, height = size or (spec.width, spec.height)
    for frame, image in images.items():
        check_png(image, width, height, frame)
    return RenderOutput(images, text, seconds, runs)


class OutputUsage:
    """Bytes and files a run added to its writable folders, against RenderLimits' totals for the batch."""

    def __init__(self, limits: RenderLimits, folders: tuple[Path, ...]) -> None:
        self.limits = limits
        self.folders = folders
        self.link = ""  # a symbolic link found in the folders (none can be a scene's: see over())
        self.base = self._measure()
        self.last = self.base

    def _measure(self) -> tuple[int, int]:
        size = files = 0
        for folder in self.folders:
            for root, folders, names in os.walk(folder):
                for name, is_file in [*((n, True) for n in names), *((n, False) for n in folders)]:
                    try:
                        found = os.lstat(os.path.join(root, name))
                    except OSError:
                        continue
                    if stat.S_ISLNK(found.st_mode):
                        self.link = self.link or os.path.relpath(os.path.join(root, name), folder)
                    if is_file:
                        size += found.st_size
                        files += 1
        return size, files

    def over(self) -> str | None:
        """Why the run is past a limit, or None. A symbolic link in its folders ends it too: POV-Ray's language
        makes none, so povray itself was made to, and the node would follow it out of the sandbox."""
        size, files = self.last = self._measure()
        if self.link:
            return (f"povray made a symbolic link ({shown(self.link)}) in the batch's folders, which a scene cannot: "
                    "refused")
        added, made = size - self.base[0], files - self.base[1]
        if added > self.limits.output_bytes:
            return (f"the batch wrote {added} bytes, more than its limit of {self.limits.output_bytes} "
                    "(HTTPOV_BATCH_MAX_BYTES)")
        if made > self.limits.output_files:
            return (f"the batch wrote {made} files, more than its limit of {self.limits.output_files} "
                    "(HTTPOV_BATCH_MAX_FILES)")
        return None


class Progress:
    """Whether a povray run still gets on: the CPU time of its session (the sandbox and povray in it: povray runs in
    a session of its own, whose id is the first process's pid) and what it wrote (log and output bytes). It has
    stalled when none of these changed for `window` seconds: a stopped, deadlocked or blocked povray. Samples more
    than half a window (and 5 s) apart start the count again: the watcher itself was stopped (a frozen node).
    A sample reads the stat of each process of the session (session_cpu_ticks): one is taken every eighth of the
    window, at most every 5 s, not at every tick of the render's wait (twice a second)."""

    def __init__(self, session: int, window: float, now: float) -> None:
        self.session = session
        self.window = window
        self.every = min(window / 8, 5.0)
        self.seen: tuple[object, ...] = ()
        self.since = self.last = now

    def stalled(self, written: object, now: float) -> bool:
        """Take a sample (`written`: what the run wrote so far, any comparable value) if one is due; True once
        nothing moved for the window."""
        if now - self.last < self.every:
            return False
        sample = (session_cpu_ticks(self.session), written)
        gap, self.last = now - self.last, now
        if sample != self.seen or gap > max(self.window / 2, 5.0):
            self.seen, self.since = sample, now
            return False
        return now - self.since >= self.window


def session_cpu_ticks(session: int) -> int:
    """Clock ticks of CPU used by the processes of `session` (user and system, with their reaped children's), read
    from /proc/<pid>/stat; a process that ends meanwhile is skipped. The session's tree is walked down from its
    leader (bwrap: /proc/<pid>/task/<tid>/children), not every process of the machine: a node's slots
    are threads of one process, and each scanning all of /proc cost the node's one interpreter the square of its
    slots. Where the kernel lists no children, every process is read."""
    if not os.path.exists(f"/proc/{session}/task/{session}/children"):
        return sum(sum(int(v) for v in fields[11:15]) for _, _, fields in _processes()
                   if len(fields) > 14 and int(fields[3]) == session)  # utime, stime, cutime, cstime
    total, todo, seen = 0, [session], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rfind(b")") + 2:].split()
            if len(fields) <= 14 or int(fields[3]) != session:  # gone, its pid given to another
                continue
            total += sum(int(v) for v in fields[11:15])
            for task in os.scandir(f"/proc/{pid}/task"):
                with open(f"{task.path}/children", "rb") as f:
                    todo.extend(int(child) for child in f.read().split())
        except OSError:  # ended meanwhile
            continue
    return total


def _processes() -> Iterator[tuple[int, bytes, list[bytes]]]:
    """(pid, command name, the fields of /proc/<pid>/stat after the name: state, ppid, pgrp, session, ...) of every
    process; one that ends meanwhile is skipped."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        yield int(entry.name), stat[stat.find(b"(") + 1:stat.rfind(b")")], stat[stat.rfind(b")") + 2:].split()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _wait(proc: subprocess.Popen, keep_going: Callable[[], bool], tick: float = 0.5,
          wake: Callable[[], int] | None = None) -> int | None:
    """Wait for povray, waking the moment it exits (a pidfd), the moment `wake()` (a file descriptor: the lease
    keeper's, readable when the job's stop is announced) is readable, and at least every `tick` seconds to ask
    `keep_going`; kill its whole process group when told to stop or when we are interrupted."""
    if proc.returncode is not None:  # already reaped (a sandbox that failed to start): its pid may be another's
        return proc.returncode
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfd (old kernel): Popen's polling wait
        pidfd = None
    # poll, not select: a node's one process holds every render slot's descriptors, past select's 1024 on a big node
    poller = select.poll()
    for fd in (pidfd, wake() if wake is not None else None):
        if fd is not None:
            poller.register(fd, select.POLLIN)
    try:
        while True:
            if pidfd is not None:
                if any(fd == pidfd for fd, _ in poller.poll(tick * 1000)):
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


def interrupt(proc: subprocess.Popen, executable: str) -> None:
    """SIGINT to povray itself, inside its sandbox (bwrap and it share a process group): povray then
    writes its render state and exits. The whole group is signalled if povray is not found in it."""
    name = os.path.basename(executable)[:15].encode()
    found = False
    for pid, comm, fields in _processes():
        if len(fields) > 2 and int(fields[2]) == proc.pid and comm == name:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
                found = True
    if not found:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)


def collect(out_dir: Path, spec: JobSpec, batch: Batch) -> dict[int, Path]:
    """The image povray wrote for each frame of the batch, by the exact name it gives it ('frame07.png', padded
    like Final_Frame; 'frame.png' for a still); any other file in the folder is ignored."""
    width = len(str(spec.final))
    images = {}
    for frame in batch.frames:
        for name in (f"frame{frame:0{width}d}.png", "frame.png" if batch.first == batch.last else ""):
            path = out_dir / name
            if name and path.is_file() and not path.is_symlink():
                images[frame] = path
                break
    return images


def check_png(path: Path, width: int, height: int, frame: int) -> None:
    """A frame must be a whole PNG of the job's size: a scene's #write can reach povray's output (one process)."""
    with open(path, "rb") as f:
        head = f.read(24)
        f.seek(max(0, path.stat().st_size - 12))
        tail = f.read(12)
    size = (int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")) if len(head) == 24 else None
    if head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR" or size != (width, height) or tail[4:8] != b"IEND":
        raise RenderError(f"the image of frame {frame} is not the {width}x{height} PNG povray renders: "
                          "the scene overwrote it", transient=False)


def failure(returncode: int, log: str, scene_dir: Path | None = None) -> RenderError:
    """A scene error (parse error, missing include...) is final; a crash or a kill may pass on another try.

    The headline is povray's first error, not a warning ("Possible Parse Error" is one): the fatal line, with
    the file and line of the message just before it when it names none ("Fatal error in parser: Cannot open
    file." after the warning that says which file is missing)."""
    said = messages(log, scene_dir)
    lines = error_lines(log, scene_dir)
    if returncode < 0:
        return RenderError(f"povray was killed by signal {-returncode}", lines, transient=True)
    for i, message in enumerate(said):
        if _ERROR.search(message) and not _WARNING.search(message):
            # the warning just before says where; other output (a blank line, a statistics line) may come
            # between them, as povray's two streams interleave
            before = [m for m in said[:i] if _ERROR.search(m)]
            where = _WHERE.match(before[-1]) if before else None
            if where and not _WHERE.match(message):
                message = f"{where.group(0)} {message}"
            return RenderError(f"povray failed: {message}", lines, transient=False)
    return RenderError(f"povray exited with status {returncode}", lines, transient=True)


def messages(log: str, scene_dir: Path | None = None) -> list[str]:
    """povray's log as whole messages: its 80-column wrapping undone (a wrapped message goes on in a line that
    starts with one space), and the node's scene folder cut from file names."""
    if scene_dir is not None:
        log = log.replace(f"{scene_dir}/", "")
    said: list[str] = []
    for line in log.splitlines():
        line = line.rstrip()
        if said and said[-1] and _CONTINUED.match(line):
            said[-1] += line
        else:
            said.append(line)
    return said


def error_lines(log: str, scene_dir: Path | None = None) -> list[str]:
    """povray's error and warning messages, whole (at most the last 20), else the log's last 10 lines."""
    said = messages(log, scene_dir)
    picked = [m for m in said if _ERROR.search(m)]
    return picked[-20:] if picked else said[-10:]
