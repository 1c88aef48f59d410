"""The render node's Celery consumer: Celery's own, on a Redis channel that lets the node ride out a Redis restart,
and back on the broker within RECONNECT_MAX_SECONDS of its return."""
from __future__ import annotations

import math
import time
from collections.abc import Callable

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu import Connection

from httpov.broker import open_restart_safe_channels

#: How long a node waits between tries to reach the broker again, at most: kombu's own back-off (2, 4, 6 ... 30 s)
#: had idle nodes take their next batch up to 30 s after Redis was back (3.9 s after a 2 s restart, measured with
#: scripts/bench_reconnect.py). One try a second or two from each node (not each render process) costs Redis nothing.
RECONNECT_MAX_SECONDS = 1.0
RECONNECT_FIRST_SECONDS = 0.2
#: ... and says so in its log at most this often while it tries.
LOG_EVERY_SECONDS = 30.0


class Consumer(CeleryConsumer):
    """Celery's worker consumer (celeryconfig's worker_consumer), whose broker connections open httpov.broker's
    restart-safe `Channel`s (see ASSUMPTION consumer-connection there) and are tried again quickly when the broker
    is away (at start, or after it went)."""

    def connection_for_read(self, heartbeat: float | None = None) -> Connection:
        connection = self.app.connection_for_read(heartbeat=heartbeat)
        open_restart_safe_channels(connection)  # before connecting: its first channel is one too
        return self.ensure_connected(connection)

    def ensure_connected(self, conn: Connection) -> Connection:
        # ASSUMPTION consumer-reconnect: Celery's ensure_connected connects with kombu's
        # `conn.ensure_connection(errback, max_retries, callback=...)`, leaving the intervals to kombu's defaults;
        # its errback logs each try (an error line per try: one every 30 s at most, as with kombu's back-off).
        connect = conn.ensure_connection
        said = -math.inf

        def quick(errback: Callable[..., object] | None = None, *args: object, **kwargs: object) -> Connection:
            def now_and_then(exc: Exception, interval: float) -> object:
                nonlocal said
                if errback is None or time.monotonic() - said < LOG_EVERY_SECONDS:
                    return None
                said = time.monotonic()
                return errback(exc, interval)
            return connect(now_and_then, *args, interval_start=RECONNECT_FIRST_SECONDS,
                           interval_step=RECONNECT_FIRST_SECONDS, interval_max=RECONNECT_MAX_SECONDS, **kwargs)
        conn.ensure_connection = quick  # type: ignore[method-assign]
        return super().ensure_connected(conn)
