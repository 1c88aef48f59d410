"""`httpov web`'s sign-in limit, sessions and `--behind-proxy`, against a real server process (cheroot) and plain
HTTP requests: the sixth failed sign-in is refused even with the right password, until the window has passed, however
many other names flood it and in every process on the farm's Redis; the address counted is the connection's unless a
proxy is trusted, and then only the hop the proxy added; over https the session cookie is Secure. Sessions end
server-side at sign-out, a new password or the account's removal, and outlive a restart; `next` stays on the site."""
from __future__ import annotations

import http.client
import json
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from httpov.local_farm import free_port, stop_worker, worker_env
from httpov.settings import Settings
from tests.conftest import private_settings, wait_for

PASSWORD = "correct horse battery"
# a name is data: quotes, a newline and a terminal escape must not forge or colour a log line
HOSTILE = "evil' from 10.9.9.9 (1 of 5 in 600 s)\nforged line \x1b[31mred"


def serving(folder: Path, settings: Settings, users: tuple[str, ...], *args: str,
            signed_in: bool = False) -> Iterator[Server]:
    """A module's `httpov web` in `folder`: these accounts (role user; alice too only when none is named), the
    server's own `args`, and with `signed_in` each account's session cookie in `server.cookies`; stopped after."""
    from httpov.web.auth import add_user

    for name in users:
        add_user(folder / "accounts", name, PASSWORD)
    started = Server(folder, settings, *args)
    if signed_in:
        started.cookies = {name: started.session(name) for name in users}  # type: ignore[attr-defined]
    yield started
    started.stop()


