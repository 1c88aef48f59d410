"""The lease keeper (httpov.worker.lease): what it asks Redis while a batch renders. While it hears the stops channel
it reads the job's state only with its refreshes (and once as it subscribes); deaf, it polls every tick."""
from __future__ import annotations

import threading
import time
from collections import Counter

from httpov.errors import BrokerUnavailableError
from httpov.worker.lease import LeaseKeeper
from tests.conftest import outlived, wait_for


class Listener:
    """A stops subscription: says nothing until `announce`, or fails once `drop` is set."""

    def __init__(self) -> None:
        self.announced, self.dropped, self.closed = threading.Event(), threading.Event(), False

    def wait(self, timeout: float, interrupt: int | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.dropped.is_set():
                raise BrokerUnavailableError("subscription lost")
            if self.announced.is_set():
                self.announced.clear()
                return True
            time.sleep(0.005)
        return False

    def close(self) -> None:
        self.closed = True


class Store:
    """The keeper's part of JobStore, counting its calls; `deaf`: no pub/sub (listen_for_stop fails)."""

    def __init__(self, deaf: bool = False) -> None:
        self.calls: Counter[str] = Counter()
        self.job_state, self.deaf, self.listener = "running", deaf, Listener()

    def refresh(self, job_id: str, batch_id: str, token: str, lease: float) -> str:
        self.calls["refresh"] += 1
        return self.job_state

    def state(self, job_id: str) -> str:
        self.calls["state"] += 1
        return self.job_state

    def listen_for_stop(self, job_id: str) -> Listener:
        if self.deaf:
            raise BrokerUnavailableError("no pub/sub")
        self.calls["listen"] += 1
        return self.listener


def test_a_subscribed_keeper_reads_the_state_once_then_only_with_its_refreshes():
    store = Store()
    began = time.monotonic()
    with LeaseKeeper(store, "j", "b", "t", lease=60.0, poll=0.02) as keeper:  # a refresh every 15 s
        wait_for(outlived(began, 0.5), 5, "25 ticks of 0.02 s")
        assert keeper.live
    assert store.calls == {"listen": 1, "state": 1}


def test_a_stop_announced_before_the_subscription_is_seen_at_once():
    store = Store()
    store.job_state = "cancelled"  # cancelled between the take and the keeper's start: its message went unheard
    with LeaseKeeper(store, "j", "b", "t", lease=60.0, poll=30.0) as keeper:
        wait_for(lambda: not keeper.live, 5, "the keeper to see the job cancelled")
        assert keeper.state == "cancelled"
        wait_for(keeper.woken, 5, "the render to be woken")
    assert store.calls["refresh"] == 0


def test_a_deaf_keeper_polls_the_state_every_tick_and_stops_a_cancelled_render():
    store = Store(deaf=True)
    with LeaseKeeper(store, "j", "b", "t", lease=60.0, poll=0.02) as keeper:
        wait_for(lambda: store.calls["state"] >= 5, 5, "the keeper to poll the job's state")
        store.job_state = "cancelled"
        wait_for(lambda: not keeper.live, 5, "the keeper to see the job cancelled")
        wait_for(keeper.woken, 5, "the render to be woken")
    assert store.calls["refresh"] == 0


def test_a_keeper_whose_subscription_drops_polls_from_then_on():
    store = Store()
    with LeaseKeeper(store, "j", "b", "t", lease=60.0, poll=0.02) as keeper:
        wait_for(lambda: store.calls["state"] == 1, 5, "the look after subscribing")
        store.listener.dropped.set()
        wait_for(lambda: store.calls["state"] >= 5, 5, "the keeper to poll once deaf")
        assert store.listener.closed
        store.job_state = "failed"
        wait_for(lambda: not keeper.live, 5, "the keeper to see the job failed")


def test_the_stop_message_wakes_the_render_at_once():
    store = Store()
    with LeaseKeeper(store, "j", "b", "t", lease=60.0, poll=30.0) as keeper:
        wait_for(lambda: store.calls["state"] == 1, 5, "the look after subscribing")
        store.listener.announced.set()
        wait_for(keeper.woken, 5, "the render to be woken")


class Kept(Listener):
    """The subscription a render process kept from its last batch: made before this batch was taken."""

    kept = True


def test_a_keeper_on_a_kept_subscription_reads_no_state_and_still_hears_the_stop():
    store = Store()
    store.listener = Kept()
    with LeaseKeeper(store, "j", "b", "t", lease=60.0, poll=0.02) as keeper:
        wait_for(lambda: store.calls["listen"] == 1, 5, "the keeper to listen")
        store.listener.announced.set()
        wait_for(keeper.woken, 5, "the render to be woken")
    assert store.calls == {"listen": 1}, "no read of the job's state: the subscription predates the take"
