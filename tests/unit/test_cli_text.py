"""CLI tests that need no service: settings refused before anything runs, help texts, exit codes."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from httpov.cli import cli


@pytest.mark.parametrize("variable, value, accepted", [
    ("HTTPOV_BROKER_URL", "http://user:secret@farm:8080/", "redis:// or rediss://"),
    ("HTTPOV_STATE_URL", "127.0.0.1:6379", "redis://, rediss:// or unix://"),
])
def test_a_url_of_the_wrong_scheme_is_one_line_and_exit_2(variable, value, accepted):
    result = CliRunner().invoke(cli, ["status"], env={variable: value})
    print(result.output)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert f"{variable} must be a Redis URL starting with {accepted}" in result.output
    assert "secret" not in result.output  # the URL may hold a password: only its scheme is said
