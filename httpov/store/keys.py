"""The Redis key schema: one builder per key family, the only place that spells a key of httpov's job state.

Every key is `<prefix>:<family>...` (HTTPOV_PREFIX, 'httpov' by default). The strings are those of the first
release, byte for byte, so a farm's live data stays readable; docs/ARCHITECTURE.md says for each family its type,
who writes and reads it and how long it lives. Celery's own keys (`<prefix>:kombu:...`) are httpov.broker's.
"""
from __future__ import annotations

from dataclasses import dataclass

#: The parts of a job that are keys of their own (`<prefix>:job:<id>:<part>`), with their Redis types.
JOB_PARTS = {
    "pending": "list", "window": "zset", "done": "hash", "failed": "hash", "running": "hash", "attempts": "hash",
    "requeued": "hash", "parked": "set", "held": "set", "frames": "set", "blocked": "set", "node_failures": "hash",
    "history": "list", "unseen": "hash", "checkpoints": "hash", "photons": "hash", "cuts": "hash",
}


@dataclass(frozen=True)
class Keys:
    """The keys of one farm, under `prefix`."""

    prefix: str = "httpov"

    def everything(self) -> str:
        """A SCAN pattern for every key under the prefix (Celery's included)."""
        return f"{self.prefix}:*"

    # the schema
    def schema(self) -> str:
        """String: the version of the layout this Redis holds (httpov.store.version); absent before version 2."""
        return f"{self.prefix}:schema"

    def schema_lock(self) -> str:
        """String with an expiry: held by the node or client upgrading the layout."""
        return f"{self.prefix}:schema-lock"

    # farm-wide job lists
    def jobs(self) -> str:
        """Sorted set: every published job id, scored by its creation time."""
        return f"{self.prefix}:jobs"

    def active(self) -> str:
        """Set: the published jobs that are not finished (the sweepers look only at these)."""
        return f"{self.prefix}:active"

    def dependent(self) -> str:
        """Set: the jobs that wait for other jobs (state 'waiting', submit --after) or hold batches until the other
        job's frames are done (submit --after-frames); the sweepers settle each (httpov.after) until it is released
        or failed."""
        return f"{self.prefix}:dependent"

    def stops(self) -> str:
        """Pub/sub channel: a job id, published when the job moves to a finished state (cancel, delete --force, a
        final failure), so render nodes stop its povrays at once (worker/lease.py; their poll is the fallback)."""
        return f"{self.prefix}:stops"

    # one job
    def job(self, job_id: str) -> str:
        """Hash: the job's record (state, spec, created, total, user, queue, caps, priority, povray...)."""
        return f"{self.prefix}:job:{job_id}"

    def job_part(self, job_id: str, part: str) -> str:
        """One of the job's own keys (JOB_PARTS)."""
        if part not in JOB_PARTS:
            raise ValueError(f"a job has no key {part!r}: {', '.join(JOB_PARTS)}")
        return f"{self.prefix}:job:{job_id}:{part}"

    def pending(self, job_id: str) -> str:
        """List: batches not yet sent, in the order they go."""
        return self.job_part(job_id, "pending")

    def window(self, job_id: str) -> str:
        """Sorted set: batches sent and not yet done or parked, scored by when they were (re)sent."""
        return self.job_part(job_id, "window")

    def done(self, job_id: str) -> str:
        """Hash: batch id -> its done info (JSON, httpov.store.records.DoneInfo)."""
        return self.job_part(job_id, "done")

    def failed(self, job_id: str) -> str:
        """Hash: batch id -> its last failure (JSON, httpov.store.records.FailedInfo)."""
        return self.job_part(job_id, "failed")

    def running(self, job_id: str) -> str:
        """Hash: batch id -> its running info (JSON, httpov.store.records.RunningInfo)."""
        return self.job_part(job_id, "running")

    def checkpoints(self, job_id: str) -> str:
        """Hash: batch id -> its latest checkpoint's info (JSON, httpov.store.records.CheckpointInfo), written by the
        execution that stored it while it held the batch's lease."""
        return self.job_part(job_id, "checkpoints")

    def photons(self, job_id: str) -> str:
        """Hash: frame -> SHA-256 of the photon map its pre-pass stored (paths.photon_map_key), '' when the pre-pass
        stored none (no photons shot, the scene could not be edited, the map too big); a slice loads a map only if
        the file it downloaded has that hash (httpov.worker.photons)."""
        return self.job_part(job_id, "photons")

    def attempts(self, job_id: str) -> str:
        """Hash: batch id -> how often it was started."""
        return self.job_part(job_id, "attempts")

    def requeued(self, job_id: str) -> str:
        """Hash: batch id -> how often the lease sweep requeued it."""
        return self.job_part(job_id, "requeued")

    def held(self, job_id: str) -> str:
        """Set: batches kept off the pending list until the same frames of the job named by submit --after-frames
        are done (httpov.after)."""
        return self.job_part(job_id, "held")

    def parked(self, job_id: str) -> str:
        """Set: batches set aside while the job is paused."""
        return self.job_part(job_id, "parked")

    def frames(self, job_id: str) -> str:
        """Set: frames finished (every slice stitched)."""
        return self.job_part(job_id, "frames")

    def blocked(self, job_id: str) -> str:
        """Set: render nodes kept off the job after repeated failures."""
        return self.job_part(job_id, "blocked")

    def node_failures(self, job_id: str) -> str:
        """Hash: render node -> failed attempts on the job."""
        return self.job_part(job_id, "node_failures")

    def history(self, job_id: str) -> str:
        """List: the job's history lines (JSON {'at', 'what'}), shown by `httpov status JOB`."""
        return self.job_part(job_id, "history")

    def unseen(self, job_id: str) -> str:
        """Hash with an expiry: batch id -> when (Redis's clock) the unsent sweep first found it idle in the window
        with its message nowhere (confirmed unsent at a later look, scripts/unsent.lua)."""
        return self.job_part(job_id, "unseen")

    def cuts(self, job_id: str) -> str:
        """Hash: batch id of a running slice that was re-split -> the row it now ends at (scripts/resplit.lua); the
        new slice renders the rows past it. The stitch takes each slice's delivered rows from it."""
        return self.job_part(job_id, "cuts")

    def slices(self, job_id: str, frame: int | str) -> str:
        """Set: the batch ids of a sliced frame's slices that are done."""
        return f"{self.prefix}:job:{job_id}:slices:{frame}"

    def signature(self, job_id: str, batch_id: str, digest: str) -> str:
        """Set: the render nodes on which a batch failed with one error signature."""
        return f"{self.prefix}:job:{job_id}:sig:{batch_id}:{digest}"

    def signatures(self, job_id: str) -> str:
        """A SCAN pattern for every signature set of a job."""
        return f"{self.prefix}:job:{job_id}:sig:*"

    def lease(self, job_id: str, batch_id: str) -> str:
        """String with an expiry: the token of the execution rendering a batch (or its retry's hand-off)."""
        return self.lease_prefix(job_id) + batch_id

    def lease_prefix(self, job_id: str) -> str:
        """What a job's leases start with (the transition script appends the batch id)."""
        return f"{self.prefix}:lease:{job_id}:"

    def submit_lease(self, job_id: str) -> str:
        """String with an expiry: its client is still queueing the job's batches."""
        return f"{self.prefix}:submitting:{job_id}"

    def held_seen(self) -> str:
        """Sorted set with an expiry: delivery tags of kombu's taken, unacked messages -> when (Redis's clock) the
        stranded sweep first saw each (scripts/held_since.lua); a tag leaves it when it leaves kombu's table."""
        return f"{self.prefix}:held-seen"

    def requeued_mark(self, job_id: str, batch_id: str, task_id: str) -> str:
        """String with an expiry: the lease sweep requeued the batch task `task_id` lost (its message is stale)."""
        return f"{self.prefix}:requeued:{job_id}:{batch_id}:{task_id}"

    def owner(self, key: str) -> str | None:
        """The job a key belongs to (its record, parts, leases, submit lease, requeue marks, reissue claims), or None
        for a farm-wide key."""
        if not key.startswith(f"{self.prefix}:"):
            return None
        kind, _, rest = key[len(self.prefix) + 1:].partition(":")
        if kind == "claim" and rest.startswith("reissue:"):
            rest = rest[len("reissue:"):]
        elif kind not in ("job", "lease", "submitting", "requeued"):
            return None
        return rest.split(":", 1)[0]

    # claims and frame-time histories
    def take_mark(self, call: str) -> str:
        """String with an expiry: what a render slot's take of its next message (broker.take_next) answered, under
        the take's own id, so that the take repeated after a lost reply answers the same and does nothing again."""
        return f"{self.prefix}:take:{call}"

    def claim(self, name: str) -> str:
        """String with an expiry: a one-shot claim, e.g. 'sweep:leases' or 'reissue:<job>:<batch>:<token>'."""
        return f"{self.prefix}:claim:{name}"

    def frame_history(self, history: str) -> str:
        """List: the last 8 jobs of one scene at one size (JobSpec.history), whose done batches time later jobs."""
        return f"{self.prefix}:history:{history}"

    def slice_history(self, history: str) -> str:
        """List: the last 8 sliced jobs of one scene at one size, whose done slices give later jobs' --slices auto
        the frame's cost row by row."""
        return f"{self.prefix}:slicehistory:{history}"

    # shared scenes
    def scene_refs(self, scene_key: str) -> str:
        """Set: the jobs holding a reference to a stored scene zip (or radiosity cache)."""
        return f"{self.prefix}:scene:{scene_key}"

    def scene_deleting(self, scene_key: str) -> str:
        """String with an expiry: the scene's last reference is gone and its zip is being deleted."""
        return f"{self.prefix}:scene-deleting:{scene_key}"

    def radiosity_sha256(self) -> str:
        """Hash: radiosity cache's storage key -> SHA-256 of the file the farm's own pre-pass stored there; a render
        node loads a cache only if the file it downloaded has it (a file planted under the key is refused)."""
        return f"{self.prefix}:radiosity-sha256"

    def scene_refs_since(self) -> str:
        """String: since when jobs hold scene references (older jobs are looked for by their spec)."""
        return f"{self.prefix}:scene-refs-since"

    # render nodes
    def nodes(self) -> str:
        """Sorted set: render node -> when it was last seen."""
        return f"{self.prefix}:nodes"

    def node_processes(self) -> str:
        """Hash: render node -> its render processes."""
        return f"{self.prefix}:node_processes"

    def node_pools(self) -> str:
        """Hash: render node -> its render pools, comma-separated."""
        return f"{self.prefix}:node_pools"

    def farm_processes(self) -> str:
        """Hash: the render processes of the live nodes, summed (`processes`, `pool:<name>`), with the live window and
        live node count they were summed for: fair share's reads, kept for a second (scripts/fair_share.lua)."""
        return f"{self.prefix}:farm-processes"

    def node_info(self) -> str:
        """Hash: render node -> its record (JSON: host, cores, povray and httpov versions)."""
        return f"{self.prefix}:node-info"

    def node_drain(self) -> str:
        """Hash: render node -> when it was told to drain (`httpov nodes drain`, or its own SIGTERM): it takes no new
        batch, finishes the ones it renders and exits."""
        return f"{self.prefix}:node-drain"

    def node_batches(self, node: str) -> str:
        """Sorted set with an expiry: the batches a render node finished in the last hour ('done:<at>:<nonce>')."""
        return f"{self.prefix}:node-batches:{node}"

    def node_use(self, node: str) -> str:
        """Sorted set with an expiry: a render node's processes busy, one '<minute>:<busy>' per minute (its mean over
        the minute, at its start) for the last hours (the nodes page's picture)."""
        return f"{self.prefix}:node-use:{node}"

    # metrics
    def metrics(self) -> str:
        """Hash: the farm's counters that outlive jobs (httpov.metrics): frames of batches done, povray's seconds
        (their sum, and batches per histogram bucket: records.bucket_field), failed attempts by reason
        (records.failure_field)."""
        return f"{self.prefix}:metrics"

    # per-user limits
    def user_limits(self) -> str:
        """Hash: user name (or '*', everyone without one) -> their limits (JSON, httpov.user_limits.UserLimits)."""
        return f"{self.prefix}:user-limits"

    # the web interface
    def web_session(self, sid: str) -> str:
        """String (JSON) with an idle expiry: a signed-in browser session (httpov.web.sessions)."""
        return f"{self.prefix}:web:session:{sid}"

    def web_sign_in(self, who: str) -> str:
        """Sorted set with the limit's window as expiry: failed sign-in times for one account name or address."""
        return f"{self.prefix}:web:sign-in:{who}"

    def web_token(self, digest: str) -> str:
        """Hash: an account's API token by its SHA-256 (account, label, created, used; httpov.web.tokens)."""
        return f"{self.prefix}:web:token:{digest}"

    def web_tokens(self) -> str:
        """Set: the digest of every account's API token (an admin's list)."""
        return f"{self.prefix}:web:tokens"

    def web_tokens_of(self, account: str) -> str:
        """Set: the digests of one account's API tokens."""
        return f"{self.prefix}:web:tokens:{account}"

    # the audit log
    def audit(self) -> str:
        """Stream: who did what to which job, token or account, when, from where, done or refused (httpov.audit)."""
        return f"{self.prefix}:audit"

    # job events
    def events(self) -> str:
        """Stream: job events (submitted, started, batch-failed, done, failed, cancelled, deleted...) in order, each
        written by the step that made it happen; its consumer group 'webhooks' delivers them (httpov.events)."""
        return f"{self.prefix}:events"
