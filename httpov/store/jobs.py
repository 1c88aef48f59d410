"""The JobStore: jobs, per-batch completion recorded idempotently, leases on running batches, render nodes."""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import secrets
import select
import time
from collections import defaultdict
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from httpov.errors import BrokerUnavailableError, HttpovError, JobNotFoundError
from httpov.plan import Batch, JobSpec, check_record, net_seconds
from httpov.states import FINISHED, LIVE, JobState, TransitionRefused, allowed_from
from httpov.store.keys import Keys
from httpov.store.records import (
    Batches,
    CheckpointInfo,
    DoneInfo,
    FailedInfo,
    FarmCounts,
    JobRecord,
    NodeInfo,
    RunningInfo,
    Share,
    bucket_field,
    failure_field,
)
from httpov.store.version import ensure as ensure_schema
from httpov.store.version import record as record_schema

if TYPE_CHECKING:
    from httpov.settings import Settings

T = TypeVar("T")

#: Each Redis command is tried again this many times on a dropped connection or a timeout, 0.2, 0.4 then 0.8 s
#: apart (redis-py's Retry): a blip (an idle connection closed, a failover) never reaches httpov's code. Longer
#: outages are ridden out by the commands that wait (httpov.outage, HTTPOV_OUTAGE_SECONDS).
REDIS_RETRIES = 3
REDIS_BACKOFF = ExponentialBackoff(cap=1.0, base=0.1)
#: A new connection does not tell Redis the client library's name and version (CLIENT SETINFO, redis-py 5 and
#: later): on a slow link that was one more round trip for each connection a render process opens.
_CONNECTION_PARAMETERS = inspect.signature(redis.connection.AbstractConnection.__init__).parameters \
    if hasattr(redis.connection, "AbstractConnection") else {}
_NO_CLIENT_INFO: dict[str, Any] = ({"driver_info": None} if "driver_info" in _CONNECTION_PARAMETERS
                                   else {"lib_name": None, "lib_version": None} if "lib_name" in _CONNECTION_PARAMETERS
                                   else {})


class _Refused(Exception):
    """A refused password on its way past redis-py's Retry (_Retry)."""


class _Retry(Retry):
    """redis-py's Retry, but a refused password is final: redis-py's AuthenticationError is a ConnectionError, so a
    wrong password was tried again with back-off, seconds before the user was told."""

    def call_with_retry(self, do: Callable[[], T], fail: Callable[..., Any], *args: Any, **kwargs: Any) -> T:
        def attempt() -> T:
            try:
                return do()
            except redis.AuthenticationError as exc:
                raise _Refused(exc) from exc
        try:
            return super().call_with_retry(attempt, fail, *args, **kwargs)
        except _Refused as refused:
            raise refused.args[0] from None


#: A submitting client renews its job's submit lease this often (in batches queued) and for this long.
SUBMIT_LEASE_SECONDS = 60.0
_GONE = "the submit stopped before every batch was queued (the client was interrupted or died)"
# The moves the Lua scripts make by themselves, narrowed from httpov.states.JOB_MOVES (a ValueError at import if the
# table does not allow one): a submit that stopped fails its job (start_batch, abandon); a node's first start moves
# a queued job to running; publish moves a submitting job to queued or running.
_GONE_FROM = allowed_from(JobState.FAILED, only=(JobState.SUBMITTING,))
_STARTED_FROM = allowed_from(JobState.RUNNING, only=(JobState.QUEUED,))
_PUBLISHED_FROM = allowed_from(JobState.QUEUED, only=(JobState.SUBMITTING,))
assert _PUBLISHED_FROM == allowed_from(JobState.RUNNING, only=(JobState.SUBMITTING,))
#: The Lua scripts (httpov/store/scripts/<name>.lua, each saying what its KEYS and ARGV are), read once at import.
SCRIPTS = {name: resources.files("httpov.store").joinpath(f"scripts/{name}.lua").read_text()
           for name in ("start_batch", "publish", "top_up", "park_pending", "abandon", "reclaim", "refresh",
                        "transition", "guarded", "use_scene", "drop_scene", "finish_batch", "idle_in_window", "unsent",
                        "held_since", "fair_share", "stamp", "release", "checkpoint", "resplit")}
#: How long fair share keeps the live nodes' render processes summed (scripts/fair_share.lua): every batch reads
#: them, and summing them read every live node's record (at 10,000 render processes it tripled a batch's Redis CPU).
FARM_PROCESSES_SECONDS = 1.0
#: What JobStore.heartbeat answers, with the claims won, when the node is told to drain (no claim has this name).
DRAIN = "drain"
#: How long a node's finished batches are counted (`httpov nodes`: the last hour's).
NODE_BATCHES_SECONDS = 3600.0
#: The characters of a failed batch's error kept with a node's outcome (`httpov nodes`' last error).
NODE_ERROR_CHARS = 300
NODE_USE_SECONDS = 6 * 3600.0  # how long a render node's processes busy are kept (node-use:<node>, a sample a minute)
#: How long a scene stays marked as being deleted if its deleter dies before it is done.
SCENE_DELETE_SECONDS = 60.0
#: The job events stream's length cap (approximate; httpov.events trims it by age too).
MAX_EVENTS = 100_000


class Recorded(NamedTuple):
    """What JobStore.record_batch did: `status` as finish_batch answers it; whether any job waits for others (then
    the recorder settles them: httpov.after); the job's queue and the batches a top-up asked with the record moved
    into its window (to be sent now), or None."""

    status: str
    dependents: bool = False
    sent: tuple[str, list[str]] | None = None


