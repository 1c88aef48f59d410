"""Scene archives: pack a scene folder into a deterministic zip, check untrusted zips, extract them safely."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from httpov.errors import ArchiveError, SceneError
from httpov.files import atomic_write

CHUNK = 1024 * 1024
FIXED_DATE = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
DIR_MODE = 0o755
SKIPPED_NAMES = frozenset({"__pycache__", ".git", ".DS_Store"})
MAX_NAME_BYTES = 1024  # a whole member name, UTF-8
MAX_PART_BYTES = 255  # one path component (NAME_MAX on Linux)
_SUPPORTED_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
_ENCRYPTED_FLAGS = 0x1 | 0x40  # traditional PKWARE encryption, strong encryption
_LOCAL_HEADER_SIZE = 30
MAX_CENTRAL_RECORD = 46 + MAX_NAME_BYTES + 1024  # fixed part, name, generous extra field and comment
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on a scene archive; the defaults fit any sane POV-Ray scene."""

    max_entries: int = 10_000
    max_total_bytes: int = 512 * 1024**2  # sum of uncompressed file_size: what a node's cache and each batch hold
    max_file_bytes: int = 512 * 1024**2
    max_depth: int = 32  # path parts of a member name ('a/b/c.inc' is 3)
    max_ratio: float = 200.0  # total uncompressed / compressed (zip bombs)
    # The ratio is only enforced once the total passes this: a small archive cannot be a bomb, and a
    # few kilobytes of blank lines legitimately compress more than 200:1.
    ratio_floor_bytes: int = 1024**2


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of the file at `path`, read in chunks (scenes are stored by this hash)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_archive(path: Path, limits: ArchiveLimits = ArchiveLimits()) -> list[str]:
    """The member file names of the zip at `path` (directories left out), in archive order.

    Raises ArchiveError, naming the problem and the member, for: not a zip or unreadable, corrupt data
    (every member is decompressed and its CRC checked, within its declared size), absolute names ('/x',
    'C:\\x', 'C:x'), backslashes, '..', '.' or empty parts, control characters, over-long names, symlinks and
    other special files (unix mode bits in external_attr), duplicate names, a file that is also a folder,
    too many entries, a file or total past the limits, a compression ratio past the limit, members whose
    data overlap, encrypted members, unsupported compression methods, an archive without files.
    """
    path = Path(path)
    with _open_zip(path, limits) as zf:
        infos = _check_structure(zf, path, limits)
        for info in infos:
            if not info.is_dir():
                _stream_member(zf, info, path, sink=None)
        return [info.filename for info in infos if not info.is_dir()]


def extract_archive(path: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits()) -> None:
    """Check the zip at `path` as check_archive does, then extract it into `dest`, which must not exist.

    Only regular files (mode 0o644) and folders (0o755) are created, each target is resolved and must lie
    inside `dest`, files are opened with O_EXCL|O_NOFOLLOW, and each member is streamed with a byte budget
    equal to its declared size and its CRC checked as it is written (so the data is read once, not twice).
    On any error `dest` is removed and ArchiveError raised.
    """
    path, dest = Path(path), Path(dest)
    with _open_zip(path, limits) as zf:
        infos = _check_structure(zf, path, limits)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.mkdir(dest, DIR_MODE)
        except FileExistsError:
            raise ArchiveError(f"cannot extract {path} into {dest}: it already exists") from None
        except OSError as exc:
            raise ArchiveError(f"cannot create {dest}: {exc.strerror or exc}") from None
        try:
            os.chmod(dest, DIR_MODE)
            root = dest.resolve(strict=True)
            _extract_into(zf, infos, path, root)
        except BaseException as exc:
            shutil.rmtree(dest, ignore_errors=True)
            if isinstance(exc, OSError):
                raise ArchiveError(f"cannot extract {path} into {dest}: {exc}") from None
            raise


