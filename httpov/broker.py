"""The broker adapter: every assumption httpov makes about kombu's Redis transport and Celery's task messages.

httpov reads and edits kombu's Redis keys itself: the stranded and unsent sweeps look for a batch's message in a
queue's lists and in the table of messages taken and not acked, a priority change or a joining job takes queued
messages back, a render slot queues its top-up's messages and takes its next message as a worker's consumer would,
and a render node opens kombu channels with one private method overridden. None of that is kombu's
or Celery's public API. Each assumption is written here once, as an `ASSUMPTION <name>:` comment, and checked against
the installed releases by tests/store/test_broker_contract.py (one test per name); pyproject.toml pins the
releases that test covers. The rest of httpov calls the functions below and never spells a kombu key.
"""
from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from queue import Queue
from typing import TYPE_CHECKING, Any, NamedTuple

import redis
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.json import dumps

if TYPE_CHECKING:
    from celery import Celery
    from kombu import Connection

log = logging.getLogger(__name__)

#: The releases the contract test was run against: (lowest, first untested) for kombu and for Celery. pyproject.toml
#: pins the same ranges; widen both only after tests/store/test_broker_contract.py passed on the new release.
KOMBU_TESTED = ((5, 7), (5, 8))
CELERY_TESTED = ((5, 7), (5, 8))

# ASSUMPTION transport-options: kombu's Redis channel takes `global_keyprefix`, `sep`, `priority_steps`, `unacked_key`
# and `unacked_index_key` from Celery's broker_transport_options, with the defaults below when they are not given
# (kombu.transport.redis.Channel's class attributes of the same names).
KOMBU_SEP = "\x06\x16"
KOMBU_PRIORITY_STEPS = (0, 3, 6, 9)
KOMBU_UNACKED = "unacked"
KOMBU_UNACKED_INDEX = "unacked_index"

#: The task whose messages httpov looks for in kombu's keys (httpov.worker.tasks.render_batch) and the names of the
#: keyword arguments dispatch.enqueue gives it.
RENDER_TASK = "httpov.render_batch"


def key_prefix(prefix: str) -> str:
    """kombu's global_keyprefix for httpov's Redis key prefix: kombu's keys sit beside httpov's, under
    '<prefix>:kombu:' (httpov.celery sets it)."""
    # ASSUMPTION key-prefix: kombu puts its global_keyprefix in front of every Redis key it writes (queue lists, the
    # unacked table and its index), as it is, with no separator of its own.
    return f"{prefix}:kombu:"


@dataclass(frozen=True)
class QueueLayout:
    """Where kombu keeps one Celery app's messages in Redis: full key names, the app's key prefix included."""

    prefix: str = ""
    sep: str = KOMBU_SEP
    priority_steps: tuple[int, ...] = KOMBU_PRIORITY_STEPS
    unacked_key: str = KOMBU_UNACKED
    unacked_index_key: str = KOMBU_UNACKED_INDEX

    @classmethod
    def of(cls, celery: Celery) -> QueueLayout:
        """The layout the app's broker_transport_options give kombu (see ASSUMPTION transport-options)."""
        options = celery.conf.broker_transport_options or {}
        return cls(prefix=options.get("global_keyprefix", ""), sep=options.get("sep", KOMBU_SEP),
                   priority_steps=tuple(options.get("priority_steps", KOMBU_PRIORITY_STEPS)),
                   unacked_key=options.get("unacked_key", KOMBU_UNACKED),
                   unacked_index_key=options.get("unacked_index_key", KOMBU_UNACKED_INDEX))

    def key(self, name: str) -> str:
        """The Redis key kombu writes for its key `name` (see ASSUMPTION key-prefix)."""
        return self.prefix + name

    def lists(self, queue: str) -> list[str]:
        """The Redis lists of a queue, one per priority step, the one served first first."""
        # ASSUMPTION priority-lists: with queue_order_strategy "priority", kombu keeps a message of priority p in the
        # list of the highest priority step s <= p: the queue's own name for step 0, '<queue><sep><s>' for the
        # others, e.g. '<queue>\x06\x163' with kombu's defaults, '<queue>:3' with celeryconfig's sep.
        return [self.key(f"{queue}{self.sep}{step}" if step else queue) for step in self.priority_steps]

    def list_for(self, queue: str, priority: int) -> str:
        """The Redis list of a queue for a message of this (Celery) priority (see ASSUMPTION priority-lists)."""
        step = max((s for s in self.priority_steps if s <= priority), default=self.priority_steps[0])
        return self.lists(queue)[self.priority_steps.index(step)]

    @property
    def unacked(self) -> str:
        """The hash of messages taken by a consumer and not yet acked (see ASSUMPTION unacked-table)."""
        return self.key(self.unacked_key)

    @property
    def unacked_index(self) -> str:
        """The sorted set of those messages' delivery tags, each scored with the time it was taken."""
        return self.key(self.unacked_index_key)


