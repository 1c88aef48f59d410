"""A render slot's work folder (httpov.worker.workdir): its home stays from batch to batch, each batch's folder goes
with all it holds, and the slot folders of render processes that are gone are removed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from httpov.worker.workdir import WorkFolder


def test_a_slot_keeps_its_home_and_empties_each_batchs_folder(tmp_path: Path):
    work = WorkFolder(tmp_path / "work")
    home = work.home
    (home / "povray.conf").parent.mkdir(parents=True, exist_ok=True)
    (home / "povray.conf").write_text("kept")
    folders = []
    for _ in range(2):
        with work.batch() as folder:
            assert folder.is_dir() and not any(folder.iterdir()), "new and empty"
            (folder / "scene").mkdir()
            (folder / "scene" / "scene.pov").write_text("x")
            folders.append(folder)
        assert not folder.exists(), "removed with all it holds"
    assert folders[0] == folders[1] and folders[0].parent == home.parent
    assert (home / "povray.conf").read_text() == "kept" and work.home == home


def test_a_batch_folder_goes_when_its_batch_fails(tmp_path: Path):
    work = WorkFolder(tmp_path / "work")
    with pytest.raises(RuntimeError), work.batch() as folder:
        (folder / "render.log").write_text("x")
        raise RuntimeError("povray failed")
    assert not folder.exists()
    with work.batch() as again:
        assert again == folder and not any(again.iterdir())


def test_the_folders_of_slots_whose_process_is_gone_are_removed(tmp_path: Path):
    root = tmp_path / "work"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    dead, alive = root / f"slot-{gone}-abc", root / f"slot-{os.getppid()}-def"
    for folder in (dead, alive, root / "other"):
        (folder / "batch").mkdir(parents=True)
    assert WorkFolder(root).home.parent.parent == root  # a slot's first use makes its folder
    assert not dead.exists(), "its process is gone"
    assert alive.exists() and (root / "other").exists()
    mine = [p for p in root.iterdir() if p.name.startswith(f"slot-{os.getpid()}-")]
    assert len(mine) == 1


def test_a_batchs_scene_links_the_cached_files_read_only_in_folders_of_its_own(tmp_path: Path):
    """No scene file is copied for a batch: its work folder links the node's cached ones, read-only; its folders are
    its own, so the batch writes new files there and the cache keeps none of them."""
    from httpov.worker.workdir import link_scene

    cached = tmp_path / "cache" / "scene"
    (cached / "maps").mkdir(parents=True)
    (cached / "scene.pov").write_text("sphere")
    (cached / "maps" / "wood.png").write_bytes(b"png")
    link_scene(cached, tmp_path / "batch")
    for name in ("scene.pov", "maps/wood.png"):
        mine, theirs = (tmp_path / "batch" / name).stat(), (cached / name).stat()
        assert (mine.st_ino, mine.st_dev) == (theirs.st_ino, theirs.st_dev), f"{name} is the cached file"
        assert mine.st_mode & 0o777 == 0o444
    (tmp_path / "batch" / "maps" / "new.txt").write_text("written by the scene")
    assert sorted(p.name for p in (cached / "maps").iterdir()) == ["wood.png"]
    assert (tmp_path / "batch" / "maps").stat().st_ino != (cached / "maps").stat().st_ino
