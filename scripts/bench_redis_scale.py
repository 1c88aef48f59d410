"""Benchmark: how far one Redis carries a farm: Redis CPU and commands per batch and per render process (#30 item 4).

A private redis-server (never the shared one) is driven by simulated render processes that speak httpov's real
protocol through the real code: JobStore and its Lua scripts, dispatch.enqueue's kombu messages, dispatch.sweep.
Many simulated processes are a few driver threads, each with its own Redis connection and a schedule of what its
processes do and when, so the traffic per simulated process is what a real one sends:

- a batch: the consumer's BRPOP over the queue's priority lists and kombu's unacked entry (MULTI ZADD HSET EXEC,
  as httpov.broker.QoS writes it), the job's window (dispatch.job_window: the fair-share script), the job's spec
  (once per job and process), take_batch (start_batch.lua), the stop subscription (a SUBSCRIBE at the process's
  first batch, on one connection per driver thread: a render process keeps it from batch to batch) and the lease
  keeper's read of the job's state after subscribing (--before: at every batch; now only on a new subscription),
  the done sample for the hang limit (until the process holds a full one, then once a minute per job, as
  RenderNode._done_sample), then the lease renewed every lease / 4 while it "renders": by its node, one refresh.lua
  call for all of the node's rendering processes (--before: by each process, one call each; with --poll yes also
  the job's state every HTTPOV_STOP_POLL_SECONDS, as render processes did before they relied on the stop
  subscription), then record_batch (finish_batch.lua, with the top-up), dispatch.enqueue of the batches it moved,
  and the ack (MULTI ZREM HDEL EXEC);
- a render node (--per-node processes): every sweep period what worker/reaper.py does (dispatch.sweep with its
  heartbeat, which reads the drain mark and tries the sweep:nodes claim; --before: each a round trip of its own)
  and, every 5 s, the webhooks deliverer's claim;
- an idle node: its consumer's BRPOP, once a second (kombu's brpop_timeout) when the queue is empty.

Phases, each measured by INFO cpu (used_cpu_sys + used_cpu_user of redis-server) and INFO commandstats, before
and after:

- submit: jobs of --batches batches each created and published (store.create, publish; the client's path);
- flow: --flow-processes processes doing batches back to back (--render 0, no sweeps): Redis CPU per batch;
- hold: N processes, each holding a running batch (renewals and state reads) on N / --per-node nodes that sweep
  (measured over a whole lease, the stranded sweep's period, as the farm-wide sweeps alone are);
- idle: N processes with nothing to render: their nodes' sweeps and consumers' BRPOPs.

This 2-core machine bounds the driver, not Redis: when the driver falls behind the wanted rate, the costs per
operation measured are scaled to the wanted rate (both are printed). The work the farm does once a sweep period
whatever its size (the lease sweep over every running batch, the top-ups; done by whichever node wins each claim) is
measured apart, one node sweeping alone over the same farm, and counted once (it was counted once per driven process,
N / --sample times over). The capacity of one Redis core is then extrapolated from the measured costs: batches/s =
(1 - the farm-wide sweeps - N x CPU per running process-second) / CPU per batch.

    python scripts/bench_redis_scale.py [--processes 100,1000,10000] [--seconds 10] [--repeat 2]
"""
from __future__ import annotations

import argparse
import base64
import heapq
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from httpov.broker import QueueLayout, render_message  # noqa: E402
from httpov.celery import make_app  # noqa: E402
from httpov.dispatch import enqueue, job_window, sweep, top_up  # noqa: E402
from httpov.local_farm import embedded_redis  # noqa: E402
from httpov.plan import Batch, JobSpec  # noqa: E402
from httpov.settings import Settings  # noqa: E402
from httpov.store import JobStore  # noqa: E402
from httpov.store.records import DoneInfo  # noqa: E402

PREFIX = "bench"
QUEUE = "bench"
POVRAY = "3.7.0.10"
#: The webhooks deliverer's claim, renewed (or tried, on a standby) every CLAIM_SECONDS / 3 (httpov.webhooks).
WEBHOOK_CLAIM_EVERY = 5.0
#: kombu's Redis transport: a consumer with nothing to take waits in one BRPOP this long (brpop_timeout).
BRPOP_TIMEOUT = 1.0


