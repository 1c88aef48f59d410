"""The render node's Celery consumer: Celery's own, on a Redis channel that lets the node ride out a Redis restart."""
from __future__ import annotations

from typing import Any

import redis
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu import Connection
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, except that once its broker connection is closed, asking it for a new connection pool
    raises a connection error instead of AttributeError.

    When Redis goes away while a batch renders and the consumer waits in BRPOP for the next one, kombu closes the
    consumer's channel twice: the first close fails in the BRPOP, the second comes after Celery has collected the
    connection (its transport no longer knows the broker's address), so handing the running batch's message back
    (restore_unacked) fails in `_connparams` with AttributeError. Celery ignores only connection and channel errors
    there: the worker stopped with "Unrecoverable error", and so would the late ack of that batch on the old channel.
    As a connection error, Celery reconnects, and the ack is logged as "Couldn't ack"; the message stays in kombu's
    unacked table, where the stranded sweep settles it (httpov.sweep.stranded: dropped once its batch is done).
    """

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("this broker channel's connection is closed (Redis went away)")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


class Consumer(CeleryConsumer):
    """Celery's worker consumer (celeryconfig's worker_consumer), whose broker connections open `Channel`s."""

    def connection_for_read(self, heartbeat: float | None = None) -> Connection:
        connection = self.app.connection_for_read(heartbeat=heartbeat)
        if type(connection.transport) is kombu_redis.Transport:  # before connecting: its first channel is one too
            connection.transport.Channel = Channel
        return self.ensure_connected(connection)
