"""The Flask app of `httpov web`: who may do what (login and its server-side sessions, bearer tokens, CSRF), what a
request may send (decided from its headers), errors as pages or JSON, and the server that runs it."""
from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, g, jsonify, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, CSRFProtect
from markupsafe import Markup

from httpov.access import Action, Identity, allowed
from httpov.errors import (
    BadInputError,
    BrokerUnavailableError,
    FieldError,
    ForbiddenError,
    HttpovError,
    JobFailedError,
    JobNotFoundError,
    JobStateError,
    NodeNotFoundError,
    PageNotFoundError,
    ResultError,
    TokenNotFoundError,
)
from httpov.metrics import CONTENT_TYPE
from httpov.outage import NOTICE
from httpov.settings import WEB_THREADS
from httpov.states import JobState
from httpov.text import shown
from httpov.view import JobView
from httpov.web.api import PUBLIC, api, wants_json
from httpov.web.auth import Gate, signing_key
from httpov.web.downloads import Downloads
from httpov.web.pages import pages
from httpov.web.server import Bounds, TooSlow, make_server
from httpov.web.sessions import Sessions
from httpov.web.source import StatusSource
from httpov.web.stream import Streams, Timing
from httpov.web.tokens import Tokens, bearer
from httpov.web.uploads import UPLOADS, UploadSlots, body_refusal, too_many
from httpov.webhooks import Deliverer

#: Reached without signing in: the login form itself and the stylesheet and script it loads.
OPEN = ("pages.login", "static")
#: Read only by a signed-in account (or a token), even with --public-read: its API tokens; the audit log (admins);
#: the farm's Prometheus metrics (any role).
SIGNED_IN = ("pages.tokens", "pages.confirm_revoke", "api.list_tokens", "pages.audit", "api.audit", "metrics")
#: Who a request with a farm-wide token (HTTPOV_WEB_TOKENS, --tokens; deprecated) acts as: an admin of no account.
FARM_TOKEN_USER = "token"  # Gate.token_identity
#: Live pages' event streams one account may hold open in one server (HTTPOV_WEB_STREAMS bounds them all).
STREAMS_PER_ACCOUNT = 2
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


@dataclass
class Web:
    """What the views use: the client (the library calls the CLI makes), its job views and frames, the gate."""

    client: Any
    source: StatusSource
    gate: Gate
    refresh: int = 3
    behind_proxy: bool = False  # trust one proxy's X-Forwarded-For, -Proto and -Host (see `serve`)
    sessions: Sessions | None = None  # signed-in browsers (Redis); made from the client's store when not given
    tokens: Tokens | None = None  # accounts' API tokens (Redis); made from the client's store when not given
    downloads: Downloads | None = None  # the jobs' downloads and their builders; made from the client when not given
    uploads_per_account: int = 2  # scene uploads one account may have under way at once (429 past it)
    streams: Streams = field(default_factory=lambda: Streams(4, STREAMS_PER_ACCOUNT))  # live pages' event streams
    stream_timing: Timing = field(default_factory=Timing)


