"""Riding out a Redis outage (a restart): call again for a while, say so once, then give up.

Two layers, each for its own length of trouble. A blip (a connection dropped, a reply that timed out, a failover)
lasts well under a second: the JobStore's redis-py client absorbs it by itself, each command retried with
exponential back-off (Retry(ExponentialBackoff()), httpov.store.jobs.REDIS_RETRIES, about 1.5 s in all), so no
caller ever sees it. A restart lasts seconds to minutes, longer than a single command should block: only the commands
that wait anyway ride it out, here, for up to HTTPOV_OUTAGE_SECONDS (`wait`, `watch`, the status page, and a
render node recording a batch it already stored); every other command fails at once with a clear
BrokerUnavailableError. What no wait mends (`lasting`: a refused password, a certificate that does not verify)
fails at once everywhere."""
from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from httpov.errors import BrokerUnavailableError

T = TypeVar("T")

#: What a client that rides out an outage says, once per outage.
NOTICE = "Redis unreachable, retrying"


def lasting(exc: BaseException) -> bool:
    """Whether a Redis error is one no wait mends: a refused password (or none given where one is asked), a server
    certificate that does not verify, anywhere in its chain of causes. A dropped or refused connection, a timeout or
    Redis still loading its data pass with time."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain of causes is short; never follow a cycle
        if seen is None:
            return False
        if isinstance(seen, (redis.AuthenticationError, redis.ResponseError, ssl.SSLCertVerificationError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def through_outage(fn: Callable[[], T], seconds: float, on_outage: Callable[[str], None] | None = None,
                   pause: float = 1.0) -> T:
    """fn(), called again every `pause` seconds while Redis does not answer, for up to `seconds` from the first
    failure (then its BrokerUnavailableError goes up; at once for what no wait mends: `lasting`); `on_outage` is
    told once, at the first failure."""
    deadline = None
    while True:
        try:
            return fn()
        except (BrokerUnavailableError, redis.ConnectionError, redis.TimeoutError) as exc:  # BusyLoadingError too
            if lasting(exc):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + seconds
                if on_outage is not None and seconds > 0:
                    on_outage(f"{NOTICE} for up to {seconds:g} s ({exc})")
            if now >= deadline:
                if isinstance(exc, BrokerUnavailableError):
                    raise
                raise BrokerUnavailableError(f"cannot reach Redis: {exc}") from exc
        time.sleep(pause)
