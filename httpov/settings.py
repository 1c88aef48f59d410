"""httpov's settings, resolved once from the environment over a config file, and passed down as one object."""
from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from httpov.archive import ArchiveLimits
from httpov.errors import BadInputError, HomeUnsetError
from httpov.text import shown

#: HTTPOV_BATCH_ORDER: 'preview' hands a job's batches out coarse-to-fine over its animation
#: (httpov.plan.preview_order), 'frames' first to last.
BATCH_ORDERS = ("preview", "frames")
#: How a render node runs its render slots (Celery's pool): threads of its one process, or a process each.
RENDER_POOLS = ("threads", "prefork")

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
#: URL schemes of each Redis setting: Celery's broker takes redis:// and rediss://; job state (redis-py) a unix
#: socket too.
URL_SCHEMES = {"broker_url": ("redis", "rediss"), "state_url": ("redis", "rediss", "unix")}

#: Bounds on the work one job may ask for (Settings fields), checked at submit and on the node.
LIMITS = ("max_width", "max_height", "max_pixels", "max_frames", "max_batches", "max_scene_bytes",
          "max_scene_files", "max_scene_depth")
#: The least HTTPOV_BATCH_MAX_MEMORY_MB: povray 3.7 needs about 400 MiB of address space to start at all (measured;
#: below that it fails in odd ways, "Attempt to free NULL pointer" or an abort, on any scene).
MIN_BATCH_MEMORY_MB = 512
#: The threads of `httpov web`'s server, and how many of them live pages' event streams may hold (the rest answer
#: ordinary requests).
WEB_THREADS = 8
MAX_WEB_STREAMS = WEB_THREADS - 2
#: The environment variable naming the config file (the default is `default_config_path`).
CONFIG_ENV = "HTTPOV_CONFIG"
#: Settings that are secrets as a whole: `httpov config` shows them as ***, and Settings' repr leaves them out.
SECRETS = ("web_tokens", "token", "webhooks", "webhook_secret")
#: How a yes/no setting may be written in the environment (click's words; any case); TOML takes true and false.
_BOOLEANS = {"1": True, "yes": True, "true": True, "on": True, "t": True, "y": True,
             "0": False, "no": False, "false": False, "off": False, "f": False, "n": False}


def _base_dir(env: Mapping[str, str], xdg: str, under_home: str, what: str) -> Path:
    """$`xdg` if it is an absolute path (the XDG rule: a relative one is ignored), else $HOME/`under_home`; with
    neither, HomeUnsetError: never a shared folder such as /tmp, where another user could plant `what`."""
    for value, tail in ((env.get(xdg, ""), ""), (env.get("HOME", ""), under_home)):
        if os.path.isabs(value):
            return Path(value, tail)
    raise HomeUnsetError(f"HOME is not set (nor {xdg}): httpov has no folder for its {what}, and it never "
                         "falls back to /tmp, where another user could plant one")


def _default_data_dir(env: Mapping[str, str], what: str = "data") -> Path:
    return _base_dir(env, "XDG_DATA_HOME", ".local/share", what) / "httpov"


def _default_cache_dir(env: Mapping[str, str]) -> Path:
    return _base_dir(env, "XDG_CACHE_HOME", ".cache", "scene cache") / "httpov"


