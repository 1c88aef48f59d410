"""Who may use the web interface: accounts in a file the operator manages (a role and an argon2 password hash each,
written by `httpov web-user add`; an older file without roles is given them) and the session signing key beside it,
bearer tokens for scripts (HTTPOV_WEB_TOKENS or a token file), the sign-in limit, and the check on each request."""
from __future__ import annotations

import contextlib
import hmac
import math
import os
import re
import secrets
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from httpov.access import NAME, Identity, Role, check_name
from httpov.errors import BadInputError, BrokerUnavailableError
from httpov.store.keys import Keys
from httpov.text import shown

#: The name rule of accounts made before one rule held for accounts and job owners (httpov.access.NAME): such an
#: account (`_ops`) still signs in, and `httpov web-user list` says it needs a rename; no new account may have one.
_LEGACY_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_PASSWORD = 8
MIN_TOKEN = 16
#: The sign-in limit's defaults (--sign-in-attempts, --sign-in-window): fail2ban's, 5 failures in 10 minutes.
SIGN_IN_ATTEMPTS = 5
SIGN_IN_WINDOW = 600
_HEADER = ("# httpov web accounts: name:role:argon2 hash, role admin, user or viewer "
           "(`httpov web-user add NAME --role ROLE` writes them)\n")

ROLES = tuple(role.value for role in Role)


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()


class Account(NamedTuple):
    """One line of the accounts file: what its user may do, and their password's argon2 hash."""

    role: Role
    hashed: str


def needs_rename(name: str) -> bool:
    """An account made under the older name rule (`_ops`): it signs in, but its name cannot own jobs."""
    return not NAME.match(name)


def check_user_name(name: str) -> str:
    """`name` if a new account may have it: the one rule for accounts and job owners (httpov.access.check_name)."""
    return check_name(name, "user name")


