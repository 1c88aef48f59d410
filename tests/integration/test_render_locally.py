"""`httpov render`, the README's main job: the whole pipeline on one machine, Redis started when none answers."""
from __future__ import annotations

from click.testing import CliRunner

from httpov.cli import cli
from httpov.local_farm import free_port, redis_answers, worker_env
from tests.conftest import TINY_ANIMATION, pixels, povray_direct, write_scene


def test_render_starts_its_own_redis_renders_and_fetches(tmp_path, settings):
    scene = write_scene(tmp_path / "local", TINY_ANIMATION, "Width=16\nHeight=12\n+KFI1 +KFF3\n")
    nobody = f"redis://127.0.0.1:{free_port()}/0"  # no Redis there: render must start one of its own
    env = dict(worker_env(settings), HTTPOV_BROKER_URL=nobody, HTTPOV_STATE_URL=nobody)
    result = CliRunner().invoke(cli, ["render", str(scene), "--workers", "2", "--output", str(tmp_path / "out")],
                                env=env)
    print(result.output)
    assert result.exit_code == 0, result.output
    assert f"no Redis at {nobody}; started one at redis://127.0.0.1:" in result.output
    images = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in images] == ["local_0001.png", "local_0002.png", "local_0003.png"]
    assert len(list((tmp_path / "out" / "logs").glob("*.log"))) >= 1
    povray_direct(scene, tmp_path / "ref")
    for n, image in enumerate(images, 1):
        assert pixels(image) == pixels(tmp_path / "ref" / f"ref{n}.png")
    started = result.output.split("started one at ")[1].split()[0].rstrip(";")
    assert not redis_answers(started), "the Redis that render started must be stopped"