@dataclass
class Proc:
    """One simulated render process."""

    name: str
    node: str
    specs: set[str] = field(default_factory=set)  # jobs whose spec it has read
    job: str = ""
    batch: str = ""
    token: str = ""
    tag: str = ""
    window: int | None = None
    began: float = 0.0
    rendering: bool = False
    subscribed: bool = False  # its stops subscription (made at its first batch, kept)
    samples: dict[str, float] = field(default_factory=dict)  # job -> when it read a full done sample


class Driver(threading.Thread):
    """A driver thread: its simulated processes' and nodes' schedule, run against Redis as fast as it can."""

    def __init__(self, url: str, settings: Settings, procs: list[Proc], nodes: list[str], render: float | None,
                 sweeps: bool, idle_nodes: bool, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.settings, self.procs, self.nodes, self.render, self.sweeps = settings, procs, nodes, render, sweeps
        self.idle_nodes, self.stop = idle_nodes, stop
        self.store = JobStore(redis.Redis.from_url(url, decode_responses=True), PREFIX)
        self.app = make_app(settings)
        self.layout = QueueLayout.of(self.app)
        self.lists = self.layout.lists(QUEUE)
        self.pubsub = self.store.r.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe("bench-warm")  # the connection opened before the measure
        self.done: Counter[str] = Counter()
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.late = 0.0
        self._specs: dict[str, JobSpec] = {}
        self.busy: Counter[str] = Counter(p.node for p in procs if p.rendering)  # processes rendering, by node
        self.poll = True  # the lease keeper reads the job's state every stop_poll_seconds while rendering
        self.per_node = 8
        self.before = False  # the render processes and nodes of the release before node renewal (--before)
        self.by_node: dict[str, list[Proc]] = {}
        for proc in procs:
            self.by_node.setdefault(proc.node, []).append(proc)

    def at(self, when: float, what: str, who: Any) -> None:
        self.seq += 1
        heapq.heappush(self.events, (when, self.seq, what, who))

    def run(self) -> None:
        now = time.monotonic()
        sweep_every = self.settings.sweep_seconds
        lease = self.settings.lease_seconds
        for n, proc in enumerate(self.procs):
            spread = n / max(1, len(self.procs))
            if proc.rendering:  # set up running (hold): its lease keeper's schedule
                if self.before:
                    self.at(now + spread * lease / 4, "renew", proc)
                if self.poll:
                    self.at(now + spread * self.settings.stop_poll_seconds, "poll", proc)
            elif not self.idle_nodes:
                self.at(now + spread * 0.5, "take", proc)
        for n, node in enumerate(self.nodes):
            spread = n / max(1, len(self.nodes))
            if self.sweeps:
                self.at(now + spread * sweep_every, "sweep", node)
                self.at(now + spread * WEBHOOK_CLAIM_EVERY, "webhooks", node)
            if not self.before and not self.idle_nodes:
                self.at(now + spread * lease / 4, "renew_node", node)
        while not self.stop.is_set() and self.events:
            when, _, what, who = self.events[0]
            now = time.monotonic()
            if when > now:
                self.stop.wait(min(when - now, 0.05))
                continue
            heapq.heappop(self.events)
            self.late = max(self.late, now - when)
            getattr(self, f"_{what}")(who, now)
            self.done[what] += 1
        self.pubsub.close()

    # what a render process does
    def _take(self, proc: Proc, now: float) -> None:
        popped = self.store.r.execute_command("BRPOP", *self.lists, "0.01")
        if not popped:
            self.at(now + 0.05, "take", proc)  # a real consumer waits inside its BRPOP
            self.done["empty"] += 1
            return
        key, raw = popped
        message = render_message(raw)
        assert message is not None, raw
        payload = json.loads(raw)
        proc.tag = payload["properties"]["delivery_tag"]
        info = payload["properties"]["delivery_info"]
        # kombu's unacked entry, as httpov.broker.QoS.append writes it
        self.store.r.pipeline().zadd(self.layout.unacked_index, {proc.tag: time.time()}).hset(
            self.layout.unacked, proc.tag, json.dumps([payload, info["exchange"], info["routing_key"]])).execute()
        proc.job, proc.batch = message.job_id, message.batch_id
        proc.window = job_window(self.store, self.settings.lease_seconds, proc.job)  # tasks.py's reader thread
        pin = ""
        if proc.job not in proc.specs:
            self.store.spec(proc.job)
            proc.specs.add(proc.job)
            pin = POVRAY
        proc.token = f"{message.task_id}/{self.seq:08x}"
        status, *_ = self.store.take_batch(proc.job, proc.batch, proc.token, proc.node, self.settings.lease_seconds,
                                          f"retry:{message.task_id}", povray=pin)
        if status != "ok":
            self.done[f"take:{status}"] += 1
            self._ack(proc)
            self.at(now, "take", proc)
            return
        fresh = not proc.subscribed
        if fresh:  # the lease keeper's subscription, made at the process's first batch and kept (StopListener)
            self.pubsub.subscribe(self.store.keys.stops())
            proc.subscribed = True
        if self.before or fresh:
            self.store.state(proc.job)  # the keeper's look after subscribing (LeaseKeeper._look)
        sampled = proc.samples.get(proc.job)
        if sampled is None or now - sampled >= 60.0:  # RenderNode._done_sample (SAMPLE_SECONDS)
            if len(self.store.done_sample(proc.job)) >= 64:
                proc.samples[proc.job] = now
        proc.began, proc.rendering = now, True
        self.busy[proc.node] += 1
        if self.render is None or self.render > 0:
            if self.before:
                self.at(now + self.settings.lease_seconds / 4, "renew", proc)
            if self.poll:
                self.at(now + self.settings.stop_poll_seconds, "poll", proc)
            if self.render is not None:
                self.at(now + self.render, "finish", proc)
        else:
            self._finish(proc, now)
            self.done["finish"] += 1

    def _renew(self, proc: Proc, now: float) -> None:
        if proc.rendering:
            self.store.refresh(proc.job, proc.batch, proc.token, self.settings.lease_seconds)
            self.at(now + self.settings.lease_seconds / 4, "renew", proc)

    def _renew_node(self, node: str, now: float) -> None:
        """The node's renewer (httpov.worker.renewal): its rendering processes' leases in one call."""
        running = [(p.job, p.batch, p.token, None) for p in self.by_node.get(node, []) if p.rendering]
        if running:
            self.store.refresh_many(running, self.settings.lease_seconds)
        self.at(now + self.settings.lease_seconds / 4, "renew_node", node)

    def _poll(self, proc: Proc, now: float) -> None:
        if proc.rendering:
            self.store.state(proc.job)
            self.at(now + self.settings.stop_poll_seconds, "poll", proc)

    def _finish(self, proc: Proc, now: float) -> None:
        proc.rendering = False
        self.busy[proc.node] -= 1
        info = DoneInfo(node=proc.node, seconds=0.01, frames=1, finished=time.time(), started=time.time(), attempt=1,
                        povray=POVRAY, httpov="bench", result=proc.token[-8:], bytes=1000)
        frames = list(Batch.from_id(proc.batch).frames)
        recorded = self.store.record_batch(proc.job, proc.batch, info, frames, proc.token, node=proc.node,
                                           top_up=proc.window)
        if recorded.sent and recorded.sent[1]:
            own, batch_ids = recorded.sent
            enqueue(self.app, self._spec(proc.job), batch_ids, own or QUEUE)
        self._ack(proc)
        self.at(now, "take", proc)

    def _spec(self, job_id: str) -> JobSpec:
        if job_id not in self._specs:  # the node's spec cache (RenderNode.spec)
            self._specs[job_id] = self.store.spec(job_id)
        return self._specs[job_id]

    def _ack(self, proc: Proc) -> None:
        self.store.r.pipeline().zrem(self.layout.unacked_index, proc.tag).hdel(self.layout.unacked, proc.tag).execute()

    # what a render node does
    def _sweep(self, node: str, now: float) -> None:
        s = self.settings
        busy = self.busy[node]
        if self.before:  # its drain check, dispatch.sweep, then the sweep:nodes claim: three round trips
            self.store.draining()
            sweep(self.app, self.store, QUEUE, s.lease_seconds, s.max_attempts, s.sweep_seconds, node, self.per_node,
                  [], {"host": "bench", "processes": self.per_node}, busy=(now - now % 60, float(busy)))
            if self.store.claim("sweep:nodes", 60.0):
                self.store.forget_nodes(86400.0)
        else:  # both in the heartbeat's round trip
            sweep(self.app, self.store, QUEUE, s.lease_seconds, s.max_attempts, s.sweep_seconds, node, self.per_node,
                  [], {"host": "bench", "processes": self.per_node}, busy=(now - now % 60, float(busy)),
                  on_drain=lambda: None)
        self.at(now + s.sweep_seconds, "sweep", node)

    def _webhooks(self, node: str, now: float) -> None:
        self.store.claim("webhooks", 15.0)
        self.at(now + WEBHOOK_CLAIM_EVERY, "webhooks", node)



class Consumers(threading.Thread):
    """Each idle node's consumer: one BRPOP of BRPOP_TIMEOUT seconds after another on its own connection, as kombu's
    Redis transport waits for a message (asyncio: thousands of nodes in one thread)."""

    def __init__(self, url: str, lists: list[str], nodes: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.lists, self.nodes, self.stop = url, lists, nodes, stop
        self.done: Counter[str] = Counter()
        self.late = 0.0

    def run(self) -> None:
        import asyncio

        import redis.asyncio as aredis

        async def consume(r: aredis.Redis, n: int) -> None:
            await asyncio.sleep(BRPOP_TIMEOUT * n / self.nodes)
            while not self.stop.is_set():
                await r.brpop(self.lists, timeout=BRPOP_TIMEOUT)
                self.done["consume"] += 1

        async def main() -> None:
            r = aredis.Redis.from_url(self.url, max_connections=self.nodes + 10)
            await asyncio.gather(*(consume(r, n) for n in range(self.nodes)))
            await r.aclose()
        asyncio.run(main())


def redis_counts(r: redis.Redis) -> tuple[Counter[str], float]:
    """Commands run so far by name (those inside Lua scripts too) and redis-server's CPU seconds."""
    stats = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in r.info("commandstats").items()})
    cpu = r.info("cpu")
    return stats, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


