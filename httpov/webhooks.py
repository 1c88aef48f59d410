"""Webhooks: each job event (httpov.events) POSTed as JSON to the farm's webhooks (HTTPOV_WEBHOOKS) and the job's
own (`submit --notify`), signed with HMAC-SHA256 over the body (HTTPOV_WEBHOOK_SECRET), retried with back-off for
HTTPOV_WEBHOOK_RETRY_SECONDS and then dropped with a log line.

Every render node and every `httpov web` runs a Deliverer thread; the one holding the claim `webhooks` delivers,
the others stand by and take over when its claim runs out (its process gone). It reads the events stream through
the consumer group 'webhooks' and acknowledges an event once every URL has had it (delivered or dropped): a
deliverer that dies leaves its events pending, and the next one takes them over (XAUTOCLAIM) and sends them again
(at least once). Each URL has its own queue and thread, so a dead or slow receiver delays only its own events; a
render node's batches and a submit never wait for a webhook."""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import os
import queue
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import redis

from httpov.events import event, notify_urls
from httpov.settings import Settings
from httpov.store.keys import Keys
from httpov.text import shown

log = logging.getLogger("httpov.webhooks")

GROUP = "webhooks"
#: The header that carries the signature: 'sha256=<hex HMAC-SHA256 of the body with the secret>'.
SIGNATURE_HEADER = "X-Httpov-Signature"
#: Seconds one POST may take (connecting, sending, the answer) before it counts as failed and is retried.
POST_TIMEOUT = 5.0
#: The back-off between two tries of one event to one URL: doubling from FIRST_BACKOFF up to MAX_BACKOFF.
FIRST_BACKOFF, MAX_BACKOFF = 0.5, 60.0
#: How long the delivering process's claim lasts; it renews it each CLAIM_SECONDS / 3.
CLAIM_SECONDS = 15.0
#: Events read from the stream at a time; seconds a read waits for new ones.
READ_COUNT, READ_BLOCK = 100, 1.0
#: URLs (farm and job ones together) one event goes to at most.
MAX_URLS = 32
#: A URL's queue and thread are let go after this many seconds with nothing to send.
URL_IDLE_SECONDS = 60.0


def sign(body: bytes, secret: str) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def where(url: str) -> str:
    """A webhook URL as a log line names it: its scheme, host and port (its path and query, which often hold the
    receiver's own secret, and any user:password are left out), control characters written out."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return shown(f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}/...")


def payload(entry_id: str, fields: Mapping[str, str]) -> bytes:
    """The JSON body POSTed for one event: {"id", "at", "kind", "job", "owner", "detail"}."""
    return json.dumps(event(entry_id, fields).to_json(), separators=(",", ":")).encode()


class _Url:
    """One receiver's queue of events and the thread that POSTs them in order."""

    def __init__(self, deliverer: Deliverer, url: str) -> None:
        self.deliverer, self.url = deliverer, url
        self.queue: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
        threading.Thread(target=self._run, name="httpov webhook", daemon=True).start()

    def _run(self) -> None:
        stop, idle = self.deliverer.stopping, time.monotonic()
        while not stop.is_set():
            try:
                entry_id, body, deadline = self.queue.get(timeout=1.0)
            except queue.Empty:
                if time.monotonic() - idle > URL_IDLE_SECONDS and self.deliverer.forget(self):
                    return  # a job's own URL is not kept (nor its thread) once its events are sent
                continue
            try:
                self._deliver(entry_id, body, deadline)
            except Exception:  # never the end of this URL's thread; the event counts as dropped
                log.exception("httpov: webhook %s: event %s dropped", where(self.url), entry_id)
            self.deliverer.sent(entry_id)
            idle = time.monotonic()

    def _deliver(self, entry_id: str, body: bytes, deadline: float) -> None:
        wait, tries = FIRST_BACKOFF, 0
        why: str | None = "its time ran out while earlier events were tried"
        while time.monotonic() < deadline and not self.deliverer.stopping.is_set():
            tries += 1
            why = self.deliverer.post(self.url, body)
            if why is None:
                return
            pause = min(wait, deadline - time.monotonic())
            if pause <= 0 or self.deliverer.stopping.wait(pause):
                break
            wait = min(wait * 2, MAX_BACKOFF)
        if self.deliverer.stopping.is_set():
            return  # not dropped: unacknowledged, the next deliverer sends it again
        log.warning("httpov: webhook %s: event %s dropped after %d tries in %g s: %s", where(self.url), entry_id,
                    tries, self.deliverer.retry_seconds, why)


