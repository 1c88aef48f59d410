"""The HTTP server of `httpov web` (cheroot): bodies stream to the app, which decides from the headers alone who may
send one and how large, and a watchdog cuts off clients too slow to send their headers or their body."""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cheroot import server as cheroot_server
from cheroot import wsgi as cheroot_wsgi
from werkzeug.exceptions import RequestTimeout

#: The WSGI environ key under which the app finds the watch on its request's body (a `Watch`, or None).
WATCH_KEY = "httpov.watch"
#: Headers a client could forge to choose its address, scheme or host: dropped unless a proxy is trusted (then only
#: the last hop of X-Forwarded-For, -Proto and -Host is taken, as the one proxy in front added it).
FORWARDED = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
             "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_X_FORWARDED_BY", "HTTP_X_FORWARDED_SCHEME",
             "HTTP_X_FORWARDED_SSL", "HTTP_X_REAL_IP")
#: What `--behind-proxy` trusts of the one proxy in front: the client's address, the scheme and the host it asked for.
TRUSTED = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST")


@dataclass(frozen=True)
class Bounds:
    """How long and how slowly a client may send (HTTPOV_WEB_REQUEST_SECONDS, HTTPOV_WEB_UPLOAD_MIN_RATE)."""

    request_seconds: float = 10.0  # to send the headers; a body's start-up grace; the longest silence
    min_rate: int = 64 * 1024  # bytes per second a body must average once the grace has passed
    header_bytes: int = 64 * 1024  # the request line and headers together


class TooSlow(RequestTimeout):
    """A request whose client sent too slowly (or stopped sending): 408, and the connection is closed."""


class Watch:
    """One request being received: its headers by a deadline, then its body at the minimum rate."""

    def __init__(self, sock: socket.socket, bounds: Bounds) -> None:
        self.sock, self.bounds = sock, bounds
        self.started = time.monotonic()
        self.length = 0  # the body's Content-Length, once the headers are in
        self.remaining: Callable[[], int | None] = lambda: None  # None: the headers are still coming
        self.reason = ""  # why it was cut off

    def overdue(self, now: float) -> str:
        """Why this request is to be cut off now, or ''."""
        elapsed = now - self.started
        remaining = self.remaining()
        if remaining is None:
            if elapsed > self.bounds.request_seconds:
                return (f"the request's headers took longer than {self.bounds.request_seconds:g} s "
                        "(HTTPOV_WEB_REQUEST_SECONDS)")
            return ""
        if remaining <= 0:  # all in: the app's own time is not the client's
            return ""
        sent, late = self.length - remaining, elapsed - self.bounds.request_seconds
        if late > 0 and sent < self.bounds.min_rate * late:
            return (f"the body came slower than {self.bounds.min_rate} bytes/s (HTTPOV_WEB_UPLOAD_MIN_RATE): "
                    f"{sent} of {self.length} bytes in {elapsed:.0f} s")
        return ""

    def cut(self, reason: str) -> None:
        """End the receiving side: a read blocked on this client returns at once, with nothing."""
        self.reason = reason
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:  # gone already
            pass


class Watchdog:
    """Checks every watched request a few times a second and cuts off the overdue ones (one thread per server)."""

    def __init__(self, bounds: Bounds, tick: float = 0.2) -> None:
        self.bounds, self.tick = bounds, tick
        self._watches: set[Watch] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="httpov-web-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def watch(self, sock: socket.socket) -> Watch:
        entry = Watch(sock, self.bounds)
        with self._lock:
            self._watches.add(entry)
        return entry

    def forget(self, entry: Watch) -> None:
        with self._lock:
            self._watches.discard(entry)

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            with self._lock:
                watches = list(self._watches)
            for entry in watches:
                reason = entry.overdue(now)
                if reason and not entry.reason:
                    entry.cut(reason)