def pack_scene(source: Path, out: Path, limits: ArchiveLimits = ArchiveLimits()) -> list[str]:
    """Zip the scene folder `source` into `out` so that the same content always gives the same bytes, and
    answer the zip's file names (it is checked like any archive: check_archive).

    `source` is a folder, or a .ini/.pov file whose folder is packed. Names are relative to that folder and
    sorted; every folder gets an entry; timestamps are 1980-01-01 00:00:00, files are stored as 0o644 and
    folders as 0o755, files deflated at zlib's default level (the bytes can differ between zlib builds).
    Skipped, at any depth: folders and files named __pycache__, .git and .DS_Store; nothing else.
    Raises ArchiveError for symlinks, special files (FIFOs, sockets, devices), names check_archive would
    refuse, `out` inside `source`, a folder without files, or a scene past `limits`; SceneError when
    `source` is missing. `out` is written atomically (a temporary name, then rename).
    """
    source, out = Path(source), Path(out)
    if source.is_file() and source.suffix.lower() in (".ini", ".pov"):
        source = source.parent
    if not source.is_dir():
        raise SceneError(f"scene folder {source} does not exist or is not a folder")
    root = source.resolve()
    out_abs = out.resolve()
    if out_abs.is_relative_to(root):
        raise ArchiveError(f"cannot write the scene archive {out} inside the scene folder {source}")
    dirs, files = _walk_scene(root, source)
    _check_tree_limits(source, dirs, files, limits)
    try:
        with atomic_write(out) as tmp:
            with open(tmp, "wb") as raw, zipfile.ZipFile(raw, "w") as zf:
                entries = [(name + "/", None) for name in dirs] + [(name, size) for name, size in files]
                for name, size in sorted(entries):
                    if size is None:
                        _write_dir_entry(zf, name)
                    else:
                        _write_file_entry(zf, name, root / name, size, source)
            os.chmod(tmp, FILE_MODE)
            try:
                names = check_archive(tmp, limits)
            except ArchiveError as exc:  # name the archive the user asked for, not the temporary one
                raise ArchiveError(str(exc).replace(str(tmp), str(out))) from None
        return names
    except OSError as exc:
        raise ArchiveError(f"cannot pack {source} into {out}: {exc}") from None


# --- checking -----------------------------------------------------------------------------------------