@dataclass(frozen=True)
class Settings:
    """Every knob of httpov; see README.md's "Configuration" table for the environment names."""

    broker_url: str = DEFAULT_BROKER_URL
    state_url: str = DEFAULT_BROKER_URL
    storage: str = ""
    prefix: str = "httpov"
    queue: str = "httpov"
    cache_dir: Path = field(default_factory=lambda: Path("/tmp/httpov-cache"))
    cache_max_bytes: int = 2 * 1024**3
    # MiB the cache folder's filesystem must have free for the node to take a batch (povray's frame and its
    # state file: a 4K frame needs about 100 MiB); below it the node hands batches back (httpov.worker.room)
    min_free_mb: int = 256
    # MiB a sliced frame's shared photon map may have (httpov.worker.photons): a pre-pass whose map is bigger
    # stores none and the slices shoot their own photons (POV-Ray's grenadine sample: 4 MiB)
    photon_map_mb: int = 256
    povray: str = "povray"
    # povray's idle polls (0.7 s a run, 0.25 s a frame) cut short by a preload library the node builds and checks
    # itself (httpov.worker.waits); without a C compiler, or for a povray that fails its check, povray runs as it is
    quick_waits: bool = True
    render_threads: int = 1
    lease_seconds: float = 8.0
    stop_poll_seconds: float = 0.5  # a rendering node reads its job's state this often, should a stop message be missed
    max_attempts: int = 3
    task_time_limit: int = 6 * 3600
    # a povray whose CPU time, log and output all stood still this long is killed as hung (httpov.worker.povray)
    no_progress_seconds: float = 120.0
    # a running batch saves povray's render state (and its finished frames) to storage this often, so that a batch
    # requeued after its node was lost continues from it (httpov.worker.checkpoint); 0: never
    checkpoint_seconds: float = 10.0
    # ... and not more often than keeps the time spent saving under this share of the time spent rendering
    checkpoint_share: float = 0.05
    # a node with an idle render process, when its farm has no batch waiting, splits the running slice with the most
    # rows left: the slice ends early (povray +C), a new slice renders the rest (scripts/resplit.lua)
    resplit: bool = True
    # a batch's own time limit: this many times the job's median measured seconds per frame (times its frames),
    # at least batch_time_floor seconds; before any batch of the job finished, only task_time_limit applies
    batch_time_factor: float = 20.0
    batch_time_floor: float = 600.0
    redis_ca: str | None = None
    render_processes: int = field(default_factory=lambda: default_render_processes(1))
    # a node's render slots: 'threads' of its one process (an idle slot costs a thread), or 'prefork', a process each
    # (46 MiB RSS each when idle; Celery's own time limits then apply too); Celery's `-P` cannot choose prefork
    # over a configured pool, so this is the one place to choose
    render_pool: str = "threads"
    # how a submitted job's batches are handed out (httpov.plan.BATCH_ORDERS): 'preview' coarse-to-fine over the
    # animation, so the frames done early cover all of it; 'frames' first to last
    batch_order: str = "preview"
    celery_config: str | None = None
    batch_max_bytes: int = 1024**3  # bytes one batch may write (its frames and the scene's #write together)
    batch_max_files: int = 1000  # files one batch may create
    # MiB of memory one batch's povray may use: its address space (RLIMIT_AS); the sandbox has no writable tmpfs
    batch_max_memory_mb: int = 2048
    outage_seconds: float = 120.0
    max_width: int = 16384
    max_height: int = 16384
    max_pixels: int = 64 * 1024**2  # 8192 x 8192
    max_frames: int = 100_000
    max_batches: int = 10_000
    max_scene_bytes: int = ArchiveLimits.max_total_bytes
    max_scene_files: int = ArchiveLimits.max_entries
    max_scene_depth: int = ArchiveLimits.max_depth
    keep_days: float | None = None  # finished jobs older than this are deleted by the render nodes' sweep
    # per-user limits' farm defaults, for users with no entry of their own and no `*` entry (httpov.user_limits)
    user_max_processes: int | None = None  # render processes on one user's batches at once (None: no limit)
    user_max_jobs: int | None = None  # live jobs one user may have at once (None: no limit)
    user_max_priority: int = 8  # the highest priority a user may give (9 is the admins')
    pools: str = ""  # render pools this node joins, comma-separated: it also takes batches of `submit --pool`
    # `httpov web` and `httpov web-user` (their options, when given, win over these)
    web_accounts: Path = field(default_factory=lambda: _default_data_dir(os.environ, "web accounts") / "web-accounts")
    web_token_file: Path | None = None  # bearer tokens for scripts, one a line
    web_tokens: str | None = field(default=None, repr=False)  # bearer tokens, comma or whitespace separated
    web_behind_proxy: bool = False  # trust a TLS proxy's X-Forwarded-For, -Proto and -Host
    web_sign_in_attempts: int = 5  # failed sign-ins for one user or from one address within the window
    web_sign_in_window: int = 600  # seconds the failed sign-ins are counted over
    web_builds: int = 2  # downloads (frames zip, contact sheet, video) `httpov web` builds at once
    web_uploads_per_account: int = 2  # scene uploads one account may have under way at once (429 past it)
    # live pages' event streams one `httpov web` holds open at once, each on one of its 8 threads (past it, or 0:
    # the pages poll); at most 6, so that ordinary requests keep 2 threads
    web_streams: int = 4
    # seconds a client has to send a request's headers, and a body's grace before HTTPOV_WEB_UPLOAD_MIN_RATE holds
    # (also the longest silence while a request comes in)
    web_request_seconds: float = 10.0
    web_upload_min_rate: int = 64 * 1024  # bytes per second a request's body must average (else cut off, 408)
    # job events' webhooks (httpov.webhooks): the farm-wide URLs every event is POSTed to, comma or space separated;
    # the secret each POST is signed with (HMAC-SHA256); how long a receiver that fails is retried before its event
    # is dropped; the only hosts `submit --notify` may name ('' for any)
    webhooks: str = field(default="", repr=False)  # secret: a webhook URL's path is often the receiver's key
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_retry_seconds: float = 600.0
    notify_hosts: str = ""
    # `httpov --server URL`: the CLI through a farm's web API with an account's token, no broker password
    server: str | None = None  # the URL of `httpov web` (http:// or https://)
    token: str | None = field(default=None, repr=False)  # the bearer token sent to it (HTTPOV_TOKEN)

    def __post_init__(self) -> None:
        for name in URL_SCHEMES:
            _check_url(env_name(name), name, getattr(self, name))
        for pool in self.pool_names:
            check_pool(pool, "HTTPOV_POOLS")
        if self.server is not None:
            check_server(self.server, "HTTPOV_SERVER")
        if self.batch_max_memory_mb < MIN_BATCH_MEMORY_MB:
            raise BadInputError(f"HTTPOV_BATCH_MAX_MEMORY_MB must be at least {MIN_BATCH_MEMORY_MB} (povray needs "
                                f"about 400 MiB of address space to start), got {self.batch_max_memory_mb}")
        if self.webhooks:
            try:
                check_notify(self.webhook_urls, max_urls=None)
            except BadInputError as exc:
                raise BadInputError(f"HTTPOV_WEBHOOKS: {exc}".replace("--notify ", "")) from None
        if self.render_pool not in RENDER_POOLS:
            raise BadInputError(f"HTTPOV_RENDER_POOL must be one of {', '.join(RENDER_POOLS)}, got "
                                f"{self.render_pool!r}")
        if self.batch_order not in BATCH_ORDERS:
            raise BadInputError(f"HTTPOV_BATCH_ORDER must be one of {', '.join(BATCH_ORDERS)}, got "
                                f"{self.batch_order!r}")
        if self.web_builds < 1:
            raise BadInputError(f"HTTPOV_WEB_BUILDS must be at least 1, got {self.web_builds}")
        if not 0 <= self.web_streams <= MAX_WEB_STREAMS:
            raise BadInputError(f"HTTPOV_WEB_STREAMS must be 0 to {MAX_WEB_STREAMS} (each stream holds one of the "
                                f"web server's {WEB_THREADS} threads), got {self.web_streams}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read HTTPOV_* variables over the config file (see `config_path`); missing ones take their defaults."""
        return resolve(env).settings

    @property
    def soft_time_limit(self) -> int:
        """Celery's soft time limit: a batch is stopped (povray killed) this long after it started, 30 s before
        the hard limit (HTTPOV_TASK_TIME_LIMIT) would kill its render process."""
        return max(1, self.task_time_limit - 30)

    def archive_limits(self) -> ArchiveLimits:
        """The bounds on a scene archive, unpacked, that these settings allow."""
        return ArchiveLimits(max_entries=self.max_scene_files, max_total_bytes=self.max_scene_bytes,
                             max_file_bytes=self.max_scene_bytes, max_depth=self.max_scene_depth)

    @property
    def sweep_seconds(self) -> float:
        """How often render nodes (and waiting clients) sweep for lost batches. A running batch's lease is renewed
        every lease / 4, so a lost node's batches are requeued lease - lease / 4 to lease + this after its death."""
        return max(0.5, self.lease_seconds / 8)

    @property
    def live_node_seconds(self) -> float:
        """How recently a render node must have said it is alive to count as live (live_node_window of the lease)."""
        return live_node_window(self.lease_seconds)

    @property
    def webhook_urls(self) -> list[str]:
        """HTTPOV_WEBHOOKS as a list."""
        return self.webhooks.replace(",", " ").split()

    @property
    def pool_names(self) -> list[str]:
        """The render pools of HTTPOV_POOLS."""
        return [p.strip() for p in self.pools.split(",") if p.strip()]

    def pool_queue(self, pool: str) -> str:
        """The Celery queue of a render pool: `<queue>.pool.<name>`."""
        return f"{self.queue}.pool.{pool}"

    def to_env(self) -> dict[str, str]:
        """The HTTPOV_* variables that make from_env give back these settings (a worker started with them)."""
        return {env_name(f.name): str(getattr(self, f.name)) for f in fields(self) if getattr(self, f.name) is not None}

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests, `httpov render`)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def live_node_window(lease_seconds: float) -> float:
    """Seconds within which a render node's last heartbeat (it sends one every sweep, lease / 8) makes it live:
    three leases allow for a busy host, 10 s at least. The one rule for every reader of the farm's nodes: the
    dispatcher's windows, a pool's check at submit, the job view's `pool_live`, `httpov nodes` and a blocked node
    handing a batch on. A node last seen at `now - window` or later is live (Redis' inclusive ZRANGEBYSCORE)."""
    return max(3 * lease_seconds, 10.0)


_POOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


#: A --notify URL's length, and how many one job may have.
MAX_URL = 2000
MAX_NOTIFY = 4


def check_notify(urls: list[str] | tuple[str, ...], allowed_hosts: str = "",
                 max_urls: int | None = MAX_NOTIFY) -> list[str]:
    """`submit --notify` URLs, checked: http:// or https:// with a host (the farm POSTs to them: no file:, no
    other scheme), at most MAX_NOTIFY, and with HTTPOV_NOTIFY_HOSTS set only to those hosts. BadInputError
    naming the URL otherwise."""
    if max_urls is not None and len(urls) > max_urls:
        raise BadInputError(f"at most {max_urls} --notify URLs, got {len(urls)}")
    hosts = {h.strip().lower() for h in allowed_hosts.replace(",", " ").split() if h.strip()}
    for url in urls:
        said = shown(repr(url)[:80])
        try:
            parts = urlsplit(url) if isinstance(url, str) and len(url) <= MAX_URL else None
            host = parts.hostname if parts else None
        except ValueError:
            parts, host = None, None
        if parts is None or parts.scheme.lower() not in ("http", "https") or not host:
            raise BadInputError(f"--notify {said}: give an http:// or https:// URL with a host",
                                hint="the farm POSTs each event of the job to it")
        if hosts and host.lower() not in hosts:
            raise BadInputError(f"--notify {said}: this farm sends webhooks only to "
                                f"{', '.join(sorted(hosts))} (HTTPOV_NOTIFY_HOSTS)")
    return list(urls)


