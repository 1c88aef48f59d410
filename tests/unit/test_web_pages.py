"""The web pages' templates on a given job view (no Redis): the pre-pass stage, escaping, the ETA phrase."""
from __future__ import annotations

from flask import render_template

from httpov.web import Gate, Web, create_app

VIEW = {"id": "j1", "name": "sliced <radiosity>", "state": "running", "frames_total": 2, "frames_done": 0,
        "frames_failed": 0, "frames_running": 0, "batches_done": 1, "batches_total": 10, "rate_recent": 0.0,
        "eta_seconds": None, "eta_at": None, "running": [], "batches_queued": 8, "nodes": {}, "failed": [],
        "width": 64, "height": 64, "priority": 5, "sliced": True,
        "prepass": {"kind": "radiosity", "done": 1, "total": 2, "running": 1, "failed": 0}}


def _render(template: str, **context) -> str:
    app = create_app(Web(client=None, source=None, gate=Gate(public_read=True)))  # type: ignore[arg-type]
    with app.test_request_context("/"):
        return render_template(template, **context)


def test_both_pages_show_the_pre_pass_stage_as_status_does_and_escape_the_name():
    for html in (_render("jobs.html", jobs=[VIEW], state="", states=()),
                 _render("job.html", job=VIEW, frames=[], failures=[], video=False)):
        assert "pre-pass: radiosity 1/2 (1 rendering)" in html
        assert "sliced &lt;radiosity&gt;" in html and "<radiosity>" not in html
        assert "ETA ? (no render node is taking its batches)" in html
    plain = dict(VIEW, prepass=None)
    assert "pre-pass" not in _render("job.html", job=plain, frames=[], failures=[], video=False)


def test_a_reader_who_is_not_signed_in_sees_no_control_and_no_submit_link():
    html = _render("job.html", job=VIEW, frames=[], failures=[], video=False)  # --public-read, nobody signed in
    assert 'id="cancel"' not in html and 'action="/submit"' not in html and 'href="/submit"' not in html
    assert 'href="/login"' in html
