"""httpov.worker.sandbox without povray: the files it writes, its environment, limits and argument checks."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from httpov.errors import RenderError
from httpov.worker.sandbox import (
    INCLUDE_DIR,
    PRELOAD_PATH,
    RenderLimits,
    povray_conf,
    povray_ini,
    prepare_sandbox,
)
from tests.conftest import wait_for

GiB = 1024**3


@pytest.fixture
def three(tmp_path: Path) -> tuple[Path, Path, Path]:
    dirs = tmp_path / "scene", tmp_path / "out", tmp_path / "home"
    for d in dirs:
        d.mkdir()
    return dirs


def test_default_limits() -> None:
    limits = RenderLimits()
    assert (limits.memory_bytes, limits.output_bytes, limits.cpu_seconds) == (2 * GiB, 1 * GiB, None)
    with pytest.raises(ValueError):
        RenderLimits(memory_bytes=0)
    with pytest.raises(ValueError):
        RenderLimits(cpu_seconds=0)


def test_conf_forbids_shellouts_and_lists_only_given_dirs() -> None:
    text = povray_conf([INCLUDE_DIR], [Path("/s"), Path("/o")])
    lines = [line.strip() for line in text.splitlines()]
    assert lines[lines.index("[Shellout Security]") + 1] == "forbidden"
    assert lines[lines.index("[File I/O Security]") + 1] == "restricted"
    paths = lines[lines.index("[Permitted Paths]") + 1:]
    assert [p for p in paths if p] == [f'read* = "{INCLUDE_DIR}"', 'read+write* = "/s"', 'read+write* = "/o"']


def test_povini_puts_the_include_library_on_the_path() -> None:
    assert f'Library_Path="{INCLUDE_DIR}"' in povray_ini().splitlines()
    assert "Display=Off" in povray_ini().splitlines()


def test_prepare_writes_confs_and_a_closed_environment(three, monkeypatch: pytest.MonkeyPatch) -> None:
    scene, out, home = three
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "hunter2")
    monkeypatch.setenv("POVINI", "/elsewhere/evil.ini")
    box = prepare_sandbox(scene, out, home)
    assert box.env == {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home.resolve()),
                       "POVINI": str(home.resolve() / "povray.ini")}
    conf = (home / "povray.conf").read_text()
    assert (home / ".povray/3.7/povray.conf").read_text() == conf
    assert f'read+write* = "{scene.parent.resolve()}"' in conf, "the folder of the scene and the output"
    assert (home / "povray.ini").read_text() == povray_ini()
    argv = box.argv(["povray", "job.ini"])
    assert argv[-3:] == ["--", "povray", "job.ini"]
    assert "--die-with-parent" in argv and "--unshare-all" in argv


def test_a_home_kept_from_run_to_run_keeps_its_confs_unless_they_changed(three) -> None:
    """A render slot's home serves all its batches: the next run's output folder (a new name in the same work
    folder) does not rewrite its confs; a conf changed since is written again."""
    scene, out, home = three
    prepare_sandbox(scene, out, home)
    files = [home / "povray.conf", home / "povray.ini", *home.glob(".povray/*/povray.conf")]
    assert len(files) == 4
    before = {f: f.stat() for f in files}
    later = scene.parent / "out-2"
    later.mkdir()
    prepare_sandbox(scene, later, home)
    assert {f: f.stat() for f in files} == before, "not written again"
    (home / ".povray/3.8/povray.conf").write_text("[Shellout Security]\nallowed\n")
    prepare_sandbox(scene, later, home)
    assert (home / ".povray/3.8/povray.conf").read_text() == (home / "povray.conf").read_text()
    assert "forbidden" in (home / ".povray/3.8/povray.conf").read_text()


def test_missing_bwrap_is_a_render_error(three) -> None:
    with pytest.raises(RenderError, match="bubblewrap"):
        prepare_sandbox(*three, bwrap="/nonexistent/bwrap")
    with pytest.raises(RenderError, match="bubblewrap"):
        prepare_sandbox(*three, bwrap="no-such-bwrap-binary")


def test_home_dir_must_stay_apart(three) -> None:
    scene, out, home = three
    (scene / "h").mkdir()
    with pytest.raises(ValueError):
        prepare_sandbox(scene, out, scene / "h")
    with pytest.raises(ValueError):
        prepare_sandbox(scene, out, scene)
    with pytest.raises(ValueError):
        prepare_sandbox("/", out, home)
    with pytest.raises(ValueError):
        prepare_sandbox(scene, out, home / "missing")


def test_the_limits_bind_what_runs_in_the_sandbox_with_no_launcher_process(three) -> None:
    """bwrap holds the sandbox until the limits are set on its first process inside, which the command inherits:
    bwrap is the process Popen starts (no prlimit launcher, no fork of the render process)."""
    limits = RenderLimits(memory_bytes=3 * GiB, output_bytes=5 * 1024**2, cpu_seconds=7)
    box = prepare_sandbox(*three, limits)
    assert box.argv(["sh"])[0].endswith("/bwrap") and "--die-with-parent" in box.argv(["sh"])
    proc = box.start(["sh", "-c", "ulimit -v; ulimit -f; ulimit -t; ulimit -c"], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.split() == [str(3 * GiB // 1024), str(5 * 1024**2 // 512), "7", "0"]
    assert resource.getrlimit(resource.RLIMIT_AS)[0] != 3 * GiB, "the render process keeps its own limits"


def test_nothing_in_the_sandbox_can_change_a_scene_file_linked_from_the_nodes_cache(three, tmp_path: Path) -> None:
    """A batch's scene files are hard links to the node's cached ones (workdir.link_scene): the sandbox binds each
    read-only over itself, so a process inside (an exploited povray: their owner) can neither write nor chmod
    them; the scene's own new files it writes."""
    scene, out, home = three
    cached = tmp_path / "cached.pov"
    cached.write_text("sphere\n")
    mode = cached.stat().st_mode
    os.link(cached, scene / "scene.pov")
    box = prepare_sandbox(scene, out, home)
    script = "chmod u+w scene.pov; echo forged > scene.pov; chmod 666 scene.pov; echo new > made.txt; true"
    proc = box.start(["sh", "-c", script], cwd=scene, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    said, _ = proc.communicate(timeout=30)
    assert cached.read_text() == "sphere\n" and cached.stat().st_mode == mode, said
    assert "Read-only file system" in said, said
    assert (scene / "made.txt").read_text() == "new\n"


@pytest.mark.parametrize("failure, raised", [(PermissionError(1, "Operation not permitted"), RenderError),
                                             (ArithmeticError("an exception raised into the thread"),
                                              ArithmeticError)])
def test_a_sandbox_whose_limits_cannot_be_set_never_runs(three, monkeypatch: pytest.MonkeyPatch, failure, raised):
    """Whatever stops the limits from being set (an error, an exception raised into the render meanwhile), bwrap is
    killed with all it started before start() answers: its command never runs without them."""
    import uuid

    from httpov.worker import sandbox

    scene, out, home = three
    box = prepare_sandbox(scene, out, home)

    def refused(pid: int, limit: int, value: tuple[int, int]) -> None:
        raise failure
    monkeypatch.setattr(sandbox.resource, "prlimit", refused)
    marker = uuid.uuid4().hex
    with pytest.raises(raised):
        box.start(["sh", "-c", f"echo ran > ran.txt; sleep 30 # {marker}"], cwd=scene)
    wait_for(lambda: not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, marker)], 10,
             "bwrap, killed, to be gone")  # (its child inside may take a moment to die)
    assert not (scene / "ran.txt").exists()


