"""Quick waits (httpov.worker.waits) with the real povray, bubblewrap and C compiler: the library is built, checked
against plain povray, loaded into povray inside the sandbox, and refused where it must be."""
from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from httpov.errors import RenderError
from httpov.plan import QUICK_START_SECONDS, Batch, JobSpec
from httpov.settings import Settings
from httpov.worker import povray, waits
from httpov.worker.sandbox import PRELOAD_PATH, RenderLimits
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
# parses for a second or two (a loop of the scene language), so that a running povray can be looked at
SLOW_PARSE = """
#declare I = 0; #while (I < 400000) #declare I = I + 1; #end
camera { location <0, 0, -3> look_at 0 } light_source { <2, 4, -3> rgb 1 } sphere { 0, 1 pigment { rgb 1 } }
"""


@pytest.fixture(autouse=True)
def _decided_afresh() -> None:
    waits._decided.clear()  # a render process decides once; each test plays a new node
    waits._deciding.clear()


def settings_in(tmp_path: Path, **changes: object) -> Settings:
    return Settings(cache_dir=tmp_path / "cache", **changes)  # type: ignore[arg-type]


def verdict(settings: Settings) -> dict:
    [path] = (settings.cache_dir / "waits").glob("verdict-*.json")
    return json.loads(path.read_text())


def test_povray_runs_with_the_library_and_renders_the_same_pixels(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    library = waits.library_for(settings, wait=True)
    assert library is not None and library.is_file() and library.parent == settings.cache_dir / "waits"
    assert verdict(settings) == {"ok": True, "why": ""}
    plain, _ = waits.render_check(settings, frames=3)
    quick, _ = waits.render_check(settings, frames=3, preload=library)
    assert sorted(plain) == sorted(quick) == [1, 2, 3] and plain == quick
    assert len(set(plain.values())) == 3  # the frames differ (the sphere moves): frames compared, not one image

    # povray itself has the library mapped, inside its sandbox, while it renders a batch
    spec = JobSpec(id="q", name="q", scene_key="", root="", pov="slow.pov", options={"Input_File_Name": "slow.pov"},
                   initial=1, final=1, first=1, last=1, width=8, height=8, count=1, batches=["f000001-000001"])
    work = tmp_path / "work"
    (work / "scene").mkdir(parents=True)
    (work / "scene" / "slow.pov").write_text(SLOW_PARSE)
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(povray.render(
        "povray", spec, Batch(1, 1), work, 1, lambda: True, RenderLimits(), preload=library)))
    thread.start()
    maps = ""
    deadline = time.monotonic() + 30
    while thread.is_alive() and time.monotonic() < deadline and PRELOAD_PATH not in maps:
        maps = "".join(_maps(pid) for pid in _povrays_under(str(work)))
        time.sleep(0.02)
    thread.join(60)
    assert PRELOAD_PATH in maps, "povray ran without the library"
    assert isinstance(outcome[0], povray.RenderOutput) and list(outcome[0].images) == [1]


def test_a_render_node_runs_its_batches_with_the_library(tmp_path: Path, settings: Settings, client, workers) -> None:
    """Through a real `celery -A httpov worker`: once the node's verdict is in (here decided beforehand, as a node
    that ran before finds it), povray has the library mapped while it renders a batch, and the job ends done."""
    library = waits.library_for(settings, wait=True)
    assert library is not None
    folder = tmp_path / "slow"
    folder.mkdir()
    (folder / "slow.pov").write_text(SLOW_PARSE)
    (folder / "pov.ini").write_text("Input_File_Name=slow.pov\nWidth=8\nHeight=8\n")
    workers(concurrency=1)
    sub = client.submit(folder)
    maps = ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and PRELOAD_PATH not in maps and client.store.state(sub.spec.id) != "done":
        maps = "".join(_maps(pid) for pid in _povrays_under(str(settings.cache_dir)))
        time.sleep(0.02)
    assert PRELOAD_PATH in maps, "the node's povray ran without the library"
    assert client.wait(sub.spec.id, timeout=60).state == "done"
    assert len(client.fetch(sub.spec.id, tmp_path / "out")) == 1
    # its done record says povray's start was the short one: later jobs of the scene plan from its net frame time
    done = client.store.batches(sub.spec.id)["done"]
    assert [info["start"] for info in done.values()] == [QUICK_START_SECONDS]


