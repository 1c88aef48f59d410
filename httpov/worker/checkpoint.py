"""A running batch's checkpoint: povray's render state (`<output>.pov-state`) and the frames of the batch it finished,
saved to storage every so often, so that a batch requeued after its node was lost continues where that node stopped
(povray's continue-trace, `+C`) on whichever node takes it, and how far povray got (its row progress).

Trust: the zip is stored under a key of the batch (paths.checkpoint_key) and its SHA-256 recorded in Redis by the
execution that wrote it, while it held the batch's lease (JobStore.save_checkpoint). A node resumes only from that
exact content, written by the same povray version, holding only the batch's own frames and state: anything else is
refused and the batch starts over. A state povray cannot use (a damaged one) makes the resumed run fail: the batch
then starts over in the same execution (RenderNode)."""
from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from httpov.errors import HttpovError, RenderError, StorageError
from httpov.paths import checkpoint_key
from httpov.plan import Batch, JobSpec
from httpov.storage import Storage
from httpov.store import JobStore
from httpov.store.records import CheckpointInfo
from httpov.text import shown
from httpov.worker.lease import LeaseKeeper
from httpov.worker.povray import STATE_FILE, RunProgress, check_png

log = logging.getLogger(__name__)

_FRAME = re.compile(r"^frame(\d*)\.png$")


@dataclass
class Resumed:
    """What a render continued from: its finished frames, the frame whose state it holds (0: none) and that frame's
    share already rendered."""

    frames: list[int] = field(default_factory=list)
    frame: int = 0
    fraction: float = 0.0
    node: str = ""