@dataclass
class Measure:
    seconds: float
    cpu: float  # redis-server CPU seconds
    commands: Counter[str]
    done: Counter[str]
    late: float

    def per(self, n: float) -> tuple[float, float]:
        """(Redis CPU microseconds, commands) per one of `n` things done."""
        return 1e6 * self.cpu / n, sum(self.commands.values()) / n


def measured(r: redis.Redis, drivers: list[Any], seconds: float, warm: float = 1.0,
             ready: Any = None) -> Measure:
    """Run the drivers for `warm` seconds (and until `ready()`), then measure `seconds`."""
    for d in drivers:
        d.start()
    time.sleep(warm)
    deadline = time.monotonic() + 300
    while ready is not None and not ready() and time.monotonic() < deadline:
        time.sleep(0.2)
    before, cpu0 = redis_counts(r)
    done0 = sum((Counter(d.done) for d in drivers), Counter())
    began = time.monotonic()
    time.sleep(seconds)
    after, cpu1 = redis_counts(r)
    done1 = sum((Counter(d.done) for d in drivers), Counter())
    elapsed = time.monotonic() - began
    for d in drivers:
        d.stop.set()
    for d in drivers:
        d.join()
    commands = after - before
    commands.pop("info", None)
    return Measure(elapsed, cpu1 - cpu0, commands, done1 - done0, max(d.late for d in drivers))


