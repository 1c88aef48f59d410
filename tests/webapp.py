"""The web interface's real Flask app over a real Client (Redis, storage), driven through Flask's test client."""
from __future__ import annotations

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