def _open_zip(path: Path, limits: ArchiveLimits) -> zipfile.ZipFile:
    try:
        _check_end_record(path, limits)
        return zipfile.ZipFile(path)
    except ArchiveError:
        raise
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{path} is not a zip archive or is corrupt: {exc}") from None
    except OSError as exc:
        raise ArchiveError(f"cannot read the scene archive {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # zipfile raises a zoo of exceptions on hostile central directories
        raise ArchiveError(f"{path} is a corrupt zip archive: {type(exc).__name__}: {exc}") from None


def _check_end_record(path: Path, limits: ArchiveLimits) -> None:
    """Refuse an entry count or a central directory too large before zipfile parses it into memory.

    Uses zipfile's own end-of-archive reader (a private helper: skipped if a future Python drops it).
    """
    directory = central_directory(path)
    if directory is None:
        return  # zipfile.ZipFile reports "not a zip"
    entries, size = directory
    if entries > limits.max_entries:
        raise ArchiveError(f"{path} has {entries} entries, more than the limit of {limits.max_entries}")
    if size > limits.max_entries * MAX_CENTRAL_RECORD:
        raise ArchiveError(f"{path} has a {size}-byte central directory, too large for {limits.max_entries} entries")


def central_directory(path: Path) -> tuple[int, int] | None:
    """(entries, bytes) of the zip's central directory as its end record declares them, read before zipfile parses
    the directory into memory; None when there is no end record (not a zip) or Python's zipfile no longer has the
    private helper this uses."""
    end_rec_data = getattr(zipfile, "_EndRecData", None)
    if end_rec_data is None:
        return None
    with open(path, "rb") as f:
        record = end_rec_data(f)
    if not record:
        return None
    return record[4], record[5]  # _ECD_ENTRIES_TOTAL, _ECD_SIZE


def _check_structure(zf: zipfile.ZipFile, path: Path, limits: ArchiveLimits) -> list[zipfile.ZipInfo]:
    """Every check that needs only the central directory; returns the entries in archive order."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveError(f"{path} has {len(infos)} entries, more than the limit of {limits.max_entries}")
    seen: set[str] = set()
    files: set[str] = set()
    folders: set[str] = set()
    total = compressed = 0
    for info in infos:
        name = info.filename
        _check_member_name(path, name)
        _check_member_kind(path, info)
        if info.flag_bits & _ENCRYPTED_FLAGS:
            raise ArchiveError(f"{path}: member {name!r} is encrypted")
        if info.compress_type not in _SUPPORTED_METHODS:
            raise ArchiveError(f"{path}: member {name!r} uses unsupported compression method {info.compress_type}")
        key = name.rstrip("/")
        if key in seen:
            raise ArchiveError(f"{path}: member {name!r} appears more than once")
        seen.add(key)
        parts = key.split("/")
        if len(parts) > limits.max_depth:
            raise ArchiveError(f"{path}: member {name!r} is {len(parts)} levels deep, more than the limit of "
                               f"{limits.max_depth}")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        if info.is_dir():
            folders.add(key)
            if info.file_size:
                raise ArchiveError(f"{path}: folder entry {name!r} declares {info.file_size} bytes of data")
            continue
        files.add(key)
        if info.file_size > limits.max_file_bytes:
            raise ArchiveError(
                f"{path}: member {name!r} is {info.file_size} bytes, more than the limit of {limits.max_file_bytes}"
            )
        total += info.file_size
        compressed += info.compress_size
        if total > limits.max_total_bytes:
            raise ArchiveError(
                f"{path}: the files add up to more than the limit of {limits.max_total_bytes} bytes "
                f"(reached at member {name!r})"
            )
    clash = files & folders
    if clash:
        raise ArchiveError(f"{path}: member {sorted(clash)[0]!r} is both a file and a folder")
    if not files:
        raise ArchiveError(f"{path} is an empty archive: it holds no files")
    if total > limits.ratio_floor_bytes and total > limits.max_ratio * max(compressed, 1):
        worst = max(
            (i for i in infos if not i.is_dir()), key=lambda i: i.file_size / max(i.compress_size, 1)
        )
        raise ArchiveError(
            f"{path} expands {total / max(compressed, 1):.0f} times (limit {limits.max_ratio:g}), "
            f"a zip bomb? Worst member: {worst.filename!r}"
        )
    _check_overlaps(zf, path, infos)
    return infos


def _check_member_name(path: Path, name: str) -> None:
    def bad(why: str) -> ArchiveError:
        return ArchiveError(f"{path}: member {name!r} {why}")

    if not name:
        raise bad("has an empty name")
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        raise bad("has an absolute path")
    if "\\" in name:
        raise bad("contains a backslash")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise bad("contains control characters")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise bad("is not valid Unicode") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise bad(f"is longer than {MAX_NAME_BYTES} bytes")
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    for part in parts:
        if part == "..":
            raise bad("has a '..' part")
        if part in ("", "."):
            raise bad("has an empty or '.' part")
        if len(part.encode("utf-8")) > MAX_PART_BYTES:
            raise bad(f"has a part longer than {MAX_PART_BYTES} bytes")


def _check_member_kind(path: Path, info: zipfile.ZipInfo) -> None:
    """Refuse symlinks and special files; the unix mode sits in the high 16 bits of external_attr."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    name = info.filename
    if kind == stat.S_IFLNK:
        raise ArchiveError(f"{path}: member {name!r} is a symlink")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveError(f"{path}: member {name!r} is a special file (mode {mode:o})")
    if kind == stat.S_IFDIR and not info.is_dir():
        raise ArchiveError(f"{path}: member {name!r} is marked as a folder but its name lacks a trailing '/'")
    if kind == stat.S_IFREG and info.is_dir():
        raise ArchiveError(f"{path}: member {name!r} is marked as a file but its name ends with '/'")


def _check_overlaps(zf: zipfile.ZipFile, path: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse members whose data ranges overlap (the 'overlapping files' zip bomb) or run past the end."""
    end_of_data = getattr(zf, "start_dir", None)
    spans = sorted(
        ((i.header_offset, i.header_offset + _LOCAL_HEADER_SIZE + i.compress_size, i) for i in infos),
        key=lambda span: span[:2],
    )
    for (_start, end, info), (next_start, _, other) in zip(spans, spans[1:]):
        if next_start < end:
            raise ArchiveError(f"{path}: members {info.filename!r} and {other.filename!r} overlap")
    if spans and end_of_data is not None and spans[-1][1] > end_of_data:
        raise ArchiveError(f"{path}: member {spans[-1][2].filename!r} runs past the end of the data")


def _stream_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, sink: BinaryIO | None) -> None:
    """Decompress one member, at most its declared size, checking its CRC; write it to `sink` if given.

    Errors reading the archive become ArchiveError; errors writing to `sink` propagate as they are.
    """
    budget = info.file_size
    written = 0
    try:
        src = zf.open(info)
    except Exception as exc:  # BadZipFile, NotImplementedError, OSError on a bad offset...
        raise ArchiveError(f"{path}: member {info.filename!r} is corrupt: {type(exc).__name__}: {exc}") from None
    with src:
        while True:
            try:
                chunk = src.read(min(CHUNK, budget - written + 1))
            except Exception as exc:  # BadZipFile (bad CRC), zlib.error, EOFError, LZMAError...
                raise ArchiveError(
                    f"{path}: member {info.filename!r} is corrupt: {type(exc).__name__}: {exc}"
                ) from None
            if not chunk:
                break
            written += len(chunk)
            if written > budget:
                raise ArchiveError(f"{path}: member {info.filename!r} holds more than its declared {budget} bytes")
            if sink is not None:
                sink.write(chunk)
    if written != budget:
        raise ArchiveError(f"{path}: member {info.filename!r} holds {written} bytes, not the declared {budget}")


def copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, sink: BinaryIO, path: Path | str, budget: int) -> None:
    """Copy one member of an untrusted zip (`path` names it in errors) into `sink`, refusing it before reading
    if it declares more than `budget` bytes; it is streamed, held to its declared size and its CRC checked."""
    if info.file_size > budget:
        raise ArchiveError(f"{path}: member {info.filename!r} would unpack to {info.file_size} bytes, more than "
                           f"the {budget} it may hold")
    _stream_member(zf, info, Path(path), sink)


# --- extracting ---------------------------------------------------------------------------------------


def _extract_into(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], path: Path, root: Path) -> None:
    folders: set[str] = set()
    for info in infos:
        parts = info.filename.rstrip("/").split("/")
        last = len(parts) if info.is_dir() else len(parts) - 1
        folders.update("/".join(parts[:i]) for i in range(1, last + 1))
    for folder in sorted(folders, key=lambda f: (f.count("/"), f)):
        target = _inside(root, folder, path)
        os.mkdir(target, DIR_MODE)
        os.chmod(target, DIR_MODE)
        if not stat.S_ISDIR(os.lstat(target).st_mode):
            raise ArchiveError(f"{path}: folder {folder!r} did not extract as a folder")
    for info in infos:
        if info.is_dir():
            continue
        target = _inside(root, info.filename, path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(target, flags, FILE_MODE)
        with os.fdopen(fd, "wb") as sink:
            os.fchmod(sink.fileno(), FILE_MODE)
            _stream_member(zf, info, path, sink)


def _inside(root: Path, name: str, path: Path) -> Path:
    """root/name, after checking that its resolved parent lies inside root."""
    target = root.joinpath(*name.split("/"))
    parent = target.parent.resolve(strict=True)
    if parent != root and not parent.is_relative_to(root):
        raise ArchiveError(f"{path}: member {name!r} would land outside the destination")
    return parent / target.name


# --- packing ------------------------------------------------------------------------------------------


def _walk_scene(root: Path, source: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """(folders, (file, size) pairs) under root, as '/'-joined relative names; refuses links and specials."""
    dirs: list[str] = []
    files: list[tuple[str, int]] = []
    pending = [""]
    while pending:
        rel = pending.pop()
        with os.scandir(root / rel if rel else root) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if entry.name in SKIPPED_NAMES:
                continue
            name = f"{rel}/{entry.name}" if rel else entry.name
            where = source / name
            if entry.is_symlink():
                raise ArchiveError(f"{where} is a symlink; copy the file it points to into the scene instead")
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                _check_source_name(where, name + "/")
                dirs.append(name)
                pending.append(name)
            elif stat.S_ISREG(st.st_mode):
                _check_source_name(where, name)
                files.append((name, st.st_size))
            else:
                raise ArchiveError(f"{where} is a special file (FIFO, socket or device), not a regular file")
    return dirs, files


def _check_source_name(where: Path, name: str) -> None:
    try:
        _check_member_name(where, name)
    except ArchiveError as exc:
        raise ArchiveError(f"cannot pack {where}: its name would be refused by render nodes ({exc})") from None


def _check_tree_limits(source: Path, dirs: list[str], files: list[tuple[str, int]], limits: ArchiveLimits) -> None:
    if not files:
        raise ArchiveError(f"the scene folder {source} holds no files")
    if len(dirs) + len(files) > limits.max_entries:
        raise ArchiveError(
            f"the scene folder {source} holds {len(dirs) + len(files)} files and folders, "
            f"more than the limit of {limits.max_entries}"
        )
    total = 0
    for name, size in files:
        if size > limits.max_file_bytes:
            raise ArchiveError(f"{source / name} is {size} bytes, more than the limit of {limits.max_file_bytes}")
        total += size
        if total > limits.max_total_bytes:
            raise ArchiveError(f"the scene folder {source} holds more than {limits.max_total_bytes} bytes")


def _fixed_info(name: str, mode: int, compress_type: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
    info.create_system = 3  # unix, so the mode bits mean what they say
    info.external_attr = mode << 16
    info.compress_type = compress_type
    return info


def _write_dir_entry(zf: zipfile.ZipFile, name: str) -> None:
    info = _fixed_info(name, stat.S_IFDIR | DIR_MODE, zipfile.ZIP_STORED)
    info.external_attr |= 0x10  # MS-DOS directory flag
    zf.writestr(info, b"")


def _write_file_entry(zf: zipfile.ZipFile, name: str, src: Path, size: int, source: Path) -> None:
    info = _fixed_info(name, stat.S_IFREG | FILE_MODE, zipfile.ZIP_DEFLATED)
    info.file_size = size  # lets zipfile decide on zip64 up front
    copied = 0
    with open(src, "rb") as f, zf.open(info, "w") as dst:
        while chunk := f.read(CHUNK):
            copied += len(chunk)
            if copied > size:
                break
            dst.write(chunk)
    if copied != size:
        raise ArchiveError(f"{source / name} changed size while it was being packed")
