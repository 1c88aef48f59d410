"""The web interface's real Flask app over a real Client (Redis, storage), driven through Flask's test client."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def web_app(client: Any, source: Any = None, public_read: bool = True, tokens: tuple[str, ...] = ()):
    from httpov.web import Gate, StatusSource, Web, create_app

    source = source or StatusSource(client.store, lambda: client.storage, client.settings.live_node_seconds)
    app = create_app(Web(client=client, source=source, gate=Gate(None, list(tokens), public_read)))
    return app


def page(client: Any, path: str, **kwargs: Any) -> tuple[int, str]:
    """(status, HTML) of one page, as a browser asks for it."""
    response = web_app(client, **kwargs).test_client().get(path, headers={"Accept": "text/html"})
    return response.status_code, response.get_data(as_text=True)


def web_farm(name: str, users: tuple[str, ...], *args: str, signed_in: bool = False) -> tuple[Any, Any, Any]:
    """Module fixtures `settings`, `client` and `server` for a test file's own farm: private settings (prefix,
    storage), a Client on them, and a real `httpov web` (tests/store/test_web_signin.serving) with `users` and
    `args`. A test file assigns them: `settings, client, server = web_farm("viewer", ("bob",), "--public-read")`."""
    import pytest

    from tests.conftest import private_settings
    from tests.store.test_web_signin import serving

    @pytest.fixture(scope="module")
    def settings(tmp_path_factory: Any) -> Any:
        with private_settings(tmp_path_factory.mktemp(name)) as s:
            yield s

    @pytest.fixture(scope="module")
    def client(settings: Any) -> Any:
        from httpov.celery import make_app
        from httpov.client import Client

        return Client(settings, make_app(settings))

    @pytest.fixture(scope="module")
    def server(tmp_path_factory: Any, settings: Any) -> Any:
        yield from serving(tmp_path_factory.mktemp(f"{name}-web"), settings, users, *args, signed_in=signed_in)

    return settings, client, server


def wait_answering(status: Callable[[], int], log: Path, seconds: float = 30.0) -> None:
    """Wait until a just-started `httpov web` answers `status()` (a GET's status) with 200; SystemExit with its log
    (`log`) after `seconds`. For the benchmarks that start one (scripts/bench_pages.py, bench_live.py, ...)."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            if status() == 200:
                return
        except OSError:  # not listening yet
            pass
        if time.monotonic() > deadline:
            raise SystemExit("httpov web did not answer:\n" + log.read_text())
        time.sleep(0.1)
