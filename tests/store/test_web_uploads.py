"""Uploads to one real `httpov web` process (cheroot, real Redis) over raw sockets: who sends and how much is decided
from the headers, before a byte of the body is read (401 for nobody, 413 past HTTPOV_MAX_SCENE_BYTES, 429 for an
account's third upload at once, while another account's goes through), a client too slow to send is cut off (408),
and a bad upload's error names only what the user sent, never the server's temporary paths."""
from __future__ import annotations

import json
import re
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from httpov.archive import ArchiveLimits, pack_scene
from httpov.settings import Settings
from tests.conftest import private_settings, wait_for, write_scene
from tests.store.test_web_signin import PASSWORD, Server, serving
from tests.store.test_web_tokens import SCENE, add, multipart

HUGE = 10 * 1024**4  # 10 TiB: a server that read such a body before answering would never answer


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Iterator[Settings]:
    with private_settings(tmp_path_factory.mktemp("uploads"), max_scene_bytes=4 * 1024**2) as s:
        yield s


@pytest.fixture(scope="module")
def server(tmp_path_factory, settings: Settings) -> Iterator[Server]:
    yield from serving(tmp_path_factory.mktemp("uploads-web"), settings, ("alice", "bob"))


@pytest.fixture(scope="module")
def tokens(settings: Settings, server: Server) -> dict[str, str]:
    return {name: add(settings, server, name) for name in ("alice", "bob")}


def headers_only(port: int, path: str, length: int, extra: dict[str, str] | None = None) -> socket.socket:
    """A connection that has sent a POST's headers (announcing `length` bytes of body) and nothing of its body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}",
             "Content-Type: multipart/form-data; boundary=x", *(f"{k}: {v}" for k, v in (extra or {}).items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def answer(sock: socket.socket) -> tuple[int, str]:
    """The status and body of the response on `sock`, read until the server closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode(errors="replace")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


def test_nobody_signed_in_is_refused_from_the_headers_before_the_body(server):
    within = 3 * 1024**2  # under the scene limit: only who sends it can refuse it
    for path, accept, length in (("/api/jobs", "application/json", within), ("/api/jobs", "application/json", HUGE),
                                 ("/submit", "text/html", within)):
        started = time.monotonic()
        sock = headers_only(server.port, path, length, {"Accept": accept})
        status, body = answer(sock)  # the answer, and the connection closed: nothing of the body was sent
        assert status == 401 and "sign in first" in body, body
        assert time.monotonic() - started < 5
        sock.close()


def test_an_upload_past_the_size_limit_is_refused_from_its_content_length(server, tokens):
    sock = headers_only(server.port, "/api/jobs", 4 * 1024**2 + 1, bearer(tokens["alice"]))
    status, body = answer(sock)
    assert status == 413 and "HTTPOV_MAX_SCENE_BYTES" in json.loads(body)["error"], body
    sock.close()
    # any other request's body is a small form's
    sock = headers_only(server.port, "/api/jobs/abc/cancel", 1024**2, bearer(tokens["alice"]))
    status, body = answer(sock)
    assert status == 413 and "the most a form here takes" in body, body
    sock.close()
    # a body of no announced length (chunked) is not taken at all
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    sock.sendall(f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nAuthorization: Bearer "
                 f"{tokens['alice']}\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\n5\r\nhello\r\n".encode())
    status, body = answer(sock)
    assert status == 411 and "Content-Length" in body, body
    sock.close()


def test_an_accounts_third_upload_at_once_is_refused_and_anothers_goes_through(server, tokens, tmp_path):
    held = [headers_only(server.port, "/api/jobs", 1024**2, bearer(tokens["alice"])) for _ in range(2)]
    for sock in held:
        sock.sendall(b"--x\r\n")  # under way: the server is reading their bodies

    def third() -> tuple[int, str]:
        """A third upload, whole (10 bytes, not a form): answered at once, refused or read and found bad."""
        sock = headers_only(server.port, "/api/jobs", 10, {**bearer(tokens["alice"]), "Connection": "close"})
        try:
            sock.sendall(b"x" * 10)
            return answer(sock)
        finally:
            sock.close()

    wait_for(lambda: third()[0] == 429, 10, "alice's third upload to be refused")
    status, body = third()
    assert status == 429 and "HTTPOV_WEB_UPLOADS_PER_ACCOUNT" in json.loads(body)["error"], body
    # another account's upload is its own: bob's bad zip is read and answered for what it is, not refused
    (tmp_path / "bad.zip").write_bytes(b"not a zip at all")
    made, kind = multipart({"name": "bobs"}, tmp_path / "bad.zip")
    status, _, text = server.http("POST", "/api/jobs", {**bearer(tokens["bob"]), "Content-Type": kind}, made)
    assert status == 400 and json.loads(text)["field"] == "scene", text
    for sock in held:  # the uploads end (their clients gone): alice's slots are given back
        sock.close()
    wait_for(lambda: third()[0] != 429, 10, "alice's slots to be given back")


