"""The broker contract: each assumption httpov.broker makes about kombu's Redis transport and Celery's messages
(its `ASSUMPTION <name>:` comments), checked against the installed kombu and Celery on the real Redis, one test per
assumption. Messages go through a real Celery app (httpov.dispatch.enqueue) on the test's own key prefix and queue;
a failure names the assumption that a kombu or Celery release broke."""
from __future__ import annotations

import inspect
import json
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import celery
import kombu
import pytest
import redis
from celery import Celery
from celery.utils.nodenames import anon_nodename
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.transport import redis as kombu_redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import httpov
from httpov import broker
from httpov.broker import QueueLayout
from httpov.celery import make_app
from httpov.dispatch import celery_priority, enqueue
from httpov.plan import Batch, JobSpec
from httpov.settings import Settings
from httpov.store.keys import Keys
from httpov.worker.consumer import Consumer
from tests.conftest import REDIS_URL

#: The keyword arguments of kombu.transport.redis.Channel._connparams that httpov's override takes and passes on.
CONNPARAMS = ["self", "asynchronous"]


def _spec(job_id: str, priority: int = 5) -> JobSpec:
    return JobSpec(id=job_id, name="contract", scene_key="", root="", pov="scene.pov", options={}, initial=1,
                   final=9, first=1, last=9, width=1, height=1, count=1, priority=priority)


def _batches(*frames: int) -> list[str]:
    return [Batch(n, n).id for n in frames]


@pytest.fixture
def app(settings: Settings) -> Celery:
    return make_app(settings)


@pytest.fixture
def r() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL, decode_responses=True)


@pytest.fixture
def connection(app: Celery) -> Iterator[kombu.Connection]:
    with app.connection_for_read() as conn:
        yield conn


def _version(text: str) -> tuple[int, int]:
    major, minor = text.split(".")[:2]
    return int(major), int(minor)


@pytest.mark.parametrize("name, module, tested", [("kombu", kombu, broker.KOMBU_TESTED),
                                                  ("celery", celery, broker.CELERY_TESTED)])
def test_installed_releases_are_the_tested_ones(name, module, tested) -> None:
    (low, high), installed = tested, _version(module.__version__)
    assert low <= installed < high, (
        f"{name} {module.__version__} is outside the releases httpov.broker's assumptions were checked against "
        f"({low[0]}.{low[1]} to below {high[0]}.{high[1]}): run this contract test on it, then widen "
        f"httpov.broker.{name.upper()}_TESTED and pyproject.toml's pin")
    pyproject = tomllib.loads((Path(httpov.__file__).parent.parent / "pyproject.toml").read_text())
    pin = f">={low[0]}.{low[1]},<{high[0]}.{high[1]}"
    pins = [d for d in pyproject["project"]["dependencies"] if d.split(">")[0].split("[")[0] == name]
    assert pins and all(d.endswith(pin) for d in pins), f"pyproject.toml should pin {name}{pin}, not {pins}"


def test_producer_batch_exists() -> None:
    # dispatch.enqueue pipelines its messages with kombu's Producer.batch (new in kombu 5.7)
    assert callable(getattr(kombu.Producer, "batch", None)), \
        "kombu's Producer no longer has batch(max_size): dispatch.enqueue cannot pipeline its messages"


def test_transport_options() -> None:
    channel = kombu_redis.Channel
    for option in ("global_keyprefix", "sep", "priority_steps", "unacked_key", "unacked_index_key"):
        assert option in channel.from_transport_options, \
            f"ASSUMPTION transport-options: kombu's Redis channel no longer takes the transport option {option!r}"
    defaults = {"sep": broker.KOMBU_SEP, "priority_steps": list(broker.KOMBU_PRIORITY_STEPS),
                "unacked_key": broker.KOMBU_UNACKED, "unacked_index_key": broker.KOMBU_UNACKED_INDEX}
    for option, value in defaults.items():
        current = getattr(channel, option)
        assert (list(current) if option == "priority_steps" else current) == value, \
            f"ASSUMPTION transport-options: kombu's default {option} is now {current!r}, not {value!r}"