class Deliverer:
    """The webhook delivery loop of one process (`run` in a thread; `stopping` ends it)."""

    def __init__(self, client: redis.Redis, prefix: str, urls: list[str], secret: str | None,
                 retry_seconds: float, name: str = "", timeout: float = POST_TIMEOUT) -> None:
        self.r, self.keys = client, Keys(prefix)
        self.urls, self.secret, self.retry_seconds, self.timeout = urls, secret, retry_seconds, timeout
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._queues: dict[str, _Url] = {}
        self._left: dict[str, int] = {}  # event id -> URLs still to send it to
        self._held = False
        self.thread: threading.Thread | None = None

    @classmethod
    def of(cls, client: redis.Redis, settings: Settings) -> Deliverer:
        return cls(client, settings.prefix, settings.webhook_urls, settings.webhook_secret,
                   settings.webhook_retry_seconds, timeout=min(POST_TIMEOUT, settings.webhook_retry_seconds))

    def start(self) -> Deliverer:
        """Run in a thread of its own; the consumer group is made first (if Redis answers), so that every event
        from now on is delivered."""
        try:
            self._group()
        except redis.RedisError as exc:  # made when the claim is taken
            log.warning("httpov: webhooks: %s", exc)
        self.thread = threading.Thread(target=self.run, name="httpov webhooks", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=READ_BLOCK + 1.0)

    def run(self) -> None:
        renewed = 0.0
        while not self.stopping.is_set():
            try:
                if time.monotonic() - renewed > CLAIM_SECONDS / 3:
                    renewed = time.monotonic()
                    self._hold()
                if not self._held:
                    self.stopping.wait(CLAIM_SECONDS / 3)
                    continue
                self._read()
            except redis.RedisError as exc:  # Redis away for a while: try again, the events wait in the stream
                log.warning("httpov: webhooks: %s", exc)
                self._held = False
                if "NOGROUP" in str(exc):  # the stream was lost (a Redis restarted empty): from its new start
                    with contextlib.suppress(redis.RedisError):
                        self._group()
                self.stopping.wait(2.0)

    def _hold(self) -> None:
        """Take or renew the claim: only its holder delivers. Taken over: the events left pending by the last
        holder (sent to some URLs perhaps, acknowledged by none) are taken over and sent again."""
        key = self.keys.claim("webhooks")
        if self.r.set(key, self.name, nx=True, px=int(CLAIM_SECONDS * 1000)):
            self._group()
            self._held = True
            self._take_over()
        elif self.r.get(key) == self.name:
            self.r.pexpire(key, int(CLAIM_SECONDS * 1000))
        else:
            self._held = False

    def _group(self) -> None:
        """The consumer group, made at the stream's end on a farm's first start (older events are not sent)."""
        try:
            self.r.xgroup_create(self.keys.events(), GROUP, id="$", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _take_over(self) -> None:
        start = "0-0"
        while True:
            reply = self.r.xautoclaim(self.keys.events(), GROUP, self.name, min_idle_time=0, start_id=start,
                                      count=READ_COUNT)
            start, entries = reply[0], reply[1]
            self._dispatch([(i, f) for i, f in entries if f])
            if start in ("0-0", b"0-0"):
                return

    def _read(self) -> None:
        reply = self.r.xreadgroup(GROUP, self.name, {self.keys.events(): ">"}, count=READ_COUNT,
                                  block=int(READ_BLOCK * 1000))
        for _, entries in reply or []:
            self._dispatch(entries)

    def _dispatch(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        for entry_id, fields in entries:
            urls = list(dict.fromkeys([*self.urls, *notify_urls(fields)]))[:MAX_URLS]
            if not urls:
                self.r.xack(self.keys.events(), GROUP, entry_id)
                continue
            body, deadline = payload(entry_id, fields), time.monotonic() + self.retry_seconds
            with self._lock:
                self._left[entry_id] = len(urls)
                for url in urls:
                    if url not in self._queues:
                        self._queues[url] = _Url(self, url)
                    self._queues[url].queue.put((entry_id, body, deadline))

    def forget(self, sender: _Url) -> bool:
        """Let an idle URL's queue go, unless an event came for it meanwhile (then False: it goes on)."""
        with self._lock:
            if not sender.queue.empty():
                return False
            if self._queues.get(sender.url) is sender:
                del self._queues[sender.url]
            return True

    def sent(self, entry_id: str) -> None:
        """One URL has had the event (delivered or dropped): acknowledged once every URL has."""
        with self._lock:
            self._left[entry_id] -= 1
            done = self._left[entry_id] == 0
            if done:
                del self._left[entry_id]
        if done and not self.stopping.is_set():
            try:
                self.r.xack(self.keys.events(), GROUP, entry_id)
            except redis.RedisError as exc:  # left pending: sent again by the next holder
                log.warning("httpov: webhooks: event %s not acknowledged: %s", entry_id, exc)

    def post(self, url: str, body: bytes) -> str | None:
        """POST `body` to `url`: None if it answered 2xx, else why not."""
        headers = {"Content-Type": "application/json", "User-Agent": "httpov-webhooks"}
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(body, self.secret)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                response.read(1024)
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, timed out, cut off, a bad URL
            return f"{type(exc).__name__}: {exc}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook is not followed elsewhere: a redirect is an answer other than 2xx (retried, then dropped)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


#: No proxy from the environment, no redirects: the POST goes to the URL given, and only there.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