class Checkpoints:
    """One execution's checkpoints of one batch: `start` puts the latest saved one (if trusted) into povray's output
    folder and answers the options that continue from it; `tick`, called while povray runs, follows its progress
    and saves a checkpoint when one is due. `every` seconds (0: never), and at most `share` of the time spent
    rendering goes into saving. `saved`: whether a checkpoint of the batch is saved, as its take found (False: none
    is read)."""

    def __init__(self, store: JobStore, storage: Storage, spec: JobSpec, batch: Batch, execution: str, node: str,
                 povray_version: str, every: float, share: float, max_bytes: int,
                 on_progress: LeaseKeeper | None = None, saved: bool = True) -> None:
        self.store, self.storage, self.spec, self.batch = store, storage, spec, batch
        self.execution, self.node, self.povray_version = execution, node, povray_version
        self.every, self.share, self.max_bytes = every, max(share, 0.001), max_bytes
        self.key = checkpoint_key(spec.id, batch.id)
        self.resume = every > 0 and saved  # False once a resumed run failed (start over), or none was saved
        self.resumed: Resumed | None = None
        self.refused = ""  # why a saved checkpoint was not used ('' if none was refused)
        self.progress: float | None = None  # the share of the batch rendered, as povray's log says
        self.saved = 0  # checkpoints this execution saved
        self._on_progress = on_progress
        self._due = time.monotonic() + every
        self._last: tuple[object, ...] = ()
        self._frame_fraction = 0.0

    # --- resuming ---
    def start(self, out_dir: Path) -> list[str]:
        """Before povray starts: the latest trusted checkpoint unpacked into `out_dir`, and the povray options that
        continue from it (none when there is none, or it was refused)."""
        self._due = time.monotonic() + self.every
        self.resumed = None
        if not self.resume:
            return []
        info = self.store.checkpoint(self.spec.id, self.batch.id)
        if info is None:
            return []
        try:
            resumed = self._unpack(info, out_dir)
        except (ValueError, OSError, zipfile.BadZipFile, RenderError, StorageError) as exc:
            for name in list(out_dir.iterdir()):  # nothing of a refused checkpoint stays for povray
                name.unlink()
            self.refused = f"the checkpoint of {self.batch.label} was not used ({exc}): it renders from the start"
            log.warning("httpov: %s", shown(self.refused))
            self.discard()
            return []
        self.resumed = resumed
        options = []
        unfinished = [f for f in self.batch.frames if f not in resumed.frames]
        if resumed.frames and self.spec.final > self.spec.initial:
            options.append(f"+SF{unfinished[0]}")
        if resumed.frame:
            options.append("+C")
        log.info("httpov: %s continues from the checkpoint node %s saved: %s", self.batch.label,
                 shown(resumed.node), self.describe())
        try:  # the job's history (`httpov status JOB`, the job's page): what was not rendered again
            self.store.note(self.spec.id, f"{self.batch.label} continued on {self.node} from the checkpoint "
                                          f"{resumed.node} saved: {self.describe()}")
        except HttpovError:
            pass
        return options

    def describe(self) -> str:
        """What the render continued from, for its log ('' if it started from the beginning)."""
        r = self.resumed
        if r is None:
            return ""
        said = []
        if r.frames:
            said.append(f"frame{'s' if len(r.frames) > 1 else ''} {_span(r.frames)} finished")
        if r.frame:
            said.append(f"frame {r.frame} continued from {r.fraction:.0%} of its pixels (povray +C)")
        return "; ".join(said)

    def _unpack(self, info: CheckpointInfo, out_dir: Path) -> Resumed:
        if info.get("povray") != self.povray_version:
            raise ValueError(f"it was saved by povray {shown(str(info.get('povray')))}, this node runs "
                             f"{shown(self.povray_version)}")
        size, sha = info.get("bytes"), info.get("sha256")
        if not isinstance(size, int) or not isinstance(sha, str) or size > self.max_bytes:
            raise ValueError("its record is not one a render node writes")
        archive = out_dir.parent / "resume.zip"
        self.storage.get_file(self.key, archive)
        try:
            if archive.stat().st_size != size or _sha256(archive) != sha:
                raise ValueError("the stored checkpoint is not the one its node recorded (SHA-256)")
            width = len(str(self.spec.final))
            still = self.spec.final == self.spec.initial
            names = {f"frame{f:0{width}d}": f for f in self.batch.frames}
            if still or self.batch.rows is not None:
                names["frame"] = self.batch.first
            with zipfile.ZipFile(archive) as zf:
                entries = zf.infolist()
                if len(entries) > len(self.batch.frames) + 1:
                    raise ValueError("it holds more files than the batch has frames")
                if sum(e.file_size for e in entries) > self.max_bytes:
                    raise ValueError("it is larger than a batch may write")
                frames, state = [], 0
                for entry in entries:
                    png, pov = _FRAME.match(entry.filename), STATE_FILE.match(entry.filename)
                    stem = entry.filename.rsplit(".", 1)[0]
                    if not (png or pov) or stem not in names or entry.is_dir():
                        raise ValueError(f"it holds a file the batch does not make: {shown(entry.filename)}")
                    if png:
                        frames.append(names[stem])
                    elif state:
                        raise ValueError("it holds two render states")
                    else:
                        state = names[stem]
                frames.sort()
                if frames != list(self.batch.frames)[:len(frames)] or (state and state != self.batch.first
                                                                       + len(frames)):
                    raise ValueError("its frames are not the batch's first ones in order")
                if len(frames) == len(self.batch.frames):  # all finished, not recorded: the last one renders again
                    frames.pop()
                for entry in entries:
                    stem = entry.filename.rsplit(".", 1)[0]
                    if entry.filename.endswith(".png") and names[stem] not in frames:
                        continue
                    target = out_dir / entry.filename
                    with zf.open(entry) as src, open(target, "wb") as dst:
                        dst.write(src.read(self.max_bytes + 1))
                    if entry.filename.endswith(".png"):
                        check_png(target, self.spec.width, self.spec.height, names[stem])
        finally:
            archive.unlink(missing_ok=True)
        fraction = info.get("fraction", 0.0)
        return Resumed(frames=frames, frame=state, node=str(info.get("node", "?")),
                       fraction=min(1.0, max(0.0, float(fraction))) if isinstance(fraction, (int, float)) else 0.0)

    # --- while povray runs ---
    def tick(self, out_dir: Path, run: RunProgress) -> None:
        """povray's progress as its log says (into `progress` and the lease), and a checkpoint saved when due."""
        self.progress = self._batch_share(run)
        if self._on_progress is not None:
            self._on_progress.progress = self.progress  # written into the batch's record with its next refresh
        if self.every > 0 and time.monotonic() >= self._due:
            self.save(out_dir)

    def _batch_share(self, run: RunProgress) -> float:
        done = len(self.resumed.frames) if self.resumed else 0
        total = len(self.batch.frames)
        within = run.fraction
        if run.frame <= 1 and self.resumed is not None and self.resumed.frame:
            within = min(1.0, self.resumed.fraction + within)  # povray counts only the pixels it traces again
        self._frame_fraction = within
        return min(1.0, (done + max(0, run.frame - 1) + within) / total)

    def save(self, out_dir: Path) -> bool:
        """Store the batch's render state and finished frames now (one zip, replaced), then name it in Redis while
        this execution holds the lease. A storage or Redis failure only skips this checkpoint."""
        started = time.monotonic()
        width = len(str(self.spec.final))
        frames, state = [], None
        for path in sorted(out_dir.iterdir()):
            png, pov = _FRAME.match(path.name), STATE_FILE.match(path.name)
            if pov:
                state = path
            elif png:
                frame = int(png.group(1)) if png.group(1) else self.batch.first
                try:
                    check_png(path, self.spec.width, self.spec.height, frame)  # a frame still being written waits
                except (RenderError, OSError):
                    continue
                if frame in self.batch.frames and path.name == f"frame{frame:0{width}d}.png":
                    frames.append((frame, path))
        if state is None:
            self._due = started + self.every
            return False
        seen = (state.stat().st_size, tuple(f for f, _ in frames))
        if seen == self._last:
            self._due = started + self.every
            return False
        state_frame = self.batch.first + len(frames)
        archive = out_dir.parent / "checkpoint.zip"
        try:
            with zipfile.ZipFile(archive, "w") as zf:  # read as povray's own files: never through a link it made
                for _, path in frames:
                    zf.writestr(path.name, _own_file(path), zipfile.ZIP_STORED)
                zf.writestr(state.name, _own_file(state), zipfile.ZIP_DEFLATED, compresslevel=1)
            size = archive.stat().st_size
            if size > self.max_bytes:
                raise StorageError(f"a checkpoint of {size} bytes is larger than a batch may write")
            info = CheckpointInfo(sha256=_sha256(archive), bytes=size, povray=self.povray_version, node=self.node,
                                  saved=time.time(), frames=[f for f, _ in frames], frame=state_frame,
                                  fraction=round(self._frame_fraction, 4))
            self.storage.put_file(self.key, archive)
            said = self.store.save_checkpoint(self.spec.id, self.batch.id, self.execution, info)
        except (HttpovError, OSError) as exc:
            log.warning("httpov: a checkpoint of %s was not saved: %s", self.batch.label, shown(str(exc)))
            said = "failed"
        finally:
            archive.unlink(missing_ok=True)
        took = time.monotonic() - started
        self._due = time.monotonic() + max(self.every, took / self.share)
        if said == "ok":
            self._last = seen
            self.saved += 1
        return said == "ok"

    def discard(self) -> None:
        """Delete the batch's checkpoint (its record first: a record never names a deleted object that is trusted)."""
        try:
            self.store.drop_checkpoint(self.spec.id, self.batch.id)
            self.storage.delete(self.key)
        except (HttpovError, OSError) as exc:
            log.warning("httpov: the checkpoint of %s was not deleted: %s", self.batch.label, shown(str(exc)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _span(frames: list[int]) -> str:
    return str(frames[0]) if len(frames) == 1 else f"{frames[0]}-{frames[-1]}"


def _own_file(path: Path) -> bytes:
    """The bytes of a file povray wrote (OSError if it is a symbolic link: povray itself was made to make one)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()
