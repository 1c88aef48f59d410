"""The web server's rules on what a request may send, as pure functions: a body refused from its headers (chunked,
past the scene limit, a form past 64 KiB), an account's uploads at once, and when a slow client is cut off."""
from __future__ import annotations

import socket

from httpov.web.server import Bounds, Watch
from httpov.web.uploads import FORM_BYTES, UploadSlots, body_refusal, too_many


def test_a_body_is_refused_from_its_headers():
    assert body_refusal("api.submit_job", 100, True, 1000)[0] == 411
    code, message = body_refusal("api.submit_job", 1001, False, 1000)
    assert code == 413 and "HTTPOV_MAX_SCENE_BYTES" in message and "1001" in message
    assert body_refusal("pages.submit", 1000, False, 1000) is None
    assert body_refusal("api.control_job", FORM_BYTES + 1, False, 10**9)[0] == 413  # not an upload: a small form
    assert body_refusal("pages.login", FORM_BYTES, False, 10) is None
    assert body_refusal("api.list_jobs", None, False, 10) is None


def test_an_account_has_at_most_its_share_of_uploads_at_once():
    slots = UploadSlots(2)
    assert slots.take("alice") and slots.take("alice") and not slots.take("alice")
    assert slots.take("bob")  # another account's are its own
    slots.give("alice")
    assert slots.held("alice") == 1 and slots.take("alice")
    assert "HTTPOV_WEB_UPLOADS_PER_ACCOUNT" in too_many("alice", 2)


def test_a_slow_client_is_overdue_after_the_grace_and_below_the_rate():
    left, right = socket.socketpair()
    with left, right:
        watch = Watch(left, Bounds(request_seconds=10, min_rate=1000))
        start = watch.started
        assert watch.overdue(start + 9) == ""  # headers still coming, within the time
        assert "HTTPOV_WEB_REQUEST_SECONDS" in watch.overdue(start + 11)
        remaining = [10_000]
        watch.length, watch.remaining = 10_000, lambda: remaining[0]
        assert watch.overdue(start + 9.5) == ""  # the body's grace
        remaining[0] = 10_000 - 4000
        assert watch.overdue(start + 14) == ""  # 4000 bytes in 4 s past the grace: the rate held
        assert "HTTPOV_WEB_UPLOAD_MIN_RATE" in watch.overdue(start + 15)
        remaining[0] = 0
        assert watch.overdue(start + 500) == ""  # all in: the app's own time is not the client's
        watch.cut("test")
        assert watch.reason == "test" and left.recv(1) == b""  # a read blocked on the client returns at once
