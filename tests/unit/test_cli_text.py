"""CLI tests that need no service: settings refused before anything runs, help texts, exit codes."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from httpov.cli import cli
from httpov.errors import OptionError, flag
from httpov.plan import plan_slices


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


def _help(*command: str) -> str:
    result = CliRunner().invoke(cli, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())  # click wraps: compare words


def test_help_texts_say_what_each_option_does():
    assert "a few batches per node" not in _help("submit")
    assert "--count INTEGER Frames per batch (one task each), at most; default: adaptive" in _help("submit")
    assert "into OUTPUT" not in _help("fetch") and "into --output" in _help("fetch")
    render = _help("render")
    for option in ("--frames INTEGER Frames in the animation", "--count INTEGER Frames per batch",
                   "--slices N|auto Split each frame"):
        assert option in render
    assert "--port INTEGER TCP port to listen on." in _help("web")


@pytest.mark.parametrize("kwargs, message", [
    ({"slices": 0}, "--slices must be at least 1, got 0"),
    ({"rows": 0}, "--slice-rows must be at least 1, got 0"),
    ({"slices": 2, "rows": 32}, "give exactly one of --slices and --slice-rows"),
    ({"slices": 99}, "--slices must be at most the height"),
])
def test_messages_name_options_as_they_are_typed(kwargs, message):
    with pytest.raises(OptionError) as raised:
        plan_slices(64, **kwargs)
    assert message in raised.value.said(flag)  # as the CLI says it
    web = str(raised.value)  # as the web form and the API say it: the field's name, no flag
    assert "--" not in web and message.replace("--slice-rows", "slice_rows").replace("--slices", "slices") in web