@pytest.mark.parametrize("with_library", [False, True])
def test_the_library_shortens_short_polls_and_leaves_timeouts_alone(tmp_path: Path, with_library: bool) -> None:
    """waits.c's own contract, called through libc from a process that preloads it: a condition wait of 50 ms
    (either clock) ends as a timeout within a few milliseconds, a sleep of 200 ms likewise; a wait of 100 ms and a
    sleep of 300 ms (povray's real timeouts) last their whole time. Without it every wait lasts its time."""
    library = waits.library_for(settings_in(tmp_path), wait=True)
    assert library is not None
    env = dict(os.environ, **({"LD_PRELOAD": str(library)} if with_library else {}))
    result = subprocess.run([sys.executable, "-c", _CONTRACT], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    took = json.loads(result.stdout)
    assert took["wait 50 ms monotonic"][0] == took["wait 50 ms realtime"][0] == errno.ETIMEDOUT
    assert took["wait 100 ms monotonic"][0] == errno.ETIMEDOUT
    assert took["wait 100 ms monotonic"][1] >= 0.1 and took["sleep 300 ms"] >= 0.3  # left alone
    short = [took["wait 50 ms monotonic"][1], took["wait 50 ms realtime"][1], took["sleep 200 ms"]]
    if with_library:
        assert max(short) < 0.04, took
    else:
        assert min(short) >= 0.05 and took["sleep 200 ms"] >= 0.2, took


_CONTRACT = """
import ctypes, json, time
libc = ctypes.CDLL(None, use_errno=True)
class Timespec(ctypes.Structure):
    _fields_ = [("sec", ctypes.c_long), ("nsec", ctypes.c_long)]
def sleep(seconds):
    t = Timespec(0, int(seconds * 1e9)); start = time.monotonic()
    libc.nanosleep(ctypes.byref(t), None)
    return time.monotonic() - start
def wait(seconds, clock):
    attr, cond, mutex = (ctypes.create_string_buffer(64) for _ in range(3))
    libc.pthread_condattr_init(attr); libc.pthread_condattr_setclock(attr, clock)
    libc.pthread_cond_init(cond, attr); libc.pthread_mutex_init(mutex, None); libc.pthread_mutex_lock(mutex)
    now = Timespec(); libc.clock_gettime(clock, ctypes.byref(now))
    ns = now.nsec + int(seconds * 1e9)
    deadline = Timespec(now.sec + ns // 10**9, ns % 10**9); start = time.monotonic()
    code = libc.pthread_cond_timedwait(cond, mutex, ctypes.byref(deadline))
    return code, time.monotonic() - start
MONOTONIC, REALTIME = 1, 0
print(json.dumps({"wait 50 ms monotonic": wait(0.05, MONOTONIC), "wait 50 ms realtime": wait(0.05, REALTIME),
                  "wait 100 ms monotonic": wait(0.1, MONOTONIC), "sleep 200 ms": sleep(0.2),
                  "sleep 300 ms": sleep(0.3)}))
"""


def test_a_batch_never_waits_for_the_check_it_runs_in_the_background(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    assert waits.library_for(settings) is None  # no verdict yet: povray as it is, and the check starts
    wait_for(lambda: waits.library_for(settings) is not None, 60, "the background check's verdict")
    assert verdict(settings) == {"ok": True, "why": ""}
    waits._decided.clear()  # another render process of the node reads the verdict at once
    assert waits.library_for(settings) is not None


def test_the_health_check_says_what_the_node_decided_and_writes_nothing(tmp_path: Path) -> None:
    from httpov.worker.health import check_node

    settings = settings_in(tmp_path)
    [povray_check] = [c for c in check_node(settings) if c.name == "povray"]
    assert povray_check.ok and povray_check.detail.endswith("without quick waits: not checked yet (the node checks "
                                                           "them as it starts)"), povray_check.detail
    assert not (settings.cache_dir / "waits").exists()  # the node's folder is the node's
    assert waits.library_for(settings, wait=True) is not None  # the node decides
    [povray_check] = [c for c in check_node(settings) if c.name == "povray"]
    assert povray_check.ok and povray_check.detail.endswith(", with quick waits"), povray_check.detail


def test_a_node_short_of_room_builds_nothing_until_it_has_room(tmp_path: Path) -> None:
    short = settings_in(tmp_path, min_free_mb=2**40)  # a cache folder's disk never has that much free
    assert waits.library_for(short) is None
    assert not (short.cache_dir / "waits").exists() and not waits._deciding  # nothing written, no check started
    roomy = short.with_(min_free_mb=1)
    assert waits.library_for(roomy) is None  # room again: the check starts
    wait_for(lambda: waits.library_for(roomy) is not None, 60, "the check once there is room")


def test_a_node_decides_once_and_keeps_its_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_in(tmp_path)
    first = waits.library_for(settings, wait=True)
    assert first is not None
    checks: list[object] = []
    monkeypatch.setattr(waits, "_check", lambda *a: checks.append(a))  # a second check would show here
    waits._decided.clear()  # another render process of the same node, or the node started again
    assert waits.library_for(settings, wait=True) == first and checks == []


def test_without_a_compiler_povray_runs_as_it_is_and_the_node_says_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    empty = tmp_path / "no-compiler"
    empty.mkdir()
    monkeypatch.setattr(waits, "COMPILER_PATH", str(empty))
    settings = settings_in(tmp_path)
    with caplog.at_level(logging.WARNING, logger="httpov.worker.waits"):
        assert waits.library_for(settings, wait=True) is None
    assert "no C compiler" in verdict(settings)["why"]
    assert "povray runs without quick waits" in caplog.text and "install the Debian package gcc" in caplog.text
    pixels, _ = waits.render_check(settings)  # and it renders
    assert list(pixels) == [1]


def test_a_node_without_quick_waits_says_why_in_httpov_nodes_and_on_its_page(
        tmp_path: Path, settings: Settings, client, workers, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real node whose check found no compiler (decided here, in its cache folder, as its own first start would)
    says so in its heartbeat: `httpov nodes` and the nodes page name the reason; a node with them says nothing."""
    from click.testing import CliRunner

    from httpov.cli import cli
    from httpov.local_farm import worker_env
    from tests.webapp import page

    empty = tmp_path / "no-compiler"
    empty.mkdir()
    with monkeypatch.context() as m:
        m.setattr(waits, "COMPILER_PATH", str(empty))
        assert waits.library_for(settings.with_(cache_dir=tmp_path / "bare"), wait=True) is None
    assert waits.library_for(settings, wait=True) is not None
    workers(concurrency=1, name="bare", settings_=settings.with_(cache_dir=tmp_path / "bare"))
    workers(concurrency=1, name="quick")

    def nodes() -> dict[str, dict]:
        result = CliRunner().invoke(cli, ["nodes", "--json"], env=worker_env(settings))
        return {n["node"].split("@")[0]: n for n in json.loads(result.output)}
    wait_for(lambda: {"bare", "quick"} <= set(nodes()), 30, "both nodes' heartbeats")
    found = nodes()
    assert "no C compiler" in found["bare"]["waits_off"] and found["quick"]["waits_off"] is None
    text = CliRunner().invoke(cli, ["nodes"], env=worker_env(settings)).output
    assert "node bare@" in text and "povray runs without quick waits: FileNotFoundError: no C compiler" in text
    assert not any(line.startswith("node quick@") for line in text.splitlines())  # nothing to say of it
    status, html = page(client, "/nodes")
    assert status == 200
    row = html[html.index('<tr class="why" data-node="bare@'):]
    assert row.index("povray runs without quick waits: ") < row.index("no C compiler") < row.index("</tr>")
    assert '<tr class="why" data-node="quick@' not in html


def test_a_povray_that_fails_its_check_with_the_library_is_refused(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    folder = settings.cache_dir / "waits"
    folder.mkdir(parents=True)
    # a library of the same version that kills povray as it loads: the check must catch it
    source = tmp_path / "bad.c"
    source.write_text("#include <stdlib.h>\n__attribute__((constructor)) static void f(void) { abort(); }\n")
    bad = folder / f"waits-{waits._digest()}.so"
    assert os.system(f"cc -shared -fPIC -o {bad} {source}") == 0
    assert waits.library_for(settings, wait=True) is None
    why = verdict(settings)["why"]
    assert "povray failed the self-test with" in why and "crashed" in why
    waits._decided.clear()
    assert waits.library_for(settings, wait=True) is None  # the verdict is kept: not tested again at each start


def test_a_crash_with_the_library_leaves_the_nodes_verdict_as_it_was(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    library = waits.library_for(settings, wait=True)
    assert library is not None
    waits.refuse(library, "povray crashed (segmentation fault)", 200)  # the slot's own (test_render_node.py)
    assert waits.library_for(settings, wait=True) == library, "the node's other slots keep it"
    waits._decided.clear()  # a new process of the node: the check's verdict stands (a crash may be the scene's)
    assert waits.library_for(settings, wait=True) == library


@pytest.mark.parametrize("case", ["off", "script"])
def test_no_library_when_turned_off_or_for_a_stand_in_renderer(tmp_path: Path, case: str) -> None:
    settings = settings_in(tmp_path, quick_waits=False) if case == "off" else settings_in(
        tmp_path, povray=str(ROOT / "scripts" / "povray-stub.sh"))
    assert waits.library_for(settings, wait=True) is None
    assert not (settings.cache_dir / "waits").exists()  # nothing built, nothing tested


def test_a_render_error_names_the_scene_not_the_library(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    library = waits.library_for(settings, wait=True)
    spec = JobSpec(id="e", name="e", scene_key="", root="", pov="bad.pov", options={"Input_File_Name": "bad.pov"},
                   initial=1, final=1, first=1, last=1, width=8, height=8, count=1, batches=["f000001-000001"])
    (tmp_path / "w" / "scene").mkdir(parents=True)
    (tmp_path / "w" / "scene" / "bad.pov").write_text("sphere { 0, 1 pigment { rgb 1 }\n")  # unclosed brace
    with pytest.raises(RenderError) as caught:
        povray.render("povray", spec, Batch(1, 1), tmp_path / "w", 1, lambda: True, RenderLimits(), preload=library)
    assert "crashed" not in str(caught.value) and any("bad.pov" in line for line in caught.value.lines)


def _povrays_under(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline and os.path.basename(cmdline[0]) == b"povray" and any(marker.encode() in a for a in cmdline):
                found.append(int(entry))
    return found


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""