class Server:
    """One `httpov web` process (its own accounts file, with alice) and requests to it, no cookie jar."""

    def __init__(self, tmp: Path, settings: Settings, *args: str) -> None:
        from httpov.web.auth import add_user

        self.accounts = tmp / "accounts"
        if not self.accounts.exists():  # a restart in the same folder keeps the accounts (and the session key)
            add_user(self.accounts, "alice", PASSWORD)
        self.port = free_port()
        self.log = tmp / f"web-{self.port}.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "httpov.cli", "web", "--port", str(self.port),
                                      "--accounts", str(self.accounts), *args], env=worker_env(settings),
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)

        def up() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                return self.http("GET", "/login")[0] == 200
            except OSError:
                return False
        wait_for(up, 30, "httpov web to answer")

    def stop(self) -> None:
        stop_worker(self.proc, grace=10.0)
        print(self.log.read_text(errors="replace")[-3000:])

    def http(self, method: str, path: str, headers: dict[str, str] | None = None,
             body: bytes | None = None) -> tuple[int, http.client.HTTPMessage, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.headers, response.read().decode()
        finally:
            conn.close()

    def sign_in(self, name: str, password: str, headers: dict[str, str] | None = None,
                html: bool = True, path: str = "/login") -> tuple[int, http.client.HTTPMessage, str]:
        """The sign-in form as a browser (or a script) sends it: the page for its cookie and CSRF token, then the
        POST; `headers` go with both (X-Forwarded-* as a proxy adds them)."""
        headers = dict(headers or {})
        status, got, page = self.http("GET", "/login", headers)
        assert status == 200, page
        cookie = got["Set-Cookie"].split(";")[0]
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token, page
        form = f"csrf_token={token.group(1)}&user={_quote(name)}&password={_quote(password)}".encode()
        headers.update({"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        if html:
            headers["Accept"] = "text/html"
        return self.http("POST", path, headers, form)

    def session(self, name: str = "alice", password: str = PASSWORD) -> str:
        """A signed-in session's cookie (`httpov_session=...`)."""
        status, headers, page = self.sign_in(name, password)
        assert status == 302, page
        return headers["Set-Cookie"].split(";")[0]

    def api_status(self, cookie: str) -> int:
        """What the API answers a script replaying `cookie`: 200 signed in, 401 not."""
        return self.http("GET", "/api/jobs", {"Cookie": cookie, "Accept": "application/json"})[0]

    def page_status(self, cookie: str) -> tuple[int, str]:
        """What a browser replaying `cookie` gets for the jobs page: (200, '') or (302, where to)."""
        status, headers, _ = self.http("GET", "/", {"Cookie": cookie, "Accept": "text/html"})
        return status, headers.get("Location", "")

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def cookie_flags(headers: http.client.HTTPMessage) -> set[str]:
    """The attributes of the session cookie a response sets: {'httponly', 'samesite=lax', ...}."""
    cookie = headers["Set-Cookie"]
    assert cookie and cookie.startswith("httpov_session="), cookie
    return {part.strip().lower() for part in cookie.split(";")[1:]}


@pytest.fixture
def start(tmp_path: Path, settings: Settings) -> Iterator:
    servers: list[Server] = []

    def start(*args: str, folder: Path | None = None) -> Server:
        """A server in a new folder, or in `folder` (another's: its accounts file and session key)."""
        if folder is None:
            folder = tmp_path / f"server{len(servers)}"
            folder.mkdir()
        servers.append(Server(folder, settings, *args))
        return servers[-1]
    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One plain server for the module's tests of sessions and `next`, which need no server of their own: its limit
    is set out of reach, so that no test's failed sign-in from this address counts against another's (the limit is
    the other tests' subject, each on its own server and Redis prefix)."""
    with private_settings(tmp_path_factory.mktemp("site")) as settings:
        yield from serving(tmp_path_factory.mktemp("site-web"), settings, (), "--sign-in-attempts", "1000")


def test_the_sixth_sign_in_is_refused_even_with_the_right_password_until_the_window_has_passed(start):
    server = start("--sign-in-window", "6")  # longer than the attempts below take, short to wait out
    for _ in range(5):
        status, _, page = server.sign_in("alice", "not the password")
        assert status == 401 and "wrong user name or password" in page
    status, headers, page = server.sign_in("alice", PASSWORD)  # right, and refused: the password is not checked
    assert status == 429, page
    retry = int(headers["Retry-After"])
    assert 1 <= retry <= 6
    assert re.search(r'id="login-error">too many failed sign-ins for this user or from this address: '
                     rf"try again in {retry} s \(at \d\d:\d\d:\d\d\)<", page), page
    status, headers, body = server.sign_in("alice", PASSWORD, html=False)  # a script is answered JSON
    assert status == 429 and headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert "try again in" in answer["error"] and 1 <= answer["retry_after"] <= 6
    assert server.sign_in("bob", "not the password")[0] == 429  # the address too, whatever the name
    failures = [line for line in server.log_lines() if "failed sign-in" in line]
    assert len(failures) == 5 and "as 'alice' from 127.0.0.1 (5 of 5 in 6 s; the next ones are refused)" \
        in failures[-1], failures

    tries: list[tuple[int, http.client.HTTPMessage, str]] = []  # a refused sign-in is not counted as a failure
    wait_for(lambda: tries.append(server.sign_in("alice", PASSWORD)) or tries[-1][0] != 429,
             answer["retry_after"] + 20, "the window to pass")  # the server's own word for when it passes
    status, headers, _ = tries[-1]
    assert status == 302 and headers["Location"] == "/"
    signed_in = {"Cookie": headers["Set-Cookie"].split(";")[0], "Accept": "application/json"}
    assert server.http("GET", "/api/jobs", signed_in)[0] == 200


def test_a_forged_x_forwarded_for_is_ignored_without_behind_proxy(start):
    server = start()
    for n in range(5):  # five addresses a client claims, five names: still one connection's address
        forged = {"X-Forwarded-For": f"198.51.100.{n}", "Forwarded": f"for=198.51.100.{n}",
                  "X-Real-IP": f"198.51.100.{n}"}
        assert server.sign_in(f"user{n}", "not the password", forged)[0] == 401
    status, _, page = server.sign_in("alice", PASSWORD, {"X-Forwarded-For": "198.51.100.99"})
    assert status == 429 and "too many failed sign-ins" in page
    failures = [line for line in server.log_lines() if "failed sign-in" in line]
    assert len(failures) == 5 and all(" from 127.0.0.1 " in line for line in failures), failures
    # and a forwarded https does not make the cookie Secure (the request was plain http); its other flags hold
    status, headers, _ = server.http("GET", "/login", {"X-Forwarded-Proto": "https"})
    assert status == 200 and cookie_flags(headers) == {"httponly", "path=/", "samesite=lax"}


def test_behind_proxy_counts_the_address_the_proxy_added_and_a_good_sign_in_clears_its_account(start):
    server = start("--behind-proxy")
    for n in range(5):  # whatever a client sends first, the proxy's own hop (the last one) is the address
        hop = {"X-Forwarded-For": f"198.51.100.{n}, 203.0.113.7"}
        assert server.sign_in(HOSTILE if n == 0 else f"user{n}", "not the password", hop)[0] == 401
    status, _, page = server.sign_in("alice", PASSWORD, {"X-Forwarded-For": "198.51.100.9, 203.0.113.7"})
    assert status == 429 and "too many failed sign-ins" in page
    assert server.sign_in("alice", PASSWORD, {"X-Forwarded-For": "203.0.113.8"})[0] == 302  # another client

    def at(n: int) -> dict[str, str]:
        return {"X-Forwarded-For": f"192.0.2.{n}"}  # one address each: only the account's count adds up
    for n in range(4):
        assert server.sign_in("alice", "not the password", at(n))[0] == 401
    assert server.sign_in("alice", PASSWORD, at(4))[0] == 302  # clears alice's four failures
    for n in range(5, 10):
        assert server.sign_in("alice", "not the password", at(n))[0] == 401
    assert server.sign_in("alice", PASSWORD, at(10))[0] == 429  # five new failures: alice is refused again

    log = server.log_lines()
    failures = [line for line in log if "failed sign-in" in line]
    assert len(failures) == 5 + 4 + 5 and all(" from 203.0.113.7 " in line for line in failures[:5]), failures
    assert "failed sign-in as \"evil' from 10.9.9.9 (1 of 5 in 600 s)\\nforged line \\x1b[31mred\" from " \
        "203.0.113.7 (1 of 5 in 600 s)" in failures[0], failures[0]
    assert not any(line.startswith("forged") for line in log) and "\x1b" not in server.log.read_text()


def test_behind_proxy_over_https_makes_the_session_cookie_secure(start):
    server = start("--behind-proxy")
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "farm.example", "X-Forwarded-For": "203.0.113.9",
             "Referer": "https://farm.example/login"}  # Flask-WTF checks an https POST comes from this site
    status, headers, _ = server.http("GET", "/login", https)
    assert status == 200 and cookie_flags(headers) == {"secure", "httponly", "path=/", "samesite=lax"}
    status, headers, page = server.sign_in("alice", PASSWORD, https)
    assert status == 302, page
    assert cookie_flags(headers) == {"secure", "httponly", "path=/", "samesite=lax"}
    signed_in = {**https, "Cookie": headers["Set-Cookie"].split(";")[0], "Accept": "application/json"}
    assert server.http("GET", "/api/jobs", signed_in)[0] == 200
    # the proxy says plain http: the browser would drop a Secure cookie, so it is not one
    status, headers, _ = server.http("GET", "/login", {"X-Forwarded-Proto": "http"})
    assert status == 200 and cookie_flags(headers) == {"httponly", "path=/", "samesite=lax"}


def test_signing_out_ends_the_session_server_side(server):
    cookie = server.session()
    status, headers, page = server.http("GET", "/", {"Cookie": cookie, "Accept": "text/html"})
    assert status == 200, page
    browser = headers["Set-Cookie"].split(";")[0] if headers["Set-Cookie"] else cookie  # now with a CSRF token
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, page
    other = server.session()  # the same account in another browser
    status, headers, _ = server.http("POST", "/logout", {"Cookie": browser, "Accept": "text/html",
                                                         "Content-Type": "application/x-www-form-urlencoded"},
                                     f"csrf_token={token.group(1)}".encode())
    assert status == 302 and headers["Location"] == "/login"
    for replayed in (cookie, browser):  # a copy of the cookie, kept from before the sign-out, signs nobody in
        assert server.api_status(replayed) == 401
        assert server.page_status(replayed) == (302, "/login?next=/")
    assert server.api_status(other) == 200  # signing out here is not signing out there


def test_a_new_password_or_the_accounts_removal_ends_its_sessions_at_once(server):
    from httpov.web.auth import add_user

    # carol and bob are this test's own accounts on the module's server: alice is the other tests'
    add_user(server.accounts, "carol", PASSWORD)
    add_user(server.accounts, "bob", PASSWORD)
    carol = [server.session("carol"), server.session("carol")]
    bob = server.session("bob")
    assert [server.api_status(c) for c in (*carol, bob)] == [200, 200, 200]
    add_user(server.accounts, "carol", "a new password")  # `httpov web-user add carol` again
    assert [server.api_status(c) for c in carol] == [401, 401]
    assert server.page_status(carol[0]) == (302, "/login?next=/")
    assert server.api_status(bob) == 200
    assert server.api_status(server.session("carol", "a new password")) == 200
    assert server.sign_in("carol", PASSWORD)[0] == 401

    lines = [line for line in server.accounts.read_text().splitlines() if not line.startswith("bob:")]
    server.accounts.write_text("\n".join(lines) + "\n")  # bob's account removed
    assert server.api_status(bob) == 401 and server.page_status(bob) == (302, "/login?next=/")
    add_user(server.accounts, "bob", PASSWORD)  # and made again: the old session stays ended
    assert server.api_status(bob) == 401


def test_a_restart_keeps_the_sessions_and_the_key_is_kept_beside_the_accounts(start):
    first = start()
    cookie = first.session()
    key = Path(f"{first.accounts}.key")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    made = key.read_text()
    first.stop()
    again = start(folder=first.accounts.parent)  # the same accounts, the same Redis: a restart
    assert again.api_status(cookie) == 200 and again.page_status(cookie) == (200, "")
    assert key.read_text() == made


@pytest.mark.parametrize("target", ["/%09/evil.example", "//evil.example", "/%5Cevil.example", "/%5C/evil.example",
                                    "https://evil.example", "https:evil.example", "/%0a/evil.example",
                                    "/%0d%0aSet-Cookie:%20x=1", "%2F%2Fevil.example", "/%20/evil.example"])
def test_next_sends_a_signed_in_user_only_to_a_path_on_this_site(server, target):
    status, headers, page = server.sign_in("alice", PASSWORD, path=f"/login?next={target}")
    assert status == 302 and headers["Location"] == "/", (status, headers["Location"], page[:300])


def test_next_keeps_a_path_on_this_site(server):
    status, headers, _ = server.sign_in("alice", PASSWORD, path="/login?next=/jobs/abc%3Fx%3D1")
    assert status == 302 and headers["Location"] == "/jobs/abc?x=1"


def test_a_flood_of_other_names_and_addresses_leaves_the_attacked_account_counted_in_every_process(start):
    server = start("--behind-proxy")
    for n in range(5):  # someone guesses alice's password from five addresses
        assert server.sign_in("alice", "not the password", {"X-Forwarded-For": f"192.0.2.{n}"})[0] == 401
    for n in range(40):  # then fails with forty other names from forty other addresses
        hop = {"X-Forwarded-For": f"198.51.{n // 250}.{n % 250 + 1}"}
        assert server.sign_in(f"flood{n}", "not the password", hop)[0] == 401
    assert server.sign_in("alice", PASSWORD, {"X-Forwarded-For": "203.0.113.1"})[0] == 429
    server.stop()
    again = start("--behind-proxy", folder=server.accounts.parent)  # a restart, or the next process behind the proxy
    status, headers, body = again.sign_in("alice", PASSWORD, {"X-Forwarded-For": "203.0.113.2"}, html=False)
    assert status == 429 and headers["Content-Type"] == "application/json"
    assert 1 <= json.loads(body)["retry_after"] <= 600 and int(headers["Retry-After"]) >= 1
    assert again.sign_in("flood0", "not the password", {"X-Forwarded-For": "198.51.0.1"})[0] == 401  # 2 of 5
