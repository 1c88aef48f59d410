"""Job dependencies on real render nodes and povray: a job submitted --after another renders only after it, a job
--after-frames renders each frame only after the other's same frame, and cancelling the job waited for fails the
waiter with the reason (`httpov status` says it)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import worker_env
from httpov.states import JobState
from tests.conftest import TINY_ANIMATION, write_scene

INI = "Width=16\nHeight=12\nInitial_Frame=1\nFinal_Frame=3\nInitial_Clock=0\nFinal_Clock=1\n"


def _cli(settings, *args: str):
    result = CliRunner().invoke(cli, list(args), env=worker_env(settings))
    print(result.output)
    return result


def test_after_and_after_frames_render_in_order_and_a_cancel_fails_the_waiter(tmp_path, settings, client, workers):
    scene = write_scene(tmp_path / "s", TINY_ANIMATION, INI)
    a = client.submit(scene, count=1).spec.id
    b = client.submit(scene, count=3, after=a).spec.id  # one batch of every frame, once all of A is done
    c = client.submit(scene, count=1, after_frames=a).spec.id  # frame N once A's frame N is done
    x = client.submit(scene, count=3).spec.id
    y = _cli(settings, "submit", str(scene), "--count", "3", "--after", x)
    assert y.exit_code == 0
    y_id = client.store.job_ids()[-1]
    assert client.store.state(b) == client.store.state(y_id) == JobState.WAITING
    assert _cli(settings, "cancel", x).exit_code == 0  # before any node runs: Y fails at once, with the reason
    assert client.store.state(y_id) == JobState.FAILED
    status = _cli(settings, "status", y_id)
    assert f"job {x} that it waits for was cancelled" in status.output
    workers(concurrency=2)
    for job in (a, b, c):
        assert client.wait(job, timeout=120).state == JobState.DONE
    done_a, done_b, done_c = (client.store.batches(job)["done"] for job in (a, b, c))
    a_end = max(info["finished"] for info in done_a.values())
    assert float(client.store.record(b)["started"]) >= a_end and done_b["f000001-000003"]["started"] >= a_end
    for frame in ("f000001-000001", "f000002-000002", "f000003-000003"):
        assert done_c[frame]["started"] >= done_a[frame]["finished"], frame
    print({f: round(done_c[f]["started"] - done_a[f]["finished"], 3) for f in done_c})


def test_a_failed_render_fails_its_waiters_with_the_reason_and_after_anyway_renders(tmp_path, settings, client,
                                                                                     workers):
    """A's scene does not parse: povray fails it on a render node, which fails the jobs --after it and
    --after-frames it with that reason (as its owner and another user see it), while --after-anyway renders."""
    from httpov.access import Identity, Role
    from httpov.errors import JobFailedError
    from tests.conftest import pixels, wait_for

    bob = Identity("bob", Role.USER)
    scene = write_scene(tmp_path / "s", TINY_ANIMATION, INI)
    broken = write_scene(tmp_path / "broken", "#version 3.7;\nsphere { <0, 0, 0>, 1 pigment { rgb <1, 0, 0> }\n",
                         INI)
    a = client.submit(broken, count=3).spec.id
    b = client.submit(scene, count=3, after=a).spec.id
    c = client.submit(scene, count=3, after=a, after_anyway=True).spec.id
    d = client.submit(scene, count=1, after_frames=a).spec.id
    assert client.store.state(b) == client.store.state(c) == JobState.WAITING
    assert not client.store.batches(d)["done"] and client.store.held(d)
    workers(concurrency=2)
    with pytest.raises(JobFailedError):  # a scene that does not parse
        client.wait(a, timeout=120)
    wait_for(lambda: client.store.state(b) == client.store.state(d) == JobState.FAILED, 30,
             "the jobs waiting for the failed one to fail")
    why = f"job {a} that it waits for failed"
    for job in (b, d):
        assert client.view(job).errors == client.view(job, who=bob).errors == [why]
        assert not client.store.batches(job)["done"]  # nothing of it rendered
    assert why in _cli(settings, "status", b).output
    assert client.wait(c, timeout=120).state == JobState.DONE  # --after-anyway: rendered as if A were done
    frames = client.fetch(c, tmp_path / "c")
    assert len(frames) == 3 and all(pixels(f)[:2] == (16, 12) and len(set(pixels(f)[2])) > 1 for f in frames)