def _cmdline_has(proc: Path, marker: str) -> bool:
    try:
        return marker.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def test_explain_exit(three) -> None:
    box = prepare_sandbox(*three)
    assert "output limit" in (box.explain_exit(128 + signal.SIGXFSZ) or "")
    assert box.explain_exit(-signal.SIGXFSZ) == box.explain_exit(128 + signal.SIGXFSZ)
    assert box.explain_exit(0) is None and box.explain_exit(1) is None
    assert "HTTPOV_BATCH_MAX_MEMORY_MB" in (box.explain_exit(128 + signal.SIGABRT) or "")
    assert "2048 MiB" in (box.explain_exit(-signal.SIGSEGV) or "")


def test_progress_stalls_only_when_cpu_and_output_stand_still_for_the_window():
    from httpov.worker.povray import Progress

    watched = Progress(2**22 + 1, 2.0, now=0.0)  # above any pid: a session with no process, no CPU
    assert not watched.stalled(5, 0.5)
    assert not watched.stalled(5, 1.0) and not watched.stalled(5, 1.5) and not watched.stalled(5, 2.0)
    assert watched.stalled(5, 2.5)  # nothing moved since 0.5
    assert not watched.stalled(6, 3.0)  # it wrote: the count starts again
    assert not any(watched.stalled(6, t) for t in (3.5, 4.0, 4.5)) and watched.stalled(6, 5.0)
    assert not watched.stalled(6, 11.0), "a watcher frozen past half a window (and 5 s) starts counting again"
    assert watched.stalled(6, 13.0)
    long = Progress(2**22 + 1, 120.0, now=0.0)  # the default window: a /proc scan every 5 s, not every tick
    assert not long.stalled(5, 0.5) and long.last == 0.0, "no sample half a second in"
    assert not long.stalled(5, 5.0) and long.last == 5.0
    assert not any(long.stalled(5, 5.0 + t / 2) for t in range(1, 229)) and long.stalled(5, 125.0)
    # a session of its own, as povray's launcher has, whose grandchild (as povray under bwrap) does the work
    spinning = subprocess.Popen(["sh", "-c", "sh -c 'while :; do :; done'"], start_new_session=True)
    try:
        busy = Progress(spinning.pid, 2.0, now=0.0)
        assert not busy.stalled(1, 0.5)
        for now in (1.0, 1.5, 2.0, 2.5, 3.0):
            time.sleep(0.05)  # a few clock ticks of the grandchild's CPU between samples
            assert not busy.stalled(1, now), "a busy process is never stalled"
    finally:
        os.killpg(spinning.pid, signal.SIGKILL)
        spinning.wait()


