"""The node-local scene cache against a real S3 server (moto in its own process): one download per node, LRU."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from httpov.archive import file_sha256, pack_scene
from httpov.errors import ArchiveError, NodeFaultError
from httpov.storage.s3 import S3Storage
from httpov.worker.cache import SceneCache
from tests.conftest import wait_for
from tests.s3server import apply_env, make_bucket, moto_process, recorded_requests, s3_env, start_recording

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

# Each process says it is ready (a "go.<pid>" file), waits for a line on its stdin, then asks the cache for the scene
# and prints the folder it got.
WORKER = """
import os, sys
from pathlib import Path
from httpov.worker.cache import SceneCache
from httpov.storage import open_storage
root, url, key, go = sys.argv[1:5]
storage = open_storage(url)
cache = SceneCache(Path(root), 10**9)
Path(go + "." + str(os.getpid())).touch()
sys.stdin.readline()
with cache.use(storage, key) as path:
    print(path)
"""

# Holds a scene in use until its stdin closes.
HOLDER = """
import sys
from pathlib import Path
from httpov.worker.cache import SceneCache
from httpov.storage import open_storage
root, url, key, max_bytes = sys.argv[1:5]
with SceneCache(Path(root), int(max_bytes)).use(open_storage(url), key) as path:
    print(path, flush=True)
    sys.stdin.read()
"""


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with moto_process(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def storage(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    apply_env(monkeypatch, endpoint)
    bucket = "cache-" + uuid.uuid4().hex[:12]
    make_bucket(endpoint, bucket)
    return S3Storage(bucket, "farm")


def _env(endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, **s3_env(endpoint), "PYTHONPATH": str(REPO)}


def _upload_scene(storage: S3Storage, tmp_path: Path, tag: str, size: int = 4000) -> tuple[str, dict[str, bytes]]:
    """A scene of two files holding `size` random bytes in all; returns its key and its files."""
    files = {"pov.ini": f"Input_File_Name=scene.pov\n; {tag}\n".encode(),
             "scene.pov": b"// " + os.urandom(size // 2).hex().encode()[: size - 60] + b"\n"}
    source = tmp_path / f"src-{tag}"
    source.mkdir()
    for name, data in files.items():
        (source / name).write_bytes(data)
    zip_path = tmp_path / f"{tag}.zip"
    pack_scene(source, zip_path)
    key = f"scenes/{file_sha256(zip_path)}.zip"
    storage.put_file(key, zip_path)
    return key, files


def _read_tree(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _object_gets(endpoint: str, storage: S3Storage, key: str) -> int:
    """GET requests the S3 server received for the object `key` (moto's own request log)."""
    path = f"/{storage.bucket}/{storage.prefix}{key}"
    return sum(1 for r in recorded_requests(endpoint) if r["method"] == "GET" and urlparse(r["url"]).path == path)


def test_many_processes_download_a_scene_once(endpoint: str, storage: S3Storage, tmp_path: Path) -> None:
    key, files = _upload_scene(storage, tmp_path, "shared")
    root, go = tmp_path / "cache", tmp_path / "go"
    start_recording(endpoint)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(root), storage.url, key, str(go)],
                              env=_env(endpoint), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    wait_for(lambda: len(list(tmp_path.glob("go.*"))) == len(procs), 60,
             "every process to have imported everything and wait at the line")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (_out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    folders = {out.strip() for out, _ in outputs}
    assert folders == {str(root / "scenes" / key[len("scenes/"):-len(".zip")])}
    assert _read_tree(Path(folders.pop())) == files
    assert _object_gets(endpoint, storage, key) == 1
    assert os.listdir(root / "tmp") == []
    # Once cached, asking again costs no request at all.
    start_recording(endpoint)
    assert _read_tree(_get(SceneCache(root, 10**9), storage, key)) == files
    assert recorded_requests(endpoint) == []


def _get(cache: SceneCache, storage: S3Storage, key: str) -> Path:
    """The scene's folder, fetched if not cached, and no longer held once this returns."""
    with cache.use(storage, key) as path:
        return path


def _now_on_disk(folder: Path) -> int:
    """The file system's clock now, in ns: the mtime a file touched now gets (coarser than time.time_ns())."""
    probe = folder / "clock-probe"
    probe.touch()
    os.utime(probe)
    return probe.stat().st_mtime_ns


def _size(cache: SceneCache) -> int:
    """Bytes of the extracted scenes in the cache."""
    return sum(f.stat().st_size for f in cache.scenes.rglob("*") if f.is_file() and not f.is_symlink())


def test_least_recently_used_scene_is_evicted(storage: S3Storage, tmp_path: Path) -> None:
    keys = {tag: _upload_scene(storage, tmp_path, tag)[0] for tag in "abc"}
    cache = SceneCache(tmp_path / "cache", 0)
    one = _get(cache, storage, keys["a"])
    cache.max_bytes = 2 * _size(cache) + 100  # room for two scenes, not three
    a = _get(cache, storage, keys["a"])
    b = _get(cache, storage, keys["b"])
    wait_for(lambda: _now_on_disk(tmp_path) > b.stat().st_mtime_ns, 10, "a use now to be stamped later than b's")
    assert _get(cache, storage, keys["a"]) == a == one  # a is now more recently used than b
    c = _get(cache, storage, keys["c"])
    assert a.is_dir() and c.is_dir() and not b.exists()
    assert _size(cache) <= cache.max_bytes
    assert sorted(os.listdir(tmp_path / "cache" / "scenes")) == sorted([a.name, c.name])


def test_scene_in_use_is_never_evicted(endpoint: str, storage: S3Storage, tmp_path: Path) -> None:
    keys = {tag: _upload_scene(storage, tmp_path, tag)[0] for tag in "abcd"}
    root = tmp_path / "cache"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), storage.url, keys["a"], "1"],
                              env=_env(endpoint), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline().strip()  # printed once the holder has the scene and its lock
        held = Path(line)
        assert line and held.is_dir(), holder.stderr.read() if holder.stderr else ""
        held_files = _read_tree(held)
        cache = SceneCache(root, 1)  # smaller than any scene: everything not in use must go
        for tag in "bcd":
            path = _get(cache, storage, keys[tag])
            assert held.is_dir() and _read_tree(held) == held_files  # the holder's scene, a, is older but in use
            assert sorted(os.listdir(root / "scenes")) == sorted([held.name, path.name])
        with cache.use(storage, keys["b"]) as in_use:  # fetching b evicts d
            c = _get(cache, storage, keys["c"])  # keeps b (in use here) and a (in use by the holder)
            assert sorted(os.listdir(root / "scenes")) == sorted([held.name, in_use.name, c.name])
            assert in_use.is_dir() and held.is_dir()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # release
        holder.wait(30)
    assert holder.returncode == 0
    last = _get(cache, storage, keys["d"])  # nothing in use any more: only the scene just returned stays
    assert os.listdir(root / "scenes") == [last.name]


