"""`httpov watch` and `httpov status` on a job real render nodes are rendering: what a user sees live."""
from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import worker_env
from tests.conftest import PARSE_ERROR, TINY_ANIMATION, write_scene

INI = "Width=24\nHeight=16\nInitial_Frame=1\nFinal_Frame=8\n"


def test_watch_follows_a_job_to_its_end_with_nodes_rate_and_eta(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "w", TINY_ANIMATION, INI)
    sub = client.submit(scene, count=1)  # 8 batches of one frame
    env = worker_env(settings)
    watcher = subprocess.Popen([sys.executable, "-m", "httpov.cli", "watch", sub.spec.id, "--json",
                                "--interval", "0.2"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    workers(concurrency=2, name="wnode")
    out, err = watcher.communicate(timeout=180)
    assert watcher.returncode == 0, err
    views = [json.loads(line) for line in out.splitlines()]
    print(f"{len(views)} views")

    assert views[-1]["state"] == "done" and views[-1]["frames_done"] == 8 and views[-1]["eta_seconds"] == 0.0
    done_counts = [v["frames_done"] for v in views]
    assert done_counts == sorted(done_counts), "frames done never goes back"
    # while it rendered, the view said which node rendered which frames
    running = [r for v in views for r in v["running"]]
    assert running and all(r["node"].startswith("wnode@") for r in running)
    assert any(r["label"].startswith("frame ") for r in running)
    # an ETA appeared once frames were measured, and it was finite and positive mid-job
    mid = [v for v in views if v["state"] == "running" and 0 < v["frames_done"] < 8 and v["running"]]
    assert mid and all(v["eta_seconds"] is not None and v["eta_seconds"] >= 0 for v in mid)
    assert all(v["frame_seconds"] > 0 for v in mid)
    final = views[-1]
    assert sum(n["batches_done"] for n in final["nodes"].values()) == 8
    assert final["rate_recent"] > 0

    # the same job in text: one snapshot, then the table
    once = CliRunner().invoke(cli, ["watch", sub.spec.id, "--once"], env=env)
    assert once.exit_code == 0, once.output
    assert "8/8 frames done" in once.output and "[" + "#" * 40 + "]" in once.output
    assert "wnode@" in once.output
    table = CliRunner().invoke(cli, ["status"], env=env)
    assert table.exit_code == 0, table.output
    header, row = table.output.splitlines()[:2]
    assert "ETA" in header and "PROGRESS" in header
    assert row.startswith(sub.spec.id) and "[##########]" in row and "100%" in row and "8/8" in row
    assert "\x1b" not in once.output + table.output  # off a terminal: plain text, no escape codes


def test_watch_shows_a_failed_batch_with_its_log_lines(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "bad", PARSE_ERROR, "Width=16\nHeight=16\n+KFI1 +KFF2\n")
    sub = client.submit(scene, count=2)
    workers(concurrency=1)
    result = CliRunner().invoke(cli, ["watch", sub.spec.id, "--interval", "0.2"], env=worker_env(settings))
    assert result.exit_code == 8, result.output  # as `submit --wait`: a failed job is exit code 8
    assert f"job {sub.spec.id} (bad): failed" in result.output
    assert "failed: frames 1-2 on node0@" in result.output
    assert "    | " in result.output  # povray's error lines follow
    assert "ETA -" in result.output


def test_watch_an_unknown_job_says_so_with_a_hint(settings):
    result = CliRunner().invoke(cli, ["watch", "nosuchjob", "--once"], env=worker_env(settings))
    assert result.exit_code == 4
    assert "no job with id 'nosuchjob'" in result.output and "hint: `httpov status` lists the jobs" in result.output
