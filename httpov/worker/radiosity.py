"""A radiosity pre-pass on a render node: the probe, the whole-image pass that saves povray's radiosity cache, and
the options with which a slice (or frame) loads it, once checked; the probe also shoots a frame's shared photon map
(httpov.worker.photons). Measured in docs/RADIOSITY.md."""
from __future__ import annotations

import contextlib
import logging
import math
import re
import secrets
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from httpov.archive import file_sha256
from httpov.errors import ArchiveError, HttpovError, RenderError
from httpov.paths import batch_key, radiosity_key
from httpov.plan import Batch, JobSpec, radiosity_digest

if TYPE_CHECKING:
    from httpov.storage import Storage
    from httpov.store import JobStore
    from httpov.worker.cache import SceneCache
    from httpov.worker.photons import PhotonMaps
    from httpov.worker.povray import RenderOutput

log = logging.getLogger(__name__)

#: Footer of the pre-pass's wrapper scene: a second radiosity block merges with the scene's own, changing only the
#: fields it names. With always_sample off the final pass adds few samples of its own to the saved cache.
PREPASS_FOOTER = "global_settings { radiosity { always_sample off } }"
#: Footer of a slice's wrapper scene: the slice's own pretrace shrinks to one pass, so the samples it uses are the
#: pre-pass's, computed over the whole image, and the slice edges do not show.
LOADING_FOOTER = "global_settings { radiosity { pretrace_start 1 pretrace_end 1 always_sample off } }"
#: The probe's image: povray's render statistics say whether radiosity is on, whatever turned it on or off.
PROBE_SIZE = (8, 6)
_NO_RADIOSITY = re.compile(r"^\s*Radiosity Time:\s+No radiosity", re.M)
_RADIOSITY_TIME = re.compile(r"^\s*Radiosity Time:", re.M)
#: Printed only when radiosity is on and a ray met a surface: the samples povray computed or reused, in any pass.
_RADIOSITY_SAMPLES = re.compile(r"^\s*Radiosity samples (?:calculated|reused):\s+([1-9]\d*)", re.M)


def uses_radiosity(log: str) -> bool | None:
    """What a povray log's statistics say: True (radiosity on), False (off), None (no statistics).

    'Radiosity Time' times the pretrace only, and povray runs no pretrace step when `pretrace_start` x the image's
    larger side is 0.5 pixel or less (view.cpp: steps = floor(log2(start / max(end, 1)) + 1) + 1): at the 8x6 probe
    that is any `pretrace_start` up to 1/16, such as cornell.pov's 0.04, whose statistics then say 'No radiosity'
    although the final pass computed radiosity samples. So samples computed or reused count as radiosity too."""
    if _RADIOSITY_SAMPLES.search(log):
        return True
    if _NO_RADIOSITY.search(log):
        return False
    return True if _RADIOSITY_TIME.search(log) else None


#: Below this share of a frame's top-level radiosity samples computed in the pretrace, slices do not depend on a
#: whole-frame pretrace: the pre-pass stores no cache and the slices render on their own. blocks/stackernight.pov
#: and stackerday.pov (pretrace_start = pretrace_end = 1: 1 of 11459 samples in the pretrace) came out 36.2 / 46.9
#: dB from a single render with the cache and 48.1 / 56.5 dB without it, seamless either way; the sample scenes
#: that need the cache compute 16 % or more of their samples in the pretrace (docs/RADIOSITY.md).
MIN_PRETRACE_SHARE = 0.01
_PASS_HEADER = re.compile(r"^\s*Pass\s+Depth 0\b.*$", re.M)
_PASS_ROW = re.compile(r"^\s*(\d+|Final)((?:\s+\d+)+)\s*$")


def pretrace_share(log: str) -> float | None:
    """The share of the top-level (depth 0) radiosity samples povray computed in its pretrace passes, from the pass
    table of a render's statistics ('Pass  Depth 0 ... Total' rows '1', '2', ..., 'Final', depth 0 first); None
    without a table or samples."""
    headers = list(_PASS_HEADER.finditer(log))
    if not headers:
        return None
    header = headers[-1]
    pretrace = final = 0
    for line in log[header.end():].splitlines()[1:]:
        if line.strip().startswith("-"):
            continue
        row = _PASS_ROW.match(line)
        if row is None:
            break
        total = int(row.group(2).split()[0])  # top-level samples: the ones pixels use (deeper ones serve them)
        if row.group(1) == "Final":
            final = total
        else:
            pretrace += total
    return pretrace / (pretrace + final) if pretrace + final else None


def probe_options(scene: str | None = None) -> list[str]:
    """A tiny render of the frame with the scene's own settings (no AA): its statistics tell radiosity on or off,
    and whether it shot photons. `scene`: httpov's copy of the .pov to render instead (one that saves its photon
    map: photons do not depend on the image's size, so the probe shoots the map the slices load)."""
    return [f"+W{PROBE_SIZE[0]}", f"+H{PROBE_SIZE[1]}", "-A", *([f"+I{scene}"] if scene else [])]


