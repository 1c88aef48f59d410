"""Nodes that come and go: `httpov nodes drain NODE` and a service manager's SIGTERM let a render node finish the
batch it renders there and exit 0, with nothing requeued and no lease run out; the other node renders the rest."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from httpov.access import Identity, Role
from httpov.cli import cli
from httpov.errors import ForbiddenError, NodeNotFoundError
from httpov.local_farm import worker_env
from httpov.settings import Settings
from tests.conftest import queue_drained, wait_for
from tests.integration.faults import slow_scene

pytestmark = pytest.mark.integration


def _nodes(settings: Settings) -> dict[str, dict]:
    result = CliRunner().invoke(cli, ["nodes", "--json"], env=worker_env(settings))
    assert result.exit_code == 0, result.output
    return {n["node"].split("@")[0]: n for n in json.loads(result.output)}


def _rendering_on_both(tmp_path: Path, settings: Settings, client, workers) -> tuple[subprocess.Popen, str, str]:
    """Two one-process nodes, alpha and beta, and a job of three two-frame batches; once alpha renders one of them:
    alpha's process, the job and alpha's batch."""
    alpha = workers(concurrency=1, name="alpha")
    workers(concurrency=1, name="beta")
    wait_for(lambda: {n["state"] for n in _nodes(settings).values()} == {"up"} and len(_nodes(settings)) == 2, 60,
             "both nodes to say they are alive")
    job = client.submit(slow_scene(tmp_path / "slow", 6), count=2).spec.id
    wait_for(lambda: _nodes(settings)["alpha"]["rendering"], 60, "alpha to render a batch")
    return alpha, job, _nodes(settings)["alpha"]["rendering"][0]["batch"]


def _finished_there(tmp_path: Path, settings: Settings, client, alpha: subprocess.Popen, job: str, batch: str) -> None:
    """alpha exits 0 once its batch is done there; beta renders the rest; no batch was requeued or tried twice."""
    assert alpha.wait(60) == 0
    assert "Traceback" not in (tmp_path / "alpha.log").read_text(errors="replace")
    view = client.wait(job, timeout=120)
    batches = client.store.batches(job)
    done_by = {b: info["node"].split("@")[0] for b, info in batches["done"].items()}
    assert done_by[batch] == "alpha" and len(done_by) == 3 and set(done_by.values()) == {"alpha", "beta"}
    assert list(done_by.values()).count("alpha") == 1  # took no batch after the one it was rendering
    assert view.batches_requeued == 0 and not batches.get("requeued") and not batches["failed"]
    assert {int(n) for n in batches["attempts"].values()} == {1}, batches["attempts"]
    wait_for(lambda: queue_drained(settings), 30, "every message acknowledged")
    nodes = _nodes(settings)
    assert (nodes["alpha"]["state"], nodes["beta"]["state"]) == ("stopped", "up")
    # the table as people read it: the state in its own column, under STATE, the host under HOST
    table = CliRunner().invoke(cli, ["nodes"], env=worker_env(settings)).output.splitlines()
    row = next(line for line in table if line.startswith(nodes["alpha"]["node"][:27]))
    assert row.split()[1] == "stopped" and row.index(" stopped ") + 1 == table[0].index("STATE")
    assert row[table[0].index("HOST"):].startswith(nodes["alpha"]["host"][:17])
    assert not client.store.draining()


def test_drain_finishes_the_batch_there_and_exits_0(tmp_path: Path, settings: Settings, client, workers) -> None:
    alpha, job, batch = _rendering_on_both(tmp_path, settings, client, workers)
    for role in (Role.USER, Role.VIEWER):  # admins only; nothing is marked
        with pytest.raises(ForbiddenError, match="may not admin"):
            client.drain_node("alpha", who=Identity("bob", role))
    with pytest.raises(NodeNotFoundError, match=r"no render node up is named gamma \(up: alpha@"):
        client.drain_node("gamma")
    assert not client.store.draining() and alpha.poll() is None

    result = CliRunner().invoke(cli, ["nodes", "drain", "alpha"], env=worker_env(settings))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("node alpha@") and "is draining" in result.output
    states = {n["state"] for n in _nodes(settings).values()}
    assert states in ({"draining", "up"}, {"stopped", "up"})
    _finished_there(tmp_path, settings, client, alpha, job, batch)


def test_sigterm_finishes_the_batch_there_and_exits_0(tmp_path: Path, settings: Settings, client, workers) -> None:
    """As systemd's KillMode=mixed stops the unit: SIGTERM to the main process only."""
    alpha, job, batch = _rendering_on_both(tmp_path, settings, client, workers)
    os.kill(alpha.pid, signal.SIGTERM)
    _finished_there(tmp_path, settings, client, alpha, job, batch)

    # a node killed past its stop timeout leaves its mark: started again, it renders instead of draining at once
    name = _nodes(settings)["alpha"]["node"]
    client.store.drain_node(name)
    again = workers(concurrency=1, name="alpha")
    wait_for(lambda: _nodes(settings)["alpha"]["state"] == "up", 60, "alpha to start again, up")
    assert again.poll() is None and not client.store.draining()



def test_a_cold_shutdown_ends_the_node_at_once_and_another_renders_its_batch(tmp_path: Path, settings: Settings, client,
                                                                            workers) -> None:
    """SIGTERM, then SIGQUIT (a second Ctrl+C): the node does not wait for its batch, which Celery's threads pool
    alone would (it cannot stop a thread); it ends as a killed node does, and its batch is rendered by beta once
    its lease runs out."""
    alpha, job, batch = _rendering_on_both(tmp_path, settings, client, workers)
    os.kill(alpha.pid, signal.SIGTERM)
    os.kill(alpha.pid, signal.SIGQUIT)
    assert alpha.wait(30) != 0
    view = client.wait(job, timeout=120)
    batches = client.store.batches(job)
    assert view.state == "done" and batches["done"][batch]["node"].startswith("beta@"), batches["done"][batch]
    assert batch in batches["requeued"], "its lease ran out: requeued for another node"