class RenderMessage(NamedTuple):
    """What httpov reads from a render_batch message: its job, its batch and the Celery task id."""

    job_id: str
    batch_id: str
    task_id: str


def render_message(raw: str) -> RenderMessage | None:
    """The job, batch and task id of a render_batch message as kombu stores it (queued, or in its unacked table), or
    None for anything else."""
    try:
        message = json.loads(raw)
        # ASSUMPTION unacked-table: kombu's unacked table holds each taken message as [message, exchange, routing key]
        if isinstance(message, list):
            message = message[0]
        # ASSUMPTION message-layout: a queued message is kombu's JSON envelope: Celery's protocol 2 puts the task name
        # and id in headers 'task' and 'id', and the body, base64-encoded when properties.body_encoding says so, is
        # the JSON [args, kwargs, embed]; dispatch.enqueue sends render_batch with kwargs job_id and batch.
        if message.get("headers", {}).get("task") != RENDER_TASK:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        kwargs = json.loads(body)[1]
        return RenderMessage(str(kwargs["job_id"]), str(kwargs["batch"]), str(message["headers"].get("id", "")))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


class HeldMessage(NamedTuple):
    """A render_batch message in kombu's unacked table: its delivery tag, what it asks, and when it was taken."""

    tag: str
    message: RenderMessage
    taken: float


def held_before(r: redis.Redis, layout: QueueLayout, before: float, chunk: int = 500) -> Iterator[list[HeldMessage]]:
    """The render_batch messages a consumer took before time `before` and has not acked, `chunk` at a time (each
    chunk read when asked for)."""
    # ASSUMPTION unacked-table: a message a consumer takes (a worker with acks_late, or basic_get without no_ack)
    # stays in the unacked hash under its delivery tag until acked, and its tag in the unacked index, scored with the
    # time.time() it was taken; an ack removes both, and so may httpov (release).
    taken = r.zrangebyscore(layout.unacked_index, 0, before, withscores=True)
    for start in range(0, len(taken), chunk):
        part = taken[start:start + chunk]
        held = []
        for (tag, at), raw in zip(part, r.hmget(layout.unacked, [tag for tag, _ in part])):
            message = render_message(raw) if raw else None
            if message is not None:
                held.append(HeldMessage(tag, message, at))
        yield held


def held_messages(r: redis.Redis, layout: QueueLayout, tags: list[str]) -> list[HeldMessage]:
    """The render_batch messages held under these delivery tags in kombu's unacked table, read in one round trip
    (tags acked meanwhile and other tasks' messages are left out), each with the time its worker took it."""
    if not tags:
        return []
    # ASSUMPTION unacked-table (see held_before)
    pipe = r.pipeline(transaction=False)
    pipe.hmget(layout.unacked, tags)
    for tag in tags:
        pipe.zscore(layout.unacked_index, tag)
    raws, *scores = pipe.execute()
    held = []
    for tag, raw, at in zip(tags, raws, scores):
        message = render_message(raw) if raw else None
        if message is not None:
            held.append(HeldMessage(tag, message, float(at or 0.0)))
    return held


