"""The web pages' templates on a given JobView (no Redis): the pre-pass stage, escaping, the ETA phrase, controls."""
from __future__ import annotations

from dataclasses import replace

from flask import render_template

from httpov.view import JobView, Prepass
from httpov.web import Gate, Web, create_app

VIEW = JobView(id="j1", name="sliced <radiosity>", state="running", frames_total=2, frames_done=0, frames_failed=0,
               first_frame=1, last_frame=2, batches_total=10, batches_done=1, batches_failed=[], batches_requeued=0,
               batches_running={}, sliced=True, width=64, height=64, priority=5, created=0.0, finished=None,
               elapsed=3.0, rate=0.0, errors=[], nodes_blocked=[], radiosity_cache="prepass",
               prepass=Prepass(kind="radiosity", total=2, done=1, running=1, failed=0), eta_seconds=None, eta_at=None,
               frame_seconds=None, overhead_factor=1.0, rate_recent=0.0, render_processes=0, frames_running=0,
               batches_queued=8, running=[], nodes={}, failed=[], stalled=True)


def _render(template: str, **context) -> str:
    app = create_app(Web(client=None, source=None, gate=Gate(public_read=True)))  # type: ignore[arg-type]
    with app.test_request_context("/"):
        return render_template(template, **context)


def test_both_pages_show_the_pre_pass_stage_as_status_does_and_escape_the_name():
    for html in (_render("jobs.html", jobs=[VIEW], state="", states=()),
                 _render("job.html", job=VIEW, frames=[], failures=[], video=False)):
        assert VIEW.prepass is not None and f"{VIEW.prepass.text}</span>" in html
        assert "pre-pass: radiosity 1/2 (1 rendering)" in html
        assert "sliced &lt;radiosity&gt;" in html and "<radiosity>" not in html
        assert "ETA ? (no render node is taking its batches)" in html
    idle = replace(VIEW, stalled=False)  # idle for a moment (just submitted, between batches): nothing to say
    assert "no render node" not in _render("jobs.html", jobs=[idle], state="", states=())
    plain = replace(VIEW, prepass=None)
    assert "pre-pass" not in _render("job.html", job=plain, frames=[], failures=[], video=False)


def test_a_reader_who_is_not_signed_in_sees_no_control_and_no_submit_link():
    html = _render("job.html", job=VIEW, frames=[], failures=[], video=False)  # --public-read, nobody signed in
    assert 'id="cancel"' not in html and 'action="/submit"' not in html and 'href="/submit"' not in html
    assert 'href="/login"' in html


def test_the_job_page_shows_its_hangs_and_the_nodes_page_each_nodes_hung_batches():
    hung = "frame 2 hung on <b>@h: no progress for 120 s: povray used no CPU and wrote nothing"
    view = replace(VIEW, history=[{"at": 0.0, "what": "frames 1 rendered again"},
                                  {"at": 60.0, "what": hung, "kind": "hang"}])
    html = _render("job.html", job=view, frames=[], failures=[], video=False,
                   hangs=[("1970-01-01 00:01:00 UTC", h["what"]) for h in view.hangs])
    assert '<h2>Hangs</h2>' in html and "no progress for 120 s" in html and "rendered again" not in html
    assert "hung on &lt;b&gt;@h" in html  # a node's name is data
    assert "<h2>Hangs</h2>" not in _render("job.html", job=VIEW, frames=[], failures=[], video=False, hangs=[])
    node = {"node": "a@h", "state": "up", "host": "h", "processes": 1, "cores": 2, "povray": "3.7", "httpov": "1",
            "started": 0.0, "last_seen": 0.0, "rendering": [], "done_last_hour": 3, "failed_last_hour": 2,
            "hung_last_hour": 1, "fault": None}
    html = _render("nodes.html", nodes=[node], now=1.0)
    assert "<th>Hung (1 h)</th>" in html and '<td class="hung">1</td>' in html


def test_the_job_page_lists_what_submit_warned_of_escaped():
    said = "Widht: did you mean Width? (the ini's line is ignored)"
    view = replace(VIEW, history=[{"at": 0.0, "what": said, "kind": "warning"},
                                  {"at": 1.0, "what": "<img src=x>: no such option", "kind": "warning"},
                                  {"at": 60.0, "what": "frame 2 hung", "kind": "hang"}])
    assert [w["what"] for w in view.warnings] == [said, "<img src=x>: no such option"]
    html = _render("job.html", job=view, frames=[], failures=[], video=False,
                   warnings=[w["what"] for w in view.warnings])
    assert "<h2>Warnings at submit</h2>" in html
    assert "Widht: did you mean Width? (the ini&#39;s line is ignored)" in html
    assert "&lt;img src=x&gt;" in html and "<img src=x>" not in html and "frame 2 hung" not in html
    assert "Warnings at submit" not in _render("job.html", job=VIEW, frames=[], failures=[], video=False, warnings=[])


def test_the_nodes_page_says_why_a_node_fails_its_batches_escaped():
    node = {"node": "a@h", "state": "up", "host": "h", "processes": 1, "cores": 2, "povray": "3.7", "httpov": "1",
            "started": 0.0, "last_seen": 0.0, "rendering": [], "done_last_hour": 0, "failed_last_hour": 4,
            "hung_last_hour": 0, "fault": None, "last_error": "scene <b>x</b> not in storage \x1b[2J",
            "storage_error": "/nope: FileNotFoundError: <i>", "waits_off": "no C compiler <u>x</u>"}
    html = _render("nodes.html", nodes=[node], now=1.0)
    assert 'povray runs without quick waits: <span class="waits-off">no C compiler &lt;u&gt;x&lt;/u&gt;' in html
    assert 'last failed batch: <span class="error last-error">scene &lt;b&gt;x&lt;/b&gt; not in storage \\x1b[2J' \
        in html
    assert 'storage check failed: <span class="error storage-error">/nope: FileNotFoundError: &lt;i&gt;' in html
    quiet = _render("nodes.html", nodes=[{**node, "last_error": None, "storage_error": None, "waits_off": None}],
                    now=1.0)
    assert "last failed batch" not in quiet and "storage check" not in quiet and "quick waits" not in quiet


def test_a_warmed_app_draws_every_page_from_templates_compiled_at_start():
    """`httpov web` compiles its templates before it listens (httpov.web.app.warm): the first request of a page
    loads none (a job's page drew 0.1 s slower the first time), and the pages come out the same."""
    import re

    from jinja2 import TemplateNotFound

    from httpov.web.app import warm

    def page(html: str) -> str:  # but each app's CSRF token
        return re.sub(r'data-csrf="[^"]*"', 'data-csrf=""', html)

    expected = page(_render("job.html", job=VIEW, frames=[], failures=[], video=False))
    app = create_app(Web(client=None, source=None, gate=Gate(public_read=True)))  # type: ignore[arg-type]
    names = app.jinja_env.list_templates(filter_func=lambda name: name.endswith(".html"))
    warm(app)

    def gone(environment, template):
        raise TemplateNotFound(template)  # a template read after warm() would fail here

    app.jinja_env.loader.get_source = gone  # type: ignore[method-assign, union-attr]
    assert {"job.html", "jobs.html", "nodes.html", "macros.html", "base.html"} <= set(names)
    for name in names:
        assert app.jinja_env.get_template(name).name == name
    with app.test_request_context("/"):
        assert page(render_template("job.html", job=VIEW, frames=[], failures=[], video=False)) == expected
