"""httpov.web.stream, pure: an event's framing, the bounds on open streams, and a stream's run on a clock of its own
(it ends after its time, when its asker may no longer see it, when its client is gone; quiet, it sends comments)."""
from __future__ import annotations

import pytest

from httpov.errors import BrokerUnavailableError
from httpov.web.stream import Streams, Timing, comment, event, run


def test_an_event_is_framed_line_by_line():
    framed = event('{"a": 1}', "job", event_id="7", retry_ms=3000)
    assert framed == b'retry: 3000\nid: 7\nevent: job\ndata: {"a": 1}\n\n'
    # data with line breaks stays data: each line its own data: line, none of them a field of its own
    assert event("one\nevent: forged\r\nthree") == b"data: one\ndata: event: forged\ndata: three\n\n"
    assert comment() == b": \n\n"
    with pytest.raises(ValueError):
        event("x", "job\nid: 1")


def test_streams_are_bounded_per_account_and_in_all():
    streams = Streams(total=3, per_account=2)
    assert streams.take("bob") is None and streams.take("bob") is None
    assert "bob has 2" in (streams.take("bob") or "")
    assert not streams.spare("bob") and streams.spare("carol")  # what a page drawn now says (data-streams)
    assert streams.take("carol") is None
    assert "HTTPOV_WEB_STREAMS" in (streams.take("dave") or "")
    assert not streams.spare("dave")
    streams.give("bob")
    assert streams.held() == 2 and streams.spare("dave") and streams.take("dave") is None
    assert "off (HTTPOV_WEB_STREAMS=0)" in (Streams(0, 2).take("bob") or "") and not Streams(0, 2).spare("bob")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.now += seconds
        return False


def test_a_stream_sends_news_and_comments_and_ends_after_its_time():
    clock = Clock()
    said = iter(["a", None, "b"])
    sent = list(run(lambda: next(said, None), lambda: True, "job", Timing(lasting=40, keepalive=15), clock.wait,
                    clock))
    assert sent[0] == event("", "hello", retry_ms=3000)
    assert sent[1:3] == [event("a", "job", event_id="1"), event("b", "job", event_id="2")]
    assert sent[3:] == [comment(), comment()]  # at 17 s and 32 s of silence; ended at 40 s
    assert clock.now == 40


def test_a_stream_ends_when_its_asker_may_no_longer_see_it_or_its_client_left_or_redis_is_away():
    clock = Clock()
    allowed = iter([True, False])
    sent = list(run(lambda: None, lambda: next(allowed), "job", Timing(recheck=3), clock.wait, clock))
    assert sent[-1] == event("", "end") and clock.now == 6
    assert list(run(lambda: "x", lambda: True, "job", Timing(), lambda s: True, clock))[1:] == [
        event("x", "job", event_id="1")]  # its client gone after the first: nothing more

    def away() -> str:
        raise BrokerUnavailableError("Redis is away")
    assert list(run(away, lambda: True, "job", Timing(), clock.wait, clock)) == [event("", "hello", retry_ms=3000)]


def test_the_streams_setting_leaves_threads_for_ordinary_requests():
    from httpov.errors import BadInputError
    from httpov.settings import Settings

    assert Settings().web_streams == 4 and Settings(web_streams=0).web_streams == 0  # 0: the pages poll
    for wrong in (-1, 7):
        with pytest.raises(BadInputError, match="HTTPOV_WEB_STREAMS must be 0 to 6"):
            Settings(web_streams=wrong)


class View:
    def __init__(self, state: str, done: int) -> None:
        self.id, self.state, self.done = "j1", state, done
        self.ended = state == "done"

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "state": self.state, "frames_done": self.done}


class Store:
    def __init__(self) -> None:
        self.stamp, self.asked = "s0", []

    def stamps(self, ids: list[str], ended: frozenset[str]) -> str:
        self.asked.append((tuple(ids), ended))
        return self.stamp


def test_a_feed_reads_again_only_on_a_new_stamp_and_no_oftener_than_a_polling_page():
    from httpov.web.live import Feed

    clock, store, reads = Clock(), Store(), []
    now = {"view": View("running", 0)}

    def read() -> list[View]:
        reads.append(clock.now)
        return [now["view"]]
    feed = Feed(store, read, one=True, gap=3.0, full_every=15.0, clock=clock)
    assert feed.news() == '{"id": "j1", "state": "running", "frames_done": 0}' and reads == [0.0]
    clock.now = 2.0
    now["view"] = View("running", 1)
    store.stamp = "s1"
    assert feed.news() is None and len(store.asked) == 1  # within the gap: not even a stamp
    clock.now = 3.0
    assert feed.news() == '{"id": "j1", "state": "running", "frames_done": 1}' and reads == [0.0, 3.0]
    clock.now = 7.0
    assert feed.news() is None and reads == [0.0, 3.0]  # the same stamp: nothing read
    clock.now = 18.0
    assert feed.news() is None and reads == [0.0, 3.0, 18.0]  # read after 15 s: the same JSON is not sent again
    now["view"] = View("done", 2)
    store.stamp = "s2"
    clock.now = 21.0
    assert '"state": "done"' in (feed.news() or "")
    clock.now = 24.0
    feed.news()
    assert store.asked[-1] == (("j1",), frozenset({"j1"}))  # an ended job: its record alone is stamped
