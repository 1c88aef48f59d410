"""The audit log of one real `httpov web` process (cheroot): a submit and a control through the API are recorded with
the account, its role and the request's address; another account's action on the job is recorded as it was answered,
a refused one with the reason; only admins read the log (`/audit`, `GET /api/audit`: 403 for anyone else, 401 for
nobody) and the page escapes a hostile name. The farm-wide token is this branch's admin (an admin of no account)."""
from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import redis

from httpov.access import Identity, Role
from httpov.archive import ArchiveLimits, pack_scene
from httpov.audit import AuditLog
from httpov.settings import Settings
from tests.conftest import REDIS_URL, private_settings, write_scene
from tests.store.test_web_signin import Server, serving
from tests.store.test_web_tokens import SCENE, add, call, multipart

ADMIN_TOKEN = "farm-wide-" + secrets.token_urlsafe(24)
HOSTILE = "<script>alert(1)</script>\x1b[31m\nforged"


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Iterator[Settings]:
    with private_settings(tmp_path_factory.mktemp("audit")) as s:
        yield s


@pytest.fixture(scope="module")
def server(tmp_path_factory, settings: Settings) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("audit-web")
    (folder / "farm-tokens").write_text(f"{ADMIN_TOKEN}\n")
    yield from serving(folder, settings, ("alice", "bob"), "--tokens", str(folder / "farm-tokens"))


@pytest.fixture(scope="module")
def tokens(settings: Settings, server: Server) -> dict[str, str]:
    return {"alice": add(settings, server, "alice"), "bob": add(settings, server, "bob")}


def audit(server: Server, **filters: str) -> list[dict[str, Any]]:
    """GET /api/audit as the admin, with these filters."""
    query = "&".join(f"{k}={quote(v)}" for k, v in filters.items())
    status, records = call(server, "GET", f"/api/audit?{query}", ADMIN_TOKEN)
    assert status == 200, records
    assert isinstance(records, list)
    return records


def submit(server: Server, token: str, tmp_path, name: str) -> str:
    folder = write_scene(tmp_path / name, SCENE, "Width=16\nHeight=16\nInitial_Frame=1\nFinal_Frame=2\n")
    pack_scene(folder, tmp_path / f"{name}.zip", ArchiveLimits())
    body, kind = multipart({"name": name, "priority": "4"}, tmp_path / f"{name}.zip")
    status, made = call(server, "POST", "/api/jobs", token, body, {"Content-Type": kind})
    assert status == 201, made
    return made["id"]