def check_pool(pool: str, where: str = "--pool") -> None:
    """A render pool's name: 1-64 letters, digits, '_' or '-' (it becomes part of a queue name)."""
    if not _POOL.match(pool):
        raise BadInputError(f"{where}: a pool name is 1-64 letters, digits, '_' or '-', got {pool[:80]!r}")


def check_server(url: str, where: str = "--server") -> None:
    """The URL of a farm's `httpov web`: http:// or https:// and a host (only the scheme is said back: a URL may
    hold a password)."""
    try:
        parts = urlsplit(url) if "://" in url else None
        port_ok = parts is None or parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if parts is None or not port_ok or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise BadInputError(f"{where} must be the URL of a farm's `httpov web`, http://HOST:PORT or https://HOST",
                            hint="e.g. --server https://farm.example.com (the token goes in HTTPOV_TOKEN)")


def env_name(field_name: str) -> str:
    """The environment variable of a Settings field: HTTPOV_ and its name in capitals."""
    return f"HTTPOV_{field_name.upper()}"


#: HTTPOV_ variables that are no setting but are read by name: the config file's, and the render node kit's
#: (workers/: its environment file and install prefix). HTTPOV_TEST_* belong to the test suite.
OTHER_VARIABLES = (CONFIG_ENV, "HTTPOV_ENV_FILE", "HTTPOV_PREFIX_DIR")


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """A warning for each HTTPOV_ variable in `env` that no setting reads (a typo is otherwise ignored in
    silence), naming the closest real one: 'HTTPOV_STORGE is no httpov setting and is ignored: did you mean
    HTTPOV_STORAGE?'."""
    env = os.environ if env is None else env
    known = [env_name(f.name) for f in fields(Settings)] + list(OTHER_VARIABLES)
    said = []
    for name in sorted(env):
        if not name.startswith("HTTPOV_") or name in known or name.startswith("HTTPOV_TEST_"):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
        said.append(f"{shown(name)} is no httpov setting and is ignored"
                    + (f": did you mean {close[0]}?" if close else " (`httpov config` lists the settings)"))
    return said


