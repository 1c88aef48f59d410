"""Writing a file atomically: readers of its name see the old file or the whole new one, never a part."""
from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

#: How the temporary files of atomic_write begin: a listing of stored keys leaves them out.
TMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_write(target: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[Path]:
    """Yield a fresh empty file in `target`'s folder to write (by name: open it, or hand the name to a library);
    on a normal exit it replaces `target` in one rename, on an exception it is deleted and `target` untouched.

    The file is created with mode 0666 less the umask, like any file a program writes (mkstemp's 0600 would hide
    results from the other users of a shared folder whatever their umask). With `fsync`, its bytes and then the
    rename are flushed to disk before this returns: for results that exist nowhere else."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = target.parent / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
            break
        except FileExistsError:
            continue
        except FileNotFoundError:  # a storage delete removed the folder, empty, meanwhile
            target.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmp
        if fsync:
            _fsync(tmp, os.O_RDONLY)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync(target.parent, os.O_RDONLY | os.O_DIRECTORY)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: file -> the text this process last wrote there and the file's (inode, size, mtime) just after (write_once)
_WRITTEN: dict[str, tuple[str, tuple[int, int, int]]] = {}
#: how many files write_once remembers: past it, it forgets them all (and writes each once more)
_REMEMBERED = 256


def write_once(path: Path, text: str) -> None:
    """Write `text` to `path` (and its folder, if it has none), unless the file holds it already as this process
    last wrote it: checked with one stat (its inode, size and modification time), not a read. For a render slot's
    files that stay the same from batch to batch (povray's confs, a job's ini)."""
    key = str(path)
    known = _WRITTEN.get(key)
    if known is not None and known[0] == text:
        with contextlib.suppress(OSError):
            if _signature(os.stat(key)) == known[1]:
                return
    try:
        path.write_text(text)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if len(_WRITTEN) >= _REMEMBERED:
        _WRITTEN.clear()
    _WRITTEN[key] = (text, _signature(os.stat(key)))


def _signature(found: os.stat_result) -> tuple[int, int, int]:
    return found.st_ino, found.st_size, found.st_mtime_ns
