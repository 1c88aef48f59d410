"""Celery settings for httpov: tasks are povray batches that run for minutes, not milliseconds.

httpov/celery.py loads this module by its package name, httpov.celeryconfig (never a top-level `celeryconfig` that
happens to be first on sys.path), then a site's module named by HTTPOV_CELERY_CONFIG, then httpov's Settings
(broker URL, queue, time limit, render processes), and last puts back the invariants below that no configuration
may change (httpov.celery.INVARIANTS). The checkout's top-level celeryconfig.py only re-exports this one.
"""

# json only: with pickle, anyone who can write to the broker runs code on every render node.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]

# Ack after the batch is stored, so a batch whose worker dies is not lost (httpov's leases bring it back within
# seconds; the broker's own redelivery is the slow safety net).
task_acks_late = True
# A pool child killed mid-render (OOM, crash) hands its batch back instead of dropping it; httpov counts attempts
# per batch, so a scene that always crashes fails after HTTPOV_MAX_ATTEMPTS instead of looping forever.
task_reject_on_worker_lost = True
# One batch at a time per render process: a prefetched batch would wait behind a minutes-long render while
# another node sits idle, and priorities would not apply to it.
worker_prefetch_multiplier = 1

# httpov keeps job state and results itself (Redis + storage); Celery's result backend would only duplicate it.
task_ignore_result = True
task_store_errors_even_if_ignored = False

# Priorities on Redis: separate lists per priority, 0 first. Redis hands an unacked message back after
# visibility_timeout even if the task still runs, so it must stay above the hard time limit
# (httpov/celery.py sets it to the time limit plus an hour).
broker_transport_options = {"queue_order_strategy": "priority", "priority_steps": list(range(10)), "sep": ":"}
task_queue_max_priority = 9
task_default_priority = 4

# Render nodes stay connected through Redis restarts instead of exiting.
broker_connection_retry_on_startup = True
broker_connection_max_retries = None
# Celery's consumer on a Redis channel that, once its connection is gone, fails as a lost connection (which Celery
# rides out) rather than with AttributeError (which stops the worker): see httpov/worker/consumer.py.
worker_consumer = "httpov.worker.consumer:Consumer"

# No task events unless someone watches (Celery's own default): each event is a round trip to Redis for the
# node, three a batch, which a node far from Redis pays in full (docs/PERFORMANCE.md, a slow link: 7.2x -> 5.4x
# at 250 ms). Flower turns them on in every worker it reaches, every few seconds, while it runs; `celery -A httpov
# control enable_events` does for `celery events`. No "sent" events either: one per batch doubles the messages a
# 10,000-batch submit writes (measured 2.4 s -> 1.5 s), and the job's own state in Redis already says what is queued.
worker_send_task_events = False
task_send_sent_event = False
task_track_started = True

# A prefork render process (HTTPOV_RENDER_POOL=prefork) is replaced after this many batches; the default's threads
# are not (Celery's threads pool ignores it): what a node keeps between batches is bounded by httpov itself.
worker_max_tasks_per_child = 200
