"""Accounts' API tokens against one real `httpov web` process (cheroot) and the real CLI: a token made with
`httpov web-token add` acts as its account (its jobs are that account's), `list` shows its last use and never the
token, Redis keeps only its digest; revoking it (CLI, API, page) or removing its account stops it at the next request;
another account's token cannot revoke it (403, it still works); the page's Revoke asks first (a POST without the
confirmation naming the token is 400); the farm-wide token is an admin of no account."""
from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner, Result

from httpov.archive import ArchiveLimits, pack_scene
from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.settings import Settings
from tests.conftest import REDIS_URL, private_settings, write_scene
from tests.store.test_web_signin import PASSWORD, Server, serving

FARM_TOKEN = "farm-wide-" + secrets.token_urlsafe(24)
SCENE = """
#version 3.7;
camera { location <0, 0, -5> look_at <0, 0, 0> }
background { color rgb <0, 1, 0> }
"""


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Iterator[Settings]:
    """The module's own key prefix and queue (one server for every test: each test uses accounts of its own)."""
    with private_settings(tmp_path_factory.mktemp("tokens")) as s:
        yield s


@pytest.fixture(scope="module")
def server(tmp_path_factory, settings: Settings) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("tokens-web")
    (folder / "farm-tokens").write_text(f"# the old way\n{FARM_TOKEN}\n")
    yield from serving(folder, settings, ("bob", "carol", "dave", "erin"), "--tokens", str(folder / "farm-tokens"))


def run(settings: Settings, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["web-token", *args], env=worker_env(settings))
    print(result.output)
    return result


def add(settings: Settings, server: Server, name: str, label: str = "") -> str:
    """`httpov web-token add NAME`: the token it prints (on stdout, alone)."""
    done = run(settings, "add", name, "--accounts", str(server.accounts), *(["--label", label] if label else []))
    assert done.exit_code == 0, done.output
    token = done.stdout.strip()
    assert re.fullmatch(r"httpov_[A-Za-z0-9_-]{43}", token), done.stdout
    assert f"for {name}" in done.stderr and "shown only this once" in done.stderr
    return token


def call(server: Server, method: str, path: str, token: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, text = server.http(method, path, {"Authorization": f"Bearer {token}", "Accept": "application/json",
                                                 **(headers or {})}, body)
    return status, json.loads(text) if text.startswith(("{", "[")) else text


def listed(settings: Settings, name: str | None = None) -> list[dict]:
    done = run(settings, "list", *([name] if name else []), "--json")
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)


def multipart(fields: dict[str, str], scene: Path) -> tuple[bytes, str]:
    boundary = "httpov" + secrets.token_hex(8)
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="scene"; filename="green.zip"\r\n'
                 "Content-Type: application/zip\r\n\r\n".encode() + scene.read_bytes() + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_a_token_acts_as_its_account_and_redis_keeps_only_its_digest(settings, server, tmp_path):
    token = add(settings, server, "bob", "render script")
    assert call(server, "GET", "/api/jobs", token)[0] == 200
    folder = write_scene(tmp_path / "green", SCENE, "Width=16\nHeight=16\nInitial_Frame=1\nFinal_Frame=2\n")
    pack_scene(folder, tmp_path / "green.zip", ArchiveLimits())
    # the job is bob's: a user's token naming another owner is refused, not quietly changed (#24: only an admin
    # may submit for another user)
    body, kind = multipart({"name": "bobs", "user": "carol"}, tmp_path / "green.zip")
    status, refused = call(server, "POST", "/api/jobs", token, body, {"Content-Type": kind})
    assert status == 403 and "bob (user) may not submit a job for carol" in refused["error"], refused
    body, kind = multipart({"name": "bobs"}, tmp_path / "green.zip")
    status, made = call(server, "POST", "/api/jobs", token, body, {"Content-Type": kind})
    assert status == 201, made
    assert isinstance(made, dict)
    status, view = call(server, "GET", f"/api/jobs/{made['id']}", token)
    assert status == 200 and isinstance(view, dict) and view["user"] == "bob"

    rows = listed(settings, "bob")
    assert [(r["account"], r["label"]) for r in rows] == [("bob", "render script")]  # the first test: bob's only
    assert rows[0]["last_used"] is not None and rows[0]["last_used"] >= rows[0]["created"]
    text = run(settings, "list").stdout
    assert rows[0]["id"] in text and "render script" in text and "never" not in text and token not in text

    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert r.hgetall(f"{settings.prefix}:web:token:{digest}")["account"] == "bob"
    stored = []
    for key in r.scan_iter(match=f"{settings.prefix}:web:*"):
        stored.append(key)
        kind = r.type(key)
        stored += (r.hgetall(key).values() if kind == "hash" else r.smembers(key) if kind == "set"
                   else [r.get(key) or ""] if kind == "string" else [])
    assert len(stored) > 3 and not any(token in item or token[len("httpov_"):] in item for item in stored)
    # another account's token sees its own list, not bob's; bob's list has bob's token only
    carol = add(settings, server, "carol")
    status, carols = call(server, "GET", "/api/tokens", carol)
    assert status == 200 and [t["account"] for t in carols] == ["carol"]
    status, bobs = call(server, "GET", "/api/tokens", token)
    assert [t["id"] for t in bobs] == [rows[0]["id"]]
    assert server.log_lines() and token not in server.log.read_text()


