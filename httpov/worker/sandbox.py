"""Confine one povray run: a bubblewrap filesystem view, httpov's own povray.conf/ini, and resource limits."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from httpov.errors import RenderError
from httpov.files import write_once
from httpov.settings import Settings

MiB = 1024**2
GiB = 1024**3

#: POV-Ray's standard include library (Debian's povray-includes); the scene may read it, nothing more.
INCLUDE_DIR = Path("/usr/share/povray-3.7/include")
#: The other directories Debian's own povray.ini puts on the library path.
LIBRARY_PATHS = (Path("/usr/share/povray-3.7"), Path("/usr/share/povray-3.7/ini"), INCLUDE_DIR)
#: What the sandbox shows of /usr besides povray and its shared libraries: include library, ini, fonts.
SHARED_DIRS = (Path("/usr/share/povray-3.7"), Path("/usr/share/fonts"))
#: Versions whose system conf (/etc/povray/V/povray.conf) and user conf (~/.povray/V/povray.conf) we replace.
POVRAY_VERSIONS = ("3.7", "3.8")
#: ini options that make povray run a shell command; httpov never lets one through.
SHELLOUT_OPTIONS = (
    "Pre_Scene_Command",
    "Pre_Frame_Command",
    "Post_Frame_Command",
    "Post_Scene_Command",
    "User_Abort_Command",
    "Fatal_Error_Command",
)
#: Where prepare_sandbox looks for bwrap (not the worker's PATH, which a hostile environment could steer).
BWRAP_SEARCH_PATH = "/usr/bin:/bin:/usr/local/bin"
#: PATH inside the sandbox.
SANDBOX_PATH = "/usr/bin:/bin"
#: The device nodes the sandbox's /dev holds (povray opens none of them; they are there for its libraries). The
#: folder is a tmpfs made read-only once they are bound in: no /dev/shm, no ptmx or pts, no tty, nothing a scene
#: can write into (bwrap's own --dev leaves /dev and /dev/shm writable, RAM outside RLIMIT_AS, and a writable
#: /dev/ptmx on which a scene's #write blocks for ever).
DEVICES = ("null", "zero", "full", "random", "urandom")
# Top-level host directories that hold programs and libraries (merged-/usr makes most of them symlinks).
_SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")

#: Where the sandbox shows a preload library (prepare_sandbox's `preload`), whatever the host's path holds.
PRELOAD_PATH = "/httpov-preload.so"

#: How long a render process trusts where it found a program (povray, bwrap) and the real paths it resolved (the
#: programs', the slot's folders'): the same every batch, a search of PATH and an lstat of each part of each path.
LOOKUP_SECONDS = 60.0
#: The longest bubblewrap may take to make the sandbox's first process (its --info-fd says its pid).
INFO_SECONDS = 30
#: Host folders a sandbox folder may never be in (compared as text: the path is resolved first).
_FORBIDDEN_DIRS = tuple(f"/{name}" for name in ("usr", "proc", "dev", "sys", "etc", *_SYSTEM_DIRS))


@dataclass(frozen=True)
class RenderLimits:
    """Resource limits for one povray process (each also binds the bwrap process that starts it)."""

    memory_bytes: int = 2 * GiB          # RLIMIT_AS: povray itself needs about 400 MiB of address space
    output_bytes: int = 1 * GiB          # bytes the whole run may write (images and #write); RLIMIT_FSIZE per file
    output_files: int = 1000             # files the whole run may create (povray.OutputUsage checks both totals)
    cpu_seconds: int | None = None       # RLIMIT_CPU (soft; SIGKILL 5 s later); None = unlimited

    def __post_init__(self) -> None:
        if self.memory_bytes <= 0 or self.output_bytes <= 0 or self.output_files <= 0:
            raise ValueError("memory_bytes, output_bytes and output_files must be positive")
        if self.cpu_seconds is not None and self.cpu_seconds <= 0:
            raise ValueError("cpu_seconds must be positive or None")

    @classmethod
    def from_settings(cls, settings: Settings) -> RenderLimits:
        """A render node's limits on one batch: HTTPOV_BATCH_MAX_MEMORY_MB, _BYTES and _FILES."""
        return cls(memory_bytes=settings.batch_max_memory_mb * MiB, output_bytes=settings.batch_max_bytes,
                   output_files=settings.batch_max_files)

    def rlimits(self) -> list[tuple[int, tuple[int, int]]]:
        """The limits as setrlimit/prlimit take them: no core files, the address space, the size of any file it
        writes, and the CPU seconds (SIGXCPU, then SIGKILL 5 s later) when there are some."""
        limits = [(resource.RLIMIT_CORE, (0, 0)), (resource.RLIMIT_AS, (self.memory_bytes, self.memory_bytes)),
                  (resource.RLIMIT_FSIZE, (self.output_bytes, self.output_bytes))]
        if self.cpu_seconds is not None:
            limits.append((resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds + 5)))
        return limits

    def out_of_memory(self) -> str:
        """The reason a batch gives when povray ran out of its address space."""
        return (f"povray ran out of memory: a batch may use {self.memory_bytes // MiB} MiB "
                "(HTTPOV_BATCH_MAX_MEMORY_MB)")


