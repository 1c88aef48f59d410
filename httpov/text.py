"""Untrusted text (job names, povray messages, file names) made safe to show in a terminal or a page."""
from __future__ import annotations

import re

# C0 controls (ESC starts terminal escapes), DEL, C1 controls (0x9b is a one-byte CSI), and the invisible
# format characters that reorder or hide text (bidi overrides and isolates, zero-width marks).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown(text: object) -> str:
    """`text` with every control character written out as an escape (ESC as `\\x1b`, a newline as `\\x0a`).

    Callers that show several lines pass each line separately; nothing in the result moves the cursor,
    changes a window title or reorders what follows."""
    return _UNSAFE.sub(_visible, str(text))
