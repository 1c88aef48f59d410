"""A render node's health check: povray renders in its sandbox, Redis and storage answer, the worker replies.

Run as `python -m httpov.worker.health [--worker celery@HOST]` (workers/httpov-healthcheck wraps it): one line per
check, exit 0 when all pass, 1 otherwise. It uses the node's own settings (HTTPOV_* or its environment file).
"""
from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from httpov.errors import HttpovError
from httpov.settings import Settings
from httpov.text import shown


@dataclass
class Check:
    """One check's outcome: its name, whether it passed, and what it saw."""

    name: str
    ok: bool
    detail: str


def _povray(settings: Settings) -> str:
    """Render a tiny frame exactly as a batch is rendered: the same povray, sandbox, output checks and quick waits."""
    from httpov.worker import waits

    preload, said = waits.kept(settings)  # what the node decided: the check writes nothing into its cache folder
    _, seconds = waits.render_check(settings, preload=preload)
    return f"rendered an 8x8 frame in its sandbox in {seconds:.2f} s, {shown(said)}"


def _redis(settings: Settings) -> str:
    from httpov.store import open_store

    open_store(settings).ping()
    return "job state answers"


def _storage(settings: Settings) -> str:
    from httpov.storage import open_storage

    open_storage(settings.storage).check()
    return f"{settings.storage} is reachable"


def _worker(settings: Settings, name: str) -> Callable[[], str]:
    def ping() -> str:
        from httpov.celery import make_app

        replies = make_app(settings).control.ping(destination=[name], timeout=3.0)
        if not any(name in reply for reply in replies):
            raise HttpovError(f"worker {name} did not answer a ping within 3 s")
        return f"worker {name} answers"
    return ping


def check_node(settings: Settings, worker: str | None = None) -> list[Check]:
    """Every check, in order; a failing check does not stop the others."""
    steps: list[tuple[str, Callable[[], str]]] = [
        ("povray", lambda: _povray(settings)), ("redis", lambda: _redis(settings)),
        ("storage", lambda: _storage(settings))]
    if worker:
        steps.append(("worker", _worker(settings, worker)))
    checks = []
    for name, step in steps:
        started = time.monotonic()
        try:
            checks.append(Check(name, True, step()))
        except Exception as exc:  # a health check reports every failure, whatever its kind
            checks.append(Check(name, False, f"{type(exc).__name__}: {exc} ({time.monotonic() - started:.1f} s)"))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="httpov-healthcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs="?", const=f"celery@{socket.gethostname()}", default=None,
                        help="also ping this Celery worker (default with no value: celery@<this host>)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except HttpovError as exc:
        print(f"FAIL settings: {exc}")
        return 1
    checks = check_node(settings, args.worker)
    for check in checks:
        print(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {shown(check.detail)}")  # povray's words are data
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
