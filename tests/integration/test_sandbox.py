"""Real povray inside httpov's sandbox: hostile scenes fail visibly and do no harm; normal scenes render."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from PIL import Image

from httpov.errors import RenderError
from httpov.plan import Batch, JobSpec
from httpov.settings import Settings
from httpov.worker import povray
from httpov.worker.sandbox import SHELLOUT_OPTIONS, RenderLimits, Sandbox, prepare_sandbox
from tests.conftest import wait_for

pytestmark = pytest.mark.timeout(120)

MiB = 1024**2
HEADER = '#version 3.7;\nglobal_settings { assumed_gamma 1.0 }\ncamera { location <0,0,-3> look_at 0 }\n'


@dataclass
class Dirs:
    root: Path
    scene: Path
    out: Path
    home: Path
    outside: Path


@pytest.fixture
def dirs(tmp_path: Path) -> Dirs:
    made = Dirs(tmp_path, tmp_path / "scene", tmp_path / "out", tmp_path / "home", tmp_path / "outside")
    for d in (made.scene, made.out, made.home, made.outside):
        d.mkdir()
    return made


def write_scene(dirs: Dirs, body: str, name: str = "scene.pov") -> str:
    (dirs.scene / name).write_text(HEADER + textwrap.dedent(body))
    return name


def run(box: Sandbox, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Start povray exactly as the render code does."""
    proc = box.start(["povray", *args], cwd=box.scene_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out)