class JobStore:
    """All of httpov's state for jobs, under keys `<prefix>:...` of one Redis database."""

    def __init__(self, client: redis.Redis, prefix: str = "httpov") -> None:
        self.r = client
        self.p = prefix  # (Celery's list names under it are httpov.broker's)
        self.keys = Keys(prefix)
        self._start = client.register_script(SCRIPTS["start_batch"])
        self._refresh = client.register_script(SCRIPTS["refresh"])
        self._checkpoint = client.register_script(SCRIPTS["checkpoint"])
        self._transition = client.register_script(SCRIPTS["transition"])
        self._reclaim = client.register_script(SCRIPTS["reclaim"])
        self._guard = client.register_script(SCRIPTS["guarded"])
        self._publish = client.register_script(SCRIPTS["publish"])
        self._abandon = client.register_script(SCRIPTS["abandon"])
        self._use_scene = client.register_script(SCRIPTS["use_scene"])
        self._drop_scene = client.register_script(SCRIPTS["drop_scene"])
        self._top_up = client.register_script(SCRIPTS["top_up"])
        self._park_pending = client.register_script(SCRIPTS["park_pending"])
        self._finish = client.register_script(SCRIPTS["finish_batch"])
        self._idle = client.register_script(SCRIPTS["idle_in_window"])
        self._unsent = client.register_script(SCRIPTS["unsent"])
        self._held_since = client.register_script(SCRIPTS["held_since"])
        self._fair_share = client.register_script(SCRIPTS["fair_share"])
        self._stamp = client.register_script(SCRIPTS["stamp"])
        self._release = client.register_script(SCRIPTS["release"])
        self._resplit = client.register_script(SCRIPTS["resplit"])
        self._kept_listeners: list[redis.client.PubSub] = []  # subscriptions to the stops channel no batch uses now
        #: how many of those it keeps (StopListener.close): one a render slot that shares this store
        self.keep_listeners = 1
        #: per node, the record and node-use sample its last heartbeat wrote (heartbeat writes them again only when
        #: they change, or when its node was missing from the nodes zset: Redis restarted empty, or forgot it)
        self._said: dict[str, tuple[Any, ...]] = {}
        self._sampled: dict[str, str] = {}

    def load_scripts(self) -> None:
        """Load every Lua script into Redis in one round trip (a render node does at start): a script's first call
        from each render process is then one EVALSHA, not a refused one, a SCRIPT LOAD and the call again."""
        def run() -> None:
            pipe = self.r.pipeline(transaction=False)
            for text in SCRIPTS.values():
                pipe.script_load(text)
            pipe.execute()
        self._call(run)

    @classmethod
    def connect(cls, url: str, prefix: str = "httpov", ca: str | None = None) -> JobStore:
        """`ca`: CA bundle that signs a rediss:// server's certificate (redis-py verifies it by default). Commands
        are retried on connection errors and timeouts (REDIS_RETRIES): the Lua scripts and writes are idempotent,
        but for attempt and failure counters, which a retried reply lost in transit may count twice."""
        tls = {"ssl_ca_certs": ca} if ca and url.startswith("rediss://") else {}
        client = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5, health_check_interval=30,
                                      retry=_Retry(REDIS_BACKOFF, REDIS_RETRIES),
                                      retry_on_error=[redis.ConnectionError, redis.TimeoutError], **tls,
                                      **_NO_CLIENT_INFO)
        return cls(client, prefix)

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except redis.AuthenticationError as exc:
            raise BrokerUnavailableError(f"Redis refused the connection: wrong or missing password ({exc})",
                                         hint="put user:password in HTTPOV_BROKER_URL / HTTPOV_STATE_URL") from exc
        except redis.ResponseError as exc:
            if "NOAUTH" not in str(exc) and "HELLO" not in str(exc):
                raise
            raise BrokerUnavailableError("Redis asks for a password and none was given",
                                         hint="put user:password in HTTPOV_BROKER_URL / HTTPOV_STATE_URL") from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:  # BusyLoadingError too: Redis restarting
            raise BrokerUnavailableError(f"cannot reach Redis for job state: {exc}") from exc

    def upgrade(self) -> int | None:
        """Check the schema version this Redis holds and upgrade an older one (httpov.store.version); answers it
        (None for a Redis with none of httpov's keys yet). SchemaVersionError, writing nothing, for a newer one."""
        return self._call(lambda: ensure_schema(self.r, self.keys))

    def ping(self) -> None:
        """Raise BrokerUnavailableError unless Redis answers."""
        self._call(self.r.ping)

    def warm_up(self, connections: int) -> None:
        """Open `connections` connections to Redis now, each checked with a PING, and keep them in the client's pool
        (a render process as it starts: its lease keeper, its reads while povray runs and its own calls each use
        one, and on a slow link each new one costs round trips the batch would wait for)."""
        pool = self.r.connection_pool
        opened = []
        try:
            for _ in range(connections):
                connection = pool.get_connection()
                opened.append(connection)
                connection.send_command("PING")
                connection.read_response()
        except (redis.RedisError, OSError) as exc:
            raise BrokerUnavailableError(f"cannot reach Redis for job state: {exc}") from exc
        finally:
            for connection in opened:
                pool.release(connection)

    # jobs
    def create(self, spec: JobSpec, user: str = "", queue: str = "", max_processes: int = 0,
               pending: list[str] | None = None, max_nodes: int = 0, submitted_by: str = "",
               operator: bool = False, warnings: list[str] | None = None, notify: list[str] | None = None,
               after: dict[str, str] | None = None, held: list[str] | None = None) -> None:
        """Record a job in state 'submitting', every batch on its pending list (see top_up): listed nowhere until
        `publish`, and failed by the first node that meets one of its batches once its submit lease (renewed by
        `keep_submitting`) has run out. `queue`: the Celery queue its batches go to ('' for the default one);
        `max_processes`: at most this many of its batches queued or running at once (0: no limit); `max_nodes`: at
        most this many render nodes render it at once (0: no limit); `pending`: the batches to put on its pending
        list (default: all of them); `user`: its owner; `submitted_by`: who submitted it (an admin for `user`, or
        with `operator` the CLI with direct Redis access); `warnings`: what submit warned of (the ini's unknown keys),
        kept in the job's history (kind 'warning') for its page; `notify`: the job's webhook URLs; `after`: its
        dependencies as record fields (after, after_frames, after_anyway: httpov.after), which list it among the
        dependent jobs; `held`: batches kept off the pending list until the frames they wait for are done
        (httpov.after). Its 'submitted' event is recorded in the same step (httpov.events)."""
        pending = spec.batches if pending is None else pending
        created = time.time()
        def run() -> None:
            pipe = self.r.pipeline()
            pipe.hset(self.keys.job(spec.id), mapping={
                "spec": json.dumps(spec.to_dict()), "state": JobState.SUBMITTING, "created": spec.created,
                "total": len(spec.batches), "user": user, "queue": queue, "max_processes": max_processes,
                "max_nodes": max_nodes, "priority": spec.priority, "submitted_by": submitted_by,
                "operator": int(operator), "notify": json.dumps(notify or []),
            })
            pipe.xadd(self.keys.events(), {"kind": "submitted", "job": spec.id, "owner": user, "detail": "",
                                           "notify": json.dumps(notify or [])}, maxlen=MAX_EVENTS, approximate=True)
            pipe.delete(self.keys.pending(spec.id), self.keys.window(spec.id), self.keys.held(spec.id))
            if after:
                pipe.hset(self.keys.job(spec.id), mapping=after)
                pipe.sadd(self.keys.dependent(), spec.id)
            if held:
                pipe.sadd(self.keys.held(spec.id), *held)
            for start in range(0, len(pending), 1000):
                pipe.rpush(self.keys.pending(spec.id), *pending[start:start + 1000])
            pipe.delete(self.keys.history(spec.id))
            if warnings:
                pipe.rpush(self.keys.history(spec.id), *(json.dumps({"at": created, "what": text, "kind": "warning"})
                                                         for text in warnings))
            pipe.set(self.keys.submit_lease(spec.id), "1", px=int(SUBMIT_LEASE_SECONDS * 1000))
            record_schema(pipe, self.keys)  # a new farm's first job
            # whole-frame batches measure frame times for later jobs of this scene, slices its cost row by row
            history = (self.keys.slice_history if spec.slices else self.keys.frame_history)(spec.history)
            pipe.lpush(history, spec.id).ltrim(history, 0, 7)
            pipe.execute()
        self._call(run)

    def keep_submitting(self, job_id: str) -> None:
        """Renew the submit lease of a job whose batches are still being queued."""
        self._call(lambda: self.r.set(self.keys.submit_lease(job_id), "1", px=int(SUBMIT_LEASE_SECONDS * 1000)))

    def publish(self, job_id: str) -> str:
        """Every batch is queued: list the job and let the sweepers watch it; answers the state it was in."""
        return self._call(lambda: self._publish(
            keys=[self.keys.job(job_id), self.keys.jobs(), self.keys.active(), self.keys.submit_lease(job_id),
                  self.keys.events()],
            args=[job_id, _words(_PUBLISHED_FROM), _words(FINISHED), MAX_EVENTS]))

    def dependent_ids(self) -> list[str]:
        """The jobs that wait for other jobs or hold batches for their frames (httpov.after)."""
        return sorted(self._call(lambda: self.r.smembers(self.keys.dependent())))

    def waiting_on(self) -> dict[str, set[str]]:
        """Every dependent job and the jobs it waits for (its record's `after` and `after_frames`), in one round
        trip (SMEMBERS, then one pipeline of HMGETs); a job gone meanwhile waits on nothing."""
        def run() -> dict[str, set[str]]:
            ids = sorted(self.r.smembers(self.keys.dependent()))
            pipe = self.r.pipeline()
            for job_id in ids:
                pipe.hmget(self.keys.job(job_id), "after", "after_frames")
            return {job_id: {j for field in fields for j in (field or "").split(",") if j}
                    for job_id, fields in zip(ids, pipe.execute())}
        return self._call(run)

    def held(self, job_id: str) -> set[str]:
        """The batches a job keeps off its pending list until the other job's same frames are done."""
        return self._call(lambda: self.r.smembers(self.keys.held(job_id)))

    def release_held(self, job_id: str, batch_ids: list[str], whole_job: bool, last: bool) -> str:
        """Pend batches a dependent job held back, atomically (scripts/release.lua): `whole_job`, a 'waiting' job
        becomes 'queued' with `batch_ids` pending (answers the state of a job that was not waiting: left alone);
        else those of `batch_ids` still held are pended. `last`: it depends on nothing more. Answers 'ok'."""
        keys = [self.keys.job(job_id), self.keys.pending(job_id), self.keys.held(job_id), self.keys.active(),
                self.keys.dependent()]
        return self._call(lambda: self._release(keys=keys, args=["job" if whole_job else "frames",
                                                                 "1" if last else "0", job_id, *batch_ids]))

    def forget_dependent(self, job_id: str) -> None:
        """The job depends on nothing more (released, failed or gone): the sweepers stop settling it."""
        self._call(lambda: self.r.srem(self.keys.dependent(), job_id))

    def set_error(self, job_id: str, error: str) -> None:
        """Say why a job failed when no batch says it (the record's `error`)."""
        self._guarded(job_id, ["HSET", self.keys.job(job_id), "error", error])

    def abandon(self, job_id: str, reason: str, keep_seconds: int = 86400) -> str:
        """Fail a job whose submit was interrupted, so nodes drop its queued batches; its keys expire after
        `keep_seconds`. Answers 'ok', or the state of a job that got past 'submitting' (left alone)."""
        keys = [self.keys.job(job_id), self.keys.submit_lease(job_id), self.keys.events()]
        keys += [self.keys.job_part(job_id, part)
                 for part in ("done", "running", "failed", "attempts", "parked", "frames", "pending", "window",
                              "history")]
        return self._call(lambda: self._abandon(keys=keys, args=[time.time(), reason, keep_seconds,
                                                                   _words(_GONE_FROM), job_id, MAX_EVENTS]))

    def spec(self, job_id: str) -> JobSpec:
        raw = self._call(lambda: self.r.hget(self.keys.job(job_id), "spec"))
        if raw is None:
            raise _missing(job_id)
        return JobSpec.from_dict(json.loads(raw))

    def owner(self, job_id: str) -> str:
        """Whose job it is (its record's `user`; '' for a job recorded without one); JobNotFoundError if none."""
        state, user = self._call(lambda: self.r.hmget(self.keys.job(job_id), "state", "user"))
        if state is None:
            raise _missing(job_id)
        return str(user or "")

    def state(self, job_id: str) -> str:
        state = self._call(lambda: self.r.hget(self.keys.job(job_id), "state"))
        if state is None:
            raise _missing(job_id)
        return state

    def transition(self, job_id: str, new: JobState, only_from: tuple[JobState, ...] | None = None,
                   detail: str = "") -> None:
        """Move the job to state `new` if httpov.states.JOB_MOVES allows it from the state it is in (narrowed to
        `only_from`: resume moves a job to 'running' only from 'paused'); TransitionRefused, naming both states and
        changing nothing, if not. The move is recorded as the job's event (httpov.events), with `detail`."""
        mode = "finish" if new in FINISHED else "live" if new in LIVE else ""
        keys = [self.keys.job(job_id), self.keys.active(), self.keys.running(job_id), self.keys.stops()]
        keys.append(self.keys.events())
        args = [new, mode, time.time(), job_id, self.keys.lease_prefix(job_id), _words(FINISHED), MAX_EVENTS,
                detail, *allowed_from(new, only_from)]
        result = self._call(lambda: self._transition(keys=keys, args=args))
        if result == "missing":
            raise _missing(job_id)
        if result != "ok":
            raise TransitionRefused(job_id, result, new)

    def _guarded(self, job_id: str, *commands: list[Any], while_in: tuple[str, ...] = ()) -> list[Any]:
        """Run Redis commands (lists of words) at once, only if the job's record exists (JobNotFoundError if not)
        and, given `while_in`, only while the job is in one of those states (answers [] if not)."""
        words = [[str(word) for word in command] for command in commands]
        states = f" {' '.join(while_in)} " if while_in else ""
        replies = self._call(lambda: self._guard(keys=[self.keys.job(job_id)], args=[json.dumps(words), states]))
        if replies == "missing":
            raise _missing(job_id)
        return [] if replies == "skipped" else replies

    def job_ids(self, created_before: float | None = None) -> list[str]:
        """Every job (created before `created_before`), oldest first."""
        if created_before is not None:
            return self._call(lambda: self.r.zrangebyscore(self.keys.jobs(), "-inf", created_before))
        return self._call(lambda: self.r.zrange(self.keys.jobs(), 0, -1))

    def active_ids(self) -> list[str]:
        return sorted(self._call(lambda: self.r.smembers(self.keys.active())))

    # per-user limits (httpov.user_limits)
    def user_limits(self) -> dict[str, str]:
        """Every stored entry: user name (or '*') -> its JSON."""
        return self._call(lambda: self.r.hgetall(self.keys.user_limits()))

    def set_user_limits(self, name: str, entry: str | None) -> None:
        """Store a user's (or '*''s) entry; None removes it."""
        key = self.keys.user_limits()
        self._call(lambda: self.r.hdel(key, name) if entry is None else self.r.hset(key, name, entry))

    def live_jobs_of(self, user: str) -> int:
        """How many active (queued, running or paused) jobs `user` owns."""
        return sum(1 for share in self.shares(self.active_ids()).values() if share.user == user)

    # scenes and deletion
    def use_scene(self, scene_key: str, job_id: str, wait: float = SCENE_DELETE_SECONDS) -> None:
        """Take `job_id`'s reference to a scene before relying on its zip being stored (see scripts/use_scene.lua)."""
        keys = [self.keys.scene_refs(scene_key), self.keys.scene_deleting(scene_key), self.keys.scene_refs_since()]
        deadline = time.monotonic() + wait
        while not self._call(lambda: self._use_scene(keys=keys, args=[job_id, time.time()])):
            if time.monotonic() > deadline:  # the marker expires by itself: a deleter died
                raise BrokerUnavailableError(f"scene {scene_key} has been marked as being deleted for {wait:.0f} s")
            time.sleep(0.1)

    def drop_scene(self, scene_key: str, job_id: str, uses: Callable[[JobSpec], bool] | None = None) -> bool:
        """Let go of `job_id`'s reference to a shared stored object (a scene, a radiosity cache); True if no job uses
        it any more: delete it, then call `scene_deleted`. Jobs recorded before references existed are looked for
        among the listed jobs too (`uses` says whether a job uses it; by default, whether it is the job's scene)."""
        keys = [self.keys.scene_refs(scene_key), self.keys.scene_deleting(scene_key)]
        last = bool(self._call(lambda: self._drop_scene(keys=keys, args=[job_id, int(SCENE_DELETE_SECONDS * 1000)])))
        if not last:
            return False
        since = self._call(lambda: self.r.get(self.keys.scene_refs_since())) or "+inf"
        older = self._call(lambda: self.r.zrangebyscore(self.keys.jobs(), "-inf", f"({since}"))
        uses = uses or (lambda spec: spec.scene_key == scene_key)
        users = [spec.id for spec in self._specs(older) if uses(spec) and spec.id != job_id]
        if users:  # jobs recorded before references existed use it: give them references, keep the zip
            self.scene_deleted(scene_key)
            for user in users:
                self.use_scene(scene_key, user)
            return False
        return True

    def record_cache(self, key: str, sha256: str) -> None:
        """A radiosity pre-pass stored `key` with this content hash: the only content a render node will load."""
        self._call(lambda: self.r.hset(self.keys.radiosity_sha256(), key, sha256))

    def cache_sha256(self, key: str) -> str | None:
        """The content hash a pre-pass of this farm recorded for the stored radiosity cache `key`, or None."""
        return self._call(lambda: self.r.hget(self.keys.radiosity_sha256(), key))

    def record_photon_map(self, job_id: str, frame: int, sha256: str) -> None:
        """The pre-pass of the job's `frame` stored its photon map with this content hash ('' : it stored none)."""
        self._call(lambda: self.r.hset(self.keys.photons(job_id), str(frame), sha256))

    def photon_map_sha256(self, job_id: str, frame: int) -> str | None:
        """The content hash the pre-pass of the job's `frame` recorded for its photon map ('' : none), or None."""
        return self._call(lambda: self.r.hget(self.keys.photons(job_id), str(frame)))

    def forget_cache(self, key: str) -> None:
        """The radiosity cache `key` is being deleted: its hash goes first, so no submit reuses it meanwhile."""
        self._call(lambda: self.r.hdel(self.keys.radiosity_sha256(), key))

    def scene_deleted(self, scene_key: str) -> None:
        """The scene's zip is gone: submits may take references to it again (and store it anew)."""
        self._call(lambda: self.r.delete(self.keys.scene_deleting(scene_key)))

    def _specs(self, job_ids: list[str]) -> list[JobSpec]:
        def run() -> list[str | None]:
            pipe = self.r.pipeline()
            for job_id in job_ids:
                pipe.hget(self.keys.job(job_id), "spec")
            return pipe.execute()
        specs = []
        for job_id, raw in zip(job_ids, self._call(run) if job_ids else []):
            if raw:  # only records a render node would render (check_record): a forged one holds nothing
                with contextlib.suppress(ValueError, HttpovError):
                    specs.append(check_record(job_id, JobSpec.from_dict(json.loads(raw))))
        return specs

    def drop_jobs(self, job_ids: list[str], histories: dict[str, str] | None = None) -> dict[str, int]:
        """Remove every Redis key of these jobs (record, batches, slices, failure signatures, leases, submit lease,
        requeue marks, claims), their entries in the job lists and in the frame-time histories they were counted in
        (`histories`: job id -> JobSpec.history), in one transaction after one scan of the prefix; answers how many
        keys went, by job. A key goes only if it is one of these ids' own (Keys.owner), whatever their records say.
        Their scene references are dropped separately (drop_scene)."""
        ids = set(job_ids)
        if not ids:
            return {}
        def run() -> dict[str, int]:
            found, counts = [], dict.fromkeys(ids, 0)
            for key in self.r.scan_iter(match=self.keys.everything(), count=1000):
                owner = self.keys.owner(key)
                if owner in ids:
                    found.append(key)
                    counts[owner] += 1
            pipe = self.r.pipeline()  # MULTI/EXEC: a publish racing this sees the whole job or none of it
            for start in range(0, len(found), 1000):
                pipe.delete(*found[start:start + 1000])
            pipe.zrem(self.keys.jobs(), *ids)
            pipe.srem(self.keys.active(), *ids)
            for job_id, history in (histories or {}).items():
                pipe.lrem(self.keys.frame_history(history), 0, job_id)
                pipe.lrem(self.keys.slice_history(history), 0, job_id)
            pipe.execute()
            return counts
        return self._call(run)

    # batches
    def start_batch(self, job_id: str, batch_id: str, token: str, node: str, lease: float,
                    handoff: str = "", hand_back: bool = False, user_max_processes: int = 0) -> str:
        """Take the batch's lease: 'ok', or why not ('duplicate', 'busy', 'paused' (then parked), 'deferred' (the
        job's --max-processes or --max-nodes, or its owner's max processes, reached), the job's state).

        `handoff` is the lease value this task's retry may take over; with `hand_back` the lease is set to that
        value instead of `token` (a blocked node giving the batch back keeps it visible to the sweepers).
        `user_max_processes`: the farm's default per-user cap (HTTPOV_USER_MAX_PROCESSES) for owners whose limits
        (httpov.user_limits) do not set one."""
        return self._start_batch(job_id, batch_id, token, node, lease, handoff, hand_back, user_max_processes)

    def take_batch(self, job_id: str, batch_id: str, token: str, node: str, lease: float, handoff: str = "",
                   user_max_processes: int = 0, povray: str = "") -> Taken:
        """start_batch for a render node about to render the batch, in the same round trip: 'blocked' (nothing
        taken) if the node is blocked from the job; given `povray`, the job pinned to that version if it has none
        yet (as pin_povray), or 'povray:<the job's version>' (nothing taken) for another; and on 'ok' the start
        counted in the batch's attempts, and whether a checkpoint of the batch is saved (JobStore.checkpoint)."""
        reply = self._start_batch(job_id, batch_id, token, node, lease, handoff, False, user_max_processes,
                                  check_node=True, povray=povray)
        if reply.startswith("ok:"):
            attempts, _, saved = reply[3:].partition(":")
            return Taken("ok", int(attempts), saved == "checkpoint")
        return Taken(reply, 0, False)

    def _start_batch(self, job_id: str, batch_id: str, token: str, node: str, lease: float, handoff: str,
                     hand_back: bool, user_max_processes: int, check_node: bool = False, povray: str = "") -> str:
        value = handoff if hand_back else token
        info = json.dumps(RunningInfo(node=node, started=time.time(), token=value, handed_back=hand_back))
        return self._call(lambda: self._start(
            keys=[self.keys.job(job_id), self.keys.lease(job_id, batch_id), self.keys.running(job_id),
                  self.keys.done(job_id), self.keys.parked(job_id), self.keys.submit_lease(job_id),
                  self.keys.pending(job_id), self.keys.window(job_id), self.keys.user_limits(), self.keys.active(),
                  self.keys.blocked(job_id), self.keys.attempts(job_id), self.keys.events(),
                  self.keys.checkpoints(job_id)],
            args=[batch_id, token, lease, info, time.time(), handoff or token, value, _GONE, _words(_GONE_FROM),
                  _words(_STARTED_FROM), user_max_processes, self.keys.job("{job}"), self.keys.running("{job}"),
                  node if check_node else "", "1" if check_node else "0", povray, MAX_EVENTS, job_id],
        ))

    def refresh(self, job_id: str, batch_id: str, token: str, lease: float, progress: float | None = None) -> str:
        """Extend the lease; answers the job's state, or 'lost' if another task took the batch. `progress`, the share
        of the batch rendered so far (0-1), goes into its running info in the same call (`status`, the ETA)."""
        return self.refresh_many([(job_id, batch_id, token, progress)], lease)[0]

    def refresh_many(self, leases: list[tuple[str, str, str, float | None]], lease: float) -> list[str]:
        """refresh for several running batches (job, batch, token, progress) in one round trip: a render node renews
        all of its processes' leases at once (httpov.worker.renewal). Answers each one's state, in order."""
        if not leases:
            return []
        keys: list[str] = []
        args: list[Any] = [lease]
        for job_id, batch_id, token, progress in leases:
            keys += [self.keys.job(job_id), self.keys.lease(job_id, batch_id), self.keys.running(job_id)]
            args += [token, batch_id, "" if progress is None else f"{min(1.0, max(0.0, progress)):.4f}"]
        return [str(state) for state in self._call(lambda: self._refresh(keys=keys, args=args))]

    def save_checkpoint(self, job_id: str, batch_id: str, token: str, info: CheckpointInfo) -> str:
        """Name the batch's latest checkpoint, only while execution `token` holds its lease (scripts/checkpoint.lua):
        'ok', 'lost' or 'missing'."""
        return str(self._call(lambda: self._checkpoint(
            keys=[self.keys.job(job_id), self.keys.lease(job_id, batch_id), self.keys.checkpoints(job_id)],
            args=[token, batch_id, json.dumps(info)])))

    def checkpoint(self, job_id: str, batch_id: str) -> CheckpointInfo | None:
        """The batch's latest checkpoint's info, or None (none saved, or an unreadable record)."""
        raw = self._call(lambda: self.r.hget(self.keys.checkpoints(job_id), batch_id))
        try:
            info = json.loads(raw) if raw else None
        except ValueError:
            return None
        return info if isinstance(info, dict) else None  # type: ignore[return-value]

    def resplit(self, job_id: str, batch_id: str, cut: int, new_id: str, node: str, window: int) -> str:
        """Split running slice `batch_id` at row `cut`: `new_id` renders the rest (scripts/resplit.lua, atomic);
        'ok', or why not (the job has batches waiting, its `window` (httpov.dispatch.windows) is full, the slice
        finished or was cut already...)."""
        line = json.dumps({"at": time.time(), "what": f"{Batch.from_id(batch_id).label} re-split by {node}: it "
                                                      f"ends at row {cut}, {Batch.from_id(new_id).label} renders "
                                                      "the rest", "kind": "resplit"})
        return str(self._call(lambda: self._resplit(
            keys=[self.keys.job(job_id), self.keys.running(job_id), self.keys.done(job_id), self.keys.cuts(job_id),
                  self.keys.pending(job_id), self.keys.window(job_id),
                  self.keys.slices(job_id, Batch.from_id(new_id).first), self.keys.history(job_id), self.keys.stops()],
            args=[job_id, batch_id, cut, new_id, line, window])))

    def resplit_candidates(self) -> dict[str, tuple[str, dict[str, RunningInfo], dict[str, int]]]:
        """The live jobs a re-split could cut a slice of (all their batches sent: nothing pending), each with its
        queue, running batches and cuts: two round trips whatever the number of jobs (the reaper asks every sweep
        while a render process of its node idles)."""
        def run() -> dict[str, tuple[str, dict[str, RunningInfo], dict[str, int]]]:
            job_ids = sorted(self.r.smembers(self.keys.active()))
            if not job_ids:
                return {}
            pipe = self.r.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.llen(self.keys.pending(job_id))
                pipe.hget(self.keys.job(job_id), "queue")
                pipe.hgetall(self.keys.running(job_id))
                pipe.hgetall(self.keys.cuts(job_id))
            replies = pipe.execute()
            found = {}
            for n, job_id in enumerate(job_ids):
                pending, queue, running, cuts = replies[4 * n:4 * n + 4]
                if pending or not running:
                    continue
                with contextlib.suppress(ValueError, TypeError):
                    found[job_id] = (queue or "", {b: json.loads(info) for b, info in running.items()},
                                     _cut_rows(cuts))
            return found
        return self._call(run)

    def cuts(self, job_id: str) -> dict[str, int]:
        """The job's re-split slices: batch id -> the row it now ends at (one HGETALL)."""
        return _cut_rows(self._call(lambda: self.r.hgetall(self.keys.cuts(job_id))))

    def cut(self, job_id: str, batch_id: str) -> int | None:
        """The row running slice `batch_id` now ends at, if it was re-split (one HGET)."""
        raw = self._call(lambda: self.r.hget(self.keys.cuts(job_id), batch_id))
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None

    def drop_checkpoint(self, job_id: str, batch_id: str) -> None:
        """Forget the batch's checkpoint (done, or refused)."""
        self._call(lambda: self.r.hdel(self.keys.checkpoints(job_id), batch_id))

    def listen_for_stop(self, job_id: str) -> StopListener:
        """Subscribe to the stops channel (Keys.stops) for `job_id`: a job moved to a finished state is announced
        there the moment it happens. BrokerUnavailableError if Redis does not answer.
        A closed listener's subscription is kept for the next one (a render slot listens for each batch it renders,
        one after another; a store keeps `keep_listeners`, one a slot that shares it): no connection, handshake and
        SUBSCRIBE per batch. A stop announced between two listeners is read by the next one, which only looks at its
        own job's (and a stop announced after the batch's take is heard by a kept subscription: no read of the job's
        state is needed, StopListener.kept)."""
        with contextlib.suppress(IndexError):
            return StopListener(self, self._kept_listeners.pop(), job_id, kept=True)
        pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        try:
            self._call(lambda: pubsub.subscribe(self.keys.stops()))
        except BrokerUnavailableError:
            pubsub.close()
            raise
        return StopListener(self, pubsub, job_id)

    def hold_for_retry(self, job_id: str, batch_id: str, handoff: str, node: str, seconds: float) -> None:
        """Hand the lease to this task's retry for its back-off; the batch stays 'running' so that, should the
        retry message be lost with its node, the sweepers requeue the batch once the hand-off expires. Only while
        the job is live or paused: a finished job keeps no running batch (its transition cleared them)."""
        self._guarded(job_id, ["SET", self.keys.lease(job_id, batch_id), handoff, "PX", int(seconds * 1000)],
                      ["HSET", self.keys.running(job_id), batch_id, json.dumps(
                          RunningInfo(node=node, started=time.time(), token=handoff, retrying=True))],
                      while_in=(*LIVE, JobState.PAUSED))

    def finish_batch(self, job_id: str, batch_id: str, info: DoneInfo, frames: list[int], token: str,
                     node: str = "") -> str:
        """Record the batch done by execution `token` (its zip is the one `info['result']` names) and its finished
        frames, only while that execution still owns the batch (scripts/finish_batch.lua): 'done' (the job is done
        with it), 'ok', or 'lost' (another execution took the batch over, or finished it: nothing is recorded and
        this execution's zip must go). Given `node`, a recorded batch is counted as that node's (count_batch), in
        the same round trip. JobNotFoundError, writing nothing, if the job's record is gone."""
        return self.record_batch(job_id, batch_id, info, frames, token, node).status

    def record_batch(self, job_id: str, batch_id: str, info: DoneInfo, frames: list[int], token: str,
                     node: str = "", top_up: int | None = None) -> Recorded:
        """finish_batch, answering also whether any job waits for others (httpov.after) and, given `top_up` (the
        job's window, as top_up takes it), the job topped up in the same round trip (its queue and the batches the
        caller must now send; None when not asked, or the batch was not recorded)."""
        reply = self._fence(job_id, batch_id, token, info, "record", frames, node, top_up)
        if reply[0] == "missing":
            raise _missing(job_id)
        if reply[0] == "lost":
            return Recorded("lost")
        done, total, dependents = (int(n) for n in reply[1:4])
        sent = (reply[4], list(reply[5:])) if len(reply) > 4 else None
        if done >= total:
            # a batch that was running when the job was paused still counts: the last one ends the job
            try:
                self.transition(job_id, JobState.DONE)
            except TransitionRefused:  # failed, cancelled or done meanwhile
                return Recorded("ok", dependents > 0, sent)
            return Recorded("done", dependents > 0, sent)
        return Recorded("ok", dependents > 0, sent)

    def owns(self, job_id: str, batch_id: str, token: str, result: str) -> bool:
        """Whether execution `token` (its result `result`) still owns the batch, as finish_batch would judge it now."""
        reply = self._fence(job_id, batch_id, token, DoneInfo(result=result), "check", [])
        if reply[0] == "missing":
            raise _missing(job_id)
        return reply[0] != "lost"

    def _fence(self, job_id: str, batch_id: str, token: str, info: DoneInfo, mode: str, frames: list[int],
               node: str = "", top_up: int | None = None) -> list:
        keys = [self.keys.job(job_id), self.keys.lease(job_id, batch_id)]
        keys += [self.keys.job_part(job_id, part) for part in ("running", "done", "frames", "failed", "window")]
        keys += [self.keys.node_batches(node), self.keys.metrics(), self.keys.pending(job_id), self.keys.dependent()]
        now = time.time()
        entry = f"done:{now}:{secrets.token_hex(4)}" if node else ""
        seconds = float(info.get("seconds", 0.0))
        args = [batch_id, token, json.dumps(info), info.get("result", ""), _words(FINISHED), mode, entry, now,
                NODE_BATCHES_SECONDS, seconds, bucket_field(seconds),
                int(info.get("bytes", 0)), "" if top_up is None else top_up, *frames]
        return self._call(lambda: self._finish(keys=keys, args=args))

    def done(self, job_id: str) -> dict[str, DoneInfo]:
        """The done records of every done batch (one HGETALL: not the rest of the job's batches)."""
        raw = self._call(lambda: self.r.hgetall(self.keys.done(job_id)))
        return {k: json.loads(v) for k, v in raw.items()}

    def done_infos(self, job_id: str, batch_ids: list[str]) -> dict[str, DoneInfo | None]:
        """The done records of these batches (None for one not done), in one HMGET."""
        raw = self._call(lambda: self.r.hmget(self.keys.done(job_id), batch_ids)) if batch_ids else []
        return {b: (json.loads(v) if v else None) for b, v in zip(batch_ids, raw)}

    def wait_for_storage(self, job_id: str, batch_id: str, handoff: str, node: str, seconds: float,
                         reason: str) -> None:
        """The farm's storage failed the batch: say so on the job's record (`waiting`, shown by status and the job
        page until a batch is stored again) and hold the batch for its task's retry, as hold_for_retry does. No
        failure is recorded: storage is the farm's, neither the batch's nor the node's."""
        self._guarded(job_id, ["HSET", self.keys.job(job_id), "waiting", f"waiting for storage: {reason}"],
                      ["SET", self.keys.lease(job_id, batch_id), handoff, "PX", int(seconds * 1000)],
                      ["HSET", self.keys.running(job_id), batch_id, json.dumps(
                          RunningInfo(node=node, started=time.time(), token=handoff, retrying=True))],
                      while_in=(*LIVE, JobState.PAUSED))

    def slice_done(self, job_id: str, frame: int, batch_id: str) -> int:
        """Record one slice of `frame` done; answers how many distinct slices of it are done."""
        key = self.keys.slices(job_id, frame)
        return int(self._guarded(job_id, ["SADD", key, batch_id], ["SCARD", key])[1])

    def fail_batch(self, job_id: str, batch_id: str, error: str, lines: list[str], final: bool, node: str,
                   hangs: int = 0, reason: str = "render") -> None:
        """Record a failed attempt; a final failure fails the job (its other batches are then skipped). `hangs`:
        the times the batch hung so far, kept with it (RenderNode._hung tries a batch that hung once more).
        `reason`: its category (records.FAILURE_REASONS), counted in the farm's metrics in the same step."""
        failure = FailedInfo(error=error, lines=lines[-20:], node=node, final=final, at=time.time())
        if hangs:
            failure["hangs"] = hangs
        owner, notify = self._call(lambda: self.r.hmget(self.keys.job(job_id), "user", "notify"))
        detail = f"batch {batch_id}: {error}"[:NODE_ERROR_CHARS]
        self._guarded(job_id, ["HSET", self.keys.failed(job_id), batch_id, json.dumps(failure)],
                      ["HDEL", self.keys.running(job_id), batch_id], ["DEL", self.keys.lease(job_id, batch_id)],
                      ["XADD", self.keys.events(), "MAXLEN", "~", MAX_EVENTS, "*", "kind", "batch-failed",
                       "job", job_id, "owner", owner or "", "detail", detail, "notify", notify or "[]"],
                      ["HINCRBY", self.keys.metrics(), failure_field(reason), 1])
        if final:
            with contextlib.suppress(TransitionRefused):  # finished meanwhile
                self.transition(job_id, JobState.FAILED, detail=detail)

    def failure(self, job_id: str, batch_id: str) -> FailedInfo | None:
        """The batch's last failure, if it has one (it is forgotten once the batch is done)."""
        raw = self._call(lambda: self.r.hget(self.keys.failed(job_id), batch_id))
        return json.loads(raw) if raw else None

    def done_sample(self, job_id: str, sample: int = 64) -> dict[str, dict[str, Any]]:
        """Up to `sample` of the job's done batch records, picked at random (bounded work on a big job)."""
        flat = self._call(lambda: self.r.hrandfield(self.keys.done(job_id), sample, withvalues=True)) or []
        return {batch: json.loads(value) for batch, value in zip(flat[0::2], flat[1::2])}

    def record_failure(self, job_id: str, batch_id: str, node: str, signature: str,
                       block_after: int) -> tuple[int, bool]:
        """Count a failed attempt of `node` on the job: answers (distinct nodes on which this batch failed with
        this signature, whether the node is now blocked from the job)."""
        sig = hashlib.sha1(signature.encode()).hexdigest()[:12]
        key = self.keys.signature(job_id, batch_id, sig)
        _, nodes, count = self._guarded(job_id, ["SADD", key, node], ["SCARD", key],
                                        ["HINCRBY", self.keys.node_failures(job_id), node, 1])
        blocked = int(count) >= block_after
        if blocked:
            self._guarded(job_id, ["SADD", self.keys.blocked(job_id), node])
        return int(nodes), blocked

    def unpin_povray(self, job_id: str) -> None:
        """Let the next node to start one of the job's batches choose its povray version again."""
        self._guarded(job_id, ["HDEL", self.keys.job(job_id), "povray"])

    def set_priority(self, job_id: str, priority: int) -> JobSpec:
        """Record a live or paused job's new priority (0-9) in its spec; answers the spec as it is now. JobStateError
        for a finished job (its batches are no longer queued)."""
        from httpov.errors import BadInputError, JobStateError

        if type(priority) is not int or not 0 <= priority <= 9:
            raise BadInputError(f"priority {priority!r} is not 0 (lowest) to 9 (highest)")
        spec = self.spec(job_id)
        spec.priority = priority
        record = ["HSET", self.keys.job(job_id), "spec", json.dumps(spec.to_dict()), "priority", priority]
        if not self._guarded(job_id, record, while_in=(*LIVE, JobState.PAUSED)):
            raise JobStateError(f"job {job_id} is {self.state(job_id)}: only a queued, running or paused job's "
                                "priority changes")
        return spec

    def pin_povray(self, job_id: str, version: str) -> str | None:
        """The povray version the job is rendered with: the first node's to ask (`version`) from then on. None
        for a job that is not live (start_batch then says what became of it)."""
        replies = self._guarded(job_id, ["HSETNX", self.keys.job(job_id), "povray", version],
                                ["HGET", self.keys.job(job_id), "povray"], while_in=LIVE)
        return str(replies[1]) if replies else None

    def blocked(self, job_id: str) -> set[str]:
        """Render nodes kept off this job because they kept failing its batches."""
        return set(self._call(lambda: self.r.smembers(self.keys.blocked(job_id))))

    def heartbeat(self, node: str, processes: int = 0, pools: list[str] | None = None,
                  info: dict[str, Any] | None = None, busy: tuple[float, float] | None = None,
                  claims: dict[str, float] | None = None) -> set[str]:
        """A render node says it is alive (every lease sweep), how many render processes it runs, the render
        pools it takes batches of, and its record (host, cores, povray and httpov versions: `httpov nodes`);
        `busy`: (a minute's start, its processes busy on average so far), that minute's one sample of node-use.
        `claims`: claims to try (name -> seconds, as `claim`) in the same round trip; answers those won, and DRAIN
        if the node is told to drain (`drain_node`), read in the same round trip too. (Every node tries the sweeps'
        claims every period: one round trip each was half of what an idle node sent Redis.)
        The record (processes, pools, info) and the node-use sample are written when they differ from what this
        store last wrote for the node: a node's heartbeat each second was a dozen writes of the same values, most of
        what an idle farm cost Redis. Should the node be missing from the nodes zset (Redis restarted empty, or the
        node was forgotten), they are written again at once."""
        said = (processes, None if pools is None else ",".join(pools), None if info is None else json.dumps(info))
        sample = "" if busy is None else f"{float(busy[0]):.0f}:{busy[1]:.2f}"

        def records(pipe: Any, everything: bool) -> None:
            if busy is not None and (everything or self._sampled.get(node) != sample):
                key, minute = self.keys.node_use(node), float(busy[0])
                pipe.zremrangebyscore(key, minute, minute)  # the minute's earlier sample: replaced
                pipe.zadd(key, {sample: minute})
                pipe.zremrangebyscore(key, "-inf", time.time() - NODE_USE_SECONDS)
                pipe.expire(key, int(NODE_USE_SECONDS) + 60)
            if everything or self._said.get(node) != said:
                record_schema(pipe, self.keys)  # a new farm's first node
                if processes:
                    pipe.hset(self.keys.node_processes(), node, processes)
                if said[1] is not None:
                    pipe.hset(self.keys.node_pools(), node, said[1])
                if said[2] is not None:
                    pipe.hset(self.keys.node_info(), node, said[2])

        def run() -> set[str]:
            skipped = self._said.get(node) == said or (busy is not None and self._sampled.get(node) == sample)
            pipe = self.r.pipeline()
            pipe.zadd(self.keys.nodes(), {node: time.time()})
            records(pipe, everything=False)
            pipe.hexists(self.keys.node_drain(), node)
            names = list(claims or {})
            for name in names:
                pipe.set(self.keys.claim(name), "1", nx=True, px=int((claims or {})[name] * 1000))
            replies = pipe.execute()
            if replies[0] and skipped:  # the node was not listed: what this store wrote of it before may be gone
                again = self.r.pipeline()
                records(again, everything=True)
                again.execute()
            self._said[node] = said
            if busy is not None:
                self._sampled[node] = sample
            told = replies[len(replies) - len(names) - 1]
            return {name for name, won in zip(names, replies[len(replies) - len(names):]) if won} | (
                {DRAIN} if told else set())
        return self._call(run)

    def nodes(self) -> tuple[dict[str, float], dict[str, NodeInfo]]:
        """Every render node that ever said it is alive: when it was last seen, and its record."""
        def run() -> tuple[list[tuple[str, float]], dict[str, str]]:
            pipe = self.r.pipeline(transaction=False)
            pipe.zrange(self.keys.nodes(), 0, -1, withscores=True)
            pipe.hgetall(self.keys.node_info())
            seen, info = pipe.execute()
            return seen, info
        seen, info = self._call(run)
        return dict(seen), {node: json.loads(raw) for node, raw in info.items()}

    def drain_node(self, node: str) -> None:
        """Tell a render node to drain: its sweep sees the mark within a sweep period, it takes no new batch,
        finishes those it renders and exits (httpov.worker.reaper)."""
        self._call(lambda: self.r.hsetnx(self.keys.node_drain(), node, time.time()))

    def draining(self) -> dict[str, float]:
        """Render nodes told to drain that have not stopped yet -> when they were told."""
        return {node: float(at) for node, at in self._call(lambda: self.r.hgetall(self.keys.node_drain())).items()}

    def node_started(self, node: str) -> None:
        """A render node starts: a drain mark left by its last run (killed before it stopped cleanly) is stale."""
        self._call(lambda: self.r.hdel(self.keys.node_drain(), node))

    def node_stopped(self, node: str, info: dict[str, Any]) -> None:
        """A render node stopped cleanly (drained, or stopped by its service manager): its drain mark goes, and its
        record says when it stopped (`httpov nodes`: 'stopped', not 'lost'), until it starts again."""
        self._said.pop(node, None)  # a heartbeat after this one writes the record again
        def run() -> None:
            pipe = self.r.pipeline()
            pipe.hdel(self.keys.node_drain(), node)
            pipe.hset(self.keys.node_info(), node, json.dumps({**info, "stopped": time.time()}))
            pipe.execute()
        self._call(run)

    def forget_nodes(self, not_seen_for: float) -> list[str]:
        """Drop the records of render nodes not seen for `not_seen_for` seconds (the sweep does)."""
        def run() -> list[str]:
            gone = self.r.zrangebyscore(self.keys.nodes(), "-inf", time.time() - not_seen_for)
            if gone:
                pipe = self.r.pipeline()
                pipe.zrem(self.keys.nodes(), *gone)
                pipe.hdel(self.keys.node_info(), *gone)
                pipe.hdel(self.keys.node_processes(), *gone)
                pipe.hdel(self.keys.node_pools(), *gone)
                pipe.hdel(self.keys.node_drain(), *gone)
                pipe.delete(*(self.keys.node_batches(node) for node in gone))
                pipe.delete(*(self.keys.node_use(node) for node in gone))
                pipe.execute()
            return gone
        return self._call(run)

    def farm_counts(self) -> FarmCounts:
        """What the farm's metrics show (httpov.metrics), in two round trips whatever the number of jobs: the job
        lists, counters and nodes, then each job's state, queue and stored bytes and each active job's batch counts."""
        def run() -> FarmCounts:
            pipe = self.r.pipeline(transaction=False)
            pipe.zrange(self.keys.jobs(), 0, -1)
            pipe.smembers(self.keys.active())
            pipe.hgetall(self.keys.metrics())
            pipe.zrange(self.keys.nodes(), 0, -1, withscores=True)
            ids, active, counters, nodes = pipe.execute()
            live = sorted(active)
            pipe = self.r.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(self.keys.job(job_id), "state", "queue", "stored_bytes")
            for job_id in live:
                pipe.hget(self.keys.job(job_id), "queue")
                pipe.llen(self.keys.pending(job_id))
                pipe.zcard(self.keys.window(job_id))
                pipe.hlen(self.keys.running(job_id))
            replies = pipe.execute() if ids or live else []
            records, counts = replies[:len(ids)], replies[len(ids):]
            return FarmCounts(
                jobs=[(state, queue or "", int(stored or 0)) for state, queue, stored in records if state],
                # a started batch stays in the window until it ends (the window bounds the batches out): queued are
                # those of the window not running
                batches=[(counts[i] or "", int(counts[i + 1]), max(0, int(counts[i + 2]) - int(counts[i + 3])),
                          int(counts[i + 3])) for i in range(0, len(counts), 4)],
                counters=counters, nodes=dict(nodes))
        return self._call(run)

    def count_batch(self, node: str, outcome: str, window: float = NODE_BATCHES_SECONDS, error: str = "") -> None:
        """Note that `node` finished a batch ('failed'; 'hung' besides 'failed'; finish_batch counts 'done') now;
        kept for `window` seconds (`httpov nodes`), with why it failed (`error`, its first line, cut at 300)."""
        key, now = self.keys.node_batches(node), time.time()
        why = error.strip().split("\n", 1)[0][:NODE_ERROR_CHARS] if error.strip() else ""
        def run() -> None:
            pipe = self.r.pipeline(transaction=False)
            pipe.zadd(key, {f"{outcome}:{now}:{secrets.token_hex(4)}" + (f":{why}" if why else ""): now})
            pipe.zremrangebyscore(key, "-inf", now - window)
            pipe.expire(key, int(window) + 60)
            pipe.execute()
        self._call(run)

    def node_batches(self, nodes: list[str], window: float = 3600.0) -> dict[str, dict[str, Any]]:
        """Batches each node finished in the last `window` seconds: {'done': n, 'failed': n, 'hung': n} (a hung
        batch also counts as failed), and 'last_error': why its latest failed batch failed ('' if none said)."""
        def run() -> list[list[str]]:
            pipe = self.r.pipeline(transaction=False)
            for node in nodes:
                pipe.zrangebyscore(self.keys.node_batches(node), time.time() - window, "+inf")
            return pipe.execute()
        counts = {}
        for node, events in zip(nodes, self._call(run) if nodes else []):
            kinds = [event.split(":", 1)[0] for event in events]
            errors = [event.split(":", 3)[3] for event in events
                      if event.startswith("failed:") and event.count(":") >= 3]
            counts[node] = {"done": kinds.count("done"), "failed": kinds.count("failed"), "hung": kinds.count("hung"),
                            "last_error": errors[-1] if errors else ""}  # events come oldest first
        return counts

    def node_use(self, since: float) -> tuple[dict[str, list[tuple[float, float]]], dict[str, int]]:
        """Each render node seen since `since`: its processes busy a minute (minute's start, mean busy) since then,
        oldest first, and its render processes (as it said at heartbeat)."""
        def run() -> tuple[list[str], list[Any], list[Any]]:
            nodes = self.r.zrangebyscore(self.keys.nodes(), since, "+inf")
            if not nodes:
                return [], [], []
            pipe = self.r.pipeline(transaction=False)
            for node in nodes:
                pipe.zrangebyscore(self.keys.node_use(node), since - 60, "+inf")
            samples = pipe.execute()
            return nodes, samples, self.r.hmget(self.keys.node_processes(), nodes)
        nodes, samples, processes = self._call(run)
        use = {node: [(float(m.split(":")[0]), float(m.split(":")[1])) for m in found]
               for node, found in zip(nodes, samples)}
        return use, {node: int(n or 0) for node, n in zip(nodes, processes)}

    def live_pools(self, within: float) -> set[str]:
        """The render pools of the render nodes seen in the last `within` seconds."""
        return set(self.render_processes(within)[1])

    def render_processes(self, within: float) -> tuple[int, dict[str, int]]:
        """Render processes of the render nodes seen in the last `within` seconds (as they said at heartbeat): all
        of them, and those of each render pool's nodes (every pool of a live node is listed)."""
        def run() -> tuple[list[str], list[str]]:
            nodes = self.r.zrangebyscore(self.keys.nodes(), time.time() - within, "+inf")
            if not nodes:
                return [], []
            pipe = self.r.pipeline(transaction=False)
            pipe.hmget(self.keys.node_processes(), nodes)
            pipe.hmget(self.keys.node_pools(), nodes)
            counts, pools = pipe.execute()
            return counts, pools
        return _processes(*self._call(run))

    def shares(self, job_ids: list[str]) -> dict[str, Share]:
        """What fair share needs of each live job (see Share); jobs gone are left out."""
        def run() -> list[Any]:
            pipe = self.r.pipeline()
            for job_id in job_ids:
                pipe.hmget(self.keys.job(job_id), "user", "priority", "created", "max_processes", "queue")
            return pipe.execute()
        out: dict[str, Share] = {}
        for job_id, (user, priority, created, cap, queue) in zip(job_ids, self._call(run)):
            if created is not None:  # (a record from before it held its priority shares at priority 0)
                out[job_id] = Share(user or "", int(priority or 0), float(created), int(cap or 0), queue or "")
        return out

    def top_up(self, job_id: str, limit: int) -> tuple[str, list[str]]:
        """Move batches of a live job from its pending list into its window, up to `limit` (or its --max-processes)
        queued or running at once; answers the job's queue ('' for the default) and the batches to send now."""
        reply = self._call(lambda: self._top_up(
            keys=[self.keys.job(job_id), self.keys.pending(job_id), self.keys.window(job_id), self.keys.done(job_id)],
            args=[limit]))
        return (reply[0], list(reply[1:])) if reply else ("", [])

    def pend(self, job_id: str, batch_ids: list[str], front: bool = True, replace: bool = False) -> None:
        """Put batches on the job's pending list (at the front, in order), to be sent by the next top-up; with
        `replace`, they become the whole list and the window is emptied (`retry`: older messages are stale)."""
        pending, window = self.keys.pending(job_id), self.keys.window(job_id)
        commands: list[list[Any]] = [["DEL", pending, window]] if replace else []
        chunks = [batch_ids[i:i + 1000] for i in range(0, len(batch_ids), 1000)]  # Lua's unpack has a limit
        if front and not replace:  # the last chunk first, each reversed: the list starts with batch_ids in order
            commands += [["LPUSH", pending, *reversed(chunk)] for chunk in reversed(chunks)]
        else:
            commands += [["RPUSH", pending, *chunk] for chunk in chunks]
        if commands:
            self._guarded(job_id, *commands)

    def window_size(self, job_id: str) -> int:
        """Batches of the job sent and not yet done or parked (queued or running)."""
        return int(self._call(lambda: self.r.zcard(self.keys.window(job_id))))

    def unsend(self, job_id: str, batch_ids: list[str]) -> None:
        """Batches whose messages were taken off the queue, the last queued first (sweep.take_queued): out of the
        window and back to the front of the pending list in their order, sent again by a later top-up."""
        if batch_ids:
            self._guarded(job_id, ["ZREM", self.keys.window(job_id), *batch_ids],
                          ["LPUSH", self.keys.pending(job_id), *batch_ids])

    def idle_in_window(self, job_id: str, min_age: float) -> list[str]:
        """Batches in the job's window for `min_age` seconds or more by Redis's clock that are neither running, done
        nor parked (scripts/idle_in_window.lua)."""
        keys = [self.keys.window(job_id), self.keys.running(job_id), self.keys.done(job_id), self.keys.parked(job_id)]
        return list(self._call(lambda: self._idle(keys=keys, args=[min_age])))

    def unsent(self, job_id: str, seen: dict[str, bool], confirm: float, forget: float) -> list[str]:
        """Of the job's idle batches, whether each one's message was `seen` (queued or held by a worker): those
        still idle now and out of sight at two looks at least `confirm` seconds apart by Redis's clock, stamped as
        sent now (scripts/unsent.lua). A first look older than `forget` seconds counts as a first look again."""
        if not seen:
            return []
        keys = [self.keys.window(job_id), self.keys.running(job_id), self.keys.done(job_id),
                self.keys.parked(job_id), self.keys.unseen(job_id)]
        args: list[Any] = [confirm, forget]
        for batch_id, found in seen.items():
            args += [batch_id, "1" if found else "0"]
        return list(self._call(lambda: self._unsent(keys=keys, args=args)))

    def held_since(self, unacked_index: str, min_age: float) -> list[str]:
        """Delivery tags of messages held in kombu's unacked table (its index: `unacked_index`) for `min_age`
        seconds or more by Redis's clock, counted from when a sweep first saw each (scripts/held_since.lua)."""
        return list(self._call(lambda: self._held_since(keys=[unacked_index, self.keys.held_seen()],
                                                        args=[min_age, max(10 * min_age, 60.0)])))

    def fair_share(self, also: str | None, within: float) -> tuple[dict[str, Share], tuple[int, dict[str, int]],
                                                                     dict[str, str]]:
        """What fair share reads, in one round trip (scripts/fair_share.lua): the shares of the active jobs (and of
        `also`, not yet listed) as `shares` answers them, the render processes as `render_processes` does (their
        sums kept for FARM_PROCESSES_SECONDS while as many nodes are live: a node that joins or is lost counts at
        once, a node's changed processes within that), and the per-user limits as `user_limits` does."""
        keys = [self.keys.active(), self.keys.nodes(), self.keys.user_limits(), self.keys.node_processes(),
                self.keys.node_pools(), self.keys.farm_processes()]
        ids, fields, total, pools, limits = self._call(lambda: self._fair_share(
            keys=keys, args=[time.time() - within, self.keys.job("{job}"), also or "",
                             int(FARM_PROCESSES_SECONDS * 1000), repr(float(within))]))
        shares: dict[str, Share] = {}
        for n, job_id in enumerate(ids):
            user, priority, created, cap, queue = fields[5 * n:5 * n + 5]
            if created:
                shares[job_id] = Share(user or "", int(priority or 0), float(created), int(cap or 0), queue or "")
        entries = dict(zip(limits[::2], limits[1::2]))
        return shares, (int(total or 0), {pool: int(n) for pool, n in zip(pools[::2], pools[1::2])}), entries

    def queue_of(self, job_id: str) -> str:
        """The Celery queue a job's batches go to ('' for the default one)."""
        return self._call(lambda: self.r.hget(self.keys.job(job_id), "queue")) or ""

    def live_nodes(self, within: float) -> set[str]:
        """Render nodes seen in the last `within` seconds."""
        return set(self._call(lambda: self.r.zrangebyscore(self.keys.nodes(), time.time() - within, "+inf")))

    def release(self, job_id: str, batch_id: str) -> None:
        """Forget that the batch is running (cancelled, or handed back to the queue)."""
        def run() -> None:
            pipe = self.r.pipeline()
            pipe.hdel(self.keys.running(job_id), batch_id)
            pipe.delete(self.keys.lease(job_id, batch_id))
            pipe.execute()
        self._call(run)

    def reclaim(self, job_id: str, batch_id: str) -> bool:
        """Forget a lost batch's running entry unless a task took its lease meanwhile; True if forgotten."""
        return bool(self._call(lambda: self._reclaim(
            keys=[self.keys.lease(job_id, batch_id), self.keys.running(job_id)], args=[batch_id])))

    def reset_failures(self, job_id: str, batch_ids: list[str]) -> None:
        """Forget failures, attempt counts and the blocklist before batches are rendered again (`httpov retry`)."""
        def run() -> None:
            sig_keys = list(self.r.scan_iter(match=self.keys.signatures(job_id), count=1000))
            pipe = self.r.pipeline()
            if batch_ids:
                pipe.hdel(self.keys.failed(job_id), *batch_ids)
                pipe.hdel(self.keys.attempts(job_id), *batch_ids)
            pipe.delete(self.keys.blocked(job_id), self.keys.node_failures(job_id), *sig_keys)
            pipe.execute()
        self._call(run)

    def render_again(self, job_id: str, batch_ids: list[str], frames: list[int], sliced: bool,
                     freed: int = 0) -> None:
        """Forget that these batches and frames are done (`httpov retry --frames`), so that they render again and
        the job is done once they have; a sliced frame forgets its done slices, to be stitched anew. `freed`: the
        bytes of their results, deleted by the caller (taken off the job's `stored_bytes`, the metrics')."""
        self._guarded(job_id, *([["HDEL", self.keys.done(job_id), *batch_ids]] if batch_ids else []),
                      *([["HINCRBY", self.keys.job(job_id), "stored_bytes", -freed]] if freed else []),
                      ["SREM", self.keys.frames(job_id), *frames],
                      *([["DEL", *(self.keys.slices(job_id, f) for f in frames)]] if sliced else []))

    def note(self, job_id: str, text: str, kind: str | None = None, since: float | None = None) -> None:
        """Add a line to the job's history (shown by `httpov status JOB`); `kind` 'hang' marks a hung batch, 'pause',
        'resume' and 'retry' (with `since`, when the job had finished) the time its elapsed time leaves out."""
        line: dict[str, Any] = {"at": time.time(), "what": text, **({"kind": kind} if kind else {}),
                                **({"since": since} if since is not None else {})}
        self._guarded(job_id, ["RPUSH", self.keys.history(job_id), json.dumps(line)])

    def attempts(self, job_id: str, batch_id: str) -> int:
        """How often the batch has been started."""
        return int(self._call(lambda: self.r.hget(self.keys.attempts(job_id), batch_id)) or 0)

    def add_attempt(self, job_id: str, batch_id: str, by: int = 1) -> int:
        """Count a start of the batch (`by` -1: give back one that was no attempt of its own, the node's fault or
        the storage's); answers the count."""
        return int(self._guarded(job_id, ["HINCRBY", self.keys.attempts(job_id), batch_id, by])[0])

    def park(self, job_id: str, batch_id: str) -> None:
        """Keep a batch of a paused job aside until resume (out of its window: it is no longer queued)."""
        self._guarded(job_id, ["SADD", self.keys.parked(job_id), batch_id],
                      ["ZREM", self.keys.window(job_id), batch_id])

    def park_pending(self, job_id: str) -> int:
        """A paused job's batches not yet sent join its parked ones (resume sends them all); answers how many."""
        return int(self._call(lambda: self._park_pending(
            keys=[self.keys.job(job_id), self.keys.pending(job_id), self.keys.parked(job_id)])))

    def unpark(self, job_id: str) -> list[str]:
        def run() -> list[str]:
            pipe = self.r.pipeline()
            pipe.smembers(self.keys.parked(job_id))
            pipe.delete(self.keys.parked(job_id))
            return sorted(pipe.execute()[0])
        return self._call(run)

    def running(self, job_id: str) -> dict[str, RunningInfo]:
        raw = self._call(lambda: self.r.hgetall(self.keys.running(job_id)))
        return {batch: json.loads(info) for batch, info in raw.items()}

    def lost_batches(self, job_id: str) -> dict[str, RunningInfo]:
        """Batches marked running whose lease has expired (their render node is gone), with their running info."""
        running = self.running(job_id)
        if not running:
            return {}
        leases = self._call(lambda: self.r.mget([self.keys.lease(job_id, b) for b in running]))
        return {batch: info for (batch, info), holder in zip(running.items(), leases) if holder is None}

    def stranded_fates(self, messages: list[tuple[str, str, str, float]]) -> list[str]:
        """What becomes of each (job id, batch id, task id, taken at) message that a worker took and never acked (it
        died), read in one round trip: 'requeue' it (nothing else will render the batch), 'park' it (its job is
        paused), 'drop' it (its job is finished or gone, or was retried since it was taken; the batch is done or
        parked; or the lease sweep already requeued this task's batch), or 'keep' it (the batch is leased or
        running, maybe under this very message)."""
        def run() -> list[str]:
            pipe = self.r.pipeline()
            for job_id, batch_id, task_id, _ in messages:
                pipe.hmget(self.keys.job(job_id), "state", "reopened")
                pipe.hexists(self.keys.done(job_id), batch_id)
                pipe.exists(self.keys.requeued_mark(job_id, batch_id, task_id))
                pipe.sismember(self.keys.parked(job_id), batch_id)
                pipe.exists(self.keys.lease(job_id, batch_id))
                pipe.hexists(self.keys.running(job_id), batch_id)
            replies = pipe.execute()
            fates = []
            for i, (*_, taken) in enumerate(messages):
                record, done, requeued, parked, leased, running = replies[6 * i:6 * i + 6]
                fates.append(_fate(record, done, requeued, parked, leased, running, taken))
            return fates
        return self._call(run) if messages else []

    def mark_requeued(self, job_id: str, batch_id: str, task_id: str, seconds: float) -> None:
        """The lease sweep is requeueing the batch that task `task_id` lost: its old message is not stranded."""
        self._call(lambda: self.r.set(self.keys.requeued_mark(job_id, batch_id, task_id), "1", px=int(seconds * 1000)))

    def count_requeue(self, job_id: str, batch_id: str) -> None:
        """One more requeue of a batch whose render node was lost (shown as `requeued`)."""
        self._guarded(job_id, ["HINCRBY", self.keys.requeued(job_id), batch_id, 1])

    def claim(self, name: str, seconds: float) -> bool:
        """A cluster-wide one-shot claim (e.g. 'reissue this batch once'): True for exactly one caller."""
        return bool(self._call(lambda: self.r.set(self.keys.claim(name), "1", nx=True, px=int(seconds * 1000))))

    def batches(self, job_id: str) -> Batches:
        """done / failed / running / parked / attempts / requeued of every batch that has any."""
        def run() -> Batches:
            pipe = self.r.pipeline()
            self._queue_batches(pipe, job_id)
            return _batches(pipe.execute())
        return self._call(run)

    def _queue_batches(self, pipe: redis.client.Pipeline, job_id: str) -> None:
        """The reads `_batches` turns into a job's Batches, added to `pipe`."""
        for part in ("done", "failed", "running", "attempts", "requeued"):
            pipe.hgetall(self.keys.job_part(job_id, part))
        pipe.smembers(self.keys.parked(job_id))
        pipe.smembers(self.keys.frames(job_id))
        pipe.smembers(self.keys.blocked(job_id))
        pipe.lrange(self.keys.history(job_id), 0, -1)

    def stamps(self, job_ids: list[str], ended: frozenset[str] = frozenset()) -> str:
        """A digest that changes whenever the farm's job list or what a view of one of `job_ids` shows changes (a
        live page's cheap check, httpov.web.live): one command (stamp.lua), O(1) reads a job, never its spec or its
        done batches. Jobs in `ended` (done, failed or cancelled when last read) are checked by their record alone:
        only a retry, a priority or a deletion changes them. Time alone (an ETA, a stall) does not change it."""
        fields = [name for name in JobRecord.__annotations__ if name != "spec"]
        keys = [self.keys.jobs()]
        for job_id in job_ids:
            keys += [self.keys.job(job_id), *(self.keys.job_part(job_id, part) for part in STAMPED),
                     self.keys.parked(job_id), self.keys.frames(job_id), self.keys.blocked(job_id),
                     self.keys.history(job_id)]
        args = [len(fields), *("1" if job_id in ended else "0" for job_id in job_ids), *fields]
        return str(self._call(lambda: self._stamp(keys=keys, args=args)))

    def record(self, job_id: str) -> JobRecord:
        raw = self._call(lambda: self.r.hgetall(self.keys.job(job_id)))
        if not raw:
            raise _missing(job_id)
        return cast(JobRecord, raw)

    def snapshot(self, job_id: str) -> tuple[JobRecord, JobSpec, Batches]:
        """The job's record, spec and batches, read at once (one transaction: one round trip; status views are built
        from these)."""
        def run() -> list[Any]:
            pipe = self.r.pipeline()
            pipe.hgetall(self.keys.job(job_id))
            self._queue_batches(pipe, job_id)
            return pipe.execute()
        record, *parts = self._call(run)
        if not record:
            raise _missing(job_id)
        return cast(JobRecord, record), JobSpec.from_dict(json.loads(record["spec"])), _batches(parts)

    def snapshots(self, job_ids: list[str]) -> dict[str, tuple[JobRecord, JobSpec, Batches]]:
        """snapshot of each of `job_ids` in one round trip (`httpov status`, the jobs page); a job deleted
        meanwhile is left out."""
        def run() -> list[Any]:
            pipe = self.r.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.hgetall(self.keys.job(job_id))
                self._queue_batches(pipe, job_id)
            return pipe.execute()
        replies = self._call(run) if job_ids else []
        found: dict[str, tuple[JobRecord, JobSpec, Batches]] = {}
        for n, job_id in enumerate(job_ids):
            record, *parts = replies[n * (1 + _BATCH_READS):(n + 1) * (1 + _BATCH_READS)]
            if record:
                found[job_id] = (cast(JobRecord, record), JobSpec.from_dict(json.loads(record["spec"])),
                                 _batches(parts))
        return found

    def slice_times(self, history: str, keep: int = 4, sample: int = 512) -> list[tuple[str, float]]:
        """(batch id, seconds net of povray's start: plan.net_seconds) of done slices of the last `keep` sliced jobs
        filed under `history` (one scene at one size; at most `sample` slices each, a frame has at most a few dozen):
        what plan.slice_costs reads a frame's cost row by row from. A slice that was re-split (its job's cuts) is
        given as the rows it delivered, which its seconds rendered, not the rows its id names."""
        key = self.keys.slice_history(history)

        def run() -> list[tuple[str, float]]:
            earlier = self.r.lrange(key, 0, keep - 1)
            if not earlier:
                return []
            pipe = self.r.pipeline()
            for other in earlier:
                pipe.hrandfield(self.keys.done(other), sample, withvalues=True)
                pipe.hgetall(self.keys.cuts(other))
            replies = pipe.execute()
            found = []
            for records, raw in zip(replies[::2], replies[1::2]):
                cuts = _cut_rows(raw)
                for batch_id, value in zip((records or [])[::2], (records or [])[1::2]):
                    with contextlib.suppress(ValueError, TypeError, AttributeError, HttpovError):
                        found.append((Batch.from_id(batch_id).ending_at(cuts.get(batch_id)).id,
                                      net_seconds(json.loads(value))))
            return found
        return self._call(run)

    def frame_times(self, history: str, keep: int = 8, sample: int = 64) -> tuple[float, int, int]:
        """Measured (seconds of povray net of its start: plan.net_seconds, frames, batches) summed over done batches
        of the last `keep` jobs filed under `history` (one scene at one size, see JobSpec.history; at most `sample`
        batches each)."""
        key = self.keys.frame_history(history)

        def run() -> tuple[float, int, int]:
            seconds, frames, batches = 0.0, 0, 0
            earlier = self.r.lrange(key, 0, keep - 1)
            if earlier:
                pipe = self.r.pipeline()
                for other in earlier:
                    pipe.hrandfield(self.keys.done(other), sample, withvalues=True)
                for records in pipe.execute():
                    for value in (records or [])[1::2]:
                        info = json.loads(value)
                        seconds += net_seconds(info)
                        frames += int(info.get("frames", 0))
                        batches += 1
            return seconds, frames, batches
        return self._call(run)


