"""`httpov --server`'s pure parts: the upload's chunk reader and multipart body, the server's refusals back as
httpov's errors, JobView.from_json, the server and token settings, and the commands refused with --server."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from werkzeug.formparser import parse_form_data

from httpov import errors
from httpov.cli import REMOTE_COMMANDS, cli
from httpov.remote import CHUNK, file_chunks, multipart, server_error
from httpov.settings import Settings
from httpov.view import JobView, from_snapshot
from tests.unit.test_job_view import _snapshot


def test_the_scene_is_read_a_chunk_at_a_time_and_the_body_is_a_form_werkzeug_reads(tmp_path: Path) -> None:
    scene = tmp_path / "scene.zip"
    data = os.urandom(3 * CHUNK + 123)
    scene.write_bytes(data)
    told: list[tuple[int, int | None]] = []
    chunks = list(file_chunks(scene, lambda done, total: told.append((done, total))))
    assert [len(c) for c in chunks] == [CHUNK, CHUNK, CHUNK, 123]  # never more than CHUNK in memory
    assert told[-1] == (len(data), len(data)) and len(told) == 4
    head, tail = multipart({"name": "shot 1", "count": "2"}, "scene", "scene.zip", "b0undary")
    body = head + b"".join(chunks) + tail
    environ = {"REQUEST_METHOD": "POST", "CONTENT_TYPE": "multipart/form-data; boundary=b0undary",
               "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    _, form, files = parse_form_data(environ)
    assert dict(form) == {"name": "shot 1", "count": "2"}
    assert files["scene"].filename == "scene.zip" and files["scene"].read() == data


@pytest.mark.parametrize(("status", "body", "error", "code"), [
    (404, {"error": "no job x"}, errors.JobNotFoundError, 4),
    (403, {"error": "not yours"}, errors.ForbiddenError, 10),
    (409, {"error": "job x is done"}, errors.JobStateError, 4),
    (409, {"error": "job x failed", "kind": "JobFailedError"}, errors.JobFailedError, 8),
    (400, {"error": "count: must be at least 1", "field": "count", "kind": "FieldError"}, errors.BadInputError, 2),
    (400, {"error": "bad"}, errors.BadInputError, 2),
    (503, {"error": "Redis unreachable", "kind": "BrokerUnavailableError"}, errors.BrokerUnavailableError, 5),
    (422, {"error": "refused", "kind": "ResultError"}, errors.ResultError, 9),
    (401, {"error": "the bearer token is not one this server knows"}, errors.TokenRefusedError, 11),
    (500, {}, errors.HttpovError, 1),
])
def test_the_servers_refusals_are_httpovs_errors(status, body, error, code) -> None:
    found = server_error("https://farm", status, body)
    assert type(found) is error and found.exit_code == code
    if body.get("error") and status != 401:
        assert str(found) == body["error"]
    if status == 401:
        assert "refused the token" in str(found)


def test_a_fields_refusal_is_said_with_the_flags_as_the_farms_own_cli_says_it() -> None:
    """The server names a form's fields (after, slice_rows); `httpov --server` says the flags."""
    body = {"error": "after: there is no job a1b2 of bob's; slice_rows must be at least 1, got 0",
            "field": "after", "kind": "FieldError",
            "errors": {"after": "after: there is no job a1b2 of bob's", "slice_rows": "slice_rows must be at least 1, "
                       "got 0", "scene": "choose a scene zip"}}
    found = server_error("https://farm", 400, body)
    assert isinstance(found, errors.OptionError) and found.exit_code == 2
    assert found.said(errors.flag) == ("--after: there is no job a1b2 of bob's; --slice-rows must be at least 1, got 0;"
                                       " choose a scene zip")  # the scene is an argument: its errors name no flag
    assert str(found) == ("after: there is no job a1b2 of bob's; slice_rows must be at least 1, got 0; "  # the library
                          "choose a scene zip")
    assert str(errors.FieldError(body["errors"])) == body["error"] + "; scene: choose a scene zip"  # named once