def render(box: Sandbox, scene: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(box, ["-D", "+W16", "+H16", scene, f"+O{box.out_dir}/image.png", *extra])


def pixel(path: Path) -> tuple[int, ...]:
    with Image.open(path) as im:
        return im.convert("RGB").getpixel((8, 8))


# --- what must keep working ---------------------------------------------------------------------

def test_normal_scene_with_colors_inc_and_its_own_files_renders(dirs: Dirs) -> None:
    scene = write_scene(dirs, """
        #include "colors.inc"
        #fopen W "data.txt" write
        #write (W, "1,\\n")
        #fclose W
        #fopen R "data.txt" read
        #read (R, V)
        #fclose R
        background { color rgb <V, 0, 0> + Blue }
    """)
    box = prepare_sandbox(dirs.scene, dirs.out, dirs.home, RenderLimits())
    proc = render(box, scene)
    assert proc.returncode == 0, proc.stdout
    assert (dirs.scene / "data.txt").read_text() == "1,\n"
    assert pixel(dirs.out / "image.png") == (255, 0, 255)


def test_ini_in_home_dir_drives_an_animation_subset(dirs: Dirs) -> None:
    scene = write_scene(dirs, "background { color rgb <clock, 1 - clock, 0> }\n")
    ini = dirs.home / "job.ini"
    box = prepare_sandbox(dirs.scene, dirs.out, dirs.home)
    ini.write_text(f"Input_File_Name={scene}\nWidth=16\nHeight=16\nInitial_Frame=1\nFinal_Frame=3\n"
                   "Initial_Clock=0\nFinal_Clock=1\n")
    proc = run(box, [str(ini), "-D", "+SF1", "+EF3", f"+O{dirs.out}/frame"])
    assert proc.returncode == 0, proc.stdout
    assert pixel(dirs.out / "frame1.png") == (0, 255, 0)
    assert pixel(dirs.out / "frame3.png") == (255, 0, 0)


# --- file I/O outside the scene dir --------------------------------------------------------------

def test_control_povray_conf_alone_does_not_confine_file_io(dirs: Dirs) -> None:
    """Why the bwrap layer exists: POV-Ray 3.7.0.10 ignores [File I/O Security] (a parser bug), so the
    same hostile scene run with httpov's povray.conf but without bwrap writes outside its dir."""
    marker = dirs.outside / "written-by-scene"
    scene = write_scene(dirs, f'#fopen F "{marker}" write\n#write (F, "x\\n")\n#fclose F\n'
                              'background { color rgb 1 }\n')
    box = prepare_sandbox(dirs.scene, dirs.out, dirs.home)
    proc = subprocess.run(["povray", "-D", "+W16", "+H16", scene, f"+O{dirs.out}/image.png"],
                          cwd=dirs.scene, env=box.env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    assert marker.exists(), "povray.conf confined I/O by itself: this povray differs from 3.7.0.10"


@pytest.mark.parametrize("where", ["tmp", "real_home", "outside_sibling", "home_dir_conf"])
def test_writing_outside_fails_visibly_and_writes_nothing(dirs: Dirs, where: str) -> None:
    tag = f"httpov-sandbox-marker-{uuid.uuid4().hex}"
    target = {
        "tmp": Path("/tmp") / tag,
        "real_home": Path(os.path.expanduser("~")) / tag,
        "outside_sibling": dirs.outside / tag,
        "home_dir_conf": dirs.home / "povray.conf",
    }[where]
    scene = write_scene(dirs, f'#fopen F "{target}" write\n#write (F, "{tag}\\n")\n#fclose F\n'
                              'background { color rgb 1 }\n')
    box = prepare_sandbox(dirs.scene, dirs.out, dirs.home)
    before = target.read_text() if target.exists() else None
    try:
        proc = render(box, scene)
        assert proc.returncode != 0, proc.stdout
        assert "Cannot open user file" in proc.stdout
        assert not (dirs.out / "image.png").exists()
        if before is None:
            assert not target.exists()
        else:
            assert target.read_text() == before and tag not in before
    finally:
        if before is None and target.exists():
            target.unlink()


@pytest.mark.parametrize("how", ["absolute", "relative_dotdot", "node_file", "proc_environ"])
def test_reading_a_file_outside_fails_visibly(dirs: Dirs, how: str) -> None:
    secret = dirs.outside / "secret.txt"
    secret.write_text("1,\n")
    path = {
        "absolute": str(secret),
        "relative_dotdot": "../outside/secret.txt",
        "node_file": "/etc/hostname",
        "proc_environ": "/proc/self/environ",
    }[how]
    scene = write_scene(dirs, f'#fopen F "{path}" read\n#read (F, V)\n#fclose F\n'
                              'background { color rgb <V, 0, 0> }\n')
    box = prepare_sandbox(dirs.scene, dirs.out, dirs.home)
    proc = render(box, scene)
    assert proc.returncode != 0, proc.stdout
    assert "Cannot open user file" in proc.stdout
    assert not (dirs.out / "image.png").exists()


def test_include_of_absolute_path_outside_fails(dirs: Dirs) -> None:
    evil = dirs.outside / "evil.inc"
    evil.write_text("#declare Secret = 1;\n")
    scene = write_scene(dirs, f'#include "{evil}"\nbackground {{ color rgb <Secret, 0, 0> }}\n')
    box = prepare_sandbox(dirs.scene, dirs.out, dirs.home)
    proc = render(box, scene)
    assert proc.returncode != 0, proc.stdout
    assert "Cannot open include file" in proc.stdout
    assert not (dirs.out / "image.png").exists()


@pytest.mark.parametrize("path", ["/usr/lib/os-release", "/usr/share/doc/povray/copyright", "/usr/bin/env"])
def test_the_sandbox_shows_only_what_povray_needs_of_usr(dirs: Dirs, path: str) -> None:
    """Including a host file leaks its first word through the parse error: such files must not be there."""
    assert Path(path).exists()
    scene = write_scene(dirs, f'#include "{path}"\nbackground {{ color rgb 1 }}\n')
    box = prepare_sandbox(dirs.scene, dirs.out, dirs.home)
    proc = render(box, scene)
    assert proc.returncode != 0, proc.stdout
    assert "Cannot open include file" in proc.stdout
    first_word = Path(path).read_bytes()[:12].decode("latin-1").split("=")[0].split()[0]
    assert first_word not in proc.stdout


# --- shell-outs -------------------------------------------------------------------------------

def shellout_ini(dirs: Dirs) -> tuple[str, list[Path]]:
    """ini lines setting every shell-out option to create its own marker in the (writable) scene dir."""
    markers = [dirs.scene / f"ran-{name}" for name in SHELLOUT_OPTIONS]
    lines = [f"{name}=touch {marker}" for name, marker in zip(SHELLOUT_OPTIONS, markers)]
    return "\n".join(lines) + "\n", markers


def test_control_shellout_ini_runs_when_shellouts_are_allowed(dirs: Dirs) -> None:
    """The hostile ini below really runs its commands if povray.conf allows it: the tests can see harm."""
    scene = write_scene(dirs, "background { color rgb 1 }\n")
    text, markers = shellout_ini(dirs)
    ini = dirs.home / "job.ini"
    ini.write_text(text)
    box = prepare_sandbox(dirs.scene, dirs.out, dirs.home)
    # the sandbox has no shell at all: show it the host's programs so that only povray.conf decides
    box = replace(box, wrapper=(*box.wrapper, "--ro-bind", "/usr/bin", "/usr/bin"))
    allowed = box.conf_path.read_text().replace("forbidden", "allowed")
    for conf in [box.conf_path, *dirs.home.glob(".povray/*/povray.conf")]:
        conf.write_text(allowed)
    proc = run(box, [str(ini), "-D", "+W16", "+H16", scene, f"+O{dirs.out}/image.png"])
    assert proc.returncode == 0, proc.stdout
    assert (dirs.scene / "ran-Pre_Scene_Command").exists()
    assert (dirs.scene / "ran-Post_Scene_Command").exists()


@pytest.mark.parametrize("source", ["passed_ini", "scene_povray_ini", "parent_POVINI"])
def test_shellout_commands_never_run(dirs: Dirs, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = write_scene(dirs, "background { color rgb 1 }\n")
    text, markers = shellout_ini(dirs)
    args = ["-D", "+W16", "+H16", scene, f"+O{dirs.out}/image.png"]
    if source == "passed_ini":
        ini = dirs.home / "job.ini"
        ini.write_text(text)
        args.insert(0, str(ini))
    elif source == "scene_povray_ini":
        (dirs.scene / "povray.ini").write_text(text)
    else:
        evil = dirs.scene / "evil.ini"  # inside the sandbox's view, so only the env can keep it out
        evil.write_text(text)
        monkeypatch.setenv("POVINI", str(evil))
    box = prepare_sandbox(dirs.scene, dirs.out, dirs.home)
    assert box.env["POVINI"] == str(box.povini_path)
    proc = run(box, args)
    assert proc.returncode == 0, proc.stdout
    assert pixel(dirs.out / "image.png") == (255, 255, 255)
    assert [m.name for m in markers if m.exists()] == []
    if source == "passed_ini":
        assert "Execution of shellout 'touch' prohibited" in proc.stdout


# --- resource limits --------------------------------------------------------------------------

def test_memory_limit_fails_the_scene_not_the_node(dirs: Dirs) -> None:
    limits = RenderLimits(memory_bytes=768 * MiB)
    box = prepare_sandbox(dirs.scene, dirs.out, dirs.home, limits)
    ok = write_scene(dirs, "background { color rgb <0, 1, 0> }\n", "ok.pov")
    assert render(box, ok).returncode == 0  # povray itself fits in the limit
    assert pixel(dirs.out / "image.png") == (0, 255, 0)
    (dirs.out / "image.png").unlink()
    greedy = write_scene(dirs, "#declare A = array[200000000];\nbackground { color rgb 1 }\n", "greedy.pov")
    proc = render(box, greedy)  # within run()'s deadline: refused at once, never swapping its way through
    assert proc.returncode != 0, proc.stdout
    assert 0 < proc.returncode < 128, "povray failed the scene itself: no signal, no kill by the kernel"
    assert "bad_alloc" in proc.stdout
    assert not (dirs.out / "image.png").exists()


#: Three files of 512 KiB by #write (64-byte lines): each under the 1 MiB per-file limit (RLIMIT_FSIZE) the tests
#: below set, together past the batch's 1 MiB (the attack of issue 25: 3 x 900 MiB under the 1 GiB default).
THREE_FILES = """
    #for (N, 1, 3)
      #fopen F concat("{target}", str(N, 0, 0)) write
      #for (I, 1, 8192) #write (F, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\\n") #end
      #fclose F
    #end
    background {{ color rgb 1 }}
"""


def render_batch(dirs: Dirs, scene: str, limits: RenderLimits) -> povray.RenderOutput:
    """One still batch of a 16x16 job through the node's own povray.render (its log read, its limits named)."""
    spec = JobSpec(id="j", name="still", scene_key="scenes/" + "0" * 64 + ".zip", root="", pov=scene,
                   options={"Input_File_Name": scene}, initial=1, final=1, first=1, last=1, width=16, height=16,
                   count=1)
    return povray.render("povray", spec, Batch(1, 1), dirs.root, 1, lambda: True, limits, time_limit=30)


@pytest.mark.parametrize("target", ["/dev/shm/held", "/dev/held"])
def test_a_scene_cannot_write_into_dev(dirs: Dirs, target: str) -> None:
    """bwrap's --dev /dev is a tmpfs with /dev/shm in it: RAM outside RLIMIT_AS and outside the batch's byte count
    (HTTPOV_BATCH_MAX_BYTES, 1 MiB here), held until the sandbox ends. The sandbox's /dev is read-only with a few
    device nodes: the scene is refused at its first #fopen, so not one byte lands in RAM, and the batch fails
    naming the file."""
    scene = write_scene(dirs, THREE_FILES.format(target=target))
    limits = RenderLimits.from_settings(Settings(batch_max_bytes=MiB))
    with pytest.raises(RenderError) as caught:
        render_batch(dirs, scene, limits)
    assert f"Cannot open user file {target}1" in str(caught.value), caught.value
    assert not caught.value.transient


def test_an_ordinary_scene_renders_and_a_greedy_one_meets_the_memory_setting(dirs: Dirs) -> None:
    """HTTPOV_BATCH_MAX_MEMORY_MB is povray's address space (the sandbox holds no writable tmpfs to count beside
    it): at its least, 512 MiB, a plain scene renders; one that builds a 256 MiB string fails naming the setting."""
    limits = RenderLimits.from_settings(Settings(batch_max_memory_mb=512))
    assert limits.memory_bytes == 512 * MiB
    ok = write_scene(dirs, "background { color rgb <0, 1, 0> }\n#fopen F \"/dev/null\" write #fclose F\n", "ok.pov")
    output = render_batch(dirs, ok, limits)
    assert pixel(output.images[1]) == (0, 255, 0)
    greedy = write_scene(dirs, '#declare S = "0123456789abcdef";\n'
                               '#for (I, 1, 24) #declare S = concat(S, S); #end\n'
                               'background { color rgb 1 }\n', "greedy.pov")
    with pytest.raises(RenderError) as caught:
        render_batch(dirs, greedy, limits)
    assert str(caught.value) == "povray ran out of memory: a batch may use 512 MiB (HTTPOV_BATCH_MAX_MEMORY_MB)"
    assert not caught.value.transient, "a limit of the batch is final"
    assert any("bad_alloc" in line for line in caught.value.lines), caught.value.lines


def test_a_kept_output_folder_holds_only_the_runs_own_output(dirs: Dirs) -> None:
    """A render slot's output folder is kept from run to run (httpov.worker.workdir): what an earlier run left there
    (a pre-pass's probe) is gone before povray starts, so it is neither taken for the batch's frames nor counted in
    its bytes (HTTPOV_BATCH_MAX_BYTES, 64 KiB here, less than what was left)."""
    (dirs.out / "left.png").write_bytes(b"x" * 100_000)
    (dirs.out / "sub").mkdir()
    (dirs.out / "sub" / "deep.txt").write_text("left")
    scene = write_scene(dirs, "background { color rgb <0, 0, 1> }\n")
    spec = JobSpec(id="j", name="still", scene_key="scenes/" + "0" * 64 + ".zip", root="", pov=scene,
                   options={"Input_File_Name": scene}, initial=1, final=1, first=1, last=1, width=16, height=16,
                   count=1)
    limits = RenderLimits.from_settings(Settings(batch_max_bytes=64 * 1024))
    output = povray.render("povray", spec, Batch(1, 1), dirs.root, 1, lambda: True, limits, time_limit=30,
                           out=dirs.out)
    assert output.images[1].parent == dirs.out and pixel(output.images[1]) == (0, 0, 255)
    assert sorted(p.name for p in dirs.out.iterdir()) == [output.images[1].name]


def test_output_size_limit_stops_a_runaway_writer(dirs: Dirs) -> None:
    limit = 64 * 1024
    box = prepare_sandbox(dirs.scene, dirs.out, dirs.home, RenderLimits(output_bytes=limit))
    scene = write_scene(dirs, """
        #fopen F "big.txt" write
        #declare I = 0;
        #while (I < 100000)
          #write (F, "0123456789012345678901234567890123456789\\n")
          #declare I = I + 1;
        #end
        #fclose F
        background { color rgb 1 }
    """)
    proc = render(box, scene)
    assert proc.returncode == 128 + signal.SIGXFSZ, proc.stdout
    assert (dirs.scene / "big.txt").stat().st_size == limit
    assert not (dirs.out / "image.png").exists()
    assert "output limit" in (box.explain_exit(proc.returncode) or "")


def test_output_size_limit_also_binds_the_image(dirs: Dirs) -> None:
    box = prepare_sandbox(dirs.scene, dirs.out, dirs.home, RenderLimits(output_bytes=2000))
    scene = write_scene(dirs, "background { color rgb 0 }\n"
                              "plane { z, 1 pigment { granite scale 0.01 } finish { ambient 1 } }\n")
    proc = run(box, ["-D", "+W64", "+H64", scene, f"+O{dirs.out}/image.png"])
    assert proc.returncode == 128 + signal.SIGXFSZ, proc.stdout
    written = list(dirs.out.iterdir())  # povray dies on its .pov-state file or on the PNG
    assert written and all(f.stat().st_size <= 2000 for f in written)


def test_cpu_limit_kills_an_endless_parse(dirs: Dirs) -> None:
    box = prepare_sandbox(dirs.scene, dirs.out, dirs.home, RenderLimits(cpu_seconds=1))
    scene = write_scene(dirs, "#while (true) #end\n")
    proc = render(box, scene)
    assert proc.returncode == 128 + signal.SIGXCPU, proc.stdout
    assert box.explain_exit(proc.returncode) is not None


# --- povray dies with its worker ------------------------------------------------------------------

WORKER = """
import signal, subprocess, sys
from httpov.worker.sandbox import prepare_sandbox
scene, out, home, name = sys.argv[1:5]
box = prepare_sandbox(scene, out, home)
box.start(["povray", "-D", "+W16", "+H16", name, "+O" + out + "/image.png"], cwd=box.scene_dir,
          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("started", flush=True)
signal.pause()  # a worker busy with its batch, until it is killed
"""


def processes_naming(text: str, but: int, povray_only: bool = False) -> list[int]:
    """Pids whose command line holds `text` (bwrap and povray), or only povray's own."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != but:
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline and (not povray_only or cmdline.startswith(b"povray\0")):
                found.append(int(entry.name))
    return found


def test_povray_dies_when_the_worker_is_killed(dirs: Dirs) -> None:
    name = f"endless-{uuid.uuid4().hex}.pov"
    write_scene(dirs, "#while (true) #end\n", name)
    repo = Path(__file__).resolve().parents[2]
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(dirs.scene), str(dirs.out), str(dirs.home),
                               name], cwd=repo, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "started"
        wait_for(lambda: processes_naming(name, worker.pid, povray_only=True), 10, "povray to start")
        worker.kill()
        worker.wait()
        wait_for(lambda: processes_naming(name, worker.pid) == [], 10, "bwrap and povray to die with the worker")
    finally:
        worker.kill()
        worker.wait()
        for pid in processes_naming(name, worker.pid):
            os.kill(pid, signal.SIGKILL)


def test_killing_the_process_group_kills_povray(dirs: Dirs) -> None:
    """The render code cancels a batch with os.killpg: that must reach povray inside bwrap's namespaces."""
    name = f"endless-{uuid.uuid4().hex}.pov"
    write_scene(dirs, "#while (true) #end\n", name)
    box = prepare_sandbox(dirs.scene, dirs.out, dirs.home)
    proc = box.start(["povray", "-D", "+W16", "+H16", name, f"+O{dirs.out}/image.png"], cwd=box.scene_dir,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: processes_naming(name, 0, povray_only=True), 10, "povray to start")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        wait_for(lambda: processes_naming(name, 0) == [], 10, "bwrap and povray to die with their group")
    finally:
        proc.kill()
        proc.wait()
        for pid in processes_naming(name, 0):
            os.kill(pid, signal.SIGKILL)