def _cut_rows(raw: dict[Any, Any] | None) -> dict[str, int]:
    """A job's cuts hash as Redis answers it (Keys.cuts: batch id -> the row it now ends at), its entries that hold
    no row number left out."""
    out = {}
    for key, value in (raw or {}).items():
        with contextlib.suppress(ValueError, TypeError):
            out[key.decode() if isinstance(key, bytes) else key] = int(value)
    return out


#: The job's hashes stamp.lua counts (after its record), and the one it reads whole: its running batches.
STAMPED = ("done", "failed", "attempts", "requeued", "running")
#: How many replies JobStore._queue_batches adds to a pipeline.
_BATCH_READS = 9


def _batches(replies: list[Any]) -> Batches:
    """A job's Batches from the replies of JobStore._queue_batches's reads."""
    done, failed, running, attempts, requeued, parked, frames, blocked, history = replies
    return {
        "done": {k: json.loads(v) for k, v in done.items()},
        "failed": {k: json.loads(v) for k, v in failed.items()},
        "running": {k: json.loads(v) for k, v in running.items()},
        "attempts": {k: int(v) for k, v in attempts.items()},
        "requeued": {k: int(v) for k, v in requeued.items()},
        "parked": sorted(parked),
        "frames": sorted(int(f) for f in frames),
        "blocked": sorted(blocked),
        "history": [json.loads(line) for line in history],
    }


