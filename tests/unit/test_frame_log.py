"""The frame viewer's povray log lines (httpov.web.source.log_tail): a frame's part of its batch's log, bounded,
control characters written out."""
from __future__ import annotations

from httpov.web.source import frame_parts, log_tail

RUN = ["POV-Ray 3.7", "Rendering frame 1 of 3", "one", "Rendering frame 1 of 3", "one more", "Rendering frame 2 of 3",
       "two", "Rendering frame 3 of 3", "three"]


def test_each_frame_gets_its_part_of_a_batch_log():
    assert frame_parts(RUN) == {1: RUN[:5],  # the banner before the first frame is the first frame's
                                2: ["Rendering frame 2 of 3", "two"], 3: ["Rendering frame 3 of 3", "three"]}
    assert frame_parts(["parsing", "done"]) == {1: ["parsing", "done"]}  # a one-frame run: all of it


def test_the_tail_is_bounded_and_inert():
    lines, left_out = log_tail([*(f"line {n}" for n in range(100)), "\x1b[2Jcleared", "y" * 50], most=5, chars=10)
    assert lines == ["line 97", "line 98", "line 99", "\\x1b[2Jcleare…", "yyyyyyyyyy…"]
    assert left_out == 97
