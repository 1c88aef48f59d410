"""Server-sent events (text/event-stream) for `httpov web`: an event's framing, how many streams one server holds
open (each holds one of the server's threads while it lasts: bounded per account and in all, so that ordinary
requests keep their threads), and the loop that sends a source's news for a bounded time. A browser's EventSource
reconnects by itself after a stream ends (in `retry` ms); when a stream is refused it stops, and the page polls."""
from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from httpov.errors import HttpovError

if TYPE_CHECKING:
    from httpov.events import Event

#: What a refused stream is answered: 429 Too Many Requests (EventSource then gives up, and the page polls).
REFUSED = 429


def event(data: str, name: str | None = None, event_id: str | None = None, retry_ms: int | None = None) -> bytes:
    """One event: `retry:` (how long the browser waits before reconnecting), `id:`, `event:` (its name), and `data`
    line by line. A name or id holds no line break (they are the server's words, never a user's)."""
    for word in (name, event_id):
        if word is not None and ("\n" in word or "\r" in word or "\0" in word):
            raise ValueError(f"an event's name or id holds no line break: {word!r}")
    lines = [] if retry_ms is None else [f"retry: {int(retry_ms)}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if name is not None:
        lines.append(f"event: {name}")
    lines += [f"data: {line}" for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


def comment(text: str = "") -> bytes:
    """A comment line: ignored by the browser, it keeps a proxy from closing a quiet stream and finds a gone client
    (the write fails)."""
    return f": {text}\n\n".encode()


@dataclass(frozen=True)
class Timing:
    """How a stream runs: a check of its source every `every` s, a comment after `keepalive` s of silence, a check
    that its asker may still see it every `recheck` s, the end after `lasting` s (the browser reconnects after
    `retry_ms`)."""

    lasting: float = 300.0
    every: float = 1.0
    keepalive: float = 15.0
    recheck: float = 3.0  # as often as a polling page's requests are checked (`httpov web --refresh`'s 3 s)
    retry_ms: int = 3000


class Streams:
    """The streams one server holds open: at most `total`, and at most `per_account` of each account."""

    def __init__(self, total: int, per_account: int) -> None:
        self.total, self.per_account = total, per_account
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, account: str) -> str | None:
        """One stream for `account`: None when it is taken, else why not (the caller answers REFUSED)."""
        with self._lock:
            if self.total == 0:
                return "live streams are off (HTTPOV_WEB_STREAMS=0): the page polls instead"
            if sum(self._held.values()) >= self.total:
                return (f"this server holds {self.total} live streams already (HTTPOV_WEB_STREAMS): "
                        "the page polls instead")
            if self._held[account] >= self.per_account:
                return f"{account} has {self.per_account} live streams open already: the page polls instead"
            self._held[account] += 1
            return None

    def spare(self, account: str) -> bool:
        """Whether `account` would be given a stream now: a page drawn while none is spare polls from the start, and
        its browser never meets the refusal (a 429 its console would show as an error)."""
        with self._lock:
            return sum(self._held.values()) < self.total and self._held[account] < self.per_account

    def give(self, account: str) -> None:
        with self._lock:
            self._held[account] -= 1
            if self._held[account] <= 0:
                del self._held[account]

    def held(self) -> int:
        with self._lock:
            return sum(self._held.values())


def waiter(sock: socket.socket | None) -> Callable[[float], bool]:
    """A wait of up to so many seconds on a stream's connection, True as soon as its client has closed it (the socket
    reads its end): a page left frees its stream at once, not at the next write. Without a socket, a plain sleep."""
    def wait(seconds: float) -> bool:
        started = time.monotonic()
        try:
            if sock is not None and select.select([sock], [], [], seconds)[0]:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    return True
        except (OSError, ValueError):  # reset, or a socket that cannot peek (TLS): the next write tells
            pass
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))  # bytes the client sent after its request
        return False
    return wait


def run(news: Callable[[], str | None], allowed: Callable[[], bool], name: str, timing: Timing,
        wait: Callable[[float], bool] | None = None, clock: Callable[[], float] = time.monotonic) -> Iterator[bytes]:
    """The events of a stream: `news()` every `timing.every` s answers the data to send (None: nothing new); the
    stream ends after `timing.lasting` s, as soon as `wait` says its client is gone, as soon as `allowed()` (asked
    every `timing.recheck` s) says no (its session ended), or when either raises an HttpovError (the browser
    reconnects, and is told why)."""
    wait = wait or waiter(None)
    started = sent = checked = clock()
    count = 0
    yield event("", "hello", retry_ms=timing.retry_ms)  # the retry first, before any wait
    while clock() - started < timing.lasting:
        try:
            if clock() - checked >= timing.recheck:
                if not allowed():
                    yield event("", "end")  # a reconnect would be refused: the page polls (and is sent to sign in)
                    return
                checked = clock()
            data = news()
        except HttpovError:  # Redis is away, the job was deleted: the browser reconnects and is told why
            return
        if data is not None:
            count += 1
            yield event(data, name, event_id=str(count))
            sent = clock()
        elif clock() - sent >= timing.keepalive:
            yield comment()
            sent = clock()
        if wait(timing.every):
            return


def job_events(events: Iterator[Event | None], most: int) -> Iterator[bytes]:
    """Server-sent events framing of `events` (at most `most`, then the stream ends and the browser or client
    resumes with Last-Event-ID): one `id:` and JSON `data:` frame each (its `kind` inside); a comment line as a
    keep-alive for each None."""
    sent = 0
    yield b"retry: 2000\n\n"  # how long a client waits before it resumes
    for found in events:
        if found is None:
            yield comment("keep-alive")
            continue
        yield event(json.dumps(found.to_json(), separators=(",", ":")), event_id=found.id)
        sent += 1
        if sent >= most:
            return