def test_a_revoked_token_is_refused_at_its_next_request(settings, server):
    first, second = add(settings, server, "dave", "cli"), add(settings, server, "dave", "api")
    assert call(server, "GET", "/api/jobs", first)[0] == 200
    [row] = [r for r in listed(settings, "dave") if r["label"] == "cli"]
    done = run(settings, "remove", row["id"])
    assert done.exit_code == 0 and f"token {row['id']} of dave revoked" in done.stdout
    assert call(server, "GET", "/api/jobs", first)[0] == 401
    assert call(server, "GET", "/api/jobs", second)[0] == 200  # the account's other token is another token
    gone = run(settings, "remove", row["id"])
    assert gone.exit_code == 4 and f"no token has the id {row['id']}" in gone.output
    # through the API, by its own account: the token that revokes itself is refused next
    [row] = listed(settings, "dave")
    status, answer = call(server, "DELETE", f"/api/tokens/{row['id']}", second)
    assert status == 200 and isinstance(answer, dict)
    assert (answer["id"], answer["account"], answer["label"], answer["action"]) == (row["id"], "dave", "api", "revoke")
    assert call(server, "GET", "/api/jobs", second)[0] == 401
    assert listed(settings, "dave") == []


def test_another_accounts_token_cannot_revoke_it_and_an_admin_can(settings, server):
    erin, bob = add(settings, server, "erin"), add(settings, server, "bob", "bob's other")
    [row] = listed(settings, "erin")
    status, answer = call(server, "DELETE", f"/api/tokens/{row['id']}", bob)
    assert status == 403 and "another account's" in answer["error"]
    assert call(server, "GET", "/api/jobs", erin)[0] == 200 and listed(settings, "erin") != []
    status, _ = call(server, "DELETE", "/api/tokens/0123456789ab", bob)  # no such token: 404, as for a job
    assert status == 404
    # a signed-in bob's page refuses it too (CSRF given: the refusal is the role's)
    cookie = server.session("bob")
    status, headers, page = server.http("GET", "/tokens", {"Cookie": cookie, "Accept": "text/html"})
    assert status == 200 and row["id"] not in page
    cookie = (headers.get("Set-Cookie") or cookie).split(";")[0]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"Cookie": cookie, "Accept": "text/html", "Content-Type": "application/x-www-form-urlencoded"}
    status, _, _ = server.http("POST", f"/tokens/{row['id']}/revoke", form,
                               f"csrf_token={csrf}&confirm={row['id']}".encode())
    assert status == 403 and call(server, "GET", "/api/jobs", erin)[0] == 200
    status, _, page = server.http("GET", f"/tokens/{row['id']}/confirm", {"Cookie": cookie, "Accept": "text/html"})
    assert status == 403 and "another account&#39;s" in page and "Revoke token" not in page  # nor its confirmation
    # the farm-wide token is an admin (of no account): it sees and revokes everyone's
    status, every = call(server, "GET", "/api/tokens", FARM_TOKEN)
    assert status == 200 and {"erin", "bob"} <= {t["account"] for t in every}
    assert call(server, "DELETE", f"/api/tokens/{row['id']}", FARM_TOKEN)[0] == 200
    assert call(server, "GET", "/api/jobs", erin)[0] == 401
    assert any("farm-wide token(s)" in line and "httpov web-token add NAME" in line for line in server.log_lines())