def write_wrapper(scene_dir: Path, pov: str, footer: str) -> str:
    """A scene beside povray's working folder that includes `pov` (the job's .pov, or httpov's copy of it that loads
    a photon map) by the same relative name and appends `footer`; the user's files are not touched. Answers its
    name, relative to `scene_dir`."""
    name = f"httpov-radiosity-{secrets.token_hex(6)}.pov"
    (scene_dir / name).write_text(f'#include "{pov}"\n{footer}\n')
    return name


def cache_name() -> str:
    """A name for the radiosity file in the scene's working folder that no scene file holds."""
    return f"httpov-radiosity-{secrets.token_hex(6)}.rca"


def prepass_options(scene_dir: Path, pov: str, rca: str) -> list[str]:
    """The whole image of `pov` without antialiasing, saving every radiosity sample to `rca`."""
    return [f"+I{write_wrapper(scene_dir, pov, PREPASS_FOOTER)}", "-A", f"Radiosity_File_Name={rca}", "+RFO"]


def loading_options(scene_dir: Path, pov: str, rca: str) -> list[str]:
    """A slice (or frame) of `pov` loading the pre-pass's cache `rca`, its own pretrace cut to one pass."""
    return [f"+I{write_wrapper(scene_dir, pov, LOADING_FOOTER)}", f"Radiosity_File_Name={rca}", "+RFI"]


#: POV-Ray's radiosity recursion_limit is 1-20; a sample's depth in the file (1-based) is within it. povray indexes
#: its per-depth settings by the depth it reads, unchecked: a larger one made it abort (issue #25).
MAX_DEPTH = 20
#: povray reads a cache file line by line into a 100-byte buffer (getline(line, 99)): a longer line is split.
MAX_LINE = 98
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")  # what povray's own writer prints: no nan, inf
_HEX6 = re.compile(r"^[0-9a-fA-F]{6}$")
_DEPTH = re.compile(r"^C(\d{1,2})$")


class BadCache(ValueError):
    """A radiosity cache file that is not what the farm's pre-pass wrote."""


def fetch_checked(cache: SceneCache, storage: Storage, key: str, sha256: str | None, target: Path) -> bool:
    """Put the stored radiosity cache `key` at `target` (the copy povray reads) through the node's cache, if it is
    the content the farm's pre-pass recorded (`sha256`) and well formed (check_cache); False, nothing at `target`,
    for an empty cache (the pre-pass found no radiosity). BadCache on any doubt, FileNotFoundError if not stored."""
    try:
        try:
            cache.copy_file(storage, key, sha256, target)
        except ArchiveError as exc:
            raise BadCache(str(exc)) from None
        if target.stat().st_size == 0:
            target.unlink()
            return False
        check_cache(target)
        return True
    except BadCache:
        target.unlink(missing_ok=True)
        raise


def check_cache(path: Path) -> int:
    """Check a radiosity cache file against the text format povray 3.7 writes (RadiosityCache::Load reads): lines
    'C<depth> x y z <normal hex> r g b <harmonic mean distance> <nearest distance> <to-nearest hex>' and the
    optional 'B<brightness>' and 'P' lines; every number finite (a NaN sample hung povray for 26 minutes), the
    depth 1-MAX_DEPTH, the distances positive. Answers the number of samples; BadCache says the first fault."""
    samples = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("ascii").rstrip("\r\n")
            except UnicodeDecodeError:
                raise BadCache(f"line {number} is not text") from None
            if len(line) > MAX_LINE:
                raise BadCache(f"line {number} is longer than povray reads ({MAX_LINE} characters)")
            if line == "P" or (line.startswith("B") and _finite(line[1:].strip()) is not None):
                continue
            fields = line.split()
            depth = _DEPTH.match(fields[0]) if fields else None
            if len(fields) != 11 or depth is None:
                raise BadCache(f"line {number} is not a radiosity sample")
            if not 1 <= int(depth.group(1)) <= MAX_DEPTH:
                raise BadCache(f"line {number}: depth {depth.group(1)} is not 1-{MAX_DEPTH}")
            values = [_finite(fields[i]) for i in (1, 2, 3, 5, 6, 7, 8, 9)]
            if any(v is None for v in values):
                raise BadCache(f"line {number}: a number that is not finite (NaN, infinity, or no number)")
            if not _HEX6.match(fields[4]) or not _HEX6.match(fields[10]):
                raise BadCache(f"line {number}: a direction that is not six hex digits")
            harmonic, nearest = values[6], values[7]
            if not (harmonic and harmonic > 0 and nearest is not None and nearest >= 0):
                raise BadCache(f"line {number}: a sample's distances are not positive")
            samples += 1
    return samples