def test_limits_come_from_the_settings_memory_one_setting() -> None:
    from httpov.errors import BadInputError
    from httpov.settings import Settings

    limits = RenderLimits.from_settings(Settings(batch_max_memory_mb=600, batch_max_bytes=5, batch_max_files=6))
    assert (limits.memory_bytes, limits.output_bytes, limits.output_files) == (600 * 1024**2, 5, 6)
    assert RenderLimits.from_settings(Settings()).memory_bytes == 2 * GiB
    assert "(HTTPOV_BATCH_MAX_MEMORY_MB)" in limits.out_of_memory()
    with pytest.raises(BadInputError, match="HTTPOV_BATCH_MAX_MEMORY_MB must be at least 512"):
        Settings.from_env({"HTTPOV_BATCH_MAX_MEMORY_MB": "256", "HOME": "/nonexistent"})


def test_dev_is_read_only_with_device_nodes_only(three) -> None:
    """No tmpfs the scene can write (bwrap's --dev leaves /dev and /dev/shm writable: RAM outside every limit)."""
    argv = prepare_sandbox(*three).argv(["povray"])
    assert "--dev" not in argv
    tmpfs = [argv[i + 1] for i, word in enumerate(argv) if word == "--tmpfs"]
    assert tmpfs == ["/dev"]
    binds = [argv[i + 1] for i, word in enumerate(argv) if word == "--dev-bind"]
    assert binds == ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]
    remount = [argv[i + 1] for i, word in enumerate(argv) if word == "--remount-ro"]
    assert remount == ["/dev", "/"]
    assert argv.index("--remount-ro") > max(i for i, word in enumerate(argv) if word == "--dev-bind")


def test_a_preload_library_is_shown_read_only_and_set_for_povray_alone(three: tuple[Path, Path, Path],
                                                                        tmp_path: Path) -> None:
    library = tmp_path / "a cache: with spaces" / "waits.so"  # the loader splits LD_PRELOAD at spaces and colons
    library.parent.mkdir()
    library.write_bytes(b"")
    argv = prepare_sandbox(*three, preload=library).argv(["povray", "x.pov"])
    at = argv.index("--setenv")
    assert argv[at:at + 3] == ["--setenv", "LD_PRELOAD", PRELOAD_PATH]  # inside the sandbox: not bwrap's own
    assert argv[at - 3:at] == ["--ro-bind", str(library), PRELOAD_PATH]
    assert " " not in PRELOAD_PATH and ":" not in PRELOAD_PATH
    assert at < len(argv) - 1 - argv[::-1].index("--")  # a bwrap option, before the command it runs
    box = prepare_sandbox(*three)
    assert "LD_PRELOAD" not in box.env and "--setenv" not in box.argv(["povray", "x.pov"])


def test_a_program_moved_is_found_where_it_went_within_a_lookup_period(tmp_path: Path, monkeypatch) -> None:
    """Where a render process found a program, and the real paths it resolved, are looked up once every
    LOOKUP_SECONDS, not once a batch: within that they stand, past it a program moved (an upgrade) is found anew."""
    from httpov.worker import sandbox

    now = [1000.0]
    monkeypatch.setattr(sandbox.time, "monotonic", lambda: now[0])
    first, second = tmp_path / "a", tmp_path / "b"
    for folder in (first, second):
        folder.mkdir()
    program = first / "httpov-test-renderer"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    link = tmp_path / "current"
    link.symlink_to(first)
    search = f"{first}:{second}"
    assert sandbox._which(program.name, search) == str(program)
    assert sandbox._realpath(str(link)) == str(first)
    program.rename(second / program.name)
    link.unlink()
    link.symlink_to(second)
    assert sandbox._which(program.name, search) == str(program), "trusted within the period"
    assert sandbox._realpath(str(link)) == str(first)
    now[0] += sandbox.LOOKUP_SECONDS
    assert sandbox._which(program.name, search) == str(second / program.name)
    assert sandbox._realpath(str(link)) == str(second)
