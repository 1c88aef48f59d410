"""What the CLI prints off a terminal (a pipe, a file): plain text, no escape codes, user text printed literally."""
from __future__ import annotations

import io

from httpov import terminal
from httpov.view import from_snapshot
from tests.unit.test_job_view import _snapshot


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


def _printed(*renderables) -> str:
    pipe = _Pipe()
    out = terminal.console(pipe)
    for renderable in renderables:
        out.print(renderable)
    return pipe.getvalue()


def test_a_job_name_with_rich_markup_prints_literally_and_without_escape_codes():
    record, spec, batches = _snapshot()
    spec.name = "[bold]x[/] :smile: \x1b[31mred"
    view = from_snapshot(record, spec, batches, now=1001.5)
    text = _printed(terminal.status_table([view]), terminal.job_panel(view))
    assert "[bold]x[/] :smile: \\x1b[31mred" in text  # markup, emoji codes and ESC all shown as they are
    assert "\x1b" not in text and "\r" not in text
    header, row = text.splitlines()[:2]
    # the owner's column (#24: every job has an owner, shown everywhere)
    assert header.split() == ["JOB", "NAME", "OWNER", "PRI", "STATE", "PROGRESS", "FRAMES", "FAILED", "FR/S", "ETA",
                              "CREATED"]
    assert row.startswith("j1 ") and "[##xx......]  25%" in row and "1/4" in row
    assert "failed: frame 3 on a@h: povray failed: x" in text and "    | x" in text
    assert terminal.job_text(view) in "\n".join(line.rstrip() for line in text.splitlines())


def test_off_a_terminal_progress_prints_a_line_only_when_something_changed():
    pipe = _Pipe()
    progress = terminal.JobProgress(terminal.console(pipe))
    running = from_snapshot(*_snapshot(), now=1001.5)
    with progress:
        progress(running)
        progress(from_snapshot(*_snapshot(), now=1001.9))  # only the clock moved
        progress(from_snapshot(*_snapshot("done"), now=1003.0))
    lines = pipe.getvalue().splitlines()
    assert lines == ["[#######xxxxxxxx...............] 1/4 frames, 1 failed, 0.67 fr/s, ETA 2s, running",
                     "[#######xxxxxxxx...............] 1/4 frames, 1 failed, 0.33 fr/s, ETA 0s, done"]
    counter_pipe = _Pipe()
    count = terminal.Counter("downloading {x}", terminal.console(counter_pipe))
    for done in range(1, 4):
        count(done, 3)
    assert counter_pipe.getvalue() == "downloading {x} 3/3\n"