def _finite(text: str) -> float | None:
    if not _NUMBER.match(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


@dataclass
class Farm:
    """What a render node's batch reads and writes of the farm's radiosity caches: Redis holds each stored cache's
    SHA-256 (the only content a slice loads), storage the cache, the node's cache a checked copy."""

    store: JobStore
    storage: Storage
    cache: SceneCache

    def prepass(self, spec: JobSpec, batch: Batch, scene_dir: Path, render: Callable[..., RenderOutput],
                result: str, photons: PhotonMaps | None = None) -> tuple[float, int]:
        """A frame's pre-pass: a probe at 8x6 with the scene's own settings says whether radiosity is on;
        if so the whole image without AA saves povray's radiosity cache, stored for every slice to load, else an
        empty file is stored (the slices then render as without a pre-pass); the stored file's SHA-256 is recorded
        in Redis, the only content a slice loads. A cache a pre-pass of this farm stored already (an earlier job, or
        this batch's own run on a node lost before it was recorded) is reused if it still has its recorded hash; a
        file under the key without one (planted) is rendered over. With `photons` (a job sharing photon maps) the
        probe renders a copy of the scene that saves its photon map, stored for the frame's slices (PhotonMaps),
        and the radiosity pass loads it. Answers povray's seconds and the bytes stored."""
        key = radiosity_key(radiosity_digest(spec, batch.first)) if spec.radiosity != "off" else None
        radiosity = key is not None and not self._stored(key)
        if not radiosity and photons is None:
            return 0.0, 0
        saving, photon_map, why = photons.saving(spec, scene_dir) if photons else (None, None, "")
        probe = render(probe_options(saving), PROBE_SIZE)
        seconds, logs = probe.seconds, [probe.log]
        found = uses_radiosity(probe.log)
        if found is None:
            raise RenderError("the pre-pass's probe's povray log has no render statistics", transient=True)
        pov = spec.pov
        if photons is not None and photon_map is not None:
            stored = photons.store_map(spec, batch, photon_map, probe.log, why)
            if stored is not None:  # the radiosity pass loads the map rather than shooting the photons again
                pov = photons.loading(spec, scene_dir, stored)
        if radiosity and key is not None:
            cache = scene_dir / cache_name()
            if found:
                output = render(prepass_options(scene_dir, pov, cache.name))
                seconds += output.seconds
                logs.append(output.log)
                share = pretrace_share(output.log)
                if not cache.is_file() or (share is not None and share < MIN_PRETRACE_SHARE):
                    cache.write_bytes(b"")  # nothing to load, or nothing the slices' own pretraces would change
            else:
                cache.write_bytes(b"")
            self.storage.put_file(key, cache)
            self.store.record_cache(key, file_sha256(cache))
        archive = scene_dir.parent / f"{batch.id}.zip"  # povray's logs, fetched with the others
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr(f"{batch.id}.log", "\n".join(logs), zipfile.ZIP_DEFLATED)
        self.storage.put_file(batch_key(spec.id, batch.id, result), archive)
        return seconds, archive.stat().st_size

    def _stored(self, key: str) -> bool:
        """Whether `key` holds the radiosity cache a pre-pass of this farm recorded (fetched into the node's cache,
        where the slices on this node then find it)."""
        sha256 = self.store.cache_sha256(key)
        if sha256 is None:
            return False
        try:
            with self.cache.use_file(self.storage, key, sha256):
                return True
        except (FileNotFoundError, ArchiveError):
            return False

    def load(self, spec: JobSpec, batch: Batch, scene_dir: Path,
             pov: str | None = None) -> tuple[list[str] | None, str]:
        """povray options that load the frame's radiosity cache (fetched once per node), or None when its pre-pass
        found the scene renders without radiosity; and why the cache was refused ('' if it was not).

        Only the content a pre-pass of this farm stored is loaded: the file povray will read must have the SHA-256
        that pre-pass recorded, and be a well-formed cache (check_cache). On any doubt the batch renders without
        it, running its own radiosity pretrace (the frame still right, its slice edges may show), and says so in
        its log, the job's history and the node's log. `pov`: the scene to render (default the job's .pov; httpov's
        copy of it that loads a photon map)."""
        key = radiosity_key(radiosity_digest(spec, batch.first))
        cache = scene_dir / cache_name()
        try:
            if not fetch_checked(self.cache, self.storage, key, self.store.cache_sha256(key), cache):
                return None, ""
        except FileNotFoundError:
            raise RenderError(f"the radiosity cache of {batch.label} is not in storage ({key}): its pre-pass "
                              "did not store it", transient=True) from None
        except BadCache as exc:
            why = (f"the radiosity cache {key} was refused ({exc}): {batch.label} ran its own radiosity pretrace "
                   "instead")
            log.warning("httpov: job %s: %s", spec.id, why)
            with contextlib.suppress(HttpovError):
                self.store.note(spec.id, why)
            return None, why
        return loading_options(scene_dir, pov or spec.pov, cache.name), ""
