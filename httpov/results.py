"""A batch's result zip is data from another machine: the one check fetch and stitching apply before unpacking it."""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path, PurePosixPath

from httpov import archive, paths
from httpov.errors import ArchiveError, ResultError
from httpov.plan import Batch
from httpov.text import shown

#: The most bytes of one batch's povray log accepted from storage.
LOG_MAX_BYTES = 16 * 1024**2
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def frame_bytes(width: int, height: int) -> int:
    """The most bytes a width x height PNG from povray can hold: 16-bit RGBA stored uncompressed, plus slack."""
    raw = height * (1 + width * 8)
    return raw + raw // 64 + 64 * 1024


def png_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from the first 24 bytes of a PNG (its IHDR chunk), or None if they are not a PNG's."""
    if len(head) < 24 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def check_frame(head: bytes, name: str, width: int, height: int) -> None:
    """Raise ResultError unless `head` starts a PNG of exactly width x height (read before anything decodes it)."""
    size = png_size(head)
    if size != (width, height):
        found = "not a PNG" if size is None else f"{size[0]}x{size[1]}"
        raise ResultError(f"result {shown(name)} is {found}, not a {width}x{height} frame of its job: refused")


def unpack_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int, key: str, width: int,
                  height: int) -> bool:
    """One member of a result zip into `target`: at most `budget` bytes (archive.copy_member), and a PNG's header
    checked against the job's frame size; True if it is a frame. A member refused half way is not left behind."""
    try:
        with open(target, "wb") as sink:
            archive.copy_member(zf, info, sink, key, budget)
        if target.suffix != ".png":
            return False
        with open(target, "rb") as f:
            check_frame(f.read(24), f"{key}:{info.filename}", width, height)
        return True
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def unpack_batch(zip_path: Path, key: str, width: int, height: int, output: Path, logs: Path | None,
                 frames: bool = True) -> list[Path]:
    """The frames (into `output`, unless not `frames`) and log (into `logs`, if given) of the batch result zip stored
    under `key`; answers the frame files. Before anything is unpacked: at most one member per frame of the batch
    plus its log (counted in the zip's end record, before zipfile reads its central directory); each frame at most
    frame_bytes(width, height) and the log LOG_MAX_BYTES (as declared, then held to it while it is streamed); each
    PNG's header exactly width x height. Anything else is ResultError naming the bound, with nothing left behind."""
    batch = Batch.from_id(paths.batch_of(key))
    allowed = batch.last - batch.first + 2
    try:
        declared, directory = archive.central_directory(zip_path) or (0, 0)
        if declared > allowed:
            raise ResultError(f"result {shown(key)} holds {declared} files, more than its {allowed - 1} frame(s) "
                              "and log: refused")
        if directory > allowed * archive.MAX_CENTRAL_RECORD:
            raise ResultError(f"result {shown(key)} has a {directory}-byte central directory, more than "
                              f"{allowed} files need: refused")
        images: list[Path] = []
        with zipfile.ZipFile(zip_path) as zf:
            infos = zf.infolist()
            if len(infos) > allowed:
                raise ResultError(f"result {shown(key)} holds {len(infos)} files, more than its {allowed - 1} "
                                  "frame(s) and log: refused")
            for info in infos:
                safe = PurePosixPath(info.filename).name
                if safe.endswith(".log") and logs is not None:
                    target, budget = logs / safe, LOG_MAX_BYTES
                elif frames and safe.endswith(".png"):
                    target, budget = output / safe, frame_bytes(width, height)
                else:
                    continue
                if unpack_member(zf, info, target, budget, key, width, height):
                    images.append(target)
    except (ArchiveError, zipfile.BadZipFile) as exc:
        raise ResultError(f"result refused: {shown(exc)}") from None
    return images