def test_key_prefix(settings, app, r) -> None:
    layout = QueueLayout.of(app)
    assert layout.prefix == broker.key_prefix(settings.prefix) == f"{settings.prefix}:kombu:"
    enqueue(app, _spec("jobprefix"), _batches(1), settings.queue)
    assert r.llen(layout.lists(settings.queue)[celery_priority(_spec("jobprefix"))]) == 1, \
        f"ASSUMPTION key-prefix: kombu no longer puts its global_keyprefix {layout.prefix!r} before a queue's list"
    unprefixed = [key for key in r.scan_iter(match=f"*{settings.queue}*") if not key.startswith(layout.prefix)]
    assert unprefixed == [], f"ASSUMPTION key-prefix: kombu wrote keys outside its global_keyprefix: {unprefixed}"


@pytest.mark.parametrize("options", ["celeryconfig", "kombu's defaults"])
def test_priority_lists(settings, app, r, options) -> None:
    if options == "kombu's defaults":  # no sep, no priority_steps: kombu's own '\x06\x16' and 0, 3, 6, 9
        transport = dict(app.conf.broker_transport_options)
        del transport["sep"], transport["priority_steps"]
        app.conf.broker_transport_options = transport
    layout = QueueLayout.of(app)
    for priority in range(10):  # a job's priority p is Celery priority 9 - p
        enqueue(app, _spec(f"job{priority}", priority), _batches(1), settings.queue)
    steps = layout.priority_steps
    found = {key: [m.job_id for m in map(broker.render_message, r.lrange(key, 0, -1)) if m]
             for key in r.scan_iter(match=f"{layout.prefix}*", _type="list")}
    for priority in range(10):
        celery_pri = celery_priority(_spec("any", priority))
        step = max(s for s in steps if s <= celery_pri)
        expected = layout.lists(settings.queue)[steps.index(step)]
        assert f"job{priority}" in found.get(expected, []), (
            f"ASSUMPTION priority-lists: kombu no longer keeps a message of priority {celery_pri} in the list "
            f"{expected.removeprefix(layout.prefix)!r} (sep {layout.sep!r}, steps {list(steps)}); lists found: "
            f"{ {k.removeprefix(layout.prefix): v for k, v in found.items() if v} }")


def test_list_order(settings, app, r, connection) -> None:
    layout = QueueLayout.of(app)
    enqueue(app, _spec("joborder"), _batches(1, 2, 3), settings.queue)
    key = layout.lists(settings.queue)[celery_priority(_spec("joborder"))]
    queued = [m.batch_id for m in map(broker.render_message, r.lrange(key, 0, -1)) if m]
    assert queued == _batches(3, 2, 1), \
        f"ASSUMPTION list-order: kombu no longer pushes messages on the left (the last queued first): {queued}"
    message = connection.default_channel.basic_get(queue=settings.queue, no_ack=True)
    assert message is not None and message.payload[1]["batch"] == _batches(1)[0], \
        "ASSUMPTION list-order: kombu's consumers no longer take the first queued message from the right"


def test_message_layout(settings, app, r, connection) -> None:
    layout = QueueLayout.of(app)
    enqueue(app, _spec("joblayout"), _batches(4), settings.queue)
    [raw] = r.lrange(layout.lists(settings.queue)[celery_priority(_spec("joblayout"))], 0, -1)
    read = broker.render_message(raw)
    envelope = json.loads(raw)
    assert read is not None, f"ASSUMPTION message-layout: httpov no longer reads the message kombu queued: {raw}"
    message = connection.default_channel.basic_get(queue=settings.queue, no_ack=True)
    assert message is not None
    args, kwargs, _ = message.decode()  # what Celery's worker reads, decoded by kombu itself
    assert (read.job_id, read.batch_id, read.task_id) == (kwargs["job_id"], kwargs["batch"], message.headers["id"]), \
        f"ASSUMPTION message-layout: Celery's message (protocol 2) is no longer laid out as httpov reads it: {raw}"
    assert (args, message.headers["task"]) == ([], broker.RENDER_TASK)
    assert envelope["properties"]["delivery_tag"] == message.delivery_tag, \
        "ASSUMPTION message-layout: kombu no longer keeps a message's delivery tag in properties.delivery_tag"


def _take(app: Celery, connection: kombu.Connection, queue: str) -> kombu.Message:
    """One message taken as a Celery worker takes it (BRPOP, late ack): held in kombu's unacked table."""
    got: list[kombu.Message] = []
    consumer = kombu.Consumer(connection.default_channel, queues=[app.amqp.queues[queue]], accept=["json"],
                              callbacks=[lambda _, message: got.append(message)], no_ack=False)
    with consumer:
        consumer.qos(prefetch_count=1)
        connection.drain_events(timeout=10)
    assert len(got) == 1
    return got[0]


