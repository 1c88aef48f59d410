"""One contract suite run against every storage backend: a local directory and S3 (a real moto server)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from httpov.errors import StorageError
from httpov.local_farm import free_port
from httpov.storage import open_storage
from httpov.storage.base import Storage
from httpov.storage.local import LocalStorage
from httpov.storage.s3 import S3Storage
from tests.conftest import wait_for
from tests.s3server import apply_env, make_bucket, moto_thread
from tests.store.test_retention import check_forged_sweep

pytestmark = pytest.mark.integration

BIG = 9 * 1024 * 1024  # above boto3's 8 MB multipart threshold


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_thread() as endpoint:
        yield endpoint


@pytest.fixture
def s3_storage(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    apply_env(monkeypatch, moto_endpoint)
    bucket = "contract-" + uuid.uuid4().hex[:12]
    make_bucket(moto_endpoint, bucket)
    storage = open_storage(f"s3://{bucket}/some/prefix")
    assert isinstance(storage, S3Storage)
    return storage


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    return request.getfixturevalue("s3_storage")


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_put_get_round_trip(storage: Storage, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    storage.put_file("scenes/abc.zip", _file(tmp_path / "in.zip", data))
    target = tmp_path / "out" / "deeper" / "scene.zip"
    storage.get_file("scenes/abc.zip", target)
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["scene.zip"]  # no temporary left behind


def test_missing_key_raises_file_not_found(storage: Storage, tmp_path: Path) -> None:
    target = tmp_path / "out" / "x"
    with pytest.raises(FileNotFoundError):
        storage.get_file("jobs/none/x.zip", target)
    with pytest.raises(FileNotFoundError):
        storage.get_bytes("jobs/none/x.zip")
    assert list(target.parent.iterdir()) == []


def test_exists(storage: Storage) -> None:
    assert not storage.exists("a/b")
    storage.put_bytes("a/b", b"1")
    assert storage.exists("a/b")
    assert not storage.exists("a")


def test_list_with_prefix_is_sorted(storage: Storage) -> None:
    for key in ["jobs/j1/batches/2.zip", "jobs/j1/batches/10.zip", "jobs/j2/batches/1.zip", "scenes/s.zip"]:
        storage.put_bytes(key, key.encode())
    assert storage.list("jobs/j1/") == ["jobs/j1/batches/10.zip", "jobs/j1/batches/2.zip"]
    assert storage.list("jobs/") == ["jobs/j1/batches/10.zip", "jobs/j1/batches/2.zip", "jobs/j2/batches/1.zip"]
    assert storage.list("") == sorted(storage.list("jobs/") + ["scenes/s.zip"])
    assert storage.list("nothing/") == []


def test_delete_is_idempotent(storage: Storage) -> None:
    storage.put_bytes("k/1", b"x")
    storage.delete("k/1")
    assert not storage.exists("k/1")
    storage.delete("k/1")
    storage.delete("never/was")
    assert storage.list("k/") == []


def test_delete_prefix_removes_a_folder_and_nothing_else(storage: Storage, tmp_path: Path) -> None:
    keys = ["jobs/j1/batches/1.zip", "jobs/j1/logs/1.failed.log", "jobs/j1/frames/a.png", "jobs/j10/batches/1.zip",
            "scenes/s.zip"]
    for key in keys:
        storage.put_bytes(key, key.encode())
    assert storage.size() == sum(len(k) for k in keys)
    assert storage.size("jobs/j1/") == sum(len(k) for k in keys[:3])
    assert storage.delete_prefix("jobs/j1/") == 3
    assert storage.list("") == ["jobs/j10/batches/1.zip", "scenes/s.zip"]
    assert storage.delete_prefix("jobs/j1/") == 0
    with pytest.raises(ValueError):
        storage.delete_prefix("jobs/j1")  # would take jobs/j10 too
    storage.delete("jobs/j10/batches/1.zip")
    storage.delete("scenes/s.zip")
    assert storage.size() == 0
    if isinstance(storage, LocalStorage):  # no empty folders left behind
        assert list(storage.root.iterdir()) == []
        storage.put_bytes("jobs/j2/batches/1.zip", b"again")  # and a folder removed is made again
        assert storage.get_bytes("jobs/j2/batches/1.zip") == b"again"


def test_put_bytes_get_bytes(storage: Storage) -> None:
    storage.put_bytes("small/obj", b"hello \x00 world")
    assert storage.get_bytes("small/obj") == b"hello \x00 world"
    storage.put_bytes("small/obj", b"")
    assert storage.get_bytes("small/obj") == b""


def test_large_file_round_trip(storage: Storage, tmp_path: Path) -> None:
    data = os.urandom(BIG)
    storage.put_file("big/file", _file(tmp_path / "big", data))
    storage.get_file("big/file", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == data
    if isinstance(storage, S3Storage):  # a multipart upload's ETag ends in -<number of parts>
        etag = storage.client.head_object(Bucket=storage.bucket, Key=storage.prefix + "big/file")["ETag"]
        assert "-" in etag, etag


def test_overwrite_is_atomic(storage: Storage, tmp_path: Path) -> None:
    """Readers racing a writer see a whole old or a whole new object, never part of one, never a temporary."""
    versions = [_file(tmp_path / f"v{c}", bytes([c]) * BIG) for c in b"ab"]
    storage.put_file("obj", versions[0])
    done = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(1, 7):
                storage.put_file("obj", versions[i % 2])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    reads = 0
    while not done.is_set() or reads == 0:
        target = tmp_path / "read"
        storage.get_file("obj", target)
        data = target.read_bytes()
        assert len(data) == BIG and data.count(data[:1]) == BIG, "reader saw a mix of two versions"
        assert storage.list("") == ["obj"]  # no temporary or half-written object is ever listed
        reads += 1
    thread.join()
    assert not errors, errors
    assert storage.get_bytes("obj") == versions[0].read_bytes()  # the last write (i=6) won


def test_local_write_in_progress_is_invisible(tmp_path: Path) -> None:
    """While put_file is still reading its source (a pipe we feed), the key holds the whole old object."""
    storage = LocalStorage(tmp_path / "store")
    storage.put_bytes("scenes/s.zip", b"old" * 1000)
    fifo = tmp_path / "source"
    os.mkfifo(fifo)
    thread = threading.Thread(target=storage.put_file, args=("scenes/s.zip", fifo))
    thread.start()
    with open(fifo, "wb") as feed:
        feed.write(b"n" * 1_000_000)
        feed.flush()
        wait_for(lambda: [p for p in (tmp_path / "store" / "scenes").iterdir() if p.name.startswith(".tmp-")], 10,
                 "put_file to be writing the new object")  # it reads the pipe in 1 MiB chunks: still reading
        assert storage.get_bytes("scenes/s.zip") == b"old" * 1000
        assert storage.list("") == ["scenes/s.zip"]
        assert [p.name for p in (tmp_path / "store" / "scenes").iterdir() if p.name.startswith(".tmp-")]
        feed.write(b"n" * 1_000_000)
    thread.join(10)
    assert storage.get_bytes("scenes/s.zip") == b"n" * 2_000_000
    assert os.listdir(tmp_path / "store" / "scenes") == ["s.zip"]


def test_s3_upload_in_progress_is_invisible(s3_storage: S3Storage, tmp_path: Path) -> None:
    """While a multipart upload waits between parts, readers get the whole old object."""
    s3_storage.put_bytes("obj", b"old")
    part_sent, release = threading.Event(), threading.Event()

    def pause(**_: object) -> None:
        part_sent.set()
        release.wait(30)

    s3_storage.client.meta.events.register("after-call.s3.UploadPart", pause)
    thread = threading.Thread(target=s3_storage.put_file, args=("obj", _file(tmp_path / "new", b"n" * BIG)))
    thread.start()
    try:
        assert part_sent.wait(30)
        reader = S3Storage(s3_storage.bucket, s3_storage.prefix)
        assert reader.get_bytes("obj") == b"old"
        assert reader.list("") == ["obj"]
    finally:
        release.set()
        thread.join(30)
    assert S3Storage(s3_storage.bucket, s3_storage.prefix).get_bytes("obj") == b"n" * BIG


def test_s3_object_replaced_during_download(s3_storage: S3Storage, tmp_path: Path) -> None:
    """A multipart download whose object is replaced midway (HTTP 412 on the next range) starts again."""
    s3_storage.put_file("obj", _file(tmp_path / "old", b"o" * BIG))
    head_done, replaced = threading.Event(), threading.Event()
    s3_storage.client.meta.events.register("after-call.s3.HeadObject", lambda **_: head_done.set())

    def hold(**_: object) -> None:  # a before-call handler that returned a value would replace the request
        replaced.wait(30)

    s3_storage.client.meta.events.register("before-call.s3.GetObject", hold)
    thread = threading.Thread(target=s3_storage.get_file, args=("obj", tmp_path / "got"))
    thread.start()
    try:
        assert head_done.wait(30)
        S3Storage(s3_storage.bucket, s3_storage.prefix).put_file("obj", _file(tmp_path / "new", b"n" * BIG))
    finally:
        replaced.set()
        thread.join(30)
    assert (tmp_path / "got").read_bytes() == b"n" * BIG


def test_bad_keys_are_refused(storage: Storage, tmp_path: Path) -> None:
    for key in ["../x", "/abs", "a//b", "a/./b", ""]:
        with pytest.raises(ValueError):
            storage.put_bytes(key, b"x")
        with pytest.raises(ValueError):
            storage.get_file(key, tmp_path / "x")


def test_check_passes(storage: Storage) -> None:
    storage.check()
    assert storage.list("") == []  # the probe does not linger


# S3 only: how failures are reported.


def test_s3_prefixes_keep_stores_apart(s3_storage: S3Storage) -> None:
    other = S3Storage(s3_storage.bucket, "other")
    other.put_bytes("k", b"other")
    s3_storage.put_bytes("k", b"mine")
    assert s3_storage.get_bytes("k") == b"mine" and other.get_bytes("k") == b"other"
    assert s3_storage.list("") == ["k"]
    keys = [o["Key"] for o in s3_storage.client.list_objects_v2(Bucket=s3_storage.bucket)["Contents"]]
    assert sorted(keys) == ["other/k", "some/prefix/k"]


def test_s3_missing_bucket_fails_check(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    apply_env(monkeypatch, moto_endpoint)
    storage = S3Storage.from_url("s3://no-such-bucket/p")
    with pytest.raises(StorageError) as info:
        storage.check()
    assert "no-such-bucket" in str(info.value) and "does not exist" in str(info.value)
    assert info.value.hint
    with pytest.raises(StorageError, match="no-such-bucket.*does not exist"):
        storage.put_file("k", _file(tmp_path / "f", b"x"))
    with pytest.raises(StorageError, match="no-such-bucket.*does not exist"):
        storage.list("")


def test_s3_unreachable_endpoint_fails_fast(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    apply_env(monkeypatch, endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    storage = S3Storage.from_url("s3://some-bucket")
    sent: list[str] = []  # each HTTP attempt botocore makes: fast means one per call, no retry, no back-off
    storage.client.meta.events.register("before-send.s3", lambda request, **_: sent.append(request.method))
    with pytest.raises(StorageError) as info:
        storage.check()
    assert endpoint in str(info.value) and "some-bucket" in str(info.value)
    assert len(sent) == 1, sent
    with pytest.raises(StorageError):
        storage.put_file("k", _file(tmp_path / "f", b"x"))
    assert len(sent) == 2, sent
    with pytest.raises(StorageError):
        storage.get_file("k", tmp_path / "g")
    assert len(sent) == 3, sent


def test_s3_no_credentials(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    apply_env(monkeypatch, moto_endpoint)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError) as info:
        S3Storage.from_url("s3://any-bucket").check()
    assert "credentials" in str(info.value)


def test_s3_without_boto3_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['boto3'] = None\n"
        "from httpov.errors import StorageError\n"
        "from httpov.storage import open_storage\n"
        "try:\n    open_storage('s3://bucket/p')\n"
        "except StorageError as exc:\n    print(exc, '|', exc.hint)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert "boto3" in out.stdout and "httpov[s3]" in out.stdout, out.stdout + out.stderr


def test_s3_storage_works_after_fork(s3_storage: S3Storage) -> None:
    """A prefork worker inherits the storage object: the child gets a client of its own."""
    s3_storage.put_bytes("parent", b"p")  # the parent's client has open connections now
    pid = os.fork()
    if pid == 0:  # the child: report success through its exit status only
        try:
            s3_storage.put_bytes("child", s3_storage.get_bytes("parent") + b"c")
            os._exit(0)
        except BaseException:  # noqa: BLE001
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert s3_storage.get_bytes("child") == b"pc"


def test_a_forged_job_record_deletes_nothing_of_another_job_in_s3(s3_storage: S3Storage, store) -> None:
    """Issue #25 item 4 on S3 (the local folder: tests/store/test_retention.py): S3 lists by prefix, so a forged
    id 'victim/frames' would have deleted the victim's frames."""
    check_forged_sweep(store, s3_storage)