class _SessionInterface(SecureCookieSessionInterface):
    """The session cookie is Secure whenever the request came over https (a TLS proxy's X-Forwarded-Proto, when
    `--behind-proxy` trusts it): a browser then never sends it over plain http. Over plain http it cannot be."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def create_app(web: Web, secret_key: bytes | None = None, max_upload: int = 512 * 1024**2) -> Flask:
    """The app; its cookies are signed with `secret_key`, else the key beside the accounts file (kept across
    restarts), else (no accounts file: nobody signs in) a key of this process's own."""
    if secret_key is None and web.gate.accounts_file is not None:
        secret_key = signing_key(web.gate.accounts_file)
    store = getattr(web.client, "store", None)  # None: a test's stand-in client, where nobody signs in
    if web.sessions is None and store is not None:
        web.sessions = Sessions(store.r, store.p)
    if web.tokens is None and store is not None:
        web.tokens = Tokens(store.r, store.p)
    if web.downloads is None and store is not None:
        web.downloads = Downloads(web.client, web.client.settings.web_builds)
    app = Flask("httpov.web", root_path=__file__.rsplit("/", 1)[0])
    app.config.update(
        SECRET_KEY=secret_key or secrets.token_bytes(32),
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_NAME="httpov_session",
        WTF_CSRF_CHECK_DEFAULT=False,  # checked below, for cookie sessions only (a bearer token is not ambient)
        WTF_CSRF_TIME_LIMIT=None, MAX_CONTENT_LENGTH=max_upload, JSON_SORT_KEYS=False,
    )
    app.session_interface = _SessionInterface()
    app.extensions["httpov"] = web
    app.jinja_env.globals["eta_text"] = eta_text
    app.jinja_env.globals["failure_line"] = failure_line
    app.jinja_env.globals["shown"] = shown
    # every value a template prints: control characters written out (httpov.text.shown), then HTML-escaped
    app.jinja_env.finalize = lambda value: value if isinstance(value, Markup) or not isinstance(value, str) \
        else shown(value)
    csrf = CSRFProtect(app)
    app.register_blueprint(api)
    app.register_blueprint(pages)
    slots = UploadSlots(web.uploads_per_account)

    def check_body() -> Any:
        """Refuse the body from the headers, before a byte of it is read: chunked, too large, or a further upload
        of an account that has its share under way (its slot is given back when the request ends)."""
        refused = body_refusal(request.endpoint, request.content_length,
                               "chunked" in request.headers.get("Transfer-Encoding", "").lower(), max_upload)
        if refused is not None:
            code, message = refused
            if code == 413 and request.endpoint in UPLOADS:
                return _upload_refused(413, message)
            return _refuse(code, message)
        if request.endpoint in UPLOADS and request.content_length and g.user is not None:
            if not slots.take(g.user):
                return _upload_refused(429, too_many(g.user, slots.per_account))
            g.upload_slot = g.user
        return None

    @app.teardown_request
    def give_slot(exc: BaseException | None) -> None:
        account = g.pop("upload_slot", None)
        if account is not None:
            slots.give(account)

    @app.before_request
    def check_access() -> Any:
        """Who the request is (g.identity, httpov.access.Identity; g.user its name when signed in or a token):
        what each view then asks httpov.access about, through the Client and the StatusSource."""
        g.user, g.identity = None, None
        address = request.remote_addr or ""
        if "sid" in session:  # a session Redis still holds, of an account with the same password and role
            accounts = web.gate.accounts()
            g.user = web.sessions.user(session["sid"], accounts) if web.sessions else None
            if g.user is None:
                session.clear()  # signed out, a new password or role, the account removed, or expired
            else:
                g.identity = Identity(g.user, accounts[g.user].role, address=address)
        g.bearer = g.farm_token = False
        header = request.headers.get("Authorization")
        if header is not None:  # an account's token acts as its account, with its role; a farm-wide one as `token`
            token = bearer(header)
            accounts = web.gate.accounts()
            account = web.tokens.account(token, accounts) if web.tokens and token else None
            if account is not None:
                g.bearer, g.user = True, account
                g.identity = Identity(account, accounts[account].role, address=address)
            elif web.gate.token_ok(header):
                g.bearer, g.farm_token, g.identity = True, True, web.gate.token_identity(address)
                g.user = g.identity.name
            else:
                return _refuse(401, "the bearer token is not one this server knows (revoked, or its account is gone)")
        if g.identity is None and web.gate.public_read:
            g.identity = PUBLIC
        if request.endpoint in OPEN:
            if request.method == "POST":
                refused = check_body()
                if refused is not None:
                    return refused
                csrf.protect()
            return None
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            if g.user is None:
                return _refuse(401, "sign in first: submitting and job control need a signed-in user")
            refused = check_body()
            if refused is not None:
                return refused
            if not g.bearer:
                csrf.protect()  # raises CSRFError: answered 403 below, nothing changed
            return None
        if g.user is None and (not web.gate.public_read or request.endpoint in SIGNED_IN):
            if wants_json():
                return _refuse(401, "sign in first, or send Authorization: Bearer TOKEN")
            return redirect(url_for("pages.login", next=request.full_path.rstrip("?")))
        return None

    @app.get("/metrics")
    def metrics() -> Any:
        """The farm's Prometheus metrics (httpov.metrics), read from Redis now."""
        return Response(web.client.metrics(g.identity), content_type=CONTENT_TYPE)

    @app.after_request
    def headers(response: Any) -> Any:
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    @app.context_processor
    def context() -> dict[str, Any]:
        identity = g.get("identity") or PUBLIC

        def may(action: str, owner: str | None = None) -> bool:
            """What the page offers: only what httpov.access allows (the views check again)."""
            return allowed(identity, Action(action), owner)
        return {"user": g.get("user"), "role": identity.role if g.get("user") else "", "may": may,
                "refresh": web.refresh, "public_read": web.gate.public_read,
                "streams": web.streams.spare(identity.name)}  # a live page's event stream would be given now

    @app.errorhandler(CSRFError)
    def csrf_refused(exc: CSRFError) -> Any:
        return _refuse(403, f"refused: {exc.description} (reload the page and try again)")

    @app.errorhandler(FieldError)
    def field_error(exc: FieldError) -> Any:
        field = next(iter(exc.errors))
        return jsonify({"error": str(exc), "field": field, "errors": exc.errors, "kind": "FieldError"}), 400

    @app.errorhandler(413)
    def too_large(exc: Any) -> Any:
        return _upload_refused(413, f"the upload is larger than {max_upload} bytes (HTTPOV_MAX_SCENE_BYTES)")

    @app.errorhandler(TooSlow)
    def too_slow(exc: TooSlow) -> Any:  # the connection is closed after it (httpov.web.server)
        return _refuse(408, str(exc.description))

    @app.errorhandler(404)
    def not_found(exc: Any) -> Any:
        return _refuse(404, f"no page {request.path}")

    @app.errorhandler(HttpovError)
    def httpov_error(exc: HttpovError) -> Any:
        if isinstance(exc, BrokerUnavailableError):  # a Redis restart: the page keeps reloading until it is back
            message = f"{NOTICE} every {web.refresh} s: {exc}"
            if not wants_json():
                return render_template("outage.html", message=message), 503
            return _refuse(503, message, exc.hint, kind=type(exc).__name__)
        code = 503
        if isinstance(exc, (JobNotFoundError, TokenNotFoundError, PageNotFoundError, NodeNotFoundError)):
            code = 404
        elif isinstance(exc, BadInputError):
            code = 400
        elif isinstance(exc, (JobStateError, JobFailedError)):  # e.g. frames of a job that rendered none
            code = 409
        elif isinstance(exc, ForbiddenError):  # nothing was changed
            code = 403
        elif isinstance(exc, ResultError):  # a hostile or damaged result: refused, and remembered
            code = 422
        return _refuse(code, str(exc), exc.hint if wants_json() else page_hint(exc), kind=type(exc).__name__)

    return app


