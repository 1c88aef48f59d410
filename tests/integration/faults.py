"""Helpers shared by the fault-tolerance and job-control tests: a slow scene, povray process lookup, waits."""
from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

from httpov.local_farm import redis_answers
from tests.conftest import wait_for, write_scene

# ~1-1.5 s a frame at 64x48 on one core (focal blur, reflections, forty spheres): slow enough to kill mid-render.
SLOW_SCENE = """
#version 3.7;
#include "colors.inc"
global_settings { max_trace_level 10 }
camera { location <0, 2, -6> look_at <0, 0, 0> aperture 0.4 blur_samples 40 focal_point <0, 0, 0> }
light_source { <-3, 6, -4> color White }
plane { y, -1 pigment { checker color Red color White } finish { reflection 0.3 } }
#declare I = 0;
#while (I < 40)
  sphere { <3 * cos(I + 2 * pi * clock), 0.4 * sin(I * 1.7), 3 * sin(I) + 2>, 0.35
           pigment { color rgb <0.2, 0.4, 1> } finish { reflection 0.4 } }
  #declare I = I + 1;
#end
"""


def slow_scene(folder: Path, frames: int) -> Path:
    ini = f"Width=64\nHeight=48\nAntialias=on\nAntialias_Threshold=0.05\nInitial_Frame=1\nFinal_Frame={frames}\n"
    return write_scene(folder, SLOW_SCENE, ini)


def povray_pids(marker: str) -> list[int]:
    """povray (and its bwrap) processes whose command line mentions `marker` (a test's own folder)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if "povray" in cmdline and marker in cmdline and state != "Z":
            found.append(int(entry))
    return found


def frames_in_results(storage_root: Path, job_id: str) -> list[str]:
    """Every PNG name in every stored batch zip of the job (a frame twice would show up twice)."""
    names = []
    for archive in sorted((storage_root / "jobs" / job_id / "batches").glob("*.zip")):
        with zipfile.ZipFile(archive) as zf:
            names += [n for n in zf.namelist() if n.endswith(".png")]
    return sorted(names)


def crash_script(path: Path, when: str = "*") -> Path:
    """A stand-in povray that crashes (exit 139) when its arguments match the shell pattern `when`, else runs
    the real povray: a broken render node, or one broken frame."""
    path.write_text("#!/bin/sh\n"
                    f'case "$*" in {when}) echo "simulated crash: node fault on $*"; exit 139;; esac\n'
                    'exec /usr/bin/povray "$@"\n')
    path.chmod(0o755)
    return path


def redis_server(folder: Path, port: int, persist: bool) -> subprocess.Popen:
    """A private redis-server on `port` with its files in `folder`: with `persist` it keeps an append-only file
    (a restart brings the data back), without it a restart comes back empty."""
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                             "--appendonly", "yes" if persist else "no", "--save", ""], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: redis_answers(f"redis://127.0.0.1:{port}/0"), 20, "redis-server to start")
    return proc


def running_on(client, job_id: str) -> dict[str, str]:
    """The job's running batches and the node each runs on."""
    return {b: info["node"] for b, info in client.store.running(job_id).items()}
