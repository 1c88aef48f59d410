"""What a request may send, decided from its headers before its body is read: its size, and how many uploads one
account has under way at once."""
from __future__ import annotations

import threading
from collections import Counter

#: The views that take a scene zip (the field `scene`): their bodies may be as large as HTTPOV_MAX_SCENE_BYTES.
UPLOADS = ("api.submit_job", "pages.submit")
#: The largest body any other request may send (a sign-in, a control, a token's label, a user's limits).
FORM_BYTES = 64 * 1024


class UploadSlots:
    """How many uploads each account has under way in this server, at most `per_account` each."""

    def __init__(self, per_account: int) -> None:
        self.per_account = per_account
        self._held: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, account: str) -> bool:
        """One slot for `account`; False when it has `per_account` under way already."""
        with self._lock:
            if self._held[account] >= self.per_account:
                return False
            self._held[account] += 1
            return True

    def give(self, account: str) -> None:
        with self._lock:
            self._held[account] -= 1
            if self._held[account] <= 0:
                del self._held[account]

    def held(self, account: str) -> int:
        with self._lock:
            return self._held[account]


def body_refusal(endpoint: str | None, length: int | None, chunked: bool, max_upload: int) -> tuple[int, str] | None:
    """(status, message) refusing a request's body from its headers alone, or None when it may be read."""
    if chunked:
        return 411, "send the body with a Content-Length: chunked request bodies are not taken"
    if endpoint in UPLOADS:
        if length and length > max_upload:
            return 413, (f"the upload is larger than {max_upload} bytes (HTTPOV_MAX_SCENE_BYTES): "
                         f"its Content-Length is {length}")
    elif length and length > FORM_BYTES:
        return 413, f"this request's body is larger than {FORM_BYTES} bytes, the most a form here takes"
    return None


def too_many(account: str, per_account: int) -> str:
    """The message of an upload refused (429) because its account has `per_account` under way."""
    return (f"{account} already has {per_account} upload(s) under way, the most one account may have at once "
            "(HTTPOV_WEB_UPLOADS_PER_ACCOUNT): wait for one to finish")