#: A hint in the command line's words: a command (`httpov status`) or a flag (--force).
_CLI_WORDS = re.compile(r"`httpov\b|(?:^|[\s(`])--[a-z]")


def page_hint(exc: HttpovError) -> str | None:
    """The hint an error's page shows. The library's hints speak the command line (`httpov status` lists the jobs,
    `httpov delete --force`): the API keeps them for scripts and `httpov --server`, which shows them; a page says
    what to do in the browser, or nothing."""
    if isinstance(exc, JobNotFoundError):
        return "the jobs page lists the jobs"
    return None if exc.hint and _CLI_WORDS.search(exc.hint) else exc.hint


def eta_text(j: JobView) -> str:
    """'ETA 3m05s (at 10:42:00)', 'finished at 10:42:00', or the state: one phrase for a job's card."""
    if j.state in (JobState.QUEUED, JobState.RUNNING):
        text = f"ETA {j.eta_text}"
        if j.eta_at:
            text += time.strftime(" (at %H:%M:%S)", time.localtime(j.eta_at))
        elif j.stalled:  # idle for a while: right after submit, or between two batches, it is not
            text += " (no render node is taking its batches)"
        return text
    if j.state == JobState.DONE and j.finished:
        return time.strftime("finished at %H:%M:%S", time.localtime(j.finished))
    return j.state


def failure_line(j: JobView) -> str:
    """Why a failed job failed, in one line for its card: the first line of its first error (a batch's, or the job's
    own for an interrupted submit), cut at 200 characters; 'no error was recorded' when none was."""
    first = next((line for line in j.errors if line.strip()), "")
    line = first.strip().splitlines()[0] if first.strip() else "no error was recorded"
    return line if len(line) <= 200 else line[:199] + "…"


