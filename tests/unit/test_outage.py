"""through_outage: retries while Redis does not answer, says so once per outage, gives up after its time."""
from __future__ import annotations

import pytest
import redis

from httpov.errors import BrokerUnavailableError, JobNotFoundError
from httpov.outage import through_outage


def _flaky(failures: int, exc: Exception):
    calls = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise exc
        return "answer"
    return fn, calls


def test_rides_out_an_outage_and_says_so_once():
    said: list[str] = []
    fn, calls = _flaky(3, BrokerUnavailableError("cannot reach Redis"))
    assert through_outage(fn, 60, said.append, pause=0) == "answer"
    assert len(calls) == 4 and len(said) == 1 and said[0].startswith("Redis unreachable, retrying for up to 60 s")


def test_raw_redis_connection_errors_count_as_an_outage():
    fn, _ = _flaky(2, redis.ConnectionError("reset"))
    assert through_outage(fn, 60, pause=0) == "answer"


def test_gives_up_after_its_time_with_a_broker_error():
    fn, _ = _flaky(10**6, redis.BusyLoadingError("loading"))
    with pytest.raises(BrokerUnavailableError):
        through_outage(fn, 0.05, pause=0.01)


def test_other_errors_pass_at_once():
    fn, calls = _flaky(1, JobNotFoundError("no job"))
    with pytest.raises(JobNotFoundError):
        through_outage(fn, 60, pause=0)
    assert len(calls) == 1


def test_what_no_wait_mends_passes_at_once():
    """A refused password (redis-py's AuthenticationError is a ConnectionError) or a certificate that does not verify:
    no outage to ride out, however long the caller would wait."""
    import ssl

    from httpov.outage import lasting

    refused = BrokerUnavailableError("wrong or missing password")
    refused.__cause__ = redis.AuthenticationError("invalid username-password pair")
    fn, calls = _flaky(1, refused)
    with pytest.raises(BrokerUnavailableError):
        through_outage(fn, 60, pause=0)
    assert len(calls) == 1
    unverified = redis.ConnectionError("certificate verify failed")
    unverified.__cause__ = ssl.SSLCertVerificationError("certificate verify failed")
    assert lasting(unverified) and lasting(redis.AuthenticationError("no"))
    assert not lasting(redis.ConnectionError("refused")) and not lasting(BrokerUnavailableError("cannot reach Redis"))
