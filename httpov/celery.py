"""The Celery app: `celery -A httpov worker` finds httpov.celery.app; httpov.celeryconfig, then Settings, applied
once."""
from __future__ import annotations

import importlib
import ssl
from types import ModuleType
from typing import Any

from celery import Celery

from httpov.broker import key_prefix
from httpov.settings import Settings


def make_app(settings: Settings | None = None) -> Celery:
    """A Celery app configured by httpov.celeryconfig, then by `settings` (or the environment, read at configure)."""
    celery = Celery("httpov", include=["httpov.worker.tasks"])
    celery.config_from_object(_public(_own_config()))
    if settings is not None:
        apply_settings(celery, settings)
    else:
        celery.on_after_configure.connect(
            lambda sender, **_: apply_settings(sender, Settings.from_env()), weak=False)
    celery.steps["worker"].add("httpov.worker.reaper:Reaper")  # by name: a client's app never imports the worker
    return celery


#: Celery's pool for each HTTPOV_RENDER_POOL.
POOLS = {"threads": "httpov.worker.pool:ThreadPool", "prefork": "prefork"}
#: What no configuration may change: pickle would let anyone who can write to the broker run code on every
#: render node; late ack and one prefetched task per process are what leases and priorities rely on.
INVARIANTS = {
    "task_serializer": "json", "result_serializer": "json", "event_serializer": "json",
    "accept_content": ["json"], "result_accept_content": ["json"],
    "task_acks_late": True, "worker_prefetch_multiplier": 1,
}


def _own_config() -> ModuleType:
    """httpov's Celery tunables, httpov.celeryconfig, loaded by its package name: a top-level `celeryconfig` on
    sys.path, e.g. in the current folder, is never read."""
    return importlib.import_module("httpov.celeryconfig")


def _public(module: ModuleType) -> dict[str, object]:
    return {k: v for k, v in vars(module).items() if not k.startswith("_") and k.islower()}


def apply_settings(celery: Celery, settings: Settings) -> None:
    """Point Celery at httpov's broker and queue, keep Redis's redelivery behind the hard time limit, size the
    worker's pool, and put back the security invariants whatever a configuration said."""
    if settings.celery_config:  # a site's own tunables, named explicitly (HTTPOV_CELERY_CONFIG=module)
        celery.conf.update(_public(importlib.import_module(settings.celery_config)))
    options = dict(celery.conf.broker_transport_options or {})
    options["visibility_timeout"] = settings.task_time_limit + 3600
    options["global_keyprefix"] = key_prefix(settings.prefix)
    if settings.broker_url.startswith("rediss://"):
        # Without explicit SSL options kombu connects to rediss:// WITHOUT checking the certificate.
        ssl_options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if settings.redis_ca:
            ssl_options["ssl_ca_certs"] = settings.redis_ca
        celery.conf.broker_use_ssl = ssl_options
    celery.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=options,
        task_default_queue=settings.queue,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=settings.soft_time_limit,
        worker_concurrency=settings.render_processes,  # `celery worker --concurrency N` still wins
        worker_pool=POOLS[settings.render_pool],  # its render slots: threads of its process, or prefork processes
        worker_direct=True,  # each node also consumes <hostname>.dq2: batches handed to it by name (node.py)
        **INVARIANTS,
    )
    if settings.pool_names:  # a render node in pools also consumes `<queue>.pool.<name>` (submit --pool)
        from kombu import Queue

        celery.conf.task_queues = [Queue(settings.queue)] + [Queue(settings.pool_queue(p)) for p in settings.pool_names]


# The render nodes' app (`celery -A httpov worker`); clients build their own with make_app(settings).
app = make_app()
