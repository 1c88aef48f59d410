"""A shared photon map on a render node: the pre-pass's probe shoots a sliced frame's photons once into a map (a
copy of the scene with httpov's `save_file`), stored for the frame's slices, which load it (a copy with
`load_file`) once checked. Measured in docs/RADIOSITY.md."""
from __future__ import annotations

import contextlib
import logging
import re
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from httpov.archive import file_sha256
from httpov.errors import ArchiveError, HttpovError
from httpov.paths import photon_map_key
from httpov.photons import NotShareable, check_others, edited
from httpov.plan import Batch, JobSpec

if TYPE_CHECKING:
    from httpov.storage import Storage
    from httpov.store import JobStore
    from httpov.worker.cache import SceneCache

log = logging.getLogger(__name__)

#: povray's statistics when it shot photons ('Number of photons shot: 188033'), and when it loaded a map.
_SHOT = re.compile(r"^\s*Number of photons shot:\s+([1-9]\d*)", re.M)
_LOADED = re.compile(r"Starting the load of photon file", re.M)


def photons_shot(log: str) -> int:
    """How many photons a povray run shot, from its statistics (0: none, or it loaded a map instead)."""
    found = _SHOT.search(log)
    return int(found.group(1)) if found else 0


def loaded_map(log: str) -> bool:
    """Whether a povray run loaded a photon map (its 'Starting the load of photon file' warning)."""
    return bool(_LOADED.search(log))


def map_name() -> str:
    """A name for the photon map in the scene's working folder (povray's, and writable in its sandbox) that no scene
    file holds: httpov's own, never the user's."""
    return f"httpov-photons-{secrets.token_hex(6)}.ph"


#: (scene key, .pov) -> why the scene's other files could set photons ('' if they cannot), as check_others found in
#: the first batch of that scene this process ran: a scene key names immutable content, and reading every
#: file of a scene (textures and meshes too) for each slice and twice for each pre-pass is I/O a batch need not repeat.
_OTHERS_CHECKED: dict[tuple[str, str], str] = {}


def _check_others(scene_dir: Path, spec: JobSpec, ours: frozenset[Path]) -> None:
    """check_others on the scene's files but its .pov (not `ours`), once per scene and .pov in this process."""
    key = (spec.scene_key, spec.pov)
    why = _OTHERS_CHECKED.get(key)  # one read: another slot may clear the cache meanwhile
    if why is None:
        pov = scene_dir / spec.pov
        others = [str(p.relative_to(scene_dir)) for p in sorted(scene_dir.rglob("*"))
                  if p.is_file() and p != pov and p not in ours]
        try:
            check_others(others, lambda name: (scene_dir / name).read_bytes())
            why = ""
        except NotShareable as exc:
            why = str(exc)
        if len(_OTHERS_CHECKED) >= 256:  # a long-lived node renders many scenes: keep the recent ones
            _OTHERS_CHECKED.clear()
        _OTHERS_CHECKED[key] = why
    if why:
        raise NotShareable(why)