def test_unacked_table(settings, app, r, connection) -> None:
    layout = QueueLayout.of(app)
    enqueue(app, _spec("jobheld"), _batches(5, 6), settings.queue)
    before = time.time()
    message = _take(app, connection, settings.queue)
    after = time.time()
    tag = message.delivery_tag
    table, index = r.hgetall(layout.unacked), r.zrange(layout.unacked_index, 0, -1, withscores=True)
    assert list(table) == [tag], (f"ASSUMPTION unacked-table: kombu no longer keeps a taken message in the hash "
                                  f"{layout.unacked_key!r} under its delivery tag: {list(table)}")
    held = json.loads(table[tag])
    assert isinstance(held, list) and len(held) == 3 and held[0]["properties"]["delivery_tag"] == tag, \
        f"ASSUMPTION unacked-table: kombu's unacked hash no longer holds [message, exchange, routing key]: {held}"
    assert [t for t, _ in index] == [tag] and before - 1 <= index[0][1] <= after + 1, (
        f"ASSUMPTION unacked-table: kombu no longer indexes a taken message in {layout.unacked_index_key!r} by the "
        f"time it was taken: {index}")
    [[found]] = list(broker.held_before(r, layout, time.time() + 1))
    assert (found.tag, found.message.job_id, found.message.batch_id) == (tag, "jobheld", _batches(5)[0])

    assert broker.release(r, layout, tag) and not broker.release(r, layout, tag)
    assert not r.exists(layout.unacked) and not r.exists(layout.unacked_index)
    connection.default_channel.qos.restore_unacked_once()  # what kombu does when the channel closes
    rest = [m.batch_id for key in layout.lists(settings.queue)
            for m in map(broker.render_message, r.lrange(key, 0, -1)) if m]
    assert rest == _batches(6), (
        f"ASSUMPTION unacked-table: kombu handed back a message httpov released from its unacked table: {rest}")

    acked = _take(app, connection, settings.queue)
    acked.ack()
    assert not r.exists(layout.unacked) and not r.exists(layout.unacked_index), \
        "ASSUMPTION unacked-table: an ack no longer removes the message from kombu's unacked hash and index"


def test_connparams(app, connection) -> None:
    method = kombu_redis.Channel.__dict__.get("_connparams")
    assert method is not None, ("ASSUMPTION connparams: kombu's Redis Channel no longer defines _connparams, which "
                                "httpov.broker.Channel overrides")
    signature = inspect.signature(method)
    assert list(signature.parameters) == CONNPARAMS and signature.parameters["asynchronous"].default is False, \
        f"ASSUMPTION connparams: kombu's Redis Channel._connparams is now {signature}, not (self, asynchronous=False)"
    assert "self.connection.client" in inspect.getsource(method), \
        "ASSUMPTION connparams: kombu's Redis Channel._connparams no longer reads the broker through connection.client"
    broker.open_restart_safe_channels(connection)
    channel = connection.default_channel
    assert isinstance(channel._connparams(), dict) and channel.connection.client is connection
    connection.collect()  # what Celery does with the connection Redis dropped
    assert channel.connection is None or channel.connection.client is None, \
        "ASSUMPTION connparams: kombu's channel still knows a collected connection"
    with pytest.raises(redis.ConnectionError):  # httpov's override: a lost connection, which Celery rides out
        channel._connparams()


def test_transport_channel(connection) -> None:
    assert kombu_redis.Transport.Channel is kombu_redis.Channel
    broker.open_restart_safe_channels(connection)
    channels = [connection.default_channel, connection.channel()]
    assert all(isinstance(channel, broker.Channel) for channel in channels), \
        "ASSUMPTION transport-channel: kombu's Redis Transport no longer opens its channels from its Channel attribute"