def test_a_view_comes_back_from_its_json() -> None:
    view = from_snapshot(*_snapshot(), now=1001.5)
    again = JobView.from_json(json.loads(json.dumps(view.to_json())))
    assert again == view
    assert JobView.from_json({**view.to_json(), "a_newer_servers_key": 1}) == view


def test_the_token_is_masked_and_the_server_checked(tmp_path: Path) -> None:
    settings = Settings(server="https://farm.example.com", token="s3cret-token")
    assert "s3cret" not in repr(settings)
    env = {"HTTPOV_SERVER": "https://farm.example.com", "HTTPOV_TOKEN": "s3cret-token",
           "XDG_CONFIG_HOME": str(tmp_path)}
    shown = CliRunner().invoke(cli, ["config"], env=env, terminal_width=200)
    assert shown.exit_code == 0 and "s3cret" not in shown.output
    lines = {line.split()[0]: line.split() for line in shown.output.splitlines()[1:]}
    assert lines["token"][1:3] == ["HTTPOV_TOKEN", "***"]
    assert lines["server"][1:3] == ["HTTPOV_SERVER", "https://farm.example.com"]
    config = tmp_path / "httpov" / "config.toml"
    config.parent.mkdir()
    config.write_text('server = "https://farm.example.com:8443"\ntoken = "from-the-file"\n')
    profile = Settings.from_env({"XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)})
    assert (profile.server, profile.token) == ("https://farm.example.com:8443", "from-the-file")
    for bad in ("farm.example.com", "redis://farm:6379", "http://"):
        result = CliRunner().invoke(cli, ["--server", bad, "status"], env={"XDG_CONFIG_HOME": str(tmp_path)})
        assert result.exit_code == 2 and "--server must be the URL" in result.output
        result = CliRunner().invoke(cli, ["status"], env={"HTTPOV_SERVER": bad, "XDG_CONFIG_HOME": str(tmp_path)})
        assert result.exit_code == 2 and "HTTPOV_SERVER must be the URL" in result.output


def test_commands_that_act_on_the_farm_directly_are_refused_with_a_server(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    local_only = sorted(set(cli.commands) - set(REMOTE_COMMANDS))
    assert {"web", "web-user", "flower", "prune", "render", "logs"} <= set(local_only)
    for command in local_only:
        result = CliRunner().invoke(cli, ["--server", "http://127.0.0.1:9", command, "--help"], env=env)
        assert result.exit_code == 2, command
        assert f"`httpov {command}` acts on the farm directly" in result.output


def test_a_token_over_plain_http_to_another_host_is_warned_of() -> None:
    from httpov.remote import RemoteClient

    def clear(url: str, token: str | None = "t" * 16) -> bool:
        return RemoteClient(Settings(server=url, token=token)).token_in_clear
    assert clear("http://farm.example.com:8080") and clear("http://10.0.0.5")
    assert not clear("https://farm.example.com") and not clear("http://127.0.0.1:8080")
    assert not clear("http://localhost:8080") and not clear("http://[::1]:8080")
    assert not clear("http://farm.example.com", token=None)


def test_a_transfer_shows_a_bar_on_a_terminal_and_nothing_off_one() -> None:
    from rich.console import Console

    from httpov.terminal import Transfer

    plain, tty = io.StringIO(), io.StringIO()
    for out, terminal in ((plain, False), (tty, True)):
        bar = Transfer("uploading shot", Console(file=out, force_terminal=terminal, width=80))
        for done in (0, CHUNK, 2 * CHUNK):
            bar(done, 2 * CHUNK)
        bar(2 * CHUNK, 2 * CHUNK)  # told again once closed: nothing more
    assert plain.getvalue() == ""
    assert "uploading shot" in tty.getvalue() and "524.3/524.3 kB" in tty.getvalue()