def write_copy(scene_dir: Path, spec: JobSpec, statement: str, ours: frozenset[Path] = frozenset()) -> str:
    """A copy of the job's .pov beside it (its includes found as the original's) with `statement` just inside the
    photons block of its global_settings; its name relative to `scene_dir`. NotShareable if the scene's photons
    block cannot be edited safely (httpov.photons). `ours`: files httpov wrote into the folder (not the scene's)."""
    pov = scene_dir / spec.pov
    _check_others(scene_dir, spec, ours)
    text = edited(pov.read_bytes().decode("utf-8", "surrogateescape"), statement)
    name = str(PurePosixPath(spec.pov).with_name(f"httpov-photons-{secrets.token_hex(6)}.pov"))
    (scene_dir / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    return name


@dataclass
class PhotonMaps:
    """What a render node's batch reads and writes of a job's photon maps: storage holds each sliced frame's map
    under the job's keys, Redis the SHA-256 its pre-pass recorded (the only content a slice loads), the node's cache
    a copy. `max_bytes` bounds a map (HTTPOV_PHOTON_MAP_MB)."""

    store: JobStore
    storage: Storage
    cache: SceneCache
    max_bytes: int
    _ours: frozenset[Path] = frozenset()  # what the pre-pass wrote into the scene's folder: not the scene's files

    def saving(self, spec: JobSpec, scene_dir: Path) -> tuple[str | None, Path, str]:
        """The pre-pass's scene that shoots the frame's photons into a map (None if the scene cannot be edited
        safely), where povray writes that map, and why there is no such scene ('' if there is)."""
        path = scene_dir / map_name()
        try:
            scene = write_copy(scene_dir, spec, f'save_file "{path.name}"')
        except NotShareable as exc:
            return None, path, f"the photons block of {spec.pov} cannot be edited safely ({exc})"
        self._ours = frozenset({scene_dir / scene, path})
        return scene, path, ""

    def loading(self, spec: JobSpec, scene_dir: Path, path: Path) -> str:
        """The pre-pass's own scene that loads the map it saved at `path` (its radiosity pass renders it)."""
        return write_copy(scene_dir, spec, f'load_file "{path.name}"', self._ours)

    def store_map(self, spec: JobSpec, batch: Batch, path: Path, probe_log: str, why: str) -> Path | None:
        """Store the map the pre-pass's probe saved at `path` for the frame's slices and record its hash; or record
        that there is none (`why` the scene could not be edited, no photons shot, the map past the bound), noted in
        the job's history when it is not just a scene without photons. Answers the map's path if it is stored."""
        shot = photons_shot(probe_log)
        size = path.stat().st_size if path.is_file() else 0
        if not why and shot and size > self.max_bytes:
            why = (f"its photon map is {size / 2**20:.1f} MiB, over HTTPOV_PHOTON_MAP_MB "
                   f"({self.max_bytes // 2**20} MiB)")
        elif not why and shot and not size:
            why = "povray saved no photon map"
        if why or not shot:
            self.store.record_photon_map(spec.id, batch.first, "")
            if why:
                self._note(spec, f"photons of frame {batch.first} are not shared: {why}; its slices shoot their "
                                 "own")
            return None
        self.storage.put_file(photon_map_key(spec.id, batch.first), path)
        self.store.record_photon_map(spec.id, batch.first, file_sha256(path))
        return path

    def load(self, spec: JobSpec, batch: Batch, scene_dir: Path) -> tuple[str | None, str]:
        """The scene a slice renders to load its frame's photon map (a copy of the .pov with `load_file`), or None
        when its pre-pass stored no map; and why the map was refused ('' if it was not).

        Only the content the frame's pre-pass stored is loaded: the file povray will read must have the SHA-256
        the pre-pass recorded, and be within the bound. On any doubt the slice shoots its own photons (the same
        pixels, more CPU) and says so in its log, the job's history and the node's log."""
        key = photon_map_key(spec.id, batch.first)
        sha256 = self.store.photon_map_sha256(spec.id, batch.first)
        if sha256 == "":
            return None, ""
        target = scene_dir / map_name()
        try:
            scene = write_copy(scene_dir, spec, f'load_file "{target.name}"')  # before the map is in the folder
            self.cache.copy_file(self.storage, key, sha256, target)
            if target.stat().st_size > self.max_bytes:
                raise ArchiveError(f"it is over HTTPOV_PHOTON_MAP_MB ({self.max_bytes // 2**20} MiB)")
            return scene, ""
        except (ArchiveError, FileNotFoundError, NotShareable) as exc:
            target.unlink(missing_ok=True)
            why = f"the photon map {key} was refused ({exc}): {batch.label} shot its own photons instead"
            self._note(spec, why)
            return None, why

    def _note(self, spec: JobSpec, why: str) -> None:
        log.warning("httpov: job %s: %s", spec.id, why)
        with contextlib.suppress(HttpovError):
            self.store.note(spec.id, why)
