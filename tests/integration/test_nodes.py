"""`httpov nodes`: every render node with its record, what it renders now, its last hour, and lost ones."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from httpov.cli import cli
from httpov.dispatch import budget, windows
from httpov.local_farm import stop_worker, worker_env
from httpov.nodes import farm_nodes
from httpov.settings import Settings, live_node_window
from httpov.view import job_view
from tests.conftest import TINY_ANIMATION, queue_drained, wait_for, write_scene
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


def test_the_view_the_dispatcher_and_httpov_nodes_agree_which_nodes_are_live(tmp_path: Path, settings: Settings,
                                                                               client, monkeypatch) -> None:
    """One window decides (Settings.live_node_seconds): a node last seen exactly that long ago is live for the
    job view's pool_live (`httpov status`), the dispatcher's window, `httpov nodes` and a blocked node handing a
    batch on; a moment later it is live for none of them."""
    window = settings.live_node_seconds
    assert window == live_node_window(settings.lease_seconds) == max(3 * settings.lease_seconds, 10.0)
    job = client.submit(write_scene(tmp_path / "pool", TINY_ANIMATION, "+W32 +H24\n"), frames=2, count=1,
                        pool="big").spec.id
    clock = [1_765_432_109.123]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    client.store.heartbeat("edge@host", 8, ["big"], {"host": "host"})

    def seen_live() -> tuple[bool | None, bool | None, int, str, str, set[str]]:
        status = CliRunner().invoke(cli, ["status", job, "--json"], env=worker_env(settings))
        return (json.loads(status.output)["pool_live"], job_view(client.store, job, live_within=window).pool_live,
                windows(client.store, settings.lease_seconds)[job], _nodes(settings)["edge"]["state"],
                {n["node"]: n["state"] for n in farm_nodes(client.store, settings.lease_seconds)}["edge@host"],
                client.store.live_nodes(within=window))

    assert budget(8) > budget(0)  # a pool job's window counts the live render processes of its pool
    clock[0] += window  # at the edge of the window: live for all
    assert seen_live() == (True, True, budget(8), "up", "up", {"edge@host"})
    clock[0] += 0.001  # past it: live for none
    assert seen_live() == (False, False, budget(0), "lost", "lost", set())