def test_a_removed_accounts_token_stops_and_does_not_come_back_with_the_name(settings, server):
    from httpov.web.auth import add_user

    add_user(server.accounts, "frank", PASSWORD)
    token = add(settings, server, "frank")
    assert call(server, "GET", "/api/jobs", token)[0] == 200
    lines = [line for line in server.accounts.read_text().splitlines() if not line.startswith("frank:")]
    server.accounts.write_text("\n".join(lines) + "\n")
    assert call(server, "GET", "/api/jobs", token)[0] == 401
    add_user(server.accounts, "frank", PASSWORD)  # someone made again under that name does not inherit it
    assert call(server, "GET", "/api/jobs", token)[0] == 401 and listed(settings, "frank") == []


def test_tokens_belong_to_accounts_on_the_cli(settings, server):
    done = run(settings, "add", "nobody", "--accounts", str(server.accounts))
    assert done.exit_code == 2 and "nobody is not an account in" in done.output and "web-user add" in done.output
    assert run(settings, "remove", "zz").exit_code == 2
    assert "no API token of nobody" in run(settings, "list", "nobody").stdout


def test_the_page_makes_a_token_shown_once_and_revokes_it(settings, server):
    from httpov.web.auth import add_user

    add_user(server.accounts, "gina", PASSWORD)
    cookie = server.session("gina")
    status, headers, page = server.http("GET", "/tokens", {"Cookie": cookie, "Accept": "text/html"})
    assert status == 200 and "No API token of yours yet" in page
    cookie = (headers.get("Set-Cookie") or cookie).split(";")[0]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {"Cookie": cookie, "Accept": "text/html", "Content-Type": "application/x-www-form-urlencoded"}
    assert server.http("POST", "/tokens", form, b"label=laptop")[0] == 403  # no CSRF token: nothing made
    assert listed(settings, "gina") == []
    status, _, page = server.http("POST", "/tokens", form, f"csrf_token={csrf}&label=laptop".encode())
    assert status == 200, page
    token = re.search(r'id="token-value">(httpov_[^<]+)<', page).group(1)
    assert call(server, "GET", "/api/jobs", token)[0] == 200
    status, _, again = server.http("GET", "/tokens", {"Cookie": cookie, "Accept": "text/html"})
    [row] = listed(settings, "gina")
    assert status == 200 and token not in again and row["id"] in again and "laptop" in again
    # Revoke asks first: a POST without the confirmation naming the token is refused, and revokes nothing
    status, _, refused = server.http("POST", f"/tokens/{row['id']}/revoke", form, f"csrf_token={csrf}".encode())
    assert status == 400 and f"this request to revoke token {row['id']} lacks confirmation" in refused
    assert call(server, "GET", "/api/jobs", token)[0] == 200
    status, _, asked = server.http("GET", f"/tokens/{row['id']}/confirm", {"Cookie": cookie, "Accept": "text/html"})
    assert status == 200 and f"Revoke token {row['id']} of gina (laptop)?" in asked and "refused" in asked
    assert f'id="confirm-revoke-{row["id"]}"' in again  # the tokens page's dialog says the same
    status, headers, _ = server.http("POST", f"/tokens/{row['id']}/revoke", form,
                                     f"csrf_token={csrf}&confirm={row['id']}".encode())
    assert status == 302 and headers["Location"] == "/tokens"
    assert call(server, "GET", "/api/jobs", token)[0] == 401
    # and the API for a script: a token made there is shown once, in the answer
    status, made = call(server, "POST", "/api/tokens", FARM_TOKEN, b"account=gina&label=ci",
                        {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 201 and isinstance(made, dict) and made["account"] == "gina" and made["label"] == "ci"
    assert call(server, "GET", "/api/jobs", made["token"])[0] == 200
    bobs = listed(settings, "bob")
    status, _ = call(server, "POST", "/api/tokens", made["token"], b"account=bob&label=for+bob",
                     {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403 and listed(settings, "bob") == bobs  # gina may not make bob's tokens
    assert server.http("GET", "/api/tokens", {"Accept": "application/json"})[0] == 401
