"""httpov's settings, resolved once from the environment and passed down as one object."""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TypeVar

from httpov.archive import ArchiveLimits
from httpov.errors import BadInputError

N = TypeVar("N", int, float)

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
#: URL schemes of each Redis setting: Celery's broker takes redis:// and rediss://; job state (redis-py) a unix
#: socket too.
URL_SCHEMES = {"HTTPOV_BROKER_URL": ("redis", "rediss"), "HTTPOV_STATE_URL": ("redis", "rediss", "unix")}

#: Bounds on the work one job may ask for (Settings field: environment name), checked at submit and on the node.
LIMITS = {
    "max_width": "HTTPOV_MAX_WIDTH", "max_height": "HTTPOV_MAX_HEIGHT", "max_pixels": "HTTPOV_MAX_PIXELS",
    "max_frames": "HTTPOV_MAX_FRAMES", "max_batches": "HTTPOV_MAX_BATCHES",
    "max_scene_bytes": "HTTPOV_MAX_SCENE_BYTES", "max_scene_files": "HTTPOV_MAX_SCENE_FILES",
    "max_scene_depth": "HTTPOV_MAX_SCENE_DEPTH",
}


def _default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or os.path.join(env.get("HOME", "/tmp"), ".local", "share")
    return Path(base) / "httpov"


def _default_cache_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME", "/tmp"), ".cache")
    return Path(base) / "httpov"


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
    povray: str = "povray"
    render_threads: int = 1
    lease_seconds: float = 8.0
    max_attempts: int = 3
    task_time_limit: int = 6 * 3600
    redis_ca: str | None = None
    render_processes: int = field(default_factory=lambda: default_render_processes(1))
    celery_config: str | None = None
    batch_max_bytes: int = 1024**3  # bytes one batch may write (its frames and the scene's #write together)
    batch_max_files: int = 1000  # files one batch may create
    outage_seconds: float = 120.0
    max_width: int = 16384
    max_height: int = 16384
    max_pixels: int = 64 * 1024**2  # 8192 x 8192
    max_frames: int = 100_000
    max_batches: int = 10_000
    max_scene_bytes: int = ArchiveLimits.max_total_bytes
    max_scene_files: int = ArchiveLimits.max_entries
    max_scene_depth: int = ArchiveLimits.max_depth
    pools: str = ""  # render pools this node joins, comma-separated: it also takes batches of `submit --pool`

    def __post_init__(self) -> None:
        for name, url in (("HTTPOV_BROKER_URL", self.broker_url), ("HTTPOV_STATE_URL", self.state_url)):
            scheme = url.split("://", 1)[0] if "://" in url else ""
            if scheme.lower() not in URL_SCHEMES[name]:  # only the scheme is shown: the URL may hold a password
                *others, last = (f"{s}://" for s in URL_SCHEMES[name])
                given = f"got {scheme + '://'!r}" if scheme else "it has no scheme"
                raise BadInputError(f"{name} must be a Redis URL starting with {', '.join(others)} or {last}; "
                                    + given)
        for pool in self.pool_names:
            check_pool(pool, "HTTPOV_POOLS")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read HTTPOV_* variables (missing ones take their defaults)."""
        env = os.environ if env is None else env
        broker = env.get("HTTPOV_BROKER_URL", DEFAULT_BROKER_URL)
        storage = env.get("HTTPOV_STORAGE") or str(_default_data_dir(env) / "storage")
        return cls(
            broker_url=broker,
            state_url=env.get("HTTPOV_STATE_URL", broker),
            storage=storage,
            prefix=env.get("HTTPOV_PREFIX", "httpov"),
            queue=env.get("HTTPOV_QUEUE", "httpov"),
            cache_dir=Path(env.get("HTTPOV_CACHE_DIR") or _default_cache_dir(env)),
            cache_max_bytes=_number(env, "HTTPOV_CACHE_MAX_BYTES", 2 * 1024**3, int),
            povray=env.get("HTTPOV_POVRAY", "povray"),
            render_threads=_number(env, "HTTPOV_RENDER_THREADS", 1, int),
            lease_seconds=_number(env, "HTTPOV_LEASE_SECONDS", 8.0, float),
            max_attempts=_number(env, "HTTPOV_MAX_ATTEMPTS", 3, int),
            task_time_limit=_number(env, "HTTPOV_TASK_TIME_LIMIT", 6 * 3600, int),
            redis_ca=env.get("HTTPOV_REDIS_CA") or None,
            render_processes=_number(env, "HTTPOV_RENDER_PROCESSES",
                                     default_render_processes(_number(env, "HTTPOV_RENDER_THREADS", 1, int)), int),
            celery_config=env.get("HTTPOV_CELERY_CONFIG") or None,
            batch_max_bytes=_number(env, "HTTPOV_BATCH_MAX_BYTES", 1024**3, int),
            batch_max_files=_number(env, "HTTPOV_BATCH_MAX_FILES", 1000, int),
            outage_seconds=_number(env, "HTTPOV_OUTAGE_SECONDS", 120.0, float),
            pools=env.get("HTTPOV_POOLS", ""),
            **{attr: _number(env, name, getattr(cls, attr), int) for attr, name in LIMITS.items()},
        )

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


_POOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_pool(pool: str, where: str = "--pool") -> None:
    """A render pool's name: 1-64 letters, digits, '_' or '-' (it becomes part of a queue name)."""
    if not _POOL.match(pool):
        raise BadInputError(f"{where}: a pool name is 1-64 letters, digits, '_' or '-', got {pool[:80]!r}")


def env_name(field_name: str) -> str:
    """The environment variable of a Settings field: HTTPOV_ and its name in capitals."""
    return f"HTTPOV_{field_name.upper()}"


def default_render_processes(threads: int) -> int:
    """4 render processes per core, fewer when each povray runs several threads: povray idles about 0.25 s a
    frame and 0.7 s at start, so more processes than cores keep the cores busy (docs/PERFORMANCE.md)."""
    return max(1, 4 * (os.cpu_count() or 1) // max(1, threads))


def _number(env: Mapping[str, str], name: str, default: N, kind: Callable[[str], N]) -> N:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise BadInputError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise BadInputError(f"{name} must be greater than 0, got {raw}")
    return value
