"""`httpov web`: the farm in a browser (jobs, frames, submit, control) and its JSON API, behind a login."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from httpov.errors import BadInputError
from httpov.settings import Settings
from httpov.web.app import STREAMS_PER_ACCOUNT, Web, create_app, is_loopback
from httpov.web.app import serve as _serve
from httpov.web.auth import Gate, SharedSignInLimit, migrate_accounts
from httpov.web.server import Bounds
from httpov.web.sessions import Sessions
from httpov.web.source import StatusSource
from httpov.web.stream import Streams

__all__ = ["Gate", "StatusSource", "Web", "create_app", "is_loopback", "open_web", "serve"]


def open_web(settings: Settings, gate: Gate, refresh: int = 3, behind_proxy: bool = False) -> Web:
    """The app's collaborators from the settings: one Client (its JobStore honours HTTPOV_REDIS_CA) and its views;
    sessions and the sign-in limit's counts in the same Redis, under the settings' prefix, so that every `httpov web`
    process on the farm shares them."""
    from httpov.client import Client

    if refresh < 1:
        raise BadInputError(f"--refresh must be at least 1 second, got {refresh}")
    client = Client(settings)
    client.store.ping()
    client.store.load_scripts()  # a page's first read of a job is then one EVALSHA, as every later one
    gate.limit = SharedSignInLimit(client.store.r, settings.prefix, gate.limit.attempts, gate.limit.window)
    source = StatusSource(client.store, lambda: client.storage, settings.live_node_seconds)
    return Web(client=client, source=source, gate=gate, refresh=refresh, behind_proxy=behind_proxy,
               sessions=Sessions(client.store.r, settings.prefix),
               uploads_per_account=settings.web_uploads_per_account,
               streams=Streams(settings.web_streams, STREAMS_PER_ACCOUNT))


def serve(settings: Settings, gate: Gate, host: str = "127.0.0.1", port: int = 8080, refresh: int = 3,
          ready: Callable[[str], None] | None = None, behind_proxy: bool = False) -> None:
    """Serve the web interface until interrupted; `ready` is told its URL once it listens. An accounts file written
    before roles is given them first (one line in the log says what was done)."""
    import logging

    from httpov.web.app import log_to_stderr

    log_to_stderr()
    note = migrate_accounts(gate.accounts_file)
    if note:
        logging.getLogger("httpov.web").warning("%s", note)
    if not gate.public_read and not gate.anyone_can_sign_in:
        where = gate.accounts_file or Path("ACCOUNTS")
        raise BadInputError("nobody could use this page: there is no account, no web token and no --public-read",
                            hint=f"add a user with `httpov web-user add NAME --accounts {where}`, set "
                                 "HTTPOV_WEB_TOKENS, or pass --public-read for a read-only page")
    bounds = Bounds(request_seconds=settings.web_request_seconds, min_rate=settings.web_upload_min_rate)
    _serve(open_web(settings, gate, refresh, behind_proxy), host, port, settings.max_scene_bytes, ready,
           bounds=bounds)
