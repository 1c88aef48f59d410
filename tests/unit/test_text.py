"""httpov.text.shown: untrusted text with control characters made visible."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from httpov.text import shown


def test_escapes_and_plain_text():
    assert shown("frame_0001.png ünïcode") == "frame_0001.png ünïcode"
    assert shown("\x1b]0;pwned\x07") == "\\x1b]0;pwned\\x07"
    assert shown("a\nb\tc\rd\x7f\x9b") == "a\\x0ab\\x09c\\x0dd\\x7f\\x9b"
    assert shown("evil\u202egnp.exe\u200b") == "evil\\u202egnp.exe\\u200b"


@given(st.text())
def test_nothing_a_terminal_acts_on_survives(text):
    out = shown(text)
    assert all(ord(c) >= 0x20 and not 0x7f <= ord(c) <= 0x9f for c in out)