def test_consumer_connection(app) -> None:
    assert app.conf.worker_consumer == "httpov.worker.consumer:Consumer" and issubclass(Consumer, CeleryConsumer)
    for name, expected in (("connection_for_read", ["self", "heartbeat"]), ("ensure_connected", ["self", "conn"])):
        method = getattr(CeleryConsumer, name, None)
        assert method is not None and list(inspect.signature(method).parameters) == expected, (
            f"ASSUMPTION consumer-connection: Celery's worker Consumer no longer has {name}({', '.join(expected)}), "
            "which httpov.worker.consumer.Consumer overrides or calls")
    assert "self.connection_for_read(" in inspect.getsource(CeleryConsumer.connect), \
        "ASSUMPTION consumer-connection: Celery's worker Consumer no longer connects through connection_for_read"


def test_unacked_writes(settings, app, r, connection) -> None:
    """httpov.broker.QoS writes kombu's unacked table from a thread: the same entry as kombu's, removed by the ack
    after it, handed back when the channel closes."""
    for name, expected in (("append", ["self", "message", "delivery_tag"]), ("ack", ["self", "delivery_tag"])):
        method = kombu_redis.QoS.__dict__.get(name)
        assert method is not None and list(inspect.signature(method).parameters) == expected, \
            f"ASSUMPTION unacked-writes: kombu's Redis QoS no longer defines {name}({', '.join(expected)})"
    source = inspect.getsource(kombu_redis.QoS.append) + inspect.getsource(kombu_redis.QoS.ack)
    for call in ("zadd(self.unacked_index_key", "hset(self.unacked_key", "dumps([message._raw, EX, RK])",
                 "super().append(message, delivery_tag)", "self._remove_from_indices(delivery_tag).execute()",
                 "super().ack(delivery_tag)"):
        assert call in source, f"ASSUMPTION unacked-writes: kombu's Redis QoS append/ack no longer does {call}"
    assert kombu_redis.Channel.QoS is kombu_redis.QoS, \
        "ASSUMPTION unacked-writes: kombu's Redis Channel no longer names its QoS class in its QoS attribute"
    layout = QueueLayout.of(app)
    enqueue(app, _spec("jobwrites"), _batches(5, 6), settings.queue)
    broker.open_restart_safe_channels(connection)
    message = _take(app, connection, settings.queue)
    qos = connection.default_channel.qos
    assert isinstance(qos, broker.QoS)
    qos.drain()
    tag = message.delivery_tag
    [[found]] = list(broker.held_before(r, layout, time.time() + 1))  # as kombu's own entry (test_unacked_table)
    assert (found.tag, found.message.job_id, found.message.batch_id) == (tag, "jobwrites", _batches(5)[0])
    assert json.loads(r.hget(layout.unacked, tag))[1:] == [message.delivery_info["exchange"],
                                                            message.delivery_info["routing_key"]]
    message.ack()
    qos.drain()
    assert not r.exists(layout.unacked) and not r.exists(layout.unacked_index)
    _take(app, connection, settings.queue)
    connection.default_channel.close()  # hands back what it holds, its entry written first
    rest = [m.batch_id for key in layout.lists(settings.queue)
            for m in map(broker.render_message, r.lrange(key, 0, -1)) if m]
    assert rest == _batches(6) and not r.exists(layout.unacked)


def _taken_by_kombu(app: Celery, queues: list[str]) -> list[tuple[str, str]]:
    """(job, batch) of every message of the queues in the order a worker's consumer takes them: one at a time
    (prefetch 1, as a busy render node asks), each acked before the next."""
    got: list[kombu.Message] = []
    taken: list[tuple[str, str]] = []
    with app.connection_for_read() as connection, kombu.Consumer(
            connection.default_channel, queues=[app.amqp.queues[q] for q in queues], accept=["json"],
            callbacks=[lambda _, message: got.append(message)], no_ack=False) as consumer:
        consumer.qos(prefetch_count=1)
        while True:
            try:
                connection.drain_events(timeout=0.5)
            except TimeoutError:
                return taken
            message = got.pop()
            taken.append((message.payload[1]["job_id"], message.payload[1]["batch"]))
            message.ack()


def _fill(app: Celery, queues: list[str]) -> None:
    """Three jobs' messages at three priorities on two queues, sent interleaved."""
    for n in range(1, 4):
        for priority in (2, 8, 5):
            for queue in queues:
                enqueue(app, _spec(f"p{priority}-{queue[-1]}", priority), _batches(n), queue)