class Taken(NamedTuple):
    """JobStore.take_batch's answer: its status ('ok' when the batch is this execution's), the batch's attempts so
    far (this one included; 0 unless 'ok'), and whether a checkpoint of the batch is saved."""
    status: str
    attempt: int
    checkpoint: bool


#: What StopListener._next answers when its wait was interrupted.
_INTERRUPTED = object()


class StopListener:
    """A subscription to the stops channel for one job (JobStore.listen_for_stop); close it when done."""

    def __init__(self, store: JobStore, pubsub: redis.client.PubSub, job_id: str, kept: bool = False) -> None:
        self._store, self._pubsub, self._job_id = store, pubsub, job_id
        #: subscribed before this listener was made (an earlier batch's subscription, kept): any stop announced since
        #: then, this batch's take included, is waiting in it; a new one may have missed one announced before it
        self.kept = kept
        self._lost = self._closed = False

    def wait(self, timeout: float, interrupt: int | None = None) -> bool:
        """Wait up to `timeout` seconds for the job's stop: True the moment it is announced, False if it was not, or
        at once when the file descriptor `interrupt` becomes readable (its batch ended: the keeper then hands the
        subscription on to the slot's next batch now, not a wait later).
        BrokerUnavailableError if the subscription is lost (messages may have been missed meanwhile)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self._next(left, interrupt)
            except BrokerUnavailableError:
                self._lost = True
                raise
            if message is _INTERRUPTED:
                return False
            if message is not None and message.get("data") == self._job_id:
                return True
        return False

    def _next(self, timeout: float, interrupt: int | None) -> Any:
        """The next message within `timeout` seconds, None if none came (or one that is not a message: a
        subscription's confirmation), or _INTERRUPTED."""
        connection = self._pubsub.connection
        sock = getattr(connection, "_sock", None)  # redis-py's socket; None before get_message (re)connects
        if interrupt is None or sock is None:
            return self._store._call(lambda: self._pubsub.get_message(timeout=timeout))
        message = self._store._call(lambda: self._pubsub.get_message(timeout=0))  # what was read already first
        if message is not None or self._store._call(lambda: connection.can_read(timeout=0)):
            return message
        sock = getattr(connection, "_sock", None)
        if sock is None or sock.fileno() < 0:  # closed meanwhile (Redis away): get_message connects again, or fails
            return self._store._call(lambda: self._pubsub.get_message(timeout=timeout))
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        poller.register(interrupt, select.POLLIN)
        if any(ready == interrupt for ready, _ in poller.poll(timeout * 1000)):
            return _INTERRUPTED
        return None

    def close(self) -> None:
        """Done listening: the subscription is kept for the store's next listener, unless it was lost."""
        if self._closed:
            return
        self._closed = True
        kept = self._store._kept_listeners
        if not self._lost and self._pubsub.subscribed and len(kept) < self._store.keep_listeners:
            kept.append(self._pubsub)
            return
        with contextlib.suppress(redis.RedisError, OSError):
            self._pubsub.close()


def _processes(counts: list[Any], listed: list[Any]) -> tuple[int, dict[str, int]]:
    """The render processes of every live node and of each pool's, from their HMGET replies (render_processes)."""
    by_pool: dict[str, int] = defaultdict(int)
    for count, pools in zip(counts, listed):
        for pool in (pools or "").split(","):
            if pool:
                by_pool[pool] += int(count or 0)
    return sum(int(c) for c in counts if c), dict(by_pool)


def _fate(record: list[str | None], done: int, requeued: int, parked: int, leased: int, running: int,
          taken: float) -> str:
    """JobStore.stranded_fates for one message, from what Redis answered about its job and batch."""
    state, reopened = record
    if state is None or state in FINISHED or taken < float(reopened or 0) or done or requeued or parked:
        return "drop"
    if leased or running:  # a running entry without a lease is the lease sweep's to requeue
        return "keep"
    return "park" if state == JobState.PAUSED else "requeue"


def _words(states: tuple[str, ...]) -> str:
    """States as the Lua scripts look them up: ' done failed cancelled '."""
    return f" {' '.join(states)} "


def open_store(settings: Settings) -> JobStore:
    """The JobStore the settings name: their state URL and key prefix, and the CA of a private-CA rediss:// server.
    Everything that reads or writes job state opens it here, so no caller can forget a setting."""
    store = JobStore.connect(settings.state_url, settings.prefix, settings.redis_ca)
    store.upgrade()
    return store


def _missing(job_id: str) -> JobNotFoundError:
    return JobNotFoundError(f"no job with id {job_id!r}", hint="`httpov status` lists the jobs")
