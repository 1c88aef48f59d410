"""Fixtures of the store layer: a JobStore on the real Redis under a key prefix of its own."""
from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import redis

from httpov.store import JobStore
from tests.conftest import REDIS_URL


@pytest.fixture
def store() -> Iterator[JobStore]:
    """A JobStore under a prefix no other test uses; every key under it is removed afterwards."""
    prefix = "httpovtest-" + secrets.token_hex(4)
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield JobStore(client, prefix)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