@dataclass(frozen=True)
class Sandbox:
    """Everything needed to start povray confined: `start()` (or `argv()` and `env` for a caller's own Popen)."""

    scene_dir: Path
    out_dir: Path
    home_dir: Path
    limits: RenderLimits
    env: Mapping[str, str]
    conf_path: Path
    povini_path: Path
    wrapper: tuple[str, ...] = field(repr=False)

    def argv(self, command: Sequence[str], *bwrap: str) -> list[str]:
        """`command` (povray and its arguments) wrapped in bwrap (and bwrap's options `bwrap`); paths in it must lie
        in the three dirs."""
        if not command:
            raise ValueError("empty command")
        exe = command[0]
        extra = _looked_up(_program_binds, exe, self.env["PATH"])
        if not os.path.exists(extra[1]):  # moved meanwhile (an upgrade): looked up again now
            _kept.cache_clear()
            extra = _looked_up(_program_binds, exe, self.env["PATH"])
        return [*self.wrapper, *extra, *bwrap, "--remount-ro", "/", "--", exe, *command[1:]]

    def start(self, command: Sequence[str], **popen: Any) -> subprocess.Popen:
        """Start `command` in the sandbox (subprocess.Popen's other arguments in `popen`; it runs in a session of its
        own). The scene's files it shares with the node's cache (hard links: httpov.worker.workdir.link_scene) are
        each bound read-only over themselves, so that nothing in the sandbox, their owner included, can change or
        chmod them. bwrap holds the sandbox until the batch's limits are set on its first process inside
        (prlimit(2), from here), which povray and all it starts inherit: no launcher process, and no fork of the
        render process (Popen starts bwrap with vfork). bwrap's --die-with-parent ties it to the render process.
        Should anything fail before the sandbox is let go, bwrap is killed (nothing runs without its limits):
        RenderError, or, when bwrap ended by itself, the process, whose exit status and log say why."""
        opened: list[int] = []
        proc: subprocess.Popen | None = None
        released = False
        try:
            binds = os.memfd_create("httpov-binds", os.MFD_CLOEXEC)  # as many as the scene has files: not in argv
            opened.append(binds)
            info_r, info_w = os.pipe()
            opened += [info_r, info_w]
            hold_r, hold_w = os.pipe()
            opened += [hold_r, hold_w]
            _write_all(binds, b"".join(b"--ro-bind\0%s\0%s\0" % (path, path) for path in _shared_files(self.scene_dir)))
            os.lseek(binds, 0, os.SEEK_SET)
            proc = subprocess.Popen(
                self.argv(command, "--args", str(binds), "--info-fd", str(info_w), "--block-fd", str(hold_r)),
                pass_fds=(binds, info_w, hold_r), start_new_session=True, env=self.env, **popen)
            for fd in (info_w, hold_r):  # bwrap's ends: its info ends with it
                opened.remove(fd)
                os.close(fd)
            pid = _child_pid(info_r)
            if pid is None:  # bwrap failed before it started anything (its log says why), or said no pid
                return proc
            try:
                for limit, value in self.limits.rlimits():
                    resource.prlimit(pid, limit, value)
                os.write(hold_w, b"1")  # go on
                released = True
            except (ProcessLookupError, BrokenPipeError):  # bwrap's setup failed meanwhile: its log says why
                pass
            except OSError as exc:
                raise RenderError(f"cannot set the batch's limits on its sandbox: {exc}", transient=True) from None
            return proc
        finally:
            if proc is not None and not released:  # whatever stopped it: nothing runs without its limits
                kill_group(proc)
            for fd in opened:
                os.close(fd)

    def explain_exit(self, returncode: int) -> str | None:
        """A one-line reason for a limit-related exit status of the wrapped povray, or None."""
        # bwrap exits 128+N when its child dies of signal N; Popen reports -N when bwrap itself does.
        signo = returncode - 128 if returncode > 128 else -returncode if returncode < 0 else 0
        if signo == signal.SIGXFSZ:
            return (f"povray wrote a file past the output limit of {self.limits.output_bytes} bytes "
                    "(HTTPOV_BATCH_MAX_BYTES)")
        if signo == signal.SIGXCPU or (signo == signal.SIGKILL and self.limits.cpu_seconds is not None):
            return f"povray was killed (CPU limit {self.limits.cpu_seconds} s, or a kill from outside)"
        if signo == signal.SIGKILL:
            return "povray was killed"
        if signo in (signal.SIGSEGV, signal.SIGABRT):
            name = "segmentation fault" if signo == signal.SIGSEGV else "aborted"
            return (f"povray crashed ({name}; running out of the batch's {self.limits.memory_bytes // MiB} MiB "
                    "of memory, HTTPOV_BATCH_MAX_MEMORY_MB, can cause this)")
        return None