def _upload_refused(code: int, message: str) -> Any:
    """An upload refused before its body was read: a form error of the field `scene` (JSON), or a page."""
    if not wants_json():
        return _refuse(code, message)
    errors = {"scene": shown(message)}
    return jsonify({"error": errors["scene"], "field": "scene", "errors": errors}), code


def _refuse(code: int, message: str, hint: str | None = None, kind: str | None = None) -> Any:
    """The error as JSON (API calls, images, scripts) or a page; `kind` names httpov's error class, so that
    `httpov --server` exits with the code the same error has on the farm's own CLI."""
    if wants_json():
        body: dict[str, Any] = {"error": shown(message)}
        if hint:
            body["hint"] = shown(hint)
        if kind:
            body["kind"] = kind
        return jsonify(body), code
    return render_template("error.html", code=code, message=message, hint=hint or ""), code


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def log_to_stderr() -> None:
    """httpov.web's log lines (failed sign-ins) on stderr, with the time, as the server's other output."""
    for name in ("httpov.web", "httpov.webhooks"):  # and the webhooks' deliverer's (a receiver dropped)
        log = logging.getLogger(name)
        if not log.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s httpov web: %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False


#: Modules a page's first request would import (function-level imports of httpov.web): imported when the server starts.
_FIRST_IMPORTS = ("httpov.nodes", "httpov.preview", "httpov.retention", "httpov.user_limits", "httpov.web.build",
                  "httpov.web.live", "httpov.web.tokens")


def warm(app: Flask) -> None:
    """Pay once, before the first request, what the first request of each page would otherwise pay: every template
    compiled (a job's page took 0.1 s more the first time: job.html and its macros), the lazily imported modules
    imported, the URL map's matcher built, Pillow's image formats registered (the first thumbnail's) and the ffmpeg
    binary looked for (a job's page offers its video when there is one: imageio-ffmpeg runs it once to check it)."""
    import contextlib
    import importlib

    from PIL import Image

    from httpov import media

    for name in _FIRST_IMPORTS:
        importlib.import_module(name)
    Image.preinit()
    with contextlib.suppress(HttpovError):  # none: the page offers no video, and the server serves all else
        media.ffmpeg_exe()
    app.url_map.update()
    for name in app.jinja_env.list_templates(filter_func=lambda name: name.endswith(".html")):
        app.jinja_env.get_template(name)


def serve(web: Web, host: str = "127.0.0.1", port: int = 8080, max_upload: int = 512 * 1024**2,
          ready: Callable[[str], None] | None = None, threads: int = WEB_THREADS, bounds: Bounds | None = None) -> None:
    """Serve the app with cheroot (httpov.web.server) until interrupted; `ready` is told the URL once it listens.

    Request bodies stream to the app, so who asks and how much they send are decided from the headers before a
    body is read (an upload's file goes to a temporary file as it arrives, never whole into memory); clients too
    slow to send are cut off (`bounds`). Every X-Forwarded-* and Forwarded header is dropped, so a client cannot
    choose the address the sign-in limit counts; with `web.behind_proxy` the client's address, scheme and host are
    taken from the last hop of httpov.web.server.TRUSTED (what the one proxy in front added) and the rest dropped."""
    log_to_stderr()
    app = create_app(web, max_upload=max_upload)
    warm(app)
    try:
        server = make_server(app, host, port, bounds or Bounds(), threads, web.behind_proxy)
    except OSError as exc:
        said = re.findall(r"\[Errno \d+\] ([^)]*)", str(exc))  # cheroot's message holds each address's error
        raise HttpovError(f"cannot listen on {host}:{port}: {exc.strerror or (said[-1] if said else exc)}",
                          hint="pick another --port, or stop what is using this one") from None
    address = f"[{host}]" if ":" in host else host
    redis = getattr(web.client.store, "r", None)  # None: a test's stand-in store
    webhooks = Deliverer.of(redis, web.client.settings).start() if redis is not None else None  # httpov.webhooks
    if ready:
        ready(f"http://{address}:{server.bind_addr[1]}/")
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        if webhooks is not None:
            webhooks.stop()
        server.watchdog.stop()
        server.stop()
        if web.downloads is not None:
            web.downloads.close()
