"""API tokens that belong to web accounts: made for one account (shown once), kept in Redis as a SHA-256 digest with
the account's name, a label and when it was made and last used, listed and revoked per account. Several `httpov web`
processes on one Redis share them; a revoked token, or one whose account is gone, stops at its next request."""
from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from httpov.errors import BadInputError, TokenNotFoundError
from httpov.store.keys import Keys
from httpov.text import shown
from httpov.web.auth import redis_call

#: What every account token starts with (a farm-wide token from HTTPOV_WEB_TOKENS need not): easy to spot in a
#: leaked file or a secret scanner's rules.
PREFIX = "httpov_"
#: Hex digits of the digest that name a token in lists and `web-token remove` (its id; never the token).
ID_LENGTH = 12
#: Fewest hex digits of an id that `remove` accepts (a longer prefix of the digest works too).
MIN_ID = 8
#: A token's last use is written at most this often (seconds), so that a request costs one read.
TOUCH_SECONDS = 60
MAX_LABEL = 100

# Sets `used` only on a token that still exists: a request racing its revocation does not bring back a stub.
# KEYS[1] the token's hash; ARGV[1] the time.
_TOUCH = """
if redis.call('hexists', KEYS[1], 'account') == 1 then
  redis.call('hset', KEYS[1], 'used', ARGV[1])
end
return 0
"""


def digest(token: str) -> str:
    """What is kept of a token: SHA-256 of a 256-bit random value needs no salt nor slow hash to be safe."""
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, else None."""
    if not header or not header.startswith("Bearer "):
        return None
    return header[len("Bearer "):].strip() or None


@dataclass(frozen=True)
class Token:
    """One account token as it is listed: never the token itself."""

    digest: str
    account: str
    label: str
    created: float
    last_used: float | None

    @property
    def id(self) -> str:
        return self.digest[:ID_LENGTH]

    @property
    def described(self) -> str:
        """As the audit log names it: 'token 1a2b3c4d5e6f of bob (render script)'."""
        return f"token {self.id} of {self.account}" + (f" ({self.label})" if self.label else "")

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "account": self.account, "label": self.label, "created": self.created,
                "last_used": self.last_used}


def _token(digest_: str, fields: Mapping[str, str]) -> Token | None:
    if not fields.get("account"):
        return None
    used = fields.get("used")
    return Token(digest_, fields["account"], fields.get("label", ""), float(fields.get("created") or 0),
                 float(used) if used else None)


def check_label(label: str | None) -> str:
    label = (label or "").strip()
    if len(label) > MAX_LABEL:
        raise BadInputError(f"the label is {len(label)} characters long: at most {MAX_LABEL}")
    return label


class Tokens:
    """`<prefix>:web:token:<digest>` -> hash {account, label, created, used}; `<prefix>:web:tokens` the set of every
    digest (an admin's list) and `<prefix>:web:tokens:<account>` each account's own."""

    def __init__(self, redis: Any, prefix: str) -> None:
        self.redis, self.keys = redis, Keys(prefix)
        self._touch = redis.register_script(_TOUCH)

    def create(self, account: str, label: str | None = None, now: float | None = None) -> tuple[str, Token]:
        """A new token for `account` (checked to exist by the caller): (the token, to show once; what is kept)."""
        label = check_label(label)
        token = PREFIX + secrets.token_urlsafe(32)
        made = Token(digest(token), account, label, round(now if now is not None else time.time(), 3), None)

        def write() -> None:
            with self.redis.pipeline() as pipe:  # MULTI: the token and both lists of it, or nothing
                pipe.hset(self.keys.web_token(made.digest),
                          mapping={"account": account, "label": label, "created": repr(made.created)})
                pipe.sadd(self.keys.web_tokens(), made.digest)
                pipe.sadd(self.keys.web_tokens_of(account), made.digest)
                pipe.execute()
        redis_call(write)
        return token, made

    def account(self, token: str, accounts: Iterable[str], now: float | None = None) -> str | None:
        """The account `token` acts as, or None: no such token (wrong, revoked), or its account is gone from the
        accounts file (the token is then revoked: an account made again under that name does not inherit it). Its
        last use is written when the one kept is a minute old."""
        if not token.startswith(PREFIX):
            return None
        key_digest = digest(token)
        found = _token(key_digest, redis_call(lambda: self.redis.hgetall(self.keys.web_token(key_digest))))
        if found is None:
            return None
        if found.account not in accounts:
            self._drop(found)
            return None
        now = time.time() if now is None else now
        if found.last_used is None or now - found.last_used >= TOUCH_SECONDS:
            redis_call(lambda: self._touch(keys=[self.keys.web_token(key_digest)], args=[repr(round(now, 3))]))
        return found.account

    def list(self, account: str | None = None) -> list[Token]:
        """`account`'s tokens, or everyone's (None), oldest first."""
        key = self.keys.web_tokens() if account is None else self.keys.web_tokens_of(account)

        def read() -> list[Token]:
            digests = sorted(self.redis.smembers(key))
            with self.redis.pipeline(transaction=False) as pipe:
                for d in digests:
                    pipe.hgetall(self.keys.web_token(d))
                rows = pipe.execute()
            return [t for d, fields in zip(digests, rows, strict=True) if (t := _token(d, fields)) is not None]
        return sorted(redis_call(read), key=lambda t: (t.created, t.digest))

    def find(self, token_id: str) -> Token:
        """The token whose id (a prefix of its digest, at least MIN_ID hex digits) is `token_id`."""
        wanted = (token_id or "").strip().lower()
        if len(wanted) < MIN_ID or any(c not in "0123456789abcdef" for c in wanted):
            raise BadInputError(f"{shown(repr(token_id)[:70])} is not a token id: the {ID_LENGTH} hex digits "
                                "`httpov web-token list` shows")
        matches = [t for t in self.list() if t.digest.startswith(wanted)]
        if not matches:
            raise TokenNotFoundError(f"no token has the id {wanted}", hint="`httpov web-token list` shows them")
        if len(matches) > 1:
            raise BadInputError(f"{len(matches)} tokens have an id starting {wanted}: give more of it")
        return matches[0]

    def revoke(self, token: Token) -> None:
        """`token` stops working at once, in every `httpov web` process."""
        self._drop(token)

    def _drop(self, token: Token) -> None:
        def drop() -> None:
            with self.redis.pipeline() as pipe:
                pipe.delete(self.keys.web_token(token.digest))
                pipe.srem(self.keys.web_tokens(), token.digest)
                pipe.srem(self.keys.web_tokens_of(token.account), token.digest)
                pipe.execute()
        redis_call(drop)


def when(stamp: float | None) -> str:
    """A token's time as lists show it: '2026-12-06 07:30', or 'never'."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "never"