class _Request(cheroot_server.HTTPRequest):
    """A cheroot request watched from its first header byte to its response; a body the app left unread closes
    the connection (cheroot would otherwise read it all, into memory, to keep the connection alive)."""

    watch: Watch | None = None

    def parse_request(self) -> None:
        self.watch = self.server.watchdog.watch(self.conn.socket)
        try:
            super().parse_request()
        finally:
            if not self.ready:
                self.server.watchdog.forget(self.watch)

    def respond(self) -> None:
        watch = self.watch
        if watch is not None:
            watch.length = int(self.inheaders.get(b"Content-Length", 0) or 0) if not self.chunked_read else 0
            watch.started = time.monotonic()
            watch.remaining = lambda: getattr(self.rfile, "remaining", 0)
        try:
            super().respond()
        finally:
            if watch is not None:
                self.server.watchdog.forget(watch)

    def send_headers(self) -> None:
        if self.chunked_read or getattr(self.rfile, "remaining", 0) > 0:
            self.close_connection = True
        super().send_headers()


class _Connection(cheroot_server.HTTPConnection):
    RequestHandlerClass = _Request


class _Gateway(cheroot_wsgi.Gateway_10):
    """WSGI 1.0, with the request's watch in the environ (WATCH_KEY)."""

    def get_environ(self) -> Any:
        env: dict[str, Any] = super().get_environ()
        env[WATCH_KEY] = getattr(self.req, "watch", None)
        return env


class _Input:
    """wsgi.input that turns a cut-off or silent client into TooSlow (408) instead of a short or failed read."""

    def __init__(self, stream: Any, watch: Watch | None, bounds: Bounds) -> None:
        self._stream, self._watch, self._bounds = stream, watch, bounds

    def _check(self, data: bytes, wanted: int | None) -> bytes:
        if self._watch is not None and self._watch.reason and (not data or (wanted and len(data) < wanted)):
            raise TooSlow(f"cut off: {self._watch.reason}")
        return data

    def _call(self, method: str, size: int | None) -> bytes:
        try:
            data = getattr(self._stream, method)(size) if size is not None and size >= 0 else \
                getattr(self._stream, method)()
        except OSError:  # the socket's timeout: nothing arrived for that long
            reason = self._watch.reason if self._watch is not None and self._watch.reason else \
                f"nothing came for {self._bounds.request_seconds:g} s (HTTPOV_WEB_REQUEST_SECONDS)"
            raise TooSlow(f"cut off: {reason}") from None
        return self._check(data, size if method == "read" else None)

    def read(self, size: int | None = None) -> bytes:
        return self._call("read", size)

    def readline(self, size: int | None = None) -> bytes:
        return self._call("readline", size)

    def __iter__(self) -> Iterable[bytes]:
        while line := self.readline():
            yield line


def guarded(app: Callable[..., Any], bounds: Bounds, behind_proxy: bool) -> Callable[..., Any]:
    """The app with forwarded headers dropped (or, behind the one trusted proxy, only its
    hop taken, as werkzeug's ProxyFix does), and the body read through `_Input`."""
    inner = app
    if behind_proxy:
        from werkzeug.middleware.proxy_fix import ProxyFix

        inner = ProxyFix(app, x_for=1, x_proto=1, x_host=1)

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        for key in FORWARDED:
            if not behind_proxy or key not in TRUSTED:
                environ.pop(key, None)
        environ["wsgi.input"] = _Input(environ["wsgi.input"], environ.get(WATCH_KEY), bounds)
        return inner(environ, start_response)
    return wsgi


class Server(cheroot_wsgi.Server):
    """cheroot's WSGI server with httpov's requests, gateway and watchdog."""

    ConnectionClass = _Connection
    watchdog: Watchdog


def make_server(app: Callable[..., Any], host: str, port: int, bounds: Bounds, threads: int,
                behind_proxy: bool = False) -> Server:
    """A cheroot server of `app` on host:port (bound and listening: see its `bind_addr`), with its watchdog."""
    server = Server((host, port), guarded(app, bounds, behind_proxy), numthreads=threads,
                                 server_name="httpov-web", timeout=max(1, round(bounds.request_seconds)),
                                 request_queue_size=64)
    server.gateway = _Gateway
    server.max_request_header_size = bounds.header_bytes
    server.max_request_body_size = 0  # the app decides from the headers, after who is asking (uploads.body_refusal)
    server.watchdog = Watchdog(bounds)
    server.prepare()
    server.watchdog.start()
    return server
