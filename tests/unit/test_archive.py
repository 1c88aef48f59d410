"""Scene archives: deterministic packing, and every way an untrusted zip can attack a render node."""
from __future__ import annotations

import hashlib
import os
import stat
import struct
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from httpov.archive import (
    ArchiveLimits,
    check_archive,
    extract_archive,
    file_sha256,
    pack_scene,
)
from httpov.errors import ArchiveError, SceneError
from httpov.files import TMP_PREFIX

# --- helpers ------------------------------------------------------------------------------------------


def write_zip(
    path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]], compression: int = zipfile.ZIP_DEFLATED
) -> Path:
    """A zip holding `members` exactly as given (duplicates and hostile names included)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def info(name: str, mode: int | None = None) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    zi.create_system = 3
    if mode is not None:
        zi.external_attr = mode << 16
    return zi


def patch_headers(path: Path, member: int, local_field: int, central_field: int, fmt: str, value: int) -> None:
    """Overwrite one field of member number `member` in its local header and its central directory record."""
    data = bytearray(path.read_bytes())
    for signature, field in ((b"PK\x03\x04", local_field), (b"PK\x01\x02", central_field)):
        pos = -1
        for _ in range(member + 1):
            pos = data.index(signature, pos + 1)
        struct.pack_into("<" + fmt, data, pos + field, value)
    path.write_bytes(bytes(data))


# Field offsets: (local header, central directory record).
FLAGS = (6, 8)
METHOD = (8, 10)
FILE_SIZE = (22, 24)


class Workspace:
    """A zip to attack with, a destination that must not leak, and a sentinel folder that must stay empty."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.zip = root / "zips" / "scene.zip"
        self.zip.parent.mkdir()
        self.sentinel = root / "sentinel"
        self.sentinel.mkdir()
        self.dest = root / "nodes" / "node1" / "dest"

    def assert_untouched(self) -> None:
        """Nothing was written anywhere but the zip: no dest, empty sentinel, no stray file."""
        assert not self.dest.exists() and not self.dest.is_symlink()
        assert list(self.sentinel.iterdir()) == []
        stray = [p for p in self.root.rglob("*") if p != self.zip and p.is_file()]
        assert stray == []

    def assert_refused(self, match: str) -> None:
        with pytest.raises(ArchiveError, match=match):
            check_archive(self.zip)
        with pytest.raises(ArchiveError, match=match):
            extract_archive(self.zip, self.dest)
        self.assert_untouched()


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def make_scene(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "pov.ini").write_text("Input_File_Name=scene.pov\nWidth=32\nHeight=24\n")
    (root / "scene.pov").write_text('#include "inc/colors.inc"\nsphere { 0, 1 pigment { Red } }\n')
    (root / "inc").mkdir()
    (root / "inc" / "colors.inc").write_text("#declare Red = rgb <1, 0, 0>;\n")
    (root / "maps").mkdir()
    (root / "maps" / "height.png").write_bytes(bytes(range(256)) * 40)
    (root / "empty").mkdir()
    return root


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root: file -> bytes, folder -> None; refuses anything else."""
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        mode = p.lstat().st_mode
        rel = p.relative_to(root).as_posix()
        if stat.S_ISDIR(mode):
            out[rel] = None
        else:
            assert stat.S_ISREG(mode), f"{p} is neither a file nor a folder"
            out[rel] = p.read_bytes()
    return out


# --- pack and extract ---------------------------------------------------------------------------------


def test_pack_then_extract_round_trips_with_fixed_modes(tmp_path: Path) -> None:
    src = make_scene(tmp_path / "scene")
    os.chmod(src / "scene.pov", 0o600)
    out = tmp_path / "scene.zip"
    pack_scene(src, out)
    assert check_archive(out) == ["inc/colors.inc", "maps/height.png", "pov.ini", "scene.pov"]
    dest = tmp_path / "node" / "dest"
    extract_archive(out, dest)
    assert tree(dest) == tree(src)
    for p in [dest, *dest.rglob("*")]:
        expected = 0o755 if p.is_dir() else 0o644
        assert stat.S_IMODE(p.lstat().st_mode) == expected, p
    with zipfile.ZipFile(out) as zf:
        assert [i.filename for i in zf.infolist()] == sorted(i.filename for i in zf.infolist())
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_pack_is_deterministic_whatever_the_mtimes_modes_and_creation_order(tmp_path: Path) -> None:
    a = make_scene(tmp_path / "a")
    b = tmp_path / "b"
    b.mkdir()
    for rel in sorted(tree(a), reverse=True):  # create in another order, with other metadata
        src, dst = a / rel, b / rel
        if src.is_dir():
            dst.mkdir(parents=True, exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
            os.chmod(dst, 0o755)
            os.utime(dst, (1_000_000_000, 1_000_000_000))
    pack_scene(a, tmp_path / "a.zip")
    for rel in tree(a):  # the same files touched later, packed an hour later (zip's clock counts in 2 s steps)
        os.utime(a / rel, (2_000_000_000, 2_000_000_000))
    now = time.time
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(time, "time", lambda: now() + 3600)
        pack_scene(a, tmp_path / "a2.zip")
    pack_scene(b, tmp_path / "b.zip")
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "a2.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    (b / "scene.pov").write_text("sphere { 0, 2 }\n")
    pack_scene(b, tmp_path / "b2.zip")
    assert file_sha256(tmp_path / "b2.zip") != file_sha256(tmp_path / "a.zip")


def test_pack_from_ini_or_pov_file_packs_its_folder(tmp_path: Path) -> None:
    src = make_scene(tmp_path / "scene")
    pack_scene(src, tmp_path / "dir.zip")
    pack_scene(src / "pov.ini", tmp_path / "ini.zip")
    pack_scene(src / "scene.pov", tmp_path / "pov.zip")
    assert file_sha256(tmp_path / "dir.zip") == file_sha256(tmp_path / "ini.zip") == file_sha256(tmp_path / "pov.zip")


def test_pack_skips_only_pycache_git_and_ds_store(tmp_path: Path) -> None:
    src = make_scene(tmp_path / "scene")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.pyc").write_bytes(b"x")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref")
    (src / "inc" / ".DS_Store").write_bytes(b"junk")
    (src / ".hidden.inc").write_text("// kept\n")
    pack_scene(src, tmp_path / "s.zip")
    names = check_archive(tmp_path / "s.zip")
    assert ".hidden.inc" in names
    assert not [n for n in names if "__pycache__" in n or ".git/" in n or ".DS_Store" in n]


@pytest.mark.parametrize("kind", ["file_symlink", "dir_symlink", "dangling_symlink", "fifo"])
def test_pack_refuses_links_and_special_files(tmp_path: Path, kind: str) -> None:
    src = make_scene(tmp_path / "scene")
    secret = tmp_path / "secret.txt"
    secret.write_text("password")
    if kind == "file_symlink":
        (src / "inc" / "leak.inc").symlink_to(secret)
    elif kind == "dir_symlink":
        (src / "etc").symlink_to(tmp_path)
    elif kind == "dangling_symlink":
        (src / "gone.inc").symlink_to(tmp_path / "nowhere")
    else:
        os.mkfifo(src / "pipe")
    out = tmp_path / "s.zip"
    with pytest.raises(ArchiveError, match="symlink|special"):
        pack_scene(src, out)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(TMP_PREFIX)] == []


def test_pack_refuses_names_nodes_would_refuse(tmp_path: Path) -> None:
    src = make_scene(tmp_path / "scene")
    (src / "a\\b.inc").write_text("x")
    with pytest.raises(ArchiveError, match="backslash"):
        pack_scene(src, tmp_path / "s.zip")


def test_pack_refuses_empty_folder_missing_source_and_output_inside_source(tmp_path: Path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ArchiveError, match="no files"):
        pack_scene(tmp_path / "empty", tmp_path / "e.zip")
    with pytest.raises(SceneError, match="does not exist"):
        pack_scene(tmp_path / "missing", tmp_path / "m.zip")
    src = make_scene(tmp_path / "scene")
    with pytest.raises(ArchiveError, match="inside the scene folder"):
        pack_scene(src, src / "scene.zip")
    assert not (src / "scene.zip").exists()


def test_pack_applies_limits(tmp_path: Path) -> None:
    src = make_scene(tmp_path / "scene")
    with pytest.raises(ArchiveError, match="limit of 3"):
        pack_scene(src, tmp_path / "s.zip", ArchiveLimits(max_entries=3))
    with pytest.raises(ArchiveError, match="height.png"):
        pack_scene(src, tmp_path / "s.zip", ArchiveLimits(max_file_bytes=1000))
    with pytest.raises(ArchiveError, match="more than 5000 bytes"):
        pack_scene(src, tmp_path / "s.zip", ArchiveLimits(max_total_bytes=5000))
    (src / "zeros.df3").write_bytes(bytes(3 * 1024 * 1024))
    with pytest.raises(ArchiveError, match="zip bomb"):
        pack_scene(src, tmp_path / "s.zip")
    assert not (tmp_path / "s.zip").exists()


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    p = tmp_path / "f"
    data = os.urandom(3 * 1024 * 1024 + 7)
    p.write_bytes(data)
    assert file_sha256(p) == hashlib.sha256(data).hexdigest()


# --- attacks: names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, match",
    [
        ("../evil", r"'\.\.'"),
        ("../../sentinel/evil", r"'\.\.'"),
        ("a/../../../sentinel/evil", r"'\.\.'"),
        ("inc/..", r"'\.\.'"),
        ("..\\..\\sentinel\\evil", "backslash"),
        ("inc\\evil.inc", "backslash"),
        ("\\evil", "absolute"),
        ("\\\\server\\share\\evil", "absolute"),
        ("C:\\Windows\\evil", "absolute"),
        ("C:/evil", "absolute"),
        ("c:evil", "absolute"),
        ("a//evil", "empty"),
        ("./evil", "empty or '.'"),
        ("evil\x07.inc", "control"),
        ("x" * 300, "longer than 255"),
        ("/".join(["abcdefgh"] * 150), "longer than 1024"),
    ],
)
def test_hostile_names_are_refused_and_nothing_is_written(ws: Workspace, name: str, match: str) -> None:
    write_zip(ws.zip, [("pov.ini", b"Input_File_Name=a.pov\n"), (name, b"pwned")])
    ws.assert_refused(match)


def test_absolute_name_is_refused_and_its_target_not_written(ws: Workspace) -> None:
    target = ws.sentinel / "evil"
    write_zip(ws.zip, [("pov.ini", b"x"), (str(target), b"pwned")])
    assert str(target).startswith("/")
    ws.assert_refused(f"{target}.*absolute")
    assert not target.exists()


# --- attacks: kinds of entries ------------------------------------------------------------------------


def test_symlink_entry_is_refused(ws: Workspace) -> None:
    write_zip(ws.zip, [("pov.ini", b"x"), (info("leak.inc", 0o120777), b"../../sentinel")])
    ws.assert_refused("'leak.inc' is a symlink")


@pytest.mark.parametrize(
    "mode", [0o010644, 0o020644, 0o060644, 0o140644], ids=["fifo", "chardev", "blockdev", "socket"]
)
def test_special_file_entries_are_refused(ws: Workspace, mode: int) -> None:
    write_zip(ws.zip, [("pov.ini", b"x"), (info("dev", mode), b"")])
    ws.assert_refused("'dev' is a special file")


def test_folder_mode_without_trailing_slash_is_refused(ws: Workspace) -> None:
    write_zip(ws.zip, [("pov.ini", b"x"), (info("inc", 0o040755), b"")])
    ws.assert_refused("'inc' is marked as a folder")


def test_setuid_and_executable_modes_are_not_kept(ws: Workspace) -> None:
    write_zip(ws.zip, [(info("pov.ini", 0o104777), b"x"), (info("inc/", 0o042777), b"")])
    extract_archive(ws.zip, ws.dest)
    assert stat.S_IMODE((ws.dest / "pov.ini").stat().st_mode) == 0o644
    assert stat.S_IMODE((ws.dest / "inc").stat().st_mode) == 0o755


def test_modes_are_fixed_whatever_the_umask(ws: Workspace) -> None:
    write_zip(ws.zip, [("pov.ini", b"x"), ("inc/a.inc", b"y")])
    old = os.umask(0o077)
    try:
        extract_archive(ws.zip, ws.dest)
    finally:
        os.umask(old)
    modes = {p.relative_to(ws.root).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in [ws.dest, *ws.dest.rglob("*")]}
    assert modes == {"nodes/node1/dest": 0o755, "nodes/node1/dest/pov.ini": 0o644,
                     "nodes/node1/dest/inc": 0o755, "nodes/node1/dest/inc/a.inc": 0o644}


def test_duplicate_names_are_refused(ws: Workspace) -> None:
    write_zip(ws.zip, [("pov.ini", b"x"), ("scene.pov", b"one"), ("scene.pov", b"two")])
    ws.assert_refused("'scene.pov' appears more than once")


def test_a_name_that_is_both_file_and_folder_is_refused(ws: Workspace) -> None:
    write_zip(ws.zip, [("inc", b"file"), ("inc/colors.inc", b"x")])
    ws.assert_refused("'inc' is both a file and a folder")


def test_empty_archive_and_folders_only_are_refused(ws: Workspace) -> None:
    write_zip(ws.zip, [])
    ws.assert_refused("empty archive")
    write_zip(ws.zip, [("scene/", b""), ("scene/inc/", b"")])
    ws.assert_refused("empty archive")


def test_encrypted_member_is_refused(ws: Workspace) -> None:
    write_zip(ws.zip, [("pov.ini", b"x"), ("secret.pov", b"sphere{0,1}")], zipfile.ZIP_STORED)
    patch_headers(ws.zip, 1, *FLAGS, "H", 0x1)
    ws.assert_refused("'secret.pov' is encrypted")


def test_unknown_compression_method_is_refused(ws: Workspace) -> None:
    write_zip(ws.zip, [("pov.ini", b"x"), ("odd.pov", b"sphere{0,1}")], zipfile.ZIP_STORED)
    patch_headers(ws.zip, 1, *METHOD, "H", 99)
    ws.assert_refused("'odd.pov' uses unsupported compression method 99")


# --- attacks: sizes -----------------------------------------------------------------------------------


def test_zip_bomb_is_refused_by_ratio(ws: Workspace) -> None:
    write_zip(ws.zip, [("pov.ini", b"x"), ("zeros.df3", bytes(5 * 1024 * 1024))])
    assert ws.zip.stat().st_size < 30_000  # > 200:1
    ws.assert_refused(r"expands \d+ times.*zip bomb.*'zeros.df3'")


def test_small_compressible_files_are_not_mistaken_for_bombs(ws: Workspace) -> None:
    write_zip(ws.zip, [("pov.ini", b"x"), ("blank.inc", b" " * 100_000)])
    assert check_archive(ws.zip) == ["pov.ini", "blank.inc"]


def test_entry_count_bomb_is_refused(ws: Workspace) -> None:
    with zipfile.ZipFile(ws.zip, "w") as zf:
        for i in range(10_001):
            zf.writestr(f"f{i}", b"")
    ws.assert_refused("10001 entries, more than the limit of 10000")


def test_entry_count_is_refused_from_the_end_record_before_parsing(ws: Workspace) -> None:
    write_zip(ws.zip, [("pov.ini", b"x"), ("a.pov", b"y")])
    data = bytearray(ws.zip.read_bytes())
    end = data.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", data, end + 8, 60_000, 60_000)  # entries on this disk, entries in total
    ws.zip.write_bytes(bytes(data))
    ws.assert_refused("60000 entries, more than the limit of 10000")


def test_file_and_total_size_limits(ws: Workspace) -> None:
    write_zip(ws.zip, [("pov.ini", b"x" * 600), ("big.inc", os.urandom(2000))])
    with pytest.raises(ArchiveError, match="'big.inc' is 2000 bytes, more than the limit of 1000"):
        check_archive(ws.zip, ArchiveLimits(max_file_bytes=1000))
    with pytest.raises(ArchiveError, match="more than the limit of 2500 bytes.*'big.inc'"):
        extract_archive(ws.zip, ws.dest, ArchiveLimits(max_total_bytes=2500))
    with pytest.raises(ArchiveError, match="more than the limit of 1"):
        extract_archive(ws.zip, ws.dest, ArchiveLimits(max_entries=1))
    ws.assert_untouched()
    assert sorted(check_archive(ws.zip, ArchiveLimits(max_file_bytes=2000, max_total_bytes=2600,
                                                      max_entries=2))) == ["big.inc", "pov.ini"]


@pytest.mark.parametrize("declared", [10, 5000])
def test_lying_size_header_writes_nothing(ws: Workspace, declared: int) -> None:
    write_zip(ws.zip, [("pov.ini", b"x"), ("scene.pov", os.urandom(1000))])
    patch_headers(ws.zip, 1, *FILE_SIZE, "I", declared)
    ws.assert_refused("'scene.pov'")


def test_overlapping_members_are_refused(ws: Workspace) -> None:
    write_zip(ws.zip, [("a.pov", b"sphere{0,1}" * 10), ("b.pov", b"box{0,1}" * 10)])
    with zipfile.ZipFile(ws.zip) as zf:
        first_offset = zf.infolist()[0].header_offset
    data = bytearray(ws.zip.read_bytes())
    second_central = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 1)
    struct.pack_into("<I", data, second_central + 42, first_offset)
    ws.zip.write_bytes(bytes(data))
    ws.assert_refused("'a.pov' and 'b.pov' overlap|'b.pov' and 'a.pov' overlap")


# --- attacks: corrupt and not-a-zip -------------------------------------------------------------------


def test_bad_crc_is_refused_and_a_partial_extraction_removed(ws: Workspace) -> None:
    write_zip(ws.zip, [("pov.ini", b"Input_File_Name=a.pov\n"), ("a.pov", b"sphere { 0, 1 }\n")], zipfile.ZIP_STORED)
    data = bytearray(ws.zip.read_bytes())
    pos = data.index(b"sphere")
    data[pos] ^= 0xFF
    ws.zip.write_bytes(bytes(data))
    ws.assert_refused("'a.pov' is corrupt.*CRC")


def test_corrupt_deflate_stream_is_refused(ws: Workspace) -> None:
    write_zip(ws.zip, [("pov.ini", b"x"), ("a.pov", os.urandom(4000))])
    with zipfile.ZipFile(ws.zip) as zf:
        second = zf.infolist()[1]
    data = bytearray(ws.zip.read_bytes())
    start = second.header_offset + 30 + len("a.pov")
    data[start : start + 200] = bytes(200)
    ws.zip.write_bytes(bytes(data))
    ws.assert_refused("'a.pov' is corrupt")


def test_non_zip_truncated_and_missing_files_are_refused(ws: Workspace) -> None:
    ws.zip.write_text("camera { location <0, 0, -3> }\n")
    ws.assert_refused("not a zip")
    write_zip(ws.zip, [("pov.ini", b"x" * 1000)])
    ws.zip.write_bytes(ws.zip.read_bytes()[:-30])
    ws.assert_refused("not a zip")
    ws.zip.unlink()
    ws.assert_refused("cannot read")


# --- destination --------------------------------------------------------------------------------------


def test_existing_destination_is_refused_and_left_alone(ws: Workspace) -> None:
    write_zip(ws.zip, [("pov.ini", b"new")])
    ws.dest.mkdir(parents=True)
    (ws.dest / "pov.ini").write_text("old")
    with pytest.raises(ArchiveError, match="already exists"):
        extract_archive(ws.zip, ws.dest)
    assert (ws.dest / "pov.ini").read_text() == "old"


def test_destination_symlink_is_refused(ws: Workspace) -> None:
    write_zip(ws.zip, [("pov.ini", b"new")])
    ws.dest.parent.mkdir(parents=True)
    ws.dest.symlink_to(ws.sentinel)
    with pytest.raises(ArchiveError, match="already exists"):
        extract_archive(ws.zip, ws.dest)
    assert list(ws.sentinel.iterdir()) == []
    ws.dest.unlink()
    ws.dest.symlink_to(ws.root / "dangling")
    with pytest.raises(ArchiveError, match="already exists"):
        extract_archive(ws.zip, ws.dest)
    assert not (ws.root / "dangling").exists()


# --- properties ---------------------------------------------------------------------------------------

SAFE_PART = st.text(
    alphabet=st.characters(whitelist_categories=("L", "N"), whitelist_characters="-_. ~+"), min_size=1, max_size=12
).filter(lambda s: s not in (".", "..", "__pycache__", ".git", ".DS_Store"))


@st.composite
def safe_trees(draw: st.DrawFn) -> dict[str, bytes | None]:
    """A scene tree: relative name -> file bytes, or None for an (empty) folder."""
    paths = draw(st.lists(st.lists(SAFE_PART, min_size=1, max_size=4).map(tuple), min_size=1, max_size=12))
    files: dict[tuple[str, ...], bytes | None] = {}
    for p in paths:
        if any(p[:i] in files for i in range(1, len(p) + 1)) or any(k[: len(p)] == p for k in files):
            continue  # would clash with a file already drawn, or sit on a folder already drawn
        files[p] = draw(st.one_of(st.none(), st.binary(max_size=300), st.just(b"\0" * 2000)))
    assume(any(v is not None for v in files.values()))
    return {"/".join(k): v for k, v in files.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(spec=safe_trees())
def test_property_pack_extract_round_trips(spec: dict[str, bytes | None]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        src = root / "src"
        src.mkdir()
        for name, data in spec.items():
            if data is None:
                (src / name).mkdir(parents=True, exist_ok=True)
            else:
                (src / name).parent.mkdir(parents=True, exist_ok=True)
                (src / name).write_bytes(data)
        pack_scene(src, root / "a.zip")
        pack_scene(src, root / "b.zip")
        assert (root / "a.zip").read_bytes() == (root / "b.zip").read_bytes()
        assert sorted(check_archive(root / "a.zip")) == sorted(n for n, d in spec.items() if d is not None)
        extract_archive(root / "a.zip", root / "dest")
        assert tree(root / "dest") == tree(src)


NAME_PART = st.one_of(
    st.sampled_from(["..", ".", "", "a", "inc", "C:", "c:", "\\", "..\\..", "evil", " ", "...", "\x01", "é", "\u202e"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6),
)
MEMBER_NAME = st.builds(
    lambda lead, parts, seps, trail: lead + "".join(p + s for p, s in zip(parts, seps))[:-1] + trail,
    st.sampled_from(["", "", "", "/", "\\", "C:\\", "//"]),
    st.lists(NAME_PART, min_size=1, max_size=5),
    st.lists(st.sampled_from(["/", "/", "\\"]), min_size=5, max_size=5),
    st.sampled_from(["", "", "/"]),
)
MODES = st.sampled_from([None, 0o100644, 0o100755, 0o104777, 0o040755, 0o120777, 0o010644, 0o020644, 0o140755])
PLAIN_MEMBER = st.tuples(
    st.lists(SAFE_PART, min_size=1, max_size=3).map("/".join), st.sampled_from([None, 0o100644]), st.binary(max_size=40)
)
ANY_MEMBER = st.tuples(MEMBER_NAME, MODES, st.binary(max_size=40))


@settings(max_examples=300, deadline=None)
@given(members=st.lists(st.one_of(PLAIN_MEMBER, ANY_MEMBER), max_size=6))
def test_property_any_member_names_are_refused_or_land_inside_dest(
    members: list[tuple[str, int | None, bytes]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp))
        write_zip(ws.zip, [(info(name, mode), data) for name, mode, data in members])
        try:
            names = check_archive(ws.zip)
        except ArchiveError:
            names = None
        try:
            extract_archive(ws.zip, ws.dest)
        except ArchiveError:
            assert names is None, "extract refused what check accepted"
            ws.assert_untouched()
            event("refused")
            return
        event("extracted")
        assert names is not None, "extract accepted what check refused"
        root = ws.dest.resolve()
        extracted = set()
        for p in ws.dest.rglob("*"):
            mode = p.lstat().st_mode
            assert stat.S_ISREG(mode) or stat.S_ISDIR(mode)
            assert p.resolve().is_relative_to(root)
            if stat.S_ISREG(mode):
                assert stat.S_IMODE(mode) == 0o644
                extracted.add(p.relative_to(ws.dest).as_posix())
        assert extracted == set(names)
        assert list(ws.sentinel.iterdir()) == []
        outside = [p for p in ws.root.rglob("*") if p.is_file() and p != ws.zip and root not in p.resolve().parents]
        assert outside == []


@pytest.fixture(scope="module")
def packed_scene(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root = tmp_path_factory.mktemp("packed")
    src = make_scene(root / "scene")
    pack_scene(src, root / "scene.zip")
    return (root / "scene.zip").read_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=4
    ),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_property_damaged_archives_raise_only_archive_error(
    packed_scene: bytes, flips: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray(packed_scene)
    for pos, value in flips:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp))
        ws.zip.write_bytes(bytes(data))
        try:
            check_archive(ws.zip)
        except ArchiveError:
            pass
        try:
            extract_archive(ws.zip, ws.dest)
        except ArchiveError:
            ws.assert_untouched()
            event("refused")
        else:
            event("extracted")
            root = ws.dest.resolve()
            assert all(p.resolve().is_relative_to(root) for p in ws.dest.rglob("*"))