def test_missing_scene_raises_and_leaves_nothing(storage: S3Storage, tmp_path: Path) -> None:
    cache = SceneCache(tmp_path / "cache", 10**6)
    with pytest.raises(FileNotFoundError):
        _get(cache, storage, "scenes/" + "0" * 64 + ".zip")
    assert os.listdir(tmp_path / "cache" / "scenes") == [] and os.listdir(tmp_path / "cache" / "tmp") == []


def test_damaged_scene_is_refused(storage: S3Storage, tmp_path: Path) -> None:
    key, _ = _upload_scene(storage, tmp_path, "good")
    other, _ = _upload_scene(storage, tmp_path, "other")
    storage.put_bytes(key, storage.get_bytes(other))  # a valid zip, but not the one its name promises
    cache = SceneCache(tmp_path / "cache", 10**6)
    with pytest.raises(ArchiveError):
        _get(cache, storage, key)
    assert os.listdir(tmp_path / "cache" / "scenes") == [] and os.listdir(tmp_path / "cache" / "tmp") == []
    with pytest.raises(ValueError):
        _get(cache, storage, "scenes/../x.zip")


PLANTED = {"pov.ini": b"Input_File_Name=scene.pov\n", "scene.pov": b"// planted: not the scene its key names\n"}


def _plant(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name, data in PLANTED.items():
        (folder / name).write_bytes(data)


@pytest.mark.parametrize("when", ["before_the_node_fetched_it", "in_place_of_the_fetched_one"])
def test_a_planted_scene_folder_is_discarded_and_fetched_again(endpoint: str, storage: S3Storage, tmp_path: Path,
                                                              when: str) -> None:
    """Someone who can write in the cache folder puts a folder under a scene's name: the node uses only folders it
    fetched and marked itself (their device and inode, in its own 0700 `verified/`), so it fetches the real one."""
    key, files = _upload_scene(storage, tmp_path, "real")
    start_recording(endpoint)
    root = tmp_path / "cache"
    entry = root / "scenes" / key[len("scenes/"):-len(".zip")]
    if when == "before_the_node_fetched_it":
        root.mkdir(mode=0o777)
        os.chmod(root, 0o777)  # a cache folder anyone could write to, as /tmp/httpov-cache once was
        _plant(entry)
        gets = 1
    else:
        assert _read_tree(_get(SceneCache(root, 10**9), storage, key)) == files
        os.rename(entry, tmp_path / "moved-away")
        _plant(entry)
        gets = 2
    cache = SceneCache(root, 10**9)
    assert _read_tree(_get(cache, storage, key)) == files
    assert os.stat(root).st_mode & 0o777 == 0o700 and os.stat(cache.verified).st_mode & 0o777 == 0o700
    assert _object_gets(endpoint, storage, key) == gets
    assert os.listdir(root / "tmp") == []
    start_recording(endpoint)
    assert _read_tree(_get(SceneCache(root, 10**9), storage, key)) == files  # now the node's own: no request
    assert recorded_requests(endpoint) == []


def test_a_cache_folder_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache folder someone else made (say /tmp/httpov-cache, made first by another user) is theirs to fill."""
    SceneCache(tmp_path / "cache", 10**6)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(tmp_path).st_uid + 1)  # as if the node were another user
    with pytest.raises(NodeFaultError, match="is not a folder of this node's user") as caught:
        SceneCache(tmp_path / "cache", 10**6)
    assert "HTTPOV_CACHE_DIR" in (caught.value.hint or "")
