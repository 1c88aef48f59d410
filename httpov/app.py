"""The Celery app: `celery -A httpov worker` finds it here; settings from celeryconfig.py, then the environment."""
from __future__ import annotations

import ssl

from celery import Celery
from celery.signals import celeryd_after_setup

from httpov.settings import Settings


def make_app(settings: Settings | None = None) -> Celery:
    """A Celery app configured by celeryconfig.py, then by `settings` (or the environment, read at configure)."""
    celery = Celery("httpov", include=["httpov.tasks"])
    celery.config_from_object("celeryconfig")
    if settings is not None:
        apply_settings(celery, settings)
    else:
        celery.on_after_configure.connect(
            lambda sender, **_: apply_settings(sender, Settings.from_env()), weak=False)
    from httpov.reaper import Reaper

    celery.steps["worker"].add(Reaper)
    return celery


def apply_settings(celery: Celery, settings: Settings) -> None:
    """Point Celery at httpov's broker and queue, and keep Redis's redelivery behind the hard time limit."""
    options = dict(celery.conf.broker_transport_options or {})
    options["visibility_timeout"] = settings.task_time_limit + 3600
    options["global_keyprefix"] = f"{settings.prefix}:kombu:"
    if settings.broker_url.startswith("rediss://"):
        # Without explicit SSL options kombu connects to rediss:// WITHOUT checking the certificate.
        ssl_options = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        if settings.redis_ca:
            ssl_options["ssl_ca_certs"] = settings.redis_ca
        celery.conf.broker_use_ssl = ssl_options
    celery.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=options,
        task_default_queue=settings.queue,
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(1, settings.task_time_limit - 30),
    )


@celeryd_after_setup.connect
def _consume_own_queue(sender: str, instance, **_: object) -> None:
    """Each render node also consumes a queue of its own, for batches handed to it by name (see node.py)."""
    from httpov.tasks import node_queue

    instance.app.amqp.queues.select_add(node_queue(instance.app.conf.task_default_queue, sender))


# The render nodes' app (`celery -A httpov worker`); clients build their own with make_app(settings).
app = make_app()
