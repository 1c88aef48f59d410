"""The farm's Prometheus metrics on one real `httpov web --public-read` process (cheroot, real Redis, local storage)
and from `httpov metrics`: jobs by state, batches by state and pool, frames, the batch duration histogram, failures
by reason, nodes up and lost and the bytes stored, all as the farm holds them; any account's token or session reads
them, an anonymous reader (even with --public-read) or an unknown token gets 401. No render node: batches are stored
and recorded as a render node does (tests/stored.py), failures recorded through JobStore.fail_batch."""
from __future__ import annotations

import io
import time

import pytest
from click.testing import CliRunner
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.web.auth import add_user
from tests.conftest import wait_for, write_scene
from tests.store.test_web_signin import PASSWORD
from tests.store.test_web_tokens import add
from tests.stored import store_batch
from tests.webapp import web_farm

settings, client, server = web_farm("metrics", ("bob",), "--public-read")


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (0, 200, 0)).save(out, "PNG")
    return out.getvalue()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by (name, sorted labels), parsed by prometheus_client's own parser."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_show_the_farm_as_redis_holds_it(settings, client, server, tmp_path):
    ini = "Width=4\nHeight=4\nInitial_Frame=1\nFinal_Frame=3\n"
    scene = write_scene(tmp_path / "scene", "#version 3.7;\nbackground { color rgb <0, 1, 0> }\n", ini)
    one = write_scene(tmp_path / "one", "#version 3.7;\nbackground { color rgb <0, 0, 1> }\n", "Width=4\nHeight=4\n")
    three = client.submit(scene, user="bob", count=1).spec  # one batch done, one running, one waiting
    client.store.transition(three.id, "running")
    store_batch(client, three.id, three.batches[0], {"scene_1.png": _png()}, "r1")
    assert client.store.start_batch(three.id, three.batches[1], "t2", "up@h", 600.0) == "ok"
    done = client.submit(one, user="bob", count=1).spec
    client.store.transition(done.id, "running")
    store_batch(client, done.id, done.batches[0], {"scene.png": _png()}, "r1")
    failed = client.submit(one, user="bob", count=1).spec
    client.store.fail_batch(failed.id, failed.batches[0], "povray hung", [], final=False, node="up@h", reason="hung")
    client.store.fail_batch(failed.id, failed.batches[0], "x\x1b[2J", [], final=True, node="up@h", reason="made up")
    pooled = client.submit(one, user="bob", count=1, pool="gpu").spec
    client.store.heartbeat("up@h", 2)
    client.store.r.zadd(client.store.keys.nodes(), {"gone@h": time.time() - 3600})

    token = add(settings, server, "bob")
    status, headers, text = server.http("GET", "/metrics", {"Authorization": f"Bearer {token}"})
    assert status == 200, text
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    got = samples(text)
    assert got[("httpov_jobs", (("state", "running"),))] == 1
    assert got[("httpov_jobs", (("state", "done"),))] == 1
    assert got[("httpov_jobs", (("state", "failed"),))] == 1
    assert got[("httpov_jobs", (("state", "queued"),))] == 1
    assert got[("httpov_jobs", (("state", "cancelled"),))] == 0
    default = [(state, got[("httpov_batches", (("pool", ""), ("state", state)))])
               for state in ("pending", "queued", "running")]
    assert default[2] == ("running", 1) and default[0][1] + default[1][1] == 1, default
    assert got[("httpov_batches", (("pool", "gpu"), ("state", "pending")))] \
        + got[("httpov_batches", (("pool", "gpu"), ("state", "queued")))] == 1
    assert got[("httpov_frames_rendered_total", ())] == 2
    assert got[("httpov_batch_seconds_count", ())] == 2
    assert got[("httpov_batch_seconds_bucket", (("le", "1.0"),))] == 2
    assert got[("httpov_batch_seconds_sum", ())] == pytest.approx(0.2)
    assert got[("httpov_batch_failures_total", (("reason", "hung"),))] == 1
    assert got[("httpov_batch_failures_total", (("reason", "other"),))] == 1  # a reason no category: never its text
    assert got[("httpov_batch_failures_total", (("reason", "render"),))] == 0
    assert got[("httpov_nodes", (("state", "up"),))] == 1
    assert got[("httpov_nodes", (("state", "lost"),))] == 1
    assert got[("httpov_storage_bytes", ())] == client.storage.size("jobs/") > 0
    assert pooled.id not in text and "bob" not in text and "\x1b" not in text  # no job, user or raw text label

    # `httpov metrics` reads Redis directly: the same numbers
    result = CliRunner().invoke(cli, ["metrics"], env=worker_env(settings))
    assert result.exit_code == 0, result.output
    assert samples(result.stdout) == got
    # and through the web API with a token (`httpov --server`), as a user without Redis runs it
    remote = {"HTTPOV_SERVER": f"http://127.0.0.1:{server.port}", "HTTPOV_TOKEN": token}
    result = CliRunner().invoke(cli, ["metrics"], env={**worker_env(settings), **remote})
    assert result.exit_code == 0, result.output
    assert samples(result.stdout) == got

    # `retry --frames` deletes the results it renders again: their bytes leave the count
    first = int(done.batches[0].split("-")[0][1:])
    before = client.storage.size("jobs/")
    assert client.retry(done.id, frames=(first, first)) == 1 and client.storage.size("jobs/") < before
    assert samples(client.metrics().decode())[("httpov_storage_bytes", ())] == client.storage.size("jobs/") > 0

    # a viewer's session reads them too; an anonymous reader (the page is public) or an unknown token does not
    add_user(server.accounts, "vic", PASSWORD, role="viewer")
    assert server.http("GET", "/metrics", {"Cookie": server.session("vic")})[0] == 200
    status, _, body = server.http("GET", "/metrics")
    assert status == 401 and "Bearer" in body
    assert server.http("GET", "/metrics", {"Authorization": "Bearer httpov_" + "x" * 43})[0] == 401


def test_a_batch_whose_node_was_lost_too_often_counts_as_node_lost(client, tmp_path):
    from httpov.broker import QueueLayout
    from httpov.sweep import reap

    one = write_scene(tmp_path / "one", "#version 3.7;\nbackground { rgb 1 }\n", "Width=4\nHeight=4\n")
    spec = client.submit(one, user="bob", count=1).spec
    before = samples(client.metrics().decode())[("httpov_batch_failures_total", (("reason", "node_lost"),))]
    assert client.store.start_batch(spec.id, spec.batches[0], "t", "dead@h", 0.05) == "ok"  # its lease: 50 ms
    client.store.add_attempt(spec.id, spec.batches[0])
    wait_for(lambda: client.store.lost_batches(spec.id), 10, "the lease to run out")
    reap(client.store, QueueLayout.of(client.celery), lambda *_: None, lease_seconds=1.0, max_attempts=1)
    assert client.store.state(spec.id) == "failed"
    got = samples(client.metrics().decode())
    assert got[("httpov_batch_failures_total", (("reason", "node_lost"),))] == before + 1