def test_a_bad_uploads_error_names_only_what_the_user_sent(server, tokens, tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really a zip")
    made, kind = multipart({"name": "bad"}, tmp_path / "bad.zip")
    status, _, text = server.http("POST", "/api/jobs", {**bearer(tokens["bob"]), "Content-Type": kind}, made)
    error = json.loads(text)["errors"]["scene"]
    assert status == 400 and "green.zip" in error, text  # the name the upload came with
    assert "/tmp" not in text and "httpov-upload-" not in text and "scene.zip" not in text, text
    # the page says the same, to a browser signed in as bob
    cookie = server.session("bob")
    status, got, page = server.http("GET", "/submit", {"Cookie": cookie, "Accept": "text/html"})
    cookie = (got["Set-Cookie"] or cookie).split(";")[0]  # the session now holds the form's CSRF secret
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf, page
    made, kind = multipart({"name": "bad", "csrf_token": csrf.group(1)}, tmp_path / "bad.zip")
    status, _, page = server.http("POST", "/submit", {"Cookie": cookie, "Accept": "text/html",
                                                      "Content-Type": kind}, made)
    assert status == 400 and "green.zip" in page, page
    assert "/tmp" not in page and "httpov-upload-" not in page, page


@pytest.fixture
def impatient(tmp_path: Path, settings: Settings, tokens: dict[str, str]) -> Iterator[Server]:
    """A server of the same farm (its accounts and tokens) that gives a request 1 s and wants 100 kB/s after."""
    from httpov.web.auth import add_user

    add_user(tmp_path / "accounts", "bob", PASSWORD)
    started = Server(tmp_path, settings.with_(web_request_seconds=1.0, web_upload_min_rate=100_000))
    yield started
    started.stop()


def test_a_slow_sender_is_cut_off_and_its_slot_given_back(impatient, tokens):
    sock = headers_only(impatient.port, "/api/jobs", 1024**2, bearer(tokens["bob"]))
    started = time.monotonic()
    try:
        while not select.select([sock], [], [], 0.05)[0]:  # a byte at a time, until the server answers
            sock.sendall(b"x")
            assert time.monotonic() - started < 10, "the slow sender was never cut off"
    except OSError:  # cut off while sending: the answer is waiting
        pass
    status, body = answer(sock)
    assert status == 408 and "HTTPOV_WEB_UPLOAD_MIN_RATE" in body, body
    sock.close()
    # headers sent too slowly are cut off too, and bob may upload again: his slot was given back
    slow = socket.create_connection(("127.0.0.1", impatient.port), timeout=10)
    slow.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    started = time.monotonic()
    while slow.recv(65536):
        pass
    assert time.monotonic() - started < 5
    slow.close()
    quick = headers_only(impatient.port, "/api/jobs", 10, {**bearer(tokens["bob"]), "Connection": "close"})
    quick.sendall(b"x" * 10)
    assert answer(quick)[0] == 400
    quick.close()


def test_a_good_upload_still_makes_a_job(server, tokens, tmp_path):
    folder = write_scene(tmp_path / "green", SCENE, "Width=16\nHeight=16\nInitial_Frame=1\nFinal_Frame=2\n")
    pack_scene(folder, tmp_path / "green.zip", ArchiveLimits())
    made, kind = multipart({"name": "fine"}, tmp_path / "green.zip")
    status, _, text = server.http("POST", "/api/jobs", {**bearer(tokens["bob"]), "Content-Type": kind}, made)
    assert status == 201, text