def test_a_submit_and_controls_via_the_api_are_recorded_as_the_account_from_its_address(server, tokens, tmp_path):
    before = time.time()
    job = submit(server, tokens["bob"], tmp_path, "bobs-shot")
    status, done = call(server, "POST", f"/api/jobs/{job}/priority", tokens["bob"], b"priority=6",
                        {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, done
    [made, priority] = audit(server, job=job)
    assert {k: made[k] for k in ("name", "role", "operator", "address", "action", "job", "outcome", "reason")} == {
        "name": "bob", "role": "user", "operator": False, "address": "127.0.0.1", "action": "submit", "job": job,
        "outcome": "done", "reason": ""}
    assert made["detail"] == "bobs-shot: 2 frame(s) 1-2, priority 4" and before - 1 <= made["at"] <= time.time() + 1
    assert (priority["name"], priority["action"], priority["outcome"]) == ("bob", "priority", "done")
    assert priority["detail"].startswith("priority 6: ")

    # another account cancels bob's job: the log says who it was, and what they were answered
    status, answer = call(server, "POST", f"/api/jobs/{job}/cancel", tokens["alice"])
    assert status in (200, 403), answer
    [cancel] = audit(server, user="alice", job=job)
    assert (cancel["name"], cancel["role"], cancel["address"], cancel["action"]) == ("alice", "user", "127.0.0.1",
                                                                                      "cancel")
    if status == 403:  # with roles (the identity branch): refused, bob's job untouched, the reason recorded
        assert cancel["outcome"] == "refused" and cancel["reason"] == answer["error"]
    else:  # before roles, any account may: done
        assert cancel["outcome"] == "done" and not cancel["reason"]
    assert [r["action"] for r in audit(server, user="bob", job=job)] == ["submit", "priority"]


def test_a_refused_token_change_is_recorded_as_refused_with_the_reason(settings, server, tokens):
    bobs = add(settings, server, "bob", "bob's second")
    bob_token_id = next(t["id"] for t in call(server, "GET", "/api/tokens", bobs)[1] if t["label"] == "bob's second")
    status, answer = call(server, "DELETE", f"/api/tokens/{bob_token_id}", tokens["alice"])
    assert status == 403 and "may not revoke" in answer["error"]
    assert call(server, "GET", "/api/jobs", bobs)[0] == 200  # nothing was revoked
    mine = [r for r in audit(server, user="alice") if r["action"] == "token.remove"]
    assert [(r["outcome"], r["detail"], r["address"]) for r in mine] == [
        ("refused", f"token {bob_token_id} of bob (bob's second)", "127.0.0.1")]
    assert mine[0]["reason"] == f"alice may not revoke token {bob_token_id}: it is another account's"
    status, _ = call(server, "DELETE", f"/api/tokens/{bob_token_id}", bobs)  # bob may: done
    assert status == 200
    assert [(r["action"], r["outcome"]) for r in audit(server, user="bob")][-1] == ("token.remove", "done")


def test_only_admins_read_the_log(server, tokens):
    status, answer = call(server, "GET", "/api/audit", tokens["alice"])  # a user: 403, and no record in the answer
    assert status == 403 and "may not admin" in answer["error"] and "name" not in json.dumps(answer)
    alice = server.session("alice")
    status, _, page = server.http("GET", "/audit", {"Cookie": alice, "Accept": "text/html"})
    assert status == 403 and 'id="audit"' not in page
    assert 'href="/audit"' not in server.http("GET", "/", {"Cookie": alice, "Accept": "text/html"})[2]
    assert server.http("GET", "/api/audit", {"Accept": "application/json"})[0] == 401  # nobody signed in
    status, headers, _ = server.http("GET", "/audit", {"Accept": "text/html"})
    assert status == 302 and headers["Location"].startswith("/login")

    status, _, page = server.http("GET", "/audit?user=bob", {"Authorization": f"Bearer {ADMIN_TOKEN}",
                                                             "Accept": "text/html"})
    assert status == 200 and 'id="audit"' in page and 'href="/audit"' in page
    status, answer = call(server, "GET", "/api/audit?since=yesterday&limit=0", ADMIN_TOKEN)
    assert status == 400 and set(answer["errors"]) == {"since", "limit"}


def test_the_page_escapes_a_hostile_name_and_the_api_gives_it_unchanged(settings, server, tokens):
    # alice asks for a token of a hostile "account": refused (only her own), and recorded with the name as data
    status, _ = call(server, "POST", "/api/tokens", tokens["alice"], f"account={quote(HOSTILE)}".encode(),
                     {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403
    AuditLog(redis.Redis.from_url(REDIS_URL, decode_responses=True), settings.prefix).record(
        Identity(HOSTILE, Role.USER, address="10.6.6.6"), "cancel", "j-hostile")
    records = audit(server, since="1h")
    assert f"for {HOSTILE}" in [r["detail"] for r in records if r["name"] == "alice"]
    assert records[-1]["name"] == HOSTILE
    status, _, page = server.http("GET", "/audit?since=1h", {"Authorization": f"Bearer {ADMIN_TOKEN}",
                                                             "Accept": "text/html"})
    assert status == 200
    assert "<script>alert" not in page and "\x1b" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[31m\\x0aforged") == 3  # name, detail, reason
