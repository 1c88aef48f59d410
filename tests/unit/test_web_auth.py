"""The web interface's accounts file (argon2 hashes), tokens, and the `httpov web-user add` command."""
from __future__ import annotations

import stat

import pytest
from click.testing import CliRunner

from httpov.cli import cli
from httpov.errors import BadInputError
from httpov.web.auth import Gate, read_accounts, read_tokens


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
