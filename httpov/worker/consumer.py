"""The render node's Celery consumer: Celery's own, on a Redis channel that lets the node ride out a Redis restart."""
from __future__ import annotations

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu import Connection

from httpov.broker import open_restart_safe_channels


class Consumer(CeleryConsumer):
    """Celery's worker consumer (celeryconfig's worker_consumer), whose broker connections open httpov.broker's
    restart-safe `Channel`s (see ASSUMPTION consumer-connection there)."""

    def connection_for_read(self, heartbeat: float | None = None) -> Connection:
        connection = self.app.connection_for_read(heartbeat=heartbeat)
        open_restart_safe_channels(connection)  # before connecting: its first channel is one too
        return self.ensure_connected(connection)
