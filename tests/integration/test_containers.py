"""docker/: the render node's image and the compose farm, built with podman and rendering the example for real
(marker `container`). The images are built by .ci/container-images: .ci/run starts it in the background before
anything else (HTTPOV_TEST_IMAGES names its folder) and these tests wait for it; run alone, the first test builds
them. Without podman the tests are skipped, except under CI (CI set), where that fails them."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from httpov.cli import cli
from httpov.local_farm import free_port
from httpov.settings import Settings
from tests.conftest import pixels, povray_direct, wait_for

pytestmark = pytest.mark.container

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "spinner"
COMPOSE = REPO / "docker" / "compose.yaml"
NODE_IMAGE = "localhost/httpov-node"
BUILD_SECONDS = 900  # a fresh machine: the base image, the Redis stand-in and the node image, downloads included
TINY = ["--frames", "2", "--width", "32", "--height", "24", "--count", "1"]  # the example, 2 frames at 32x24


def podman_env(**extra: str) -> dict[str, str]:
    """The environment podman runs in: this repository's containers.conf unless the caller names one."""
    conf = os.environ.get("CONTAINERS_CONF", str(REPO / ".ci" / "containers.conf"))
    return {**os.environ, "CONTAINERS_CONF": conf, **extra}


def podman(*args: str, timeout: float = 120, check: bool = True, stdin: str | None = None,
           tool: str = "podman", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([tool, *args], capture_output=True, text=True, timeout=timeout,
                            env=podman_env(**(env or {})), input=stdin)
    if check and result.returncode != 0:
        raise AssertionError(f"$ {tool} {' '.join(args)} -> {result.returncode}\n{result.stdout}{result.stderr}")
    return result


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The images built (waiting for .ci/run's background build, or building them here); a failed build fails
    the tests with its log."""
    missing = [tool for tool in ("podman", "podman-compose") if shutil.which(tool) is None]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{' and '.join(missing)} not installed: CI must run the container tests (.ci/run installs "
                        "them)")
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install podman podman-compose mmdebstrap "
                    "runc, or run .ci/run)")
    given = os.environ.get("HTTPOV_TEST_IMAGES")
    if given:
        folder = Path(given)
        wait_for(lambda: (folder / "status").exists(), BUILD_SECONDS, f"the image build ({folder}/build.log)")
    else:
        folder = tmp_path_factory.mktemp("images")
        subprocess.run([str(REPO / ".ci" / "container-images"), str(folder)], env=podman_env(),
                       timeout=BUILD_SECONDS, check=False)
    status = (folder / "status").read_text().strip()
    if status != "0":
        log = (folder / "build.log").read_text(errors="replace")
        pytest.fail(f"the container images did not build (exit {status}); the end of {folder}/build.log:\n"
                    f"{log[-6000:]}")


def _example(tmp_path: Path) -> Path:
    scene = tmp_path / "spinner"
    shutil.copytree(EXAMPLE, scene)
    scene.chmod(0o755)
    return scene


def _same_as_povray(scene: Path, frames: list[Path], tmp_path: Path) -> None:
    """The frames are those the host's povray renders of the example at the same size (both Debian bookworm's)."""
    assert [p.name[-8:] for p in frames] == ["0001.png", "0002.png"]
    povray_direct(scene, tmp_path / "ref", "+W32", "+H24", "+KFF2")
    for n, frame in enumerate(frames, 1):
        assert pixels(frame)[:2] == (32, 24)
        assert pixels(frame) == pixels(tmp_path / "ref" / f"ref{n}.png"), f"frame {n} differs from povray's"


@contextlib.contextmanager
def container(name: str, *args: str) -> Iterator[str]:
    """A detached container, removed (and its log shown) whatever the test did."""
    podman("run", "-d", "--name", name, *args)
    try:
        yield name
    finally:
        print(podman("logs", name, check=False).stdout[-4000:])
        podman("rm", "-f", "-t", "0", name, check=False)


def test_node_image_renders_the_example_against_the_test_redis(tmp_path: Path, settings: Settings, client,
                                                               images: None) -> None:
    """The image's node (its default command, as its unprivileged user, bubblewrap inside) renders batches queued
    on the test's Redis; the image's CLI submits them. Host networking: Redis on 127.0.0.1 as the tests use it."""
    storage = Path(settings.storage)
    storage.mkdir(parents=True)
    storage.chmod(0o777)  # the image's user (uid 1000) writes there; the test reads as whoever it runs as
    scene = _example(tmp_path)
    env = [arg for key, value in settings.to_env().items() if key != "HTTPOV_CACHE_DIR"  # the image's own
           for arg in ("-e", f"{key}={value}")]
    common = ["--network", "host", *env, "-v", f"{storage}:{storage}"]
    name = f"{settings.prefix}-node"
    with container(name, *common, "--security-opt", "seccomp=unconfined", "-e", "HTTPOV_RENDER_PROCESSES=2",
                   NODE_IMAGE):
        submitted = podman("run", "--rm", *common, "-v", f"{scene}:/scene:ro", NODE_IMAGE,
                           "httpov", "submit", "/scene", *TINY)
        job = submitted.stdout.split()[1].rstrip(":")
        final = client.wait(job, timeout=180)
        assert (final.state, final.frames_done, final.frames_failed) == ("done", 2, 0), final
        assert client.store.owner(job) == "render"  # the image's user submitted it
        _same_as_povray(scene, client.fetch(job, tmp_path / "frames"), tmp_path)


class ComposeFarm:
    """docker/compose.yaml brought up by podman-compose as a project of its own, its web interface on a free
    loopback port; the CLI talks to it as a user does, with a server URL and a token."""

    def __init__(self, tmp: Path) -> None:
        self.project = "httpovtest" + secrets.token_hex(4)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = tmp / "home"  # no config file of the machine's user is read
        self.home.mkdir()

    def compose(self, *args: str, stdin: str | None = None, timeout: float = 180) -> str:
        return podman("-p", self.project, "-f", str(COMPOSE), *args, tool="podman-compose", stdin=stdin,
                      timeout=timeout, env={"WEB_PORT": str(self.port)}).stdout

    def accounts(self, *names: str) -> list[str]:
        """Accounts in the web container's accounts volume and an API token each, made as the README says
        (`compose run --rm web httpov web-user add NAME`, `web-token add NAME`), in one container."""
        steps = [f"printf %s {secrets.token_hex(8)} | httpov web-user add {name} --password-stdin" for name in names]
        steps += [f"httpov web-token add {name}" for name in names]
        made = self.compose("run", "--rm", "-T", "web", "sh", "-c", " && ".join(steps))
        tokens = [line for line in made.splitlines() if line.startswith("httpov_")]
        assert len(tokens) == len(names), made
        return tokens

    def remote(self, token: str, *args: str) -> Result:
        env = {"HTTPOV_SERVER": self.url, "HTTPOV_TOKEN": token, "HTTPOV_BROKER_URL": "redis://127.0.0.1:1/0",
               "XDG_CONFIG_HOME": str(self.home)}
        result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
        print(f"$ httpov {' '.join(args)} -> {result.exit_code}\n{result.stdout}{result.stderr}")
        return result

    def down(self) -> None:
        for service in ("web_1", "node_1"):
            print(podman("logs", f"{self.project}_{service}", check=False).stdout[-3000:])
        ours = podman("ps", "-aq", "--filter", f"label=io.podman.compose.project={self.project}", check=False)
        if ours.stdout.split():  # all at once (compose down stops them one by one), then down removes the rest
            podman("rm", "-f", "-t", "0", *ours.stdout.split(), check=False)
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            self.compose("down", "--volumes", "-t", "0")
        podman("network", "rm", "-f", f"{self.project}_default", check=False)


def test_compose_farm_renders_the_example_through_its_web_interface(tmp_path: Path, images: None) -> None:
    """`compose run web httpov web-user add`, `web-token add`, `compose up -d`: Redis, two render nodes and the
    web interface on the storage volume; a user's `httpov --server` submits the example and fetches povray's
    pixels, and another user may not touch the job."""
    farm = ComposeFarm(tmp_path)
    try:
        alice, bob = farm.accounts("alice", "bob")
        farm.compose("up", "-d")

        def two_nodes() -> bool:
            listed = farm.remote(alice, "nodes", "--json")
            return listed.exit_code == 0 and len(json.loads(listed.stdout)) == 2
        wait_for(two_nodes, 120, "the web interface to answer and list the two render nodes")

        scene = _example(tmp_path)
        submitted = farm.remote(alice, "submit", str(scene), *TINY, "--wait")
        assert submitted.exit_code == 0
        job = submitted.stdout.split()[1].rstrip(":")
        refused = farm.remote(bob, "cancel", job)
        assert refused.exit_code == 10 and "bob (user) may not" in refused.stderr
        assert farm.remote(alice, "fetch", job, "--output", str(tmp_path / "frames")).exit_code == 0
        _same_as_povray(scene, sorted((tmp_path / "frames").glob("*.png")), tmp_path)
    finally:
        farm.down()