def _parse(path: Path, text: str) -> tuple[dict[str, Account], int]:
    """The accounts in `text` (`name:role:hash` lines; '#' comments), and how many had no role: lines written
    before roles (`name:hash`) are role `user`, except in a file of one account, which is its farm's `admin`."""
    lines: dict[str, tuple[str | None, str]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        role: str | None = None
        if not rest.startswith("$argon2"):
            role, _, rest = rest.partition(":")
        if not _LEGACY_NAME.match(name) or not rest.startswith("$argon2") or (role is not None and role not in ROLES):
            raise BadInputError(f"{path}:{n}: not a `name:argon2-hash` line (nor `name:role:argon2-hash`, the role "
                                f"one of {', '.join(ROLES)})",
                                hint="write accounts with `httpov web-user add NAME --accounts FILE`")
        lines[name] = (role, rest)
    unset = Role.ADMIN if len(lines) == 1 else Role.USER
    roleless = sum(1 for role, _ in lines.values() if role is None)
    return {name: Account(Role(role) if role else unset, hashed) for name, (role, hashed) in lines.items()}, roleless


def _read(path: Path) -> str | None:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BadInputError(f"cannot read the accounts file {path}: {exc.strerror or exc}") from None


def load_accounts(path: Path) -> dict[str, Account]:
    """{user: Account} from an accounts file; {} when there is none. A file written before roles reads as
    `migrate_accounts` would write it."""
    text = _read(path)
    return {} if text is None else _parse(path, text)[0]


def read_accounts(path: Path) -> dict[str, str]:
    """{user: argon2 hash} from an accounts file; {} when there is none."""
    return {name: account.hashed for name, account in load_accounts(path).items()}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer of the accounts file at a time (`web-user` commands and `httpov web`'s migration at once):
    an flock on ACCOUNTS.lock beside it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: Path, accounts: dict[str, Account]) -> None:
    """The accounts file as `accounts` say, replaced atomically (a temp file, mode 0600, then os.replace)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".accounts-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(_HEADER)
            f.writelines(f"{user}:{account.role}:{account.hashed}\n" for user, account in sorted(accounts.items()))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def migrate_accounts(path: Path | None) -> str | None:
    """Give each account of a file written before roles its role, in place (atomically, nothing else changed):
    `user`, or `admin` for the only account of a one-person farm. Answers what was done, None when nothing was to
    do."""
    if path is None:
        return None
    path = Path(path)
    with _locked(path):
        text = _read(path)
        if text is None:
            return None
        accounts, roleless = _parse(path, text)
        if not roleless:
            return None
        _write(path, accounts)
    if len(accounts) == 1:
        name = next(iter(accounts))
        return f"accounts file {path} given roles: its only account {shown(name)} is admin"
    return (f"accounts file {path} given roles: {roleless} account(s) without one are now role user (admins: "
            "`httpov web-user role NAME admin`)")


def add_user(path: Path, name: str, password: str, role: Role | str | None = None) -> bool:
    """Hash `password` (argon2id) and write it for `name` into the accounts file (created 0600, replaced
    atomically), with `role` (None: `user` for a new account, an existing one keeps its own); answers True when the
    user was new, False when their password (and role) was changed: either ends their sessions. A new account's name
    follows the one name rule (httpov.access.check_name); an older account named otherwise may still be changed."""
    if len(password) < MIN_PASSWORD:
        raise BadInputError(f"the password is {len(password)} characters long: at least {MIN_PASSWORD}")
    path = Path(path)
    with _locked(path):
        accounts = load_accounts(path)
        new = name not in accounts
        if new:
            check_user_name(name)
        given = _role(role) if role is not None else None
        accounts[name] = Account(given or (Role.USER if new else accounts[name].role), _hasher().hash(password))
        _write(path, accounts)
    return new


def set_role(path: Path, name: str, role: Role | str) -> Role:
    """Give account `name` a new role (its sessions end: they were opened with the old one); answers the old one."""
    path = Path(path)
    with _locked(path):
        accounts = load_accounts(path)
        if name not in accounts:
            raise BadInputError(f"no account {shown(name)!r} in {path}", hint="`httpov web-user list` lists them")
        old = accounts[name].role
        accounts[name] = accounts[name]._replace(role=_role(role))
        _write(path, accounts)
    return old


def remove_user(path: Path, name: str) -> None:
    """Remove account `name` from the accounts file: its sessions end at their next request."""
    path = Path(path)
    with _locked(path):
        accounts = load_accounts(path)
        if name not in accounts:
            raise BadInputError(f"no account {shown(name)!r} in {path}", hint="`httpov web-user list` lists them")
        del accounts[name]
        _write(path, accounts)


def _role(role: Role | str) -> Role:
    if role not in ROLES:
        raise BadInputError(f"{shown(repr(role))} is not a role: {', '.join(ROLES)}")
    return Role(role)


def signing_key(accounts: Path) -> bytes:
    """The key that signs session cookies and CSRF tokens, kept in ACCOUNTS.key beside the accounts file (0600,
    made on the first start): a restart, or another `httpov web` process reading the same files, keeps everyone's
    sessions. A key that others can read is refused, as ssh refuses such a private key."""
    path = Path(f"{accounts}.key")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".web-key-")  # mode 0600
        except OSError as exc:
            raise BadInputError(f"cannot make the session key {path}: {exc.strerror or exc}",
                                hint="let httpov web write beside its accounts file (--accounts)") from None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
            os.link(tmp, path)  # atomic, and fails if another process made it first: then theirs is used
        except FileExistsError:
            pass
        finally:
            Path(tmp).unlink(missing_ok=True)
        mode = path.stat().st_mode
    except OSError as exc:
        raise BadInputError(f"cannot read the session key {path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise BadInputError(f"the session key {path} can be read by others (mode {mode & 0o777:o})",
                            hint=f"chmod 600 {path}, or remove it to make a new one (everyone signs in again)")
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        key = b""
    if len(key) < 32:
        raise BadInputError(f"{path} is not a session key (64 hex digits)",
                            hint="remove it: `httpov web` makes a new one (everyone signs in again)")
    return key


def read_tokens(env_value: str | None, path: Path | None) -> list[str]:
    """Bearer tokens from HTTPOV_WEB_TOKENS (comma or whitespace separated) and a token file (one a line)."""
    tokens = re.split(r"[\s,]+", env_value or "")
    if path is not None:
        try:
            tokens += [line.strip() for line in Path(path).read_text().splitlines()
                       if line.strip() and not line.lstrip().startswith("#")]
        except OSError as exc:
            raise BadInputError(f"cannot read the token file {path}: {exc.strerror or exc}") from None
    tokens = [t for t in tokens if t]
    short = [t for t in tokens if len(t) < MIN_TOKEN]
    if short:
        raise BadInputError(f"{len(short)} web token(s) shorter than {MIN_TOKEN} characters",
                            hint="make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return tokens


@dataclass
class Attempt:
    """One sign-in attempt as the limit saw it: `wait` > 0 seconds when it is refused, else allowed and counted."""

    wait: float
    keys: tuple[str, ...] = ()
    stamp: float = 0.0
    failures: int = 0  # the most failures of any of its keys, this one included
    member: str = ""  # its entry in SharedSignInLimit's counts

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.wait))


class SignInLimit:
    """At most `attempts` failed sign-ins for one account name and from one client address in any `window`
    seconds: further attempts are refused, their password not checked, until the oldest of those failures is
    `window` seconds old. A successful sign-in clears its account's count, not its address's (signing in to one's
    own account buys no more guesses at another's).

    This one counts in this process, behind a lock (the server answers each request on one of several threads), in a
    table of at most `max_keys` names and addresses. A flood of other names cannot push a count out: only counts
    whose failures have all left the window are forgotten, and while the table is full of live ones an attempt
    with a name or address it does not hold yet is refused (429 until the oldest count expires), never let through
    uncounted. `httpov web` uses SharedSignInLimit, the same rule in Redis, where nothing needs evicting."""

    def __init__(self, attempts: int = SIGN_IN_ATTEMPTS, window: float = SIGN_IN_WINDOW,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        if attempts < 1:
            raise BadInputError(f"--sign-in-attempts must be at least 1, got {attempts}")
        if window <= 0:
            raise BadInputError(f"--sign-in-window must be more than 0 seconds, got {window}")
        self.attempts, self.window, self.clock, self.max_keys = attempts, window, clock, max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()  # key -> times, least recent key first
        self._lock = threading.Lock()

    @staticmethod
    def keys(name: str, address: str | None) -> tuple[str, ...]:
        """The counts an attempt is checked against: its account name (only a name that could be an account) and
        its client address."""
        keys = [f"address:{(address or '-')[:100]}"]
        if _LEGACY_NAME.match(name or ""):
            keys.append(f"user:{name}")
        return tuple(keys)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        stamps = self._failures.get(key)
        if stamps is None:
            return None
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
            return None
        return stamps

    def attempt(self, keys: tuple[str, ...]) -> Attempt:
        """Refused (`wait` > 0) when any key has its `attempts` failures in the window; else allowed and counted as
        a failure right away, so that threads checking passwords at once cannot together pass the limit
        (`succeeded` takes it back)."""
        with self._lock:
            now = self.clock()
            recent = {key: self._recent(key, now) for key in keys}
            wait = max((stamps[0] + self.window - now for stamps in recent.values()
                        if stamps is not None and len(stamps) >= self.attempts), default=0.0)
            if wait > 0:
                return Attempt(wait, keys)
            new = [key for key in keys if recent[key] is None]
            if len(self._failures) + len(new) > self.max_keys:
                self._forget_expired(now)
                if len(self._failures) + len(new) > self.max_keys:  # full of live counts: no key goes uncounted
                    oldest = next(iter(self._failures.values()))
                    return Attempt(max(oldest[-1] + self.window - now, 1.0), keys)
            failures = 0
            for key in keys:
                stamps = self._failures.setdefault(key, deque())
                stamps.append(now)
                self._failures.move_to_end(key)
                failures = max(failures, len(stamps))
            return Attempt(0.0, keys, now, failures)

    def _forget_expired(self, now: float) -> None:
        """Drop the counts whose every failure has left the window: least recently failed first, so the first
        one still live ends the search."""
        while self._failures:
            key, stamps = next(iter(self._failures.items()))
            if stamps[-1] > now - self.window:
                return
            del self._failures[key]

    def succeeded(self, attempt: Attempt) -> None:
        """The password was right: the attempt is no failure, and its account's count starts again."""
        with self._lock:
            for key in attempt.keys:
                stamps = self._failures.get(key)
                if key.startswith("user:"):
                    self._failures.pop(key, None)
                elif stamps is not None and attempt.stamp in stamps:
                    stamps.remove(attempt.stamp)


#: One failed sign-in on each of the counts KEYS (sorted sets of failure times), unless one of them has ARGV[3]
#: failures in the ARGV[2] seconds before ARGV[1]: then {seconds to wait, 0}, nothing counted. Else {0, the most
#: failures of any count}. Each count expires with its newest failure's window.
_ATTEMPT = """
local now, window, attempts = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local wait = 0
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= attempts then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now)
  end
end
if wait > 0 then return {tostring(wait), 0} end
local failures = 0
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[4])
  redis.call('EXPIRE', key, math.ceil(window))
  failures = math.max(failures, redis.call('ZCARD', key))
end
return {'0', failures}
"""


class SharedSignInLimit(SignInLimit):
    """The sign-in limit in Redis, under `<prefix>:web:sign-in:`: one sorted set of failure times per account name
    and per address, each expiring with its window. Every `httpov web` process on the farm's Redis counts the same
    failures, a restart forgets none, and a flood of other names only adds keys that expire: it evicts nothing."""

    def __init__(self, redis: Any, prefix: str, attempts: int = SIGN_IN_ATTEMPTS, window: float = SIGN_IN_WINDOW,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(attempts, window, clock)
        self.redis, self.prefix = redis, prefix
        self._attempt = redis.register_script(_ATTEMPT)

    def _key(self, key: str) -> str:
        return Keys(self.prefix).web_sign_in(key)

    def attempt(self, keys: tuple[str, ...]) -> Attempt:
        now = self.clock()
        member = f"{now:.6f}:{secrets.token_hex(4)}"
        wait, failures = redis_call(lambda: self._attempt([self._key(k) for k in keys],
                                                           [now, self.window, self.attempts, member]))
        if float(wait) > 0:
            return Attempt(float(wait), keys)
        return Attempt(0.0, keys, now, int(failures), member)

    def succeeded(self, attempt: Attempt) -> None:
        def clear() -> None:
            with self.redis.pipeline() as pipe:
                for key in attempt.keys:
                    if key.startswith("user:"):
                        pipe.delete(self._key(key))
                    else:
                        pipe.zrem(self._key(key), attempt.member)
                pipe.execute()
        redis_call(clear)


def redis_call(fn: Callable[[], Any]) -> Any:
    """Redis errors as the outage they are (BrokerUnavailableError: the page says it and keeps trying)."""
    import redis

    try:
        return fn()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise BrokerUnavailableError(f"cannot reach Redis for sign-ins: {exc}") from exc


@dataclass
class Gate:
    """Accounts, tokens and whether reading is public: what each request is checked against."""

    accounts_file: Path | None = None
    tokens: list[str] = field(default_factory=list)
    public_read: bool = False
    limit: SignInLimit = field(default_factory=SignInLimit)

    def accounts(self) -> dict[str, Account]:
        """Read on each request, so users the operator adds, removes or gives another role count without a
        restart."""
        return load_accounts(self.accounts_file) if self.accounts_file else {}

    def login(self, name: str, password: str) -> bool:
        return self.verify(name, password) is not None

    def verify(self, name: str, password: str) -> Account | None:
        """The account (its role and hash) when `password` is its password (a session is bound to both: a new
        password or another role ends the sessions made before), else None."""
        from argon2.exceptions import InvalidHashError, VerificationError

        account = self.accounts().get(name)
        if account is None:
            _hasher().hash(password or "x")  # the same work as a wrong password: no timing hint of who exists
            return None
        try:
            return account if _hasher().verify(account.hashed, password) else None
        except (VerificationError, InvalidHashError):
            return None

    def token_ok(self, header: str | None) -> bool:
        """True for `Authorization: Bearer TOKEN` with a configured token (compared in constant time)."""
        if not header or not header.startswith("Bearer "):
            return False
        given = header[len("Bearer "):].strip().encode()
        return any(hmac.compare_digest(given, token.encode()) for token in self.tokens)

    @staticmethod
    def token_identity(address: str = "") -> Identity:
        """Who a token of the farm-wide list (HTTPOV_WEB_TOKENS, --tokens) acts as: an admin named `token`."""
        return Identity("token", Role.ADMIN, address=address)

    @property
    def anyone_can_sign_in(self) -> bool:
        return bool(self.tokens) or bool(self.accounts())
