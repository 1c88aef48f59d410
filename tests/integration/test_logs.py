"""`httpov logs`: povray's log of a frame or batch, failed attempts included, without fetching the whole job."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.settings import Settings
from tests.conftest import TINY_ANIMATION, queue_drained, wait_for, write_scene

pytestmark = pytest.mark.integration

BROKEN_TWO = TINY_ANIMATION + '\n#if (frame_number = 2) #error "frame two is broken" #end\n'


def _headers(output: str) -> int:
    """How many batch logs the output holds (povray's own log has '==== [Parsing...] ====' lines)."""
    return len(re.findall(r"^== f\d{6}", output, re.M))


def _cli(settings: Settings, *args: str):
    result = CliRunner().invoke(cli, list(args), env=worker_env(settings))
    print(result.output)
    return result


def test_logs_of_a_frame_a_failure_and_the_whole_job(tmp_path: Path, settings: Settings, client, workers) -> None:
    scene = write_scene(tmp_path / "two", BROKEN_TWO, "Width=24\nHeight=16\nInitial_Frame=1\nFinal_Frame=3\n")
    sub = client.submit(scene, count=1)
    workers(concurrency=1)
    wait_for(lambda: client.store.state(sub.spec.id) == "failed", 120, "frame 2 to fail the job")
    wait_for(lambda: queue_drained(settings), 30, "every message acknowledged")
    done = set(client.store.batches(sub.spec.id)["done"])
    assert "f000002-000002" not in done

    everything = _cli(settings, "logs", sub.spec.id)
    assert everything.exit_code == 0
    assert "== f000002-000002 (frame 2): failed" in everything.output and "frame two is broken" in everything.output
    for batch in done:  # each rendered batch's own log, from its zip
        assert f"== {batch} (frame {int(batch[1:7])}): rendered ==" in everything.output
    assert "POV-Ray" in everything.output

    one = _cli(settings, "logs", sub.spec.id, "--frame", "2")
    assert one.exit_code == 0 and _headers(one.output) == 1 and "frame two is broken" in one.output
    failed = _cli(settings, "logs", sub.spec.id, "--failed")
    assert _headers(failed.output) == 1 and "f000002-000002" in failed.output
    if "f000001-000001" in done:
        first = _cli(settings, "logs", sub.spec.id, "--frame", "1")
        assert _headers(first.output) == 1 and "rendered" in first.output and "broken" not in first.output
    assert _cli(settings, "logs", sub.spec.id, "--frame", "9").exit_code == 2
    assert _cli(settings, "logs", "nosuchjob").exit_code == 4