def make_job(store: JobStore, job_id: str, batches: int) -> JobSpec:
    ids = [Batch(n, n).id for n in range(1, batches + 1)]
    spec = JobSpec(id=job_id, name="bench", scene_key="scenes/bench.zip", root="", pov="scene.pov", options={},
                   initial=1, final=batches, first=1, last=batches, width=32, height=24, count=1,
                   created=time.time(), batches=ids)
    store.create(spec, user="bench")
    store.publish(job_id)
    return spec


class Farm:
    """One private redis-server and what the phases share."""

    def __init__(self, url: str, lease: float, threads: int) -> None:
        self.url, self.threads = url, threads
        self.settings = Settings(broker_url=url, state_url=url, prefix=PREFIX, queue=QUEUE, lease_seconds=lease)
        self.r = redis.Redis.from_url(url, decode_responses=True)
        self.store = JobStore(self.r, PREFIX)
        self.store.load_scripts()
        self.jobs = 0
        self.before = False  # --before

    def reset(self) -> None:
        """A clean private Redis for the next phase (FLUSHDB on the benchmark's own redis-server only)."""
        self.r.flushdb()
        self.store.load_scripts()

    def drivers(self, processes: int, per_node: int, render: float | None, sweeps: bool,
                idle_nodes: bool = False, farm_size: int = 0) -> tuple[list[Any], threading.Event]:
        """Driver threads for `processes` simulated render processes, on nodes of `per_node` each; `farm_size`: the
        render processes the farm's nodes say they run (their heartbeats), if more."""
        nodes = [f"node{n:05d}@bench" for n in range(max(1, processes // per_node))]
        procs = [Proc(f"p{n}", nodes[(n // per_node) % len(nodes)]) for n in range(processes)]
        for n in range(len(nodes), max(1, farm_size // per_node)):  # the rest of the farm, busy elsewhere
            self.store.heartbeat(f"node{n:05d}@bench", per_node, [], {"host": "bench", "processes": per_node})
        stop = threading.Event()
        drivers: list[Any] = []
        if idle_nodes:
            drivers.append(Consumers(self.url, QueueLayout.of(make_app(self.settings)).lists(QUEUE), len(nodes), stop))
        for t in range(self.threads):
            mine = nodes[t::self.threads]
            d = Driver(self.url, self.settings, [p for p in procs if p.node in set(mine)], mine, render, sweeps,
                       idle_nodes, stop)
            d.per_node, d.before = per_node, self.before
            drivers.append(d)
        for node in nodes:  # every node has said it is alive: fair share sizes windows by their processes
            self.store.heartbeat(node, per_node, [], {"host": "bench", "processes": per_node})
        return drivers, stop

    def submit(self, batches: int, jobs: int = 1) -> tuple[Measure, list[str]]:
        """Create and publish `jobs` jobs of `batches` batches (the client's submit path, measured), then top their
        windows up (not measured: each message's send is counted with the batch that sends it)."""
        before, cpu0 = redis_counts(self.r)
        began = time.monotonic()
        ids = []
        for _ in range(jobs):
            self.jobs += 1
            ids.append(make_job(self.store, f"job{self.jobs:04d}", batches).id)
        elapsed = time.monotonic() - began
        after, cpu1 = redis_counts(self.r)
        commands = after - before
        commands.pop("info", None)
        app = make_app(self.settings)
        for job_id in ids:
            top_up(app, self.store, job_id, QUEUE, self.settings.lease_seconds)
        return Measure(elapsed, cpu1 - cpu0, commands, Counter(batches=batches * jobs), 0.0), ids


def phase_flow(farm: Farm, processes: int, per_node: int, farm_size: int, seconds: float) -> Measure:
    farm.reset()
    drivers, _ = farm.drivers(processes, per_node, 0.0, sweeps=False, farm_size=farm_size)
    farm.submit(100_000)
    return measured(farm.r, drivers, seconds)


def farm_wide(farm: Farm, seconds: float, warm: float = 1.0) -> Measure:
    """The farm's own sweeps, apart from its nodes': one node sweeping every period wins every claim, so it does the
    work the whole farm does once a period whatever its size (the lease sweep over every running batch, the top-ups,
    the stranded and unsent sweeps; and redis-server's own cron). Measured apart so that it is counted once, not once
    per render process as a share of the driven sample would count it (N / --sample times over)."""
    d = Driver(farm.url, farm.settings, [], ["sweeper@bench"], None, True, False, threading.Event())
    d.before = farm.before
    return measured(farm.r, [d], seconds, warm=warm)


def phase_hold(farm: Farm, processes: int, per_node: int, seconds: float, sample: int,
               poll: bool) -> tuple[Measure, float, Measure]:
    """`processes` running batches (each leased, its message in kombu's unacked table), set up directly; first the
    farm-wide sweeps are measured alone (farm_wide), then the first `sample` processes and their nodes are driven at
    the real rate, the others' leases last the phase (their nodes' heartbeats are in place: the sweeps see the whole
    farm); each over a whole lease (the stranded sweep's period). Answers the measure, the share of the farm driven
    and the farm-wide measure."""
    farm.reset()
    driven = min(processes, sample)
    drivers, _ = farm.drivers(driven, per_node, None, sweeps=True, farm_size=processes)
    _, (job_id,) = farm.submit(processes)
    spec = farm.store.spec(job_id)
    procs = {p.name: p for d in drivers for p in d.procs}
    table, index = {}, {}
    for n, batch in enumerate(spec.batches):
        task = f"task-{n:06d}"
        token, node = f"{task}/0000", f"node{n // per_node:05d}@bench"
        proc = procs.get(f"p{n}")
        assert farm.store.start_batch(job_id, batch, token, node, 3600.0) == "ok"  # (renewed to `lease` when driven)
        body = base64.b64encode(json.dumps([[], {"job_id": job_id, "batch": batch}, {}]).encode()).decode()
        message = {"body": body, "headers": {"task": "httpov.render_batch", "id": task},
                   "properties": {"body_encoding": "base64", "delivery_tag": task}}
        table[task], index[task] = json.dumps([message, "", QUEUE]), time.time()
        if proc:
            proc.job, proc.batch, proc.token, proc.tag, proc.rendering = job_id, batch, token, task, True
    layout = QueueLayout.of(make_app(farm.settings))
    farm.r.hset(layout.unacked, mapping=table)
    farm.r.zadd(layout.unacked_index, index)
    for d in drivers:
        d.busy = Counter(p.node for p in d.procs if p.rendering)
        d.poll = poll
    # each over a whole lease: the stranded sweep looks at every message held in kombu's unacked table (one per
    # running batch) once a lease, the first time 2 leases after it stamped them (held_since)
    lease = farm.settings.lease_seconds
    wide = farm_wide(farm, lease, warm=2 * lease + 1.0)
    return measured(farm.r, drivers, lease * max(1, round(seconds / lease))), driven / processes, wide


def phase_idle(farm: Farm, processes: int, per_node: int, seconds: float,
               sample: int) -> tuple[Measure, float, Measure]:
    """`processes` idle render processes: every node's consumer waits in BRPOP; the nodes of the first `sample`
    processes sweep (the others' heartbeats are in place). Answers the measure, the share of nodes sweeping and the
    farm-wide measure (farm_wide, taken first)."""
    farm.reset()
    driven = min(processes, sample)
    drivers, _ = farm.drivers(driven, per_node, None, sweeps=True, idle_nodes=True, farm_size=processes)
    wide = farm_wide(farm, seconds)
    return measured(farm.r, drivers, seconds, warm=2.0), driven / processes, wide


def real_node(url: str, per_node: int, seconds: float, tmp: Path) -> None:
    """What one real idle render node (`celery -A httpov worker`, --per-node processes, no batch) sends Redis."""
    from httpov.local_farm import start_worker, stop_worker

    settings = Settings(broker_url=url, state_url=url, prefix=PREFIX, queue=QUEUE, storage=str(tmp / "storage"),
                        cache_dir=tmp / "cache")
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushdb()
    worker = start_worker(settings, per_node, "idle", tmp / "worker.log")
    try:
        deadline = time.monotonic() + 60
        while not r.zcard(f"{PREFIX}:nodes") and time.monotonic() < deadline:  # its first sweep: it is up
            time.sleep(0.2)
        time.sleep(2.0)
        before, cpu0 = redis_counts(r)
        began = time.monotonic()
        time.sleep(seconds)
        after, cpu1 = redis_counts(r)
        elapsed = time.monotonic() - began
        connections = len(r.client_list()) - 1  # (this one)
    finally:
        stop_worker(worker)
    commands = after - before
    commands.pop("info", None)
    total = sum(commands.values())
    print(f"\na real idle render node of {per_node} processes (celery -A httpov worker, {elapsed:.0f} s): "
          f"{total / elapsed:.1f} commands/s, Redis CPU {1e6 * (cpu1 - cpu0) / elapsed:.0f} us/s; per process "
          f"{total / elapsed / per_node:.2f} commands/s, {1e6 * (cpu1 - cpu0) / elapsed / per_node:.0f} us/s")
    print("    commands/s: " + ", ".join(f"{name} {n / elapsed:.2f}" for name, n in commands.most_common(14)))
    print(f"    connections it holds open: {connections} (a rendering process adds its stops subscription)")


def show_commands(m: Measure, per: float, label: str, top: int = 12) -> None:
    items = sorted(m.commands.items(), key=lambda kv: -kv[1])[:top]
    print(f"    commands per {label}: " + ", ".join(f"{name} {n / per:.2f}" for name, n in items))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="100,1000,10000", help="farm sizes (simulated render processes)")
    parser.add_argument("--per-node", type=int, default=8, help="render processes per render node")
    parser.add_argument("--lease", type=float, default=Settings().lease_seconds)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--flow-processes", type=int, default=32, help="processes of the flow phase")
    parser.add_argument("--threads", type=int, default=4, help="driver threads")
    parser.add_argument("--repeat", type=int, default=2, help="times each phase is run (taking turns)")
    parser.add_argument("--sample", type=int, default=1000, help="render processes driven in the hold and idle phases")
    parser.add_argument("--poll", choices=["no", "yes", "both"], default="no",
                        help="whether a rendering process reads its job's state every tick while subscribed to the "
                             "stops channel (yes: before this change; both: each, taking turns)")
    parser.add_argument("--before", action="store_true",
                        help="simulate the release before node renewal (run it on that release's code): each render "
                             "process renews its own lease and reads its job's state after every take; each node "
                             "reads its drain mark and tries sweep:nodes in round trips of their own")
    parser.add_argument("--real-node", type=float, default=0.0,
                        help="also measure a real idle `celery -A httpov worker` for this many seconds")
    parser.add_argument("--task-seconds", default="2.5,10,60", help="batch lengths for the knee table")
    args = parser.parse_args()
    sizes = [int(n) for n in args.processes.split(",")]
    with tempfile.TemporaryDirectory(prefix="httpov-bench-scale-") as tmp, embedded_redis(Path(tmp)) as url:
        farm = Farm(url, args.lease, args.threads)
        farm.before = args.before
        _, cpu0 = redis_counts(farm.r)
        time.sleep(5.0)
        _, cpu1 = redis_counts(farm.r)
        print(f"redis-server with no client: {1e6 * (cpu1 - cpu0) / 5:.0f} us of CPU a second (not subtracted below)")
        if args.real_node:
            real_node(url, args.per_node, args.real_node, Path(tmp))
        print(f"{'before node renewal (--before)' if args.before else 'node renewal'}: lease {args.lease:g} s "
              f"(renewed every {args.lease / 4:g} s), job state read every tick: {args.poll} "
              f"({farm.settings.stop_poll_seconds:g} s), sweep every {farm.settings.sweep_seconds:g} s, "
              f"{args.per_node} processes a node; {args.threads} driver threads; {args.seconds:g} s a phase")
        submits = []
        flows: dict[int, list[Measure]] = {n: [] for n in sizes}
        holds: dict[tuple[int, bool], list[tuple[Measure, float, Measure]]] = {}
        idles: dict[int, list[tuple[Measure, float, Measure]]] = {n: [] for n in sizes}
        polls = [True, False] if args.poll == "both" else [args.poll == "yes"]
        for rep in range(args.repeat):
            farm.reset()
            m, _ = farm.submit(10_000)
            submits.append(m)
            for n in sizes:
                flows[n].append(phase_flow(farm, args.flow_processes, args.per_node, n, args.seconds))
                for poll in polls if rep % 2 == 0 else polls[::-1]:  # taking turns
                    holds.setdefault((n, poll), []).append(
                        phase_hold(farm, n, args.per_node, args.seconds, args.sample, poll))
                idles[n].append(phase_idle(farm, n, args.per_node, args.seconds, args.sample))
            print(f"  run {rep + 1} of {args.repeat} done", flush=True)

        def med(values: list[float]) -> str:
            return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"

        print("\nsubmit (create + publish) of a 10,000-batch job: Redis CPU ms "
              f"{med([1e3 * m.cpu for m in submits])}, commands {med([sum(m.commands.values()) for m in submits])}"
              f"; per batch {med([m.per(10_000)[0] for m in submits])} us")
        print(f"flow: {args.flow_processes} processes doing batches back to back (no sweeps), in a farm whose nodes "
              "say they run N processes:")
        batch_cost: dict[int, float] = {}
        for n in sizes:
            cpu = [m.per(m.done["finish"])[0] for m in flows[n]]
            batch_cost[n] = statistics.median(cpu)
            print(f"  N {n:6d}: {med([m.done['finish'] / m.seconds for m in flows[n]])} batches/s driven; per batch "
                  f"Redis CPU us {med(cpu)}, commands {med([m.per(m.done['finish'])[1] for m in flows[n]])}")
            show_commands(flows[n][-1], flows[n][-1].done["finish"], "batch")
        lease, every = args.lease, farm.settings.sweep_seconds
        print(f"\nper render process and second (Redis CPU us, commands): {args.sample} processes driven at the real "
              "rate (scaled to it if the driver fell behind), the costs scaled to the whole farm:")
        run_cost: dict[int, float] = {}
        wide_cost: dict[int, float] = {}  # the farm-wide sweeps of a farm of N rendering processes, us/s
        for (n, poll), hold_runs in holds.items():
            rc, rk, rates, old, wides = [], [], [], [], []
            for m, share, wide in hold_runs:
                driven_n = share * n
                nodes = max(1, driven_n // args.per_node)
                want = ((driven_n if args.before else nodes) / (lease / 4)
                        + (driven_n / farm.settings.stop_poll_seconds if poll else 0)
                        + nodes / every + nodes / WEBHOOK_CLAIM_EVERY)
                got = (m.done["renew"] + m.done["renew_node"] + m.done["poll"] + m.done["sweep"]
                       + m.done["webhooks"]) / m.seconds
                scale = want / got if got else 0.0
                wides.append(1e6 * wide.cpu / wide.seconds)
                rc.append(max(0.0, 1e6 * m.cpu / m.seconds - wides[-1]) * scale / driven_n)
                old.append(1e6 * m.cpu / m.seconds * scale / driven_n)
                rk.append(max(0.0, sum(m.commands.values()) / m.seconds - sum(wide.commands.values()) / wide.seconds)
                          * scale / driven_n)
                rates.append(got / want)
            if poll == polls[-1]:
                run_cost[n], wide_cost[n] = statistics.median(rc), statistics.median(wides)
            print(f"  rendering, N {n:6d}{', state read every tick' if poll else ''}: CPU us {med(rc)}, commands "
                  f"{med(rk)} (driven at {med(rates)} of the rate); the farm-wide sweeps {med(wides)} us/s "
                  f"(spread over the driven sample, as this benchmark counted them before: {med(old)} us)")
            m, share, _ = hold_runs[-1]
            show_commands(m, m.seconds * share * n * statistics.median(rates), "process-second (sweeps included)",
                          top=10)
        idle_cost: dict[int, float] = {}
        for n in sizes:
            ic, ik, wides = [], [], []
            for m, share, wide in idles[n]:
                nodes = max(1, share * n // args.per_node)
                want = nodes / every + nodes / WEBHOOK_CLAIM_EVERY + nodes / BRPOP_TIMEOUT
                got = (m.done["sweep"] + m.done["webhooks"] + m.done["consume"]) / m.seconds
                scale = want / got if got else 0.0
                wides.append(1e6 * wide.cpu / wide.seconds)
                ic.append(max(0.0, 1e6 * m.cpu / m.seconds - wides[-1]) * scale / (share * n))
                ik.append(sum(m.commands.values()) / m.seconds * scale / (share * n))
            idle_cost[n] = statistics.median(ic) + statistics.median(wides) / n
            print(f"  idle, N {n:6d}: CPU us {med(ic)} (+ the farm-wide sweeps {med(wides)} us/s), commands {med(ik)}")
            m, share, _ = idles[n][-1]
            show_commands(m, m.seconds * share * n, "process-second", top=10)
        print("\none Redis core (1,000,000 us/s): batches/s it carries with N render processes rendering "
              "= (1e6 - the farm-wide sweeps - N x their CPU us/s) / CPU us per batch at N")
        for n in sizes:
            background = wide_cost[n] + n * run_cost[n]
            print(f"  {n:6d} processes: background {background / 1e4:5.1f}% of the core (idle farm "
                  f"{n * idle_cost[n] / 1e4:.1f}%), per batch {batch_cost[n]:.0f} us: "
                  f"{max(0.0, 1e6 - background) / batch_cost[n]:6.0f} batches/s at most")
        big = max(sizes)
        print(f"  a farm of N processes asks N / task seconds batches/s; one core is full (the knee) at "
              f"(costs at N {big}):")
        for task in (float(t) for t in args.task_seconds.split(",")):
            knee = (1e6 - wide_cost[big]) / (run_cost[big] + batch_cost[big] / task)
            print(f"    {task:g} s batches: {knee:8.0f} render processes ({knee / task:6.0f} batches/s)")

if __name__ == "__main__":
    main()
