"""Unit tests: what a user reads about a failed render (povray's log as messages, failures grouped in status)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from httpov.terminal import job_text
from httpov.view import FailedBatch, JobView, failure_groups
from httpov.worker.povray import error_lines, failure

# povray 3.7.0.10's log for a scene whose image_map file is missing, with the scene named by the node's work path
MISSING_IMAGE = """==== [Parsing...] ==========================================================
File '/n/work/ab12-x/scene/sub/main.pov' line 4: Possible Parse Error: Cannot find file
 'missing_texture_with_a_long_name.png', even after trying to append file type
 extension.
File '/n/work/ab12-x/scene/sub/main.pov' line 4: Possible Parse Error: Cannot find image file.
Fatal error in parser: Cannot open file.
Render failed
"""


def test_the_fatal_error_is_the_headline_not_a_warning_and_files_are_named_from_the_scene():
    error = failure(1, MISSING_IMAGE, Path("/n/work/ab12-x/scene"))
    assert str(error) == "povray failed: File 'sub/main.pov' line 4: Fatal error in parser: Cannot open file."
    assert not error.transient
    assert error.lines[0] == ("File 'sub/main.pov' line 4: Possible Parse Error: Cannot find file "
                              "'missing_texture_with_a_long_name.png', even after trying to append file type "
                              "extension.")
    assert not any("/n/work" in line for line in error.lines)


def test_a_parse_error_with_its_own_location_is_the_headline_whole():
    log = ("File 'inc.pov' line 2: Possible Parse Error: Cannot find file 'nope.inc', even\n"
           " after trying to append file type extension.\n"
           "File 'inc.pov' line 2: Parse Error: Cannot open include file nope.inc.\n"
           "Fatal error in parser: Cannot parse input.\nRender failed\n")
    assert str(failure(1, log)) == ("povray failed: File 'inc.pov' line 2: Parse Error: Cannot open include file "
                                    "nope.inc.")
    assert error_lines("  Input file: x.pov\nall went well\n") == ["  Input file: x.pov", "all went well"]


def _failed(label, node, error="povray failed: Parse Error: x", final=True):
    return FailedBatch(batch=label, label=label, node=node, error=error, lines=["Parse Error: x"], final=final, at=0)


def test_one_error_from_several_slices_shows_once_with_the_count():
    failed = [_failed("frame 1 rows 1-32", "a@h"), _failed("frame 1 rows 33-64", "b@h"),
              _failed("frame 1 rows 65-96", "a@h"), _failed("frame 2 rows 1-32", "a@h", "other", final=False)]
    groups = failure_groups(failed)
    assert [(g.count, g.nodes) for g in groups] == [(3, ["a@h", "b@h"]), (1, ["a@h"])]
    view = JobView(id="j1", name="n", state="failed", frames_total=2, frames_done=0, frames_failed=2, first_frame=1,
                   last_frame=2, batches_total=6, batches_done=0, batches_failed=[], batches_requeued=0,
                   batches_running={}, sliced=True, width=16, height=96, priority=5, created=0.0, finished=3.0,
                   elapsed=3.0, rate=0.0, errors=[], nodes_blocked=[], radiosity_cache="off", prepass=None,
                   eta_seconds=None, eta_at=None,
                   frame_seconds=None, overhead_factor=1.0, rate_recent=0.0, render_processes=0, frames_running=0,
                   batches_queued=0, running=[], nodes={}, failed=failed)
    text = job_text(view)
    assert text.count("Parse Error: x\n") == 1 + 1  # the headline once, and its log line once
    assert ("failed: 3 batches (frame 1 rows 1-32, frame 1 rows 33-64, frame 1 rows 65-96) on a@h, b@h: "
            "povray failed: Parse Error: x") in text
    assert "will retry" not in text  # issue #31: a failed job retries nothing
    assert "failed: frame 2 rows 1-32 on a@h: other" in text
    assert "will retry: frame 2 rows 1-32 on a@h: other" in job_text(dataclasses.replace(view, state="running"))
    page = _job_page(view)
    assert "will retry" not in page
    assert "(will retry)" in _job_page(dataclasses.replace(view, state="running"))
    assert page.count("povray failed: Parse Error: x") == 1
    assert "<b>3 batches (frame 1 rows 1-32, frame 1 rows 33-64, frame 1 rows 65-96)</b> on a@h, b@h" in page


def _job_page(view: JobView) -> str:
    """The web interface's job page for a view, rendered by its real template (no Redis: the view is given)."""
    from flask import render_template

    from httpov.web import Gate, Web, create_app

    app = create_app(Web(client=None, source=None, gate=Gate(public_read=True)))  # type: ignore[arg-type]
    with app.test_request_context("/"):
        return render_template("job.html", job=view, frames=[], failures=view.failure_groups(), video=False)


def test_output_between_the_warning_and_the_fatal_error_does_not_lose_where_it_happened():
    # povray's stdout and stderr share the log file, so a line of the other stream can fall between them
    log = MISSING_IMAGE.replace("Fatal error in parser", "\nParser Time\nFatal error in parser")
    assert str(failure(1, log, Path("/n/work/ab12-x/scene"))) == (
        "povray failed: File 'sub/main.pov' line 4: Fatal error in parser: Cannot open file.")


def test_why_a_live_job_waits_is_in_its_status_and_page():
    notes = ["waiting for storage: cannot write jobs/j1/batches/f1.zip: No space left on device",
             "node full@h: disk full (cache folder, 3 MiB free)"]
    view = JobView(id="j1", name="n", state="running", frames_total=2, frames_done=0, frames_failed=0, first_frame=1,
                   last_frame=2, batches_total=2, batches_done=0, batches_failed=[], batches_requeued=0,
                   batches_running={}, sliced=False, width=16, height=16, priority=5, created=0.0, finished=None,
                   elapsed=3.0, rate=0.0, errors=[], nodes_blocked=[], radiosity_cache="off", prepass=None,
                   eta_seconds=None, eta_at=None, frame_seconds=None, overhead_factor=1.0, rate_recent=0.0,
                   render_processes=0, frames_running=0, batches_queued=2, running=[], nodes={}, failed=[],
                   notes=notes)
    text = job_text(view)
    assert all(note in text for note in notes)
    page = _job_page(view)
    assert all(note in page for note in notes)