def release(r: redis.Redis, layout: QueueLayout, tag: str) -> bool:
    """Remove one message from kombu's unacked table, atomically; False if it was gone (acked, or another sweeper took
    it). kombu then never hands it back: it restores a message from the table's hash only."""
    return bool(r.pipeline().zrem(layout.unacked_index, tag).hdel(layout.unacked, tag).execute()[1])


#: take_next's script: first the messages ARGV[5..] LPUSHed on the lists KEYS[#KEYS - ARGV[2] .. #KEYS - 1], then
#: (ARGV[3] '1') the first message in the other lists (the one served first first), if it is a render_batch message
#: (ARGV[1]) to run now, taken off its list; answered with the index of its list (1-based) and the message. What a
#: call that queued or took something answers is kept ARGV[4] ms under KEYS[#KEYS], the call's own mark: the same
#: call again (a client repeating it after a lost reply) answers that and does nothing more. An idle node's take
#: (its lists empty: no list key exists) costs Redis two commands, not one a list.
_TAKE_NEXT = """
local mark = KEYS[#KEYS]
local seen = redis.call('GET', mark)
if seen then
  if seen == '' then return false end
  return cjson.decode(seen)
end
local pushed = tonumber(ARGV[2])
local lists = #KEYS - 1 - pushed
for i = 1, pushed do redis.call('LPUSH', KEYS[lists + i], ARGV[4 + i]) end
local reply = false
if ARGV[3] == '1' and lists > 0 and redis.call('EXISTS', unpack(KEYS, 1, lists)) > 0 then
  for i = 1, lists do
    local raw = redis.call('LINDEX', KEYS[i], -1)
    if raw then
      local ok, message = pcall(cjson.decode, raw)
      if ok and type(message) == 'table' and type(message.headers) == 'table' then
        local h = message.headers
        if h.task == ARGV[1] and (h.eta == nil or h.eta == cjson.null)
            and (h.expires == nil or h.expires == cjson.null) then
          redis.call('RPOP', KEYS[i])
          reply = {i, raw}
        end
      end
      break
    end
  end
end
if reply or pushed > 0 then  -- (a repeat of a call that changed nothing may answer anew)
  redis.call('SET', mark, reply and cjson.encode(reply) or '', 'PX', ARGV[4])
end
return reply
"""
#: How long a take's answer is kept under its mark (take_next): a client repeats a call within seconds.
TAKE_MARK_MS = 60_000
_take_next: list[Any] = []  # the script, registered once (each call names its client)


def _take_script(r: redis.Redis) -> Any:
    """take_next's script, registered with the first client that asks (each call names its own)."""
    if not _take_next:
        _take_next.append(r.register_script(_TAKE_NEXT))
    return _take_next[0]


def consumed_lists(layout: QueueLayout, queues: Iterable[str]) -> list[str]:
    """The Redis lists of a worker's queues in the order its consumer looks at them: every queue's list of the first
    priority step, then of the next step, ..."""
    # ASSUMPTION consumer-order: with queue_order_strategy "priority", kombu's Redis consumer BRPOPs every list of
    # its queues at once, listed priority step by priority step (each step's lists of all its queues, in the order
    # they are consumed, which stays: with a global_keyprefix kombu's cycle never rotates), so Redis answers the
    # oldest message (LPUSHed: at the right) of the first list that holds one.
    per_queue = [layout.lists(queue) for queue in queues]
    return [lists[step] for step in range(len(layout.priority_steps)) for lists in per_queue]