def default_render_processes(threads: int) -> int:
    """4 render processes per core, fewer when each povray runs several threads: povray idles about 0.25 s a
    frame and 0.7 s at start, so more processes than cores keep the cores busy (docs/PERFORMANCE.md)."""
    return max(1, 4 * (os.cpu_count() or 1) // max(1, threads))


def default_config_path(env: Mapping[str, str] | None = None) -> Path:
    """~/.config/httpov/config.toml, or under $XDG_CONFIG_HOME (of `env`, else of the process); HomeUnsetError
    without either."""
    env = os.environ if env is None else env
    return _base_dir(env, "XDG_CONFIG_HOME", ".config", "config file") / "httpov" / "config.toml"


def config_path(env: Mapping[str, str]) -> Path | None:
    """The config file to read: $HTTPOV_CONFIG (which must exist), else the default one if it exists."""
    named = env.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise BadInputError(f"{CONFIG_ENV}={named!r}: no such file")
        return path
    path = default_config_path(env)
    return path if path.is_file() else None


def read_config(path: Path) -> dict[str, Any]:
    """The settings of a TOML config file, keys named like the Settings fields; anything else is BadInputError."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise BadInputError(f"config file {path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise BadInputError(f"config file {path}: cannot be read: {exc.strerror or exc}") from None
    known = [f.name for f in fields(Settings)]
    for key in data:
        if key not in known:
            guess = key.lower().removeprefix("httpov_") if key.lower().removeprefix("httpov_") in known else None
            guess = guess or next(iter(difflib.get_close_matches(key, known, 1)), None)
            raise BadInputError(f"config file {path}: unknown setting {key!r}"
                                + (f" (did you mean {guess!r}?)" if guess else ""),
                                hint="the keys are the settings' names in lower case, without HTTPOV_ "
                                     "(README.md, Configuration)")
    return data


class Resolved(NamedTuple):
    """Settings and where each one came from: 'default', 'environment HTTPOV_X', or the config file's path."""

    settings: Settings
    origins: dict[str, str]
    config: Path | None


def resolve(env: Mapping[str, str] | None = None) -> Resolved:
    """Each setting from the environment (HTTPOV_ and its name in capitals), else the config file, else its
    default; a bad value is BadInputError naming the variable, or the file and key, it came from."""
    env = os.environ if env is None else env
    path = config_path(env)
    config = read_config(path) if path else {}
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for f in fields(Settings):
        name = env_name(f.name)
        if env.get(name, "") != "":
            where, raw = name, env[name]
            origins[f.name] = f"environment {name}"
        elif f.name in config:
            where, raw = f"config file {path}: {f.name}", config[f.name]
            origins[f.name] = str(path)
        else:
            continue
        values[f.name] = _parse(str(f.type), raw, where, zero=f.name in ZERO_MEANS_OFF)
        if f.name in URL_SCHEMES:
            _check_url(where, f.name, values[f.name])
        if f.name == "server":
            check_server(values[f.name], where)
    derived = {"state_url": lambda: values.get("broker_url", DEFAULT_BROKER_URL),  # each only when not given
               "storage": lambda: str(_default_data_dir(env, "storage") / "storage"),
               "cache_dir": lambda: _default_cache_dir(env),
               "web_accounts": lambda: _default_data_dir(env, "web accounts") / "web-accounts",
               "render_processes": lambda: default_render_processes(values.get("render_threads", 1))}
    for name, value in derived.items():
        if name not in values:
            values[name] = value()
    origins = {f.name: origins.get(f.name, "default") for f in fields(Settings)}
    if origins["state_url"] == "default":
        origins["state_url"] = "default (the broker URL)"
    return Resolved(Settings(**values), origins, path)


#: Numeric settings whose 0 turns their feature off (every other number must be greater than 0).
ZERO_MEANS_OFF = {"checkpoint_seconds"}


def _parse(kind: str, raw: Any, where: str, zero: bool = False) -> Any:
    """A setting's value from a string (environment) or a TOML value, by the type of its Settings field; `zero`,
    0 is allowed (ZERO_MEANS_OFF)."""
    optional = kind.endswith("| None")
    kind = kind.removesuffix("| None").strip()
    if kind == "bool":
        answer = raw if isinstance(raw, bool) else _BOOLEANS.get(raw.strip().lower()) if isinstance(raw, str) else None
        if answer is None:
            raise BadInputError(f"{where} must be yes or no (1/0, true/false, on/off), got {raw!r}")
        return answer
    if kind in ("str", "Path"):
        if not isinstance(raw, str):
            raise BadInputError(f"{where} must be a string, got {raw!r}")
        return Path(raw).expanduser() if kind == "Path" else raw
    number = int if kind == "int" else float
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float)) or (number is int and isinstance(raw, float)):
        raise BadInputError(f"{where} must be {'a whole number' if number is int else 'a number'}, got {raw!r}")
    try:
        value = number(raw)
    except ValueError:
        raise BadInputError(f"{where}={raw!r} is not a number") from None
    if value < 0 or (value == 0 and not zero):
        raise BadInputError(f"{where} must be {'0 or more' if zero else 'greater than 0'}, got {raw}")
    return value if not optional or value else None


def _check_url(where: str, name: str, url: str) -> None:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme.lower() not in URL_SCHEMES[name]:  # only the scheme is shown: the URL may hold a password
        *others, last = (f"{s}://" for s in URL_SCHEMES[name])
        given = f"got {scheme + '://'!r}" if scheme else "it has no scheme"
        raise BadInputError(f"{where} must be a Redis URL starting with {', '.join(others)} or {last}; " + given)


def masked(value: object, secret: bool = False) -> str:
    """A setting as `httpov config` prints it: a `secret` one (SECRETS) as ***, the password of a URL
    (user:password@, ?password=) as ***."""
    if secret:
        return "***"
    text = str(value)
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
        netloc = parts.netloc
        if parts.password is not None:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.split(':', 1)[0]}:***@{host}"
        query = urlencode([(k, "***" if k.lower() in ("password", "secret", "token") else v)
                           for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
        return urlunsplit(parts._replace(netloc=netloc, query=query))
    except ValueError:
        return text.split("://", 1)[0] + "://***"  # unparseable: show nothing that may be a secret