def test_consumer_order(settings, app, r) -> None:
    """A render slot that goes on with the queue's next message (broker.NextMessages) takes the messages in the very
    order Celery's consumer would: by priority step, then by queue, the oldest first."""
    queues = [settings.queue, settings.pool_queue("b")]
    _fill(app, queues)
    by_kombu = _taken_by_kombu(app, queues)
    assert len(by_kombu) == 18
    _fill(app, queues)
    messages = broker.NextMessages(QueueLayout.of(app), queues, Keys(settings.prefix).take_mark)
    by_slot = []
    while (found := messages.take(r)) is not None:
        by_slot.append((found[1].job_id, found[1].batch_id))
    assert by_slot == by_kombu, ("ASSUMPTION consumer-order: kombu's Redis consumer no longer takes messages by "
                                 f"priority step, then queue:\nkombu {by_kombu}\nhttpov {by_slot}")


def test_take_next_leaves_what_is_not_to_run_now(settings, app, r) -> None:
    """A message held for a countdown (a retry's back-off), or another task's, is the consumer's to take: the slot's
    take answers None and leaves it, and everything behind it, where it is."""
    layout = QueueLayout.of(app)
    lists = broker.consumed_lists(layout, [settings.queue])
    mark = Keys(settings.prefix).take_mark
    assert broker.take_next(r, lists, mark("1")) is None  # empty
    app.send_task(broker.RENDER_TASK, kwargs={"job_id": "jobeta", "batch": _batches(1)[0]}, queue=settings.queue,
                  countdown=30, priority=celery_priority(_spec("jobeta")))
    enqueue(app, _spec("jobafter"), _batches(2), settings.queue)
    assert broker.take_next(r, lists, mark("2")) is None, \
        "ASSUMPTION message-layout: Celery's message no longer says it waits for a countdown in its 'eta' header"
    app.send_task("httpov.other", queue=settings.queue, priority=0)  # ahead of both
    assert broker.take_next(r, lists, mark("3")) is None
    queued = sorted(m.job_id for key in lists for m in map(broker.render_message, r.lrange(key, 0, -1)) if m)
    assert queued == ["jobafter", "jobeta"] and sum(r.llen(key) for key in lists) == 3
    for key in lists:
        r.delete(key)
    enqueue(app, _spec("jobnow"), _batches(3), settings.queue)
    found = broker.take_next(r, lists, mark("4"))
    assert found is not None and (found[1].job_id, found[1].batch_id) == ("jobnow", _batches(3)[0])
    assert sum(r.llen(key) for key in lists) == 0
    app.send_task(broker.RENDER_TASK, kwargs={"job_id": "jobexp", "batch": _batches(5)[0]}, queue=settings.queue,
                  expires=600, priority=celery_priority(_spec("jobexp")))
    assert broker.take_next(r, lists, mark("5")) is None, \
        "ASSUMPTION message-layout: Celery's message no longer says it expires in its 'expires' header"
    for key in lists:
        r.delete(key)
    r.lpush(lists[0], "not json {")  # nothing Celery wrote: its consumer's to reject
    assert broker.take_next(r, lists, mark("6")) is None and r.llen(lists[0]) == 1


def test_a_take_repeated_after_a_lost_reply_does_nothing_again(settings, app, r) -> None:
    """The store's client repeats a call whose reply was lost: the same take (its mark) answers what it answered,
    and neither queues its messages again nor takes a second message."""
    layout = QueueLayout.of(app)
    lists = broker.consumed_lists(layout, [settings.queue])
    builder = broker.RenderMessages(layout, anon_nodename(), app.thread_oid)
    enqueue(app, _spec("jobonce"), _batches(1, 2), settings.queue)
    pushed = [builder.new("jobonce", _batches(3)[0], "", settings.queue, celery_priority(_spec("jobonce")))]
    mark = Keys(settings.prefix).take_mark("once")
    first = broker.take_next(r, lists, mark, pushed)
    again = broker.take_next(r, lists, mark, pushed)
    assert first is not None and first == again and first[1].batch_id == _batches(1)[0]
    queued = [m.batch_id for key in lists for m in map(broker.render_message, r.lrange(key, 0, -1)) if m]
    assert queued == _batches(3, 2), "queued once, taken once"
    assert 0 < r.pttl(mark) <= broker.TAKE_MARK_MS
    empty = Keys(settings.prefix).take_mark("none")
    for key in lists:
        r.delete(key)
    assert broker.take_next(r, lists, empty) is None and not r.exists(empty), "a call that changed nothing keeps none"
    enqueue(app, _spec("jobonce"), _batches(4), settings.queue)
    again = broker.take_next(r, lists, empty)  # its repeat is the one take its client sees
    assert again is not None and again[1].batch_id == _batches(4)[0] and sum(r.llen(key) for key in lists) == 0


