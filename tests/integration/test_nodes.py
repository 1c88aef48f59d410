"""`httpov nodes`: every render node with its record, what it renders now, its last hour, and lost ones."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from httpov.cli import cli
from httpov.local import stop_worker, worker_env
from httpov.settings import Settings
from tests.conftest import queue_drained, wait_for
from tests.integration.faults import povray_pids, slow_scene

pytestmark = pytest.mark.integration


def _nodes(settings: Settings) -> dict[str, dict]:
    result = CliRunner().invoke(cli, ["nodes", "--json"], env=worker_env(settings))
    assert result.exit_code == 0, result.output
    return {n["node"].split("@")[0]: n for n in json.loads(result.output)}


def test_nodes_shows_records_current_batches_last_hour_and_lost_nodes(tmp_path: Path, settings: Settings, client,
                                                                       workers) -> None:
    assert CliRunner().invoke(cli, ["nodes"], env=worker_env(settings)).output.startswith("no render node")
    workers(concurrency=2, name="alpha")
    beta = workers(concurrency=1, name="beta")
    wait_for(lambda: set(_nodes(settings)) == {"alpha", "beta"}, 60, "both nodes to say they are alive")
    povray = subprocess.run(["povray", "--version"], capture_output=True, text=True).stderr
    nodes = _nodes(settings)
    for name, processes in (("alpha", 2), ("beta", 1)):
        n = nodes[name]
        assert (n["state"], n["host"], n["processes"], n["cores"]) == ("up", socket.gethostname(), processes,
                                                                        os.cpu_count())
        assert n["povray"] and n["povray"] in povray and n["httpov"] == "0.1.0"
        assert n["rendering"] == [] and n["done_last_hour"] == n["failed_last_hour"] == 0

    sub = client.submit(slow_scene(tmp_path / "slow", 6), count=2)
    wait_for(lambda: povray_pids(str(settings.cache_dir)), 60, "povray to start")
    wait_for(lambda: any(n["rendering"] for n in _nodes(settings).values()), 30, "a node to show its batch")
    rendering = [r for n in _nodes(settings).values() for r in n["rendering"]]
    assert {r["job"] for r in rendering} == {sub.spec.id} and {r["batch"] for r in rendering} <= set(sub.spec.batches)
    client.wait(sub.spec.id, timeout=180)
    wait_for(lambda: queue_drained(settings), 30, "every message acknowledged")
    nodes = _nodes(settings)
    assert sum(n["done_last_hour"] for n in nodes.values()) == 3 and all(not n["rendering"] for n in nodes.values())
    done_by = {info["node"].split("@")[0] for info in client.store.batches(sub.spec.id)["done"].values()}
    assert all(nodes[name]["done_last_hour"] > 0 for name in done_by)

    table = CliRunner().invoke(cli, ["nodes"], env=worker_env(settings), terminal_width=200).output
    print(table)
    assert table.splitlines()[0].split()[:3] == ["NODE", "STATE", "HOST"] and len(table.splitlines()) == 3

    stop_worker(beta, sig=signal.SIGKILL)
    wait_for(lambda: _nodes(settings)["beta"]["state"] == "lost", 60, "the killed node to show as lost")
    assert _nodes(settings)["alpha"]["state"] == "up"