def prepare_sandbox(
    scene_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    home_dir: str | os.PathLike[str],
    limits: RenderLimits | None = None,
    *,
    bwrap: str = "bwrap",
    preload: Path | None = None,
) -> Sandbox:
    """Write httpov's povray.conf and ini into `home_dir` (unless it holds them: a render slot keeps its home from
    batch to batch) and return the Sandbox for one povray run.

    Inside the sandbox the scene sees, read-only, of /usr only povray (added by argv()), the folders of its shared
    libraries, its include library and fonts (SHARED_DIRS);
    `home_dir` (read-only), `scene_dir` and `out_dir` (read-write), a read-only /dev of a few device nodes
    (DEVICES). Nothing else is writable, so the batch's byte limit counts all it writes: no tmpfs, no /dev/shm.
    No /tmp, /etc (but povray's conf), /proc, /home, /root or network. Raises RenderError if bwrap is missing.
    `preload`: a library povray loads (LD_PRELOAD, set inside the sandbox only: httpov.worker.waits), shown
    read-only at PRELOAD_PATH.
    """
    limits = limits or RenderLimits()
    found = _which(bwrap, BWRAP_SEARCH_PATH) if "/" not in bwrap else (
        bwrap if os.access(bwrap, os.X_OK) else None)
    if found is None:
        raise RenderError(
            f"bubblewrap ({bwrap}) is not installed: render nodes need it to confine scenes; "
            "install the Debian package 'bubblewrap'"
        )
    scene, out, home = (_existing_dir(p, name) for p, name in
                        ((scene_dir, "scene_dir"), (out_dir, "out_dir"), (home_dir, "home_dir")))
    box, conf = _sandbox(found, scene, out, home, limits, preload)
    write_once(box.conf_path, conf)
    for version in POVRAY_VERSIONS:
        write_once(home / f".povray/{version}/povray.conf", conf)
    write_once(box.povini_path, povray_ini())
    return box


