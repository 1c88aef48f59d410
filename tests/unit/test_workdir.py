"""A render slot's work folder (httpov.worker.workdir): its home stays from batch to batch, each batch's folder goes
with all it holds, and the slot folders of render processes that are gone are removed."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from httpov.worker.workdir import WorkFolder


def _contents(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_slot_keeps_its_home_and_its_batch_folders_and_empties_them(tmp_path: Path):
    """A batch gets the slot's batch folder holding an empty scene folder and an empty output folder, and nothing
    else; what the batch put there goes when it ends, the folders themselves stay for the next batch (a new folder
    costs the filesystem more than a small batch's files)."""
    work = WorkFolder(tmp_path / "work")
    home = work.home
    (home / "povray.conf").parent.mkdir(parents=True, exist_ok=True)
    (home / "povray.conf").write_text("kept")
    kept = []
    for _ in range(2):
        with work.batch() as folder:
            out = work.out
            assert out.parent == folder and out.name.startswith("out-") and len(out.name) > 12
            assert _contents(folder) == sorted(["scene", out.name]), "nothing but the two, empty"
            (folder / "scene" / "scene.pov").write_text("x")
            (folder / "scene" / "inc").mkdir()
            (folder / "scene" / "inc" / "a.inc").write_text("x")
            (out / "frame.png").write_text("x")
            (folder / "render.log").write_text("x")
            (folder / "radiosity").mkdir()
            kept.append((folder, out, (folder / "scene").stat().st_ino, out.stat().st_ino))
        assert _contents(folder) == sorted(["scene", out.name]), "emptied"
    assert kept[0] == kept[1] and kept[0][0].parent == home.parent, "the same folders: none made again"
    assert (home / "povray.conf").read_text() == "kept" and work.home == home


def test_a_failed_batchs_files_go_and_a_scene_cannot_keep_its_folders_from_the_next(tmp_path: Path):
    """A batch that fails leaves nothing either; folders whose permissions a process in the sandbox took away are the
    slot's to write again, and a symbolic link planted there is removed, not followed."""
    work = WorkFolder(tmp_path / "work")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("x")
    with pytest.raises(RuntimeError), work.batch() as folder:
        (folder / "render.log").write_text("x")
        (folder / "scene" / "link").symlink_to(outside, target_is_directory=True)
        (folder / "scene").chmod(0o500)
        work.out.chmod(0)
        raise RuntimeError("povray failed")
    assert _contents(folder) == sorted(["scene", work.out.name])
    assert (folder / "scene").stat().st_mode & 0o777 == 0o700 and work.out.stat().st_mode & 0o777 == 0o700
    assert (outside / "precious").exists()
    with work.batch() as again:
        assert again == folder and _contents(again) == sorted(["scene", work.out.name])


def test_the_folders_of_slots_whose_process_is_gone_are_removed(tmp_path: Path):
    """A slot folder is in use while a process holds its lock, whatever that process's pid or pid namespace: the
    folders of processes gone are removed as a slot starts, and those a process was making once a minute old."""
    root = tmp_path / "work"
    other = WorkFolder(root)
    live = other.home.parent  # another slot's, in use
    gone, unfinished, making = root / "slot-1-gone", root / ".making-2-unfinished", root / ".making-3-now"
    for folder in (gone, unfinished, making, root / "other"):
        (folder / "batch").mkdir(parents=True)
    (gone / ".lock").touch()  # its process ended: no lock held (however recent its folder)
    os.utime(unfinished, (time.time() - 120, time.time() - 120))
    mine = WorkFolder(root).home.parent  # a slot's first use makes its folder
    assert not gone.exists() and not unfinished.exists()
    assert live.exists() and making.exists() and (root / "other").exists() and mine.exists()
    assert mine.name.startswith(f"slot-{os.getpid()}-") and not any(root.glob(f".making-{os.getpid()}-*"))
    held = subprocess.run([sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
                           "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)", str(mine / ".lock")])
    assert held.returncode != 0, "its lock is held while its process lives"


def test_a_batch_folder_that_cannot_be_emptied_is_set_aside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A batch folder that could be neither emptied nor removed (what a scene's process made unremovable) does not
    stop the slot: the next batch gets a new one, the old one set aside in the slot folder (removed with it)."""
    from httpov.worker import workdir

    work = WorkFolder(tmp_path / "work")
    monkeypatch.setattr(workdir.shutil, "rmtree", lambda *args, **kwargs: None)  # nothing can be removed
    monkeypatch.setattr(workdir.os, "unlink", lambda *args, **kwargs: (_ for _ in ()).throw(PermissionError(1, "no")))
    with work.batch() as folder:
        (folder / "left.txt").write_text("x")
        first_out = work.out
    assert (folder / "left.txt").exists()
    with work.batch() as again:
        assert again == folder and _contents(again) == sorted(["scene", work.out.name])
        assert work.out != first_out, "a new folder, a new name"
    stale = [p for p in folder.parent.iterdir() if p.name.startswith("stale-")]
    assert len(stale) == 1 and "left.txt" in _contents(stale[0])


def test_a_batchs_scene_links_the_cached_files_in_folders_of_its_own(tmp_path: Path):
    """No scene file is copied for a batch: its work folder links the node's cached ones; its folders are its own,
    so the batch writes new files there and the cache keeps none of them."""
    from httpov.worker.workdir import link_scene

    cached = tmp_path / "cache" / "scene"
    (cached / "maps").mkdir(parents=True)
    (cached / "scene.pov").write_text("sphere")
    (cached / "maps" / "wood.png").write_bytes(b"png")
    link_scene(cached, tmp_path / "batch")
    for name in ("scene.pov", "maps/wood.png"):
        mine, theirs = (tmp_path / "batch" / name).stat(), (cached / name).stat()
        assert (mine.st_ino, mine.st_dev) == (theirs.st_ino, theirs.st_dev), f"{name} is the cached file"
    (tmp_path / "batch" / "maps" / "new.txt").write_text("written by the scene")
    assert sorted(p.name for p in (cached / "maps").iterdir()) == ["wood.png"]
    assert (tmp_path / "batch" / "maps").stat().st_ino != (cached / "maps").stat().st_ino


def test_a_scene_of_many_files_is_copied_not_linked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Each linked file is a bind of the sandbox (bwrap takes at most 9000 arguments): past LINKED_FILES the scene
    is copied, as every scene was before."""
    from httpov.worker import workdir

    cached = tmp_path / "cache" / "scene"
    cached.mkdir(parents=True)
    for n in range(5):
        (cached / f"tex{n}.png").write_bytes(b"png")
    monkeypatch.setattr(workdir, "LINKED_FILES", 4)
    workdir.link_scene(cached, tmp_path / "batch")
    assert sorted(p.name for p in (tmp_path / "batch").iterdir()) == [f"tex{n}.png" for n in range(5)]
    assert all(p.stat().st_nlink == 1 for p in cached.iterdir()), "copies: nothing of the cache to protect"


def test_povray_making_a_symbolic_link_ends_its_batch(tmp_path: Path):
    """POV-Ray's language makes no links: one in the batch's folders after (or while) povray runs is povray itself
    made to, and the node, which reads and writes there, would follow it out of the sandbox."""
    from httpov.worker.povray import OutputUsage
    from httpov.worker.sandbox import RenderLimits

    scene, out = tmp_path / "scene", tmp_path / "out"
    scene.mkdir()
    out.mkdir()
    usage = OutputUsage(RenderLimits(), (scene, out))
    assert usage.over() is None
    (out / "frame1.pov-state").symlink_to("/etc/passwd")
    assert "symbolic link (frame1.pov-state)" in (usage.over() or "")


def test_another_jobs_batch_gets_new_folders(tmp_path: Path):
    """The kept folders serve one job's batches: a batch of another job gets a new batch folder with a new output
    folder's name, so that nothing one job's scene did to its folders (their extended attributes or flags, which
    emptying them leaves) reaches another job."""
    work = WorkFolder(tmp_path / "work")
    seen = []
    for job in ("a", "a", "b"):
        with work.batch(job) as folder:
            seen.append(((folder / "scene").stat().st_ino, work.out.name))
            (folder / "scene" / "scene.pov").write_text(job)
    assert seen[0] == seen[1], "kept for the same job"
    assert seen[2][1] != seen[1][1] and _contents(folder) == sorted(["scene", work.out.name])


def test_a_tree_too_deep_to_walk_is_set_aside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Whatever stops the emptying (a tree too deep for rmtree's recursion: RecursionError, not OSError), the slot
    goes on: its next batch gets new folders, the old one set aside in the slot folder."""
    from httpov.worker import workdir

    work = WorkFolder(tmp_path / "work")
    with work.batch("a") as folder:
        (folder / "scene" / "deep").mkdir()

    def deep(*args: object, **kwargs: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")
    monkeypatch.setattr(workdir.shutil, "rmtree", deep)
    with work.batch("a") as folder:
        (folder / "scene" / "deep").mkdir()
    with work.batch("a") as again:
        assert again == folder and _contents(again) == sorted(["scene", work.out.name])
    stale = [p for p in folder.parent.iterdir() if p.name.startswith("stale-")]
    assert len(stale) == 1 and "scene/deep" in _contents(stale[0])
