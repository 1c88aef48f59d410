"""Issue #26 item 7: a misconfigured render node says why. A real node whose storage path cannot be used (its parent
is a file), or whose S3 endpoint does not answer, shows its storage check's failure in `httpov nodes` and on the
nodes page; a misspelt HTTPOV_ variable is named in its log at start. (A failed batch's error:
tests/store/test_what_people_look_for.py.)"""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import worker_env
from tests.conftest import TINY_ANIMATION, wait_for, write_scene

pytestmark = pytest.mark.integration


def _nodes(settings) -> dict[str, dict]:
    result = CliRunner().invoke(cli, ["nodes", "--json"], env=worker_env(settings))
    assert result.exit_code == 0, result.output
    return {n["node"].split("@")[0]: n for n in json.loads(result.output)}


def test_a_node_with_a_wrong_storage_path_says_why_it_fails(tmp_path, settings, client, workers, monkeypatch):
    (tmp_path / "a-file").write_text("not a folder")
    wrong = settings.with_(storage=str(tmp_path / "a-file" / "storage"))
    monkeypatch.setenv("HTTPOV_STORGE", "/srv/farm")  # the typo the operator meant to fix it with
    workers(concurrency=1, name="bad", settings_=wrong)
    client.submit(write_scene(tmp_path / "tiny", TINY_ANIMATION, "Width=8\nHeight=8\n+KFI1 +KFF1\n"), count=1)
    wait_for(lambda: _nodes(settings).get("bad", {}).get("storage_error"), 30, "the node to say its storage fails")
    node = _nodes(settings)["bad"]
    assert node["state"] == "up"
    assert "a-file/storage" in node["storage_error"] and "not writable: Not a directory" in node["storage_error"]
    text = CliRunner().invoke(cli, ["nodes"], env=worker_env(settings)).output
    assert "node bad@" in text and "storage check failed: " in text and "Not a directory" in text
    log = (tmp_path / "bad.log").read_text(errors="replace")
    assert "HTTPOV_STORGE is no httpov setting and is ignored: did you mean HTTPOV_STORAGE?" in log


def test_a_node_whose_s3_does_not_answer_says_why_on_the_nodes_page(settings, client, workers, monkeypatch):
    """The other misconfiguration the issue names: an S3 endpoint nothing listens on. The node is up (it heartbeats)
    and says its storage check's failure, naming the storage and the endpoint, in `httpov nodes` and on the page."""
    from httpov.local_farm import free_port
    from tests.s3server import apply_env
    from tests.webapp import page

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    apply_env(monkeypatch, endpoint)  # the node's environment is this process's (worker_env)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    workers(concurrency=1, name="nos3", settings_=settings.with_(storage="s3://farm-bucket/jobs"))
    wait_for(lambda: _nodes(settings).get("nos3", {}).get("storage_error"), 60, "the node to say its S3 fails")
    node = _nodes(settings)["nos3"]
    assert node["state"] == "up"
    assert "s3://farm-bucket/jobs" in node["storage_error"] and endpoint in node["storage_error"], node
    status, html = page(client, "/nodes")
    assert status == 200
    row = html[html.index('<tr class="why" data-node="nos3@'):]
    assert row.index("storage check failed: ") < row.index(endpoint) < row.index("</tr>"), row[:600]
