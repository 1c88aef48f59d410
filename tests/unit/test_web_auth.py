"""The web interface's accounts file (argon2 hashes), tokens, and the `httpov web-user add` command."""
from __future__ import annotations

import re
import stat
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from httpov.cli import cli
from httpov.errors import BadInputError
from httpov.web.auth import Gate, SignInLimit, read_accounts, read_tokens


@pytest.fixture(autouse=True)
def _no_farm(monkeypatch: pytest.MonkeyPatch) -> None:
    """`web-user` records account changes in the farm's audit log: here no Redis answers, so the record is lost
    with a warning and never lands in a real farm's log (these tests need no Redis)."""
    monkeypatch.setenv("HTTPOV_STATE_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("HTTPOV_BROKER_URL", "redis://127.0.0.1:1/0")

def test_web_user_add_writes_an_argon2_hash_that_signs_in_and_changes_a_password(tmp_path):
    accounts = tmp_path / "accounts"
    result = CliRunner().invoke(cli, ["web-user", "add", "alice", "--accounts", str(accounts), "--password-stdin"],
                                input="first password\n")
    assert result.exit_code == 0 and "added alice" in result.output, result.output
    text = accounts.read_text()
    assert "first password" not in text and read_accounts(accounts)["alice"].startswith("$argon2id$")
    assert stat.S_IMODE(accounts.stat().st_mode) == 0o600
    gate = Gate(accounts)
    assert gate.login("alice", "first password") and not gate.login("alice", "wrong password")
    assert not gate.login("bob", "first password")
    result = CliRunner().invoke(cli, ["web-user", "add", "alice", "--accounts", str(accounts), "--password-stdin"],
                                input="second password\n")
    assert "changed the password of alice" in result.output
    assert gate.login("alice", "second password") and not gate.login("alice", "first password")


def test_bad_names_passwords_lines_and_tokens_are_refused(tmp_path):
    accounts = tmp_path / "accounts"
    for name, password in (("a:b", "long enough"), ("ok", "short")):
        result = CliRunner().invoke(cli, ["web-user", "add", name, "--accounts", str(accounts), "--password-stdin"],
                                    input=password + "\n")
        assert result.exit_code == 2, result.output
    assert not accounts.exists()
    accounts.write_text("alice:plaintext\n")
    with pytest.raises(BadInputError, match="not a `name:argon2-hash` line"):
        read_accounts(accounts)
    with pytest.raises(BadInputError, match="shorter than 16"):
        read_tokens("short", None)
    token = "t" * 20
    (tmp_path / "tokens").write_text(f"# scripts\n{'u' * 20}\n")
    gate = Gate(None, read_tokens(f"{token}, ", tmp_path / "tokens"))
    assert gate.token_ok(f"Bearer {token}") and gate.token_ok(f"Bearer {'u' * 20}")
    assert not gate.token_ok(f"Bearer {token}x") and not gate.token_ok(token) and not gate.token_ok(None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_sign_in_limit_refuses_the_sixth_failure_until_the_window_passes():
    clock = Clock()
    limit = SignInLimit(5, 600, clock)
    alice = limit.keys("alice", "192.0.2.1")
    for n in range(1, 6):
        attempt = limit.attempt(alice)
        assert attempt.wait == 0 and attempt.failures == n
        clock.now += 10
    refused = limit.attempt(alice)
    assert refused.wait == 600 - 50 and refused.retry_after == 550
    assert limit.attempt(limit.keys("alice", "192.0.2.2")).wait == 550  # the account, from another address
    assert limit.attempt(limit.keys("bob", "192.0.2.1")).wait == 550  # the address, for another account
    assert limit.attempt(limit.keys("bob", "192.0.2.2")).wait == 0
    clock.now += 550  # the first failure is 600 s old: one more attempt, refused again until the second is
    assert limit.attempt(alice).wait == 0
    assert limit.attempt(alice).wait == 10
    clock.now += 600
    assert limit.attempt(alice).failures == 1  # all forgotten


def test_a_successful_sign_in_clears_its_accounts_count_but_not_its_addresss():
    clock = Clock()
    limit = SignInLimit(3, 600, clock)
    for address in ("192.0.2.1", "192.0.2.2"):
        limit.attempt(limit.keys("alice", address))
    good = limit.attempt(limit.keys("alice", "192.0.2.3"))
    assert good.failures == 3
    limit.succeeded(good)
    assert limit.attempt(limit.keys("alice", "192.0.2.4")).failures == 1
    own = limit.attempt(limit.keys("mallory", "192.0.2.9"))
    limit.attempt(limit.keys("bob", "192.0.2.9"))
    limit.succeeded(own)  # mallory's own account: her address keeps the failure at bob's
    assert limit.attempt(limit.keys("carol", "192.0.2.9")).failures == 2
    assert limit.attempt(limit.keys("dave", "192.0.2.9")).failures == 3
    assert limit.attempt(limit.keys("erin", "192.0.2.9")).wait > 0


def test_threads_signing_in_at_once_get_no_more_attempts_than_the_limit():
    limit = SignInLimit(5, 600)
    barrier = threading.Barrier(40)

    def one(_: int) -> bool:
        barrier.wait()
        return limit.attempt(limit.keys("alice", "192.0.2.1")).wait == 0

    with ThreadPoolExecutor(40) as pool:
        allowed = list(pool.map(one, range(40)))
    assert allowed.count(True) == 5


def test_names_that_cannot_be_accounts_count_only_against_their_address_and_the_table_is_bounded():
    limit = SignInLimit(5, 600, Clock(), max_keys=100)
    assert limit.keys("x" * 65, "192.0.2.1") == ("address:192.0.2.1",)
    assert limit.keys("alice", "a" * 500) == ("address:" + "a" * 100, "user:alice")
    for n in range(300):
        limit.attempt(limit.keys(f"user{n}", f"192.0.2.{n}"))
    assert len(limit._failures) == 100
    with pytest.raises(BadInputError, match="at least 1"):
        SignInLimit(0, 600)


def test_the_cli_defaults_are_the_limits():
    params = {p.name: p.default for p in cli.commands["web"].params}
    limit = SignInLimit()
    assert (params["sign_in_attempts"], params["sign_in_window"]) == (limit.attempts, limit.window)


def test_a_flood_of_other_names_cannot_push_out_a_count_and_only_expired_counts_are_forgotten():
    clock = Clock()
    limit = SignInLimit(5, 600, clock, max_keys=100)
    alice = limit.keys("alice", "192.0.2.1")
    for _ in range(5):
        limit.attempt(alice)
    for n in range(300):  # 49 more pairs fit; then new names and addresses are refused, never let in uncounted
        clock.now += 1
        limit.attempt(limit.keys(f"user{n}", f"198.51.100.{n}"))
    assert len(limit._failures) == 100
    assert limit.attempt(limit.keys("alice", "203.0.113.1")).wait == 600 - 300  # still counted
    refused = limit.attempt(limit.keys("carol", "203.0.113.2"))  # the table is full of live counts
    assert refused.wait > 0 and refused.keys == limit.keys("carol", "203.0.113.2")
    assert limit.attempt(limit.keys("user0", "198.51.100.0")).wait == 0  # a count it holds goes on counting
    clock.now += 600  # alice's and the first flood's failures have left the window: their room is free again
    assert limit.attempt(limit.keys("carol", "203.0.113.2")).failures == 1
    assert limit.attempt(alice).failures == 1


def test_the_session_key_is_made_once_0600_and_refused_when_others_can_read_it(tmp_path):
    from httpov.web.auth import signing_key

    accounts = tmp_path / "conf" / "web-accounts"
    key = signing_key(accounts)
    path = tmp_path / "conf" / "web-accounts.key"
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert signing_key(accounts) == key  # kept: a restart signs nobody out
    path.chmod(0o644)
    with pytest.raises(BadInputError, match="can be read by others"):
        signing_key(accounts)
    path.chmod(0o600)
    path.write_text("short\n")
    with pytest.raises(BadInputError, match="not a session key"):
        signing_key(accounts)


@pytest.mark.parametrize(("target", "expected"), [
    ("/jobs/abc?x=1", "/jobs/abc?x=1"), ("/", "/"), (None, "/"), ("", "/"), ("jobs", "/"),
    ("/\t/evil.example", "/"), ("//evil.example", "/"), ("/\\evil.example", "/"), ("https://evil.example", "/"),
    ("/\n/evil.example", "/"), ("/ /evil.example", "/"), ("/\x7f/x", "/"), ("/\u2028/x", "/")])
def test_next_is_only_a_path_on_this_site(target, expected):
    from flask import Flask

    from httpov.web.pages import _local

    app = Flask("t")
    app.add_url_rule("/", "pages.jobs")
    with app.test_request_context():
        assert _local(target) == expected


def _old_file(path, *names: str) -> None:
    """An accounts file as releases before roles wrote it: `name:hash` lines."""
    from argon2 import PasswordHasher

    hashed = PasswordHasher().hash("long enough")
    path.write_text("# httpov web accounts: name:argon2 hash\n" + "".join(f"{n}:{hashed}\n" for n in names))


def test_an_old_accounts_file_of_one_account_makes_it_admin_and_of_more_makes_them_users(tmp_path):
    from httpov.web.auth import load_accounts, migrate_accounts

    one, many = tmp_path / "one", tmp_path / "many"
    _old_file(one, "ada")
    _old_file(many, "ada", "bob", "_ops")
    assert load_accounts(one)["ada"].role == "admin"  # read as the migration will write it
    assert "its only account ada is admin" in migrate_accounts(one)
    assert "3 account(s) without one are now role user" in migrate_accounts(many)
    assert {n: a.role for n, a in load_accounts(many).items()} == {"ada": "user", "bob": "user", "_ops": "user"}
    for path in (one, many):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and migrate_accounts(path) is None  # done once
        assert Gate(path).login("ada", "long enough")  # every password kept
    assert not list(tmp_path.glob(".accounts-*"))  # no temp file left


def test_web_user_list_role_remove_and_the_one_name_rule(tmp_path):
    accounts = tmp_path / "accounts"
    _old_file(accounts, "ada", "_ops")
    run = CliRunner()
    listed = run.invoke(cli, ["web-user", "list", "--accounts", str(accounts)])
    assert listed.exit_code == 0 and "given roles" in listed.output, listed.output
    assert "$argon2" not in listed.output and re.search(r"^ada\s+user$", listed.output, re.M)
    assert re.search(r"^_ops\s+user\s+needs a rename \(1-64 letters", listed.output, re.M)
    refused = run.invoke(cli, ["web-user", "add", "_new", "--accounts", str(accounts), "--password-stdin"],
                         input="long enough\n")
    assert refused.exit_code == 2 and "starting with a letter or digit" in refused.output, refused.output
    assert Gate(accounts).login("_ops", "long enough")  # an older name still signs in
    made = run.invoke(cli, ["web-user", "add", "vic", "--role", "viewer", "--accounts", str(accounts),
                            "--password-stdin"], input="long enough\n")
    assert made.exit_code == 0 and "added vic (viewer)" in made.output, made.output
    changed = run.invoke(cli, ["web-user", "add", "vic", "--accounts", str(accounts), "--password-stdin"],
                         input="another password\n")
    assert "changed the password of vic (viewer)" in changed.output  # the role is kept
    assert run.invoke(cli, ["web-user", "role", "ada", "admin", "--accounts", str(accounts)]).exit_code == 0
    assert run.invoke(cli, ["web-user", "remove", "_ops", "--accounts", str(accounts)]).exit_code == 0
    gone = run.invoke(cli, ["web-user", "remove", "_ops", "--accounts", str(accounts)])
    assert gone.exit_code == 2 and "no account '_ops'" in gone.output
    assert run.invoke(cli, ["web-user", "role", "ada", "root", "--accounts", str(accounts)]).exit_code == 2
    listed = run.invoke(cli, ["web-user", "list", "--accounts", str(accounts)]).output
    assert re.findall(r"^(\S+)\s+(\S+)$", listed, re.M) == [("ada", "admin"), ("vic", "viewer")]