@functools.lru_cache(maxsize=1024)
def _sandbox(bwrap: str, scene: Path, out: Path, home: Path, limits: RenderLimits,
             preload: Path | None) -> tuple[Sandbox, str]:
    """prepare_sandbox's Sandbox and povray.conf for these (resolved) folders: made once for a render slot's kept
    folders (httpov.worker.workdir), not once a batch (room for a thousand slots' folders)."""
    for inner, outer in ((home, scene), (home, out), (scene, home), (out, home)):
        if inner == outer or outer in inner.parents:
            raise ValueError(f"home_dir must be apart from scene_dir and out_dir: {inner} vs {outer}")
    conf_path = home / "povray.conf"
    # the folder of the scene's and the output's (a batch's work folder): the same for every batch of a render slot,
    # so that the slot's home keeps its confs (write_once), not those of its batch's output folder
    conf = povray_conf([INCLUDE_DIR], [Path(os.path.commonpath([scene, out]))])
    povini_path = home / "povray.ini"
    env = MappingProxyType({"PATH": SANDBOX_PATH, "LANG": "C.UTF-8", "HOME": str(home), "POVINI": str(povini_path)})
    wrapper = [bwrap, *_system_view()]
    for version in POVRAY_VERSIONS:  # the system conf povray reads is ours too
        wrapper += ["--ro-bind", str(conf_path), f"/etc/povray/{version}/povray.conf"]
    wrapper += ["--ro-bind", str(home), str(home)]
    for rw in sorted({scene, out}, key=lambda p: len(p.parts)):  # parents before children
        wrapper += ["--bind", str(rw), str(rw)]
    if preload is not None:  # at a path of its own: the dynamic loader splits LD_PRELOAD at spaces and colons
        wrapper += ["--ro-bind", str(preload), PRELOAD_PATH, "--setenv", "LD_PRELOAD", PRELOAD_PATH]
    wrapper += ["--chdir", str(scene)]  # argv() adds its binds, then makes the root read-only
    return Sandbox(scene, out, home, limits, env, conf_path, povini_path, tuple(wrapper)), conf


def _program_binds(exe: str, path: str) -> tuple[str, ...]:
    """bwrap's binds of program `exe` (found on `path` unless it names its own), its #! interpreter if it is a
    script, and the folders of their shared libraries (Sandbox.argv looks them up once every LOOKUP_SECONDS)."""
    found = shutil.which(exe, path=path) if "/" not in exe else exe
    if found is None:
        raise RenderError(f"{exe!r} not found on the sandbox PATH {path}")
    real = os.path.realpath(found)
    extra = ["--ro-bind", real, found]  # just the program, where the sandbox's PATH (or its path) finds it
    programs = [real]
    interpreter = script_interpreter(real)
    if interpreter is not None:  # a renderer that is a script (a stand-in for povray): its #! program too
        inner = os.path.join(os.path.realpath(os.path.dirname(interpreter)), os.path.basename(interpreter))
        extra += ["--ro-bind", os.path.realpath(interpreter), inner]
        programs.append(os.path.realpath(interpreter))
    for folder in sorted({folder for program in programs for folder in library_dirs(program)}, key=len):
        extra += ["--ro-bind", folder, folder]
    return tuple(extra)


def _child_pid(info: int) -> int | None:
    """The pid of bwrap's first process in the sandbox, from bwrap's --info-fd (JSON, written as that process is
    made); None if bwrap ended without writing it. RenderError if bwrap says nothing for INFO_SECONDS."""
    data = b""
    poller = select.poll()
    poller.register(info, select.POLLIN)
    while True:
        if not poller.poll(INFO_SECONDS * 1000):
            raise RenderError(f"bubblewrap did not start the sandbox within {INFO_SECONDS} s", transient=True)
        chunk = os.read(info, 4096)
        if not chunk:
            return None
        data += chunk
        with contextlib.suppress(ValueError):
            found = json.loads(data).get("child-pid")
            return found if isinstance(found, int) else None


def _shared_files(scene: Path) -> list[bytes]:
    """The files in `scene` that are linked from elsewhere (more than one link: the node's cached scene)."""
    found = []
    with os.scandir(scene) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                found += _shared_files(Path(entry.path))
            elif entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_nlink > 1:
                found.append(os.fsencode(entry.path))
    return found


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a sandbox's process group at once (bwrap, povray and all they started: a stopped render has nothing
    to save) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)


@functools.cache
def _system_view() -> tuple[str, ...]:
    """bwrap's options for what every sandbox shows of the host (the same for every batch: built once per process):
    nothing shared, the shared folders and system folders read-only, a /dev of DEVICES only."""
    view = ["--unshare-all", "--die-with-parent", "--cap-drop", "ALL"]
    for shared in SHARED_DIRS:
        view += ["--ro-bind-try", str(shared), str(shared)]
    for name in _SYSTEM_DIRS:
        host = Path("/", name)
        if host.is_symlink():
            view += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            view += ["--ro-bind", str(host), str(host)]
    view += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache", "--tmpfs", "/dev"]
    for device in DEVICES:
        view += ["--dev-bind", f"/dev/{device}", f"/dev/{device}"]
    view += ["--remount-ro", "/dev"]
    return tuple(view)


