"""Signed-in browsers, kept in Redis: the session cookie carries only a random id, and a session is what Redis holds
for that id. Signing out deletes it; a new password, another role or an account's removal ends every session of that
account at its next request (each session remembers a digest of the role and password hash it was opened with);
several `httpov web` processes on one Redis share them, and a restart keeps them."""
from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from httpov.store.keys import Keys
from httpov.web.auth import Account, redis_call

#: A session not used for this long ends by itself (an open page asks every few seconds, so it stays signed in).
SESSION_SECONDS = 7 * 24 * 3600


def _digest(account: Account) -> str:
    """What a session keeps of its account's role and password hash: enough to see either changed, nothing to
    attack."""
    return hashlib.sha256(f"{account.role}:{account.hashed}".encode()).hexdigest()[:32]


class Sessions:
    """`<prefix>:web:session:<id>` -> {"user", "account" (digest of the role and password hash), "since"}, expiring
    when idle for `lifetime` seconds."""

    def __init__(self, redis: Any, prefix: str, lifetime: int = SESSION_SECONDS) -> None:
        self.redis, self.prefix, self.lifetime = redis, prefix, lifetime

    def _key(self, sid: str) -> str:
        return Keys(self.prefix).web_session(sid)

    def start(self, user: str, account: Account) -> str:
        """A new session for `user`, signed in to `account` (its role and password hash): its id, for the cookie."""
        sid = secrets.token_urlsafe(32)
        record = json.dumps({"user": user, "account": _digest(account), "since": round(time.time())})
        redis_call(lambda: self.redis.set(self._key(sid), record, ex=self.lifetime))
        return sid

    def user(self, sid: Any, accounts: dict[str, Account]) -> str | None:
        """The user of session `sid`, or None when there is no such session, or its account is gone or has a new
        password or another role since (the session is then deleted)."""
        if not isinstance(sid, str) or not sid:
            return None
        raw = redis_call(lambda: self.redis.get(self._key(sid)))
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            user = record["user"]
            account = accounts.get(user)
            valid = account is not None and secrets.compare_digest(record["account"], _digest(account))
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            self.end(sid)
            return None
        redis_call(lambda: self.redis.expire(self._key(sid), self.lifetime))
        return str(user)

    def end(self, sid: Any) -> None:
        """Sign session `sid` out: its cookie, replayed, is no longer anyone's."""
        if isinstance(sid, str) and sid:
            redis_call(lambda: self.redis.delete(self._key(sid)))