class NextMessages:
    """A render slot's own look at its worker's queues: the message the worker's consumer would take next, taken in
    one round trip (take_next), with the messages the slot's last batch queued (`pending`) sent first. `mark` names
    a take's mark from its id (Keys.take_mark)."""

    def __init__(self, layout: QueueLayout, queues: Iterable[str], mark: Callable[[str], str]) -> None:
        self.queues = list(queues)
        self.lists = consumed_lists(layout, self.queues)
        self.mark = mark
        self.pending: list[tuple[str, str]] = []  # (list, message) to send with the next take, in order

    def take(self, r: redis.Redis) -> tuple[str, RenderMessage] | None:
        """Send the pending messages, then take the next render_batch message to run now: it and its queue (taken
        off it), or None (take_next). Should the call fail, the pending messages are not sent again: their batches
        wait in their job's window with no message, which the unsent sweep sends (httpov.sweep.unsent)."""
        pending, self.pending = self.pending, []
        found = take_next(r, self.lists, self.mark(uuid.uuid4().hex), pending)
        return None if found is None else (self.queues[found[0] % len(self.queues)], found[1])

    def send(self, r: redis.Redis) -> None:
        """Send the pending messages, taking none (as `take`, should it fail)."""
        pending, self.pending = self.pending, []
        if pending:
            take_next(r, [], self.mark(uuid.uuid4().hex), pending, take=False)