def test_a_take_that_fails_never_sends_its_messages_again(settings, app, r) -> None:
    """Should a slot's take fail (Redis away), its pending messages are dropped, not sent again with a later take
    (their batches wait in the window for the unsent sweep, which may have sent them by then)."""
    layout = QueueLayout.of(app)
    builder = broker.RenderMessages(layout, anon_nodename(), app.thread_oid)
    messages = broker.NextMessages(layout, [settings.queue], Keys(settings.prefix).take_mark)
    messages.pending.append(builder.new("jobfail", _batches(1)[0], "", settings.queue, 4))
    away = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.ConnectionError):
        messages.take(away)
    assert messages.pending == []
    messages.pending.append(builder.new("jobfail", _batches(2)[0], "", settings.queue, 4))
    with pytest.raises(redis.ConnectionError):
        messages.send(away)
    assert messages.pending == [] and messages.take(r) is None


def test_message_writing(settings, app, r) -> None:
    """A render slot builds its top-up's messages itself (broker.RenderMessages): each is the message Celery's
    send_task and kombu write for the same batch (dispatch.enqueue), field for field but its delivery tag, on the
    same list; and a worker's consumer takes and decodes it as its own."""
    layout = QueueLayout.of(app)
    builder = broker.RenderMessages(layout, anon_nodename(), app.thread_oid)
    for priority in (0, 4, 9):
        spec = _spec(f"jobwrite{priority}", priority)
        enqueue(app, spec, _batches(7), settings.queue)
        key = layout.lists(settings.queue)[celery_priority(spec)]
        [raw] = r.lrange(key, 0, -1)
        r.delete(key)
        by_kombu = json.loads(raw)
        task_id = by_kombu["headers"]["id"]
        list_key, ours = builder.new(spec.id, _batches(7)[0], Batch.from_id(_batches(7)[0]).label, settings.queue,
                                     celery_priority(spec), task_id=task_id)
        by_httpov = json.loads(ours)
        assert by_httpov["properties"].pop("delivery_tag") != by_kombu["properties"].pop("delivery_tag")
        assert (list_key, by_httpov) == (key, by_kombu), (
            f"ASSUMPTION message-writing: kombu and Celery no longer write a render_batch message as httpov does:\n"
            f"kombu  {key} {by_kombu}\nhttpov {list_key} {by_httpov}")
    key, raw = builder.new("jobread", _batches(8)[0], "frame 8", settings.queue, 4)
    broker.take_next(r, [], Keys(settings.prefix).take_mark("write"), [(key, raw)], take=False)
    with app.connection_for_read() as connection:
        message = _take(app, connection, settings.queue)
        args, kwargs, _ = message.decode()
        assert (args, kwargs, message.headers["task"], message.headers["id"]) == (
            [], {"job_id": "jobread", "batch": _batches(8)[0], "label": "frame 8"}, broker.RENDER_TASK,
            json.loads(raw)["headers"]["id"])
        message.ack()


def test_a_take_sends_its_pending_messages_first(settings, app, r) -> None:
    """The messages a slot's top-up queued go on their lists in the round trip of its next take, before it: with the
    queue empty, the slot takes the first of them, the rest wait in their order."""
    layout = QueueLayout.of(app)
    builder = broker.RenderMessages(layout, anon_nodename(), app.thread_oid)
    messages = broker.NextMessages(layout, [settings.queue], Keys(settings.prefix).take_mark)
    messages.pending += [builder.new("jobpend", batch, "", settings.queue, 4) for batch in _batches(1, 2, 3)]
    found = messages.take(r)
    assert found is not None and (found[0], found[1].batch_id) == (settings.queue, _batches(1)[0])
    assert messages.pending == []
    left = [m.batch_id for m in map(broker.render_message, r.lrange(layout.list_for(settings.queue, 4), 0, -1))]
    assert left == _batches(3, 2)
    messages.pending.append(builder.new("jobpend", _batches(4)[0], "", settings.queue, 4))
    messages.send(r)
    assert messages.pending == [] and r.llen(layout.list_for(settings.queue, 4)) == 3