def povray_conf(read_dirs: Sequence[Path], write_dirs: Sequence[Path]) -> str:
    """A povray.conf that forbids shell-outs and restricts file I/O to the given directories.

    POV-Ray 3.7.0.10's parser of [File I/O Security] is broken (it never recognises the value), so the
    path list does not confine anything on its own; the bwrap mount view does. Shell-out security works.
    """
    lines = ["; written by httpov for its sandboxed povray runs", "[File I/O Security]", "restricted", "",
             "[Shellout Security]", "forbidden", "", "[Permitted Paths]"]
    lines += [f'read* = "{d}"' for d in read_dirs]
    lines += [f'read+write* = "{d}"' for d in write_dirs]
    return "\n".join(lines) + "\n"


def povray_ini(library_paths: Sequence[Path] = LIBRARY_PATHS) -> str:
    """The ini named by $POVINI: it stands in for the system povray.ini and any povray.ini in the scene."""
    lines = ["; written by httpov: replaces /etc/povray/3.7/povray.ini and ./povray.ini",
             "Display=Off", "Pause_When_Done=Off", "Output_to_File=On", "Output_File_Type=N"]
    lines += [f'Library_Path="{p}"' for p in library_paths]
    return "\n".join(lines) + "\n"


def _existing_dir(path: str | os.PathLike[str], name: str) -> Path:
    resolved = Path(_realpath(os.fspath(path)))
    if not resolved.is_dir():
        raise ValueError(f"{name} {path} is not an existing directory")
    text = str(resolved)
    if resolved == Path("/") or any(text == d or text.startswith(d + "/") for d in _FORBIDDEN_DIRS):
        raise ValueError(f"{name} {resolved} is not allowed as a sandbox directory")
    return resolved


@functools.cache
def script_interpreter(program: str) -> str | None:
    """The absolute interpreter path on a script's #! line, or None for a binary (or anything unreadable)."""
    try:
        with open(program, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    return words[0].decode("utf-8", "replace") if words and words[0].startswith(b"/") else None


def _which(program: str, path: str) -> str | None:
    """shutil.which, looked up again once every LOOKUP_SECONDS (_looked_up)."""
    return _looked_up(_which_on, program, path)


def _which_on(program: str, path: str) -> str | None:
    return shutil.which(program, path=path)


def _realpath(path: str) -> str:
    """os.path.realpath, resolved again once every LOOKUP_SECONDS (_looked_up)."""
    return _looked_up(os.path.realpath, path)


def _looked_up(function: Callable[..., Any], *args: str) -> Any:
    """function(*args), asked again once every LOOKUP_SECONDS: the same few lookups every batch (where povray and bwrap
    are, the real paths of the slot's kept folders: httpov.worker.workdir), a search of PATH or an lstat for each part
    of a path; a program moved (an upgrade) is found where it went within that time."""
    return _kept(function, args, int(time.monotonic() // LOOKUP_SECONDS))


@functools.lru_cache(maxsize=4096)
def _kept(function: Callable[..., Any], args: tuple[str, ...], _period: int) -> Any:
    return function(*args)


def library_dirs(program: str) -> tuple[str, ...]:
    """The folders holding the shared libraries `program` loads (from ldd), outermost only, real paths: asked once
    per render process and version of the program (its inode, size and modification time), not once per batch (ldd
    is a process of its own: about 4 ms of CPU a batch for povray, twice that for a script and its interpreter)."""
    try:
        found = os.stat(program)
    except OSError:  # no such program: starting it says so (povray.render)
        return ()
    return _library_dirs(program, (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _library_dirs(program: str, version: tuple[int, ...]) -> tuple[str, ...]:
    try:
        listing = subprocess.run(["ldd", program], capture_output=True, text=True, timeout=30,
                                 env={"PATH": BWRAP_SEARCH_PATH, "LANG": "C"}).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RenderError(f"cannot list the libraries of {program}: {exc}", transient=True) from None
    found = set()
    for line in listing.splitlines():
        path = line.split("=>", 1)[-1].strip().split(" (", 1)[0].strip()
        if path.startswith("/"):
            found.add(os.path.realpath(os.path.dirname(path)))
            found.add(os.path.dirname(os.path.realpath(path)))
    folders = sorted(found, key=len)
    return tuple(f for i, f in enumerate(folders) if not any(f.startswith(o + "/") for o in folders[:i]))