class RenderMessages:
    """render_batch messages as `celery.send_task` and kombu's Redis transport write them (dispatch.enqueue), built
    here: a render slot's top-up queues its job's next batch in the round trip that takes the slot's next message
    (NextMessages), where Celery's send_task cost about 1 ms of CPU a message (docs/PERFORMANCE.md)."""

    def __init__(self, layout: QueueLayout, origin: str, reply_to: str) -> None:
        self.layout = layout
        self.origin = origin  # as Celery says who sent a message: 'gen<pid>@<host>' (celery.utils.nodenames)
        self.reply_to = reply_to  # the sending app's thread_oid

    def new(self, job_id: str, batch_id: str, label: str, queue: str, priority: int,
            task_id: str | None = None) -> tuple[str, str]:
        """A message asking render_batch(job_id, batch_id, label) on `queue` at Celery priority `priority`: the
        Redis list it goes on and its JSON."""
        # ASSUMPTION message-writing: Celery's message protocol 2 (its documented headers, the body [args, kwargs,
        # embed] as JSON) in kombu's Redis envelope (the body base64-encoded, the delivery's routing and tag in the
        # properties), exactly as send_task and kombu write one for the default exchange: checked field by field
        # against kombu's own by tests/store/test_broker_contract.py
        task_id = task_id or str(uuid.uuid4())
        kwargs = {"job_id": job_id, "batch": batch_id, "label": label}
        kwargsrepr = repr(kwargs)
        body = json.dumps([[], kwargs, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}])
        message = {
            "body": base64.b64encode(body.encode()).decode(),
            "content-encoding": "utf-8", "content-type": "application/json",
            "headers": {"lang": "py", "task": RENDER_TASK, "id": task_id, "shadow": None, "eta": None,
                        "expires": None, "group": None, "group_index": None, "retries": 0,
                        "timelimit": [None, None], "root_id": task_id, "parent_id": None, "argsrepr": "()",
                        "kwargsrepr": kwargsrepr, "origin": self.origin, "ignore_result": None,
                        "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {}},
            "properties": {"correlation_id": task_id, "reply_to": self.reply_to, "argsrepr": "()",
                           "kwargsrepr": kwargsrepr, "delivery_mode": 2,
                           "delivery_info": {"exchange": "", "routing_key": queue}, "priority": priority,
                           "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
        }
        return self.layout.list_for(queue, priority), dumps(message)


def load_take_script(r: redis.Redis) -> None:
    """Load take_next's script into Redis ahead of a node's first take (a render node as it starts): the first call
    would find it missing and load it first, two round trips more on a slow link."""
    r.script_load(_take_script(r).script)


def take_next(r: redis.Redis, lists: list[str], mark: str, push: Iterable[tuple[str, str]] = (),
              take: bool = True) -> tuple[int, RenderMessage] | None:
    """Take the message a worker's consumer would take next from its `lists` (consumed_lists), in one round trip,
    if it is a render_batch message to run now: answers the index of its list and what it asks. None when the lists
    are empty, or the next message is one to leave to the consumer (another task's, one held for a countdown or with
    an expiry), which stays where it is. `push`: (list, message) to queue first, in the same round trip (a top-up's
    messages, RenderMessages.new); with `take` False, only that. `mark`: a key of this call's own (Keys.take_mark of
    a new id), under which Redis keeps its answer for TAKE_MARK_MS: the store's client repeats a call whose reply was
    lost, and that repeat neither queues the messages again nor takes a second message.

    A message taken here is in no unacked table: if its taker dies before leasing its batch, the batch sits in its
    job's window with no message, which the unsent sweep finds and sends again (httpov.sweep.unsent)."""
    pushed = list(push)
    if not (lists and take) and not pushed:
        return None
    # ASSUMPTION message-layout (see render_message); the headers 'eta' and 'expires' are null unless a countdown or
    # an expiry was asked
    reply = _take_script(r)(keys=[*lists, *(key for key, _ in pushed), mark],
                          args=[RENDER_TASK, len(pushed), "1" if take else "0", TAKE_MARK_MS,
                                *(raw for _, raw in pushed)], client=r)
    if not reply:
        return None
    message = render_message(reply[1])
    if message is None:  # not dispatch.enqueue's (no job_id and batch keywords): nothing httpov can render
        log.warning("httpov: a render_batch message naming no job and batch was taken off the queue and dropped")
        return None
    return int(reply[0]) - 1, message


def queued_or_held(r: redis.Redis, layout: QueueLayout, queues: Iterable[str]) -> set[tuple[str, str]]:
    """(job id, batch id) of every render_batch message waiting in the queues' lists or held in kombu's unacked
    table, read in one round trip. A message a worker moves from a list to the table meanwhile may be missed."""
    pipe = r.pipeline()
    for queue in queues:
        for key in layout.lists(queue):
            pipe.lrange(key, 0, -1)
    pipe.hvals(layout.unacked)
    return {message[:2] for raws in pipe.execute() for message in map(render_message, raws) if message is not None}


def take_queued(r: redis.Redis, layout: QueueLayout, queue: str, job_id: str, most: int | None = None) -> list[str]:
    """Take the job's messages waiting in a queue's lists out of Redis, the last queued first (at most `most`
    batches); answers their batches. A message a worker takes meanwhile stays with it; each batch is answered once,
    however many messages it had."""
    taken: list[str] = []
    for key in layout.lists(queue):
        # ASSUMPTION list-order: kombu LPUSHes a message and its consumers BRPOP: the last queued is at index 0
        for raw in r.lrange(key, 0, -1):
            if most is not None and len(taken) >= most:
                return taken
            message = render_message(raw)
            if message is not None and message.job_id == job_id and r.lrem(key, 1, raw):
                if message.batch_id not in taken:
                    taken.append(message.batch_id)
    return taken


class QoS(kombu_redis.QoS):
    """kombu's ack emulation on Redis (the unacked table a render node's taken messages wait in until they are acked,
    which the stranded and unsent sweeps read), with its writes sent from a thread of their own, in order, instead
    of holding up the consumer's loop for a round trip each.

    kombu writes a taken message's unacked entry before it hands the message on, and the consumer asks Redis for the
    next message only after that: on a slow link to Redis each message cost a render node two round trips, one
    message at a time (the BRPOP and this write), and each ack a third. Here the entry is queued for the writer
    thread and the message goes on at once; the ack's removal is queued behind it (never before the entry it
    removes); a reject, a hand-back of unacked messages (the channel closing) and the visibility restore wait until
    every queued write is done. The entry goes out as soon as before: what Redis holds and when is unchanged."""

    # ASSUMPTION unacked-writes: kombu's Redis QoS writes a taken message's entry in `append(message, delivery_tag)`
    # (ZADD unacked_index, HSET unacked [message._raw, exchange, routing key] as JSON), removes it in
    # `ack(delivery_tag)` with `_remove_from_indices(tag).execute()`, and otherwise keeps virtual.QoS's bookkeeping
    # (the prefetch count) through virtual.QoS.append and virtual.QoS.ack; a Channel's `QoS` attribute names its class.

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writes: Queue[Callable[[], object]] = Queue()
        self._writer: threading.Thread | None = None

    def _queue(self, write: Callable[[], object]) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write, name="httpov unacked writes", daemon=True)
            self._writer.start()
        self._writes.put(write)

    def _write(self) -> None:
        while True:
            write = self._writes.get()
            try:
                write()
            except Exception as exc:  # Redis away: as kombu's own write would have, the message lives on in memory
                log.warning("httpov: could not update the broker's table of unacked messages: %s", exc)
            finally:
                self._writes.task_done()

    def drain(self) -> None:
        """Wait until every queued write is done."""
        if self._writer is not None:
            self._writes.join()

    def append(self, message: Any, delivery_tag: str) -> None:
        delivery = message.delivery_info
        entry = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        at = time.time()

        def write() -> None:
            with self.pipe_or_acquire() as pipe:
                pipe.zadd(self.unacked_index_key, {delivery_tag: at}).hset(self.unacked_key, delivery_tag,
                                                                             entry).execute()
        self._queue(write)
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        self._queue(lambda: self._remove_from_indices(delivery_tag).execute())
        virtual.QoS.ack(self, delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self.drain()
        super().reject(delivery_tag, requeue)

    def restore_unacked(self, client: Any = None) -> None:
        self.drain()
        super().restore_unacked(client)

    def restore_visible(self, *args: Any, **kwargs: Any) -> None:
        self.drain()
        super().restore_visible(*args, **kwargs)


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, with httpov's QoS (its unacked table written off the consumer's loop), and except that
    once its broker connection is closed, asking it for a new connection pool
    raises a connection error instead of AttributeError.

    When Redis goes away while a batch renders and the consumer waits in BRPOP for the next one, kombu closes the
    consumer's channel twice: the first close fails in the BRPOP, the second comes after Celery has collected the
    connection (its transport no longer knows the broker's address), so handing the running batch's message back
    (restore_unacked) fails in `_connparams` with AttributeError. Celery ignores only connection and channel errors
    there: the worker stopped with "Unrecoverable error", and so would the late ack of that batch on the old channel.
    As a connection error, Celery reconnects, and the ack is logged as "Couldn't ack"; the message stays in kombu's
    unacked table, where the stranded sweep settles it (httpov.sweep.stranded: dropped once its batch is done).
    """

    QoS = QoS

    # ASSUMPTION connparams: kombu's Redis channel builds every connection pool's parameters in the private method
    # `_connparams(self, asynchronous=False)`, which returns a dict and reads the broker's address through
    # `self.connection.client` (None once Celery has collected the connection).
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("this broker channel's connection is closed (Redis went away)")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


def open_restart_safe_channels(connection: Connection) -> None:
    """Have a broker connection, not yet connected, open `Channel`s when it is kombu's Redis transport (the render
    node's consumer, httpov.worker.consumer); any other transport is left as it is."""
    # ASSUMPTION consumer-connection: Celery's worker consumer (celery.worker.consumer.Consumer, which celeryconfig's
    # worker_consumer replaces by httpov.worker.consumer.Consumer) opens its broker connection in
    # `connection_for_read(heartbeat=None)` and connects it with `ensure_connected(connection)`; httpov's override
    # calls this function between the two.
    # ASSUMPTION transport-channel: kombu's Redis Transport opens every channel, its first one included, from its
    # `Channel` attribute, so setting it on the connection's transport before connecting is enough.
    if type(connection.transport) is kombu_redis.Transport:
        connection.transport.Channel = Channel
