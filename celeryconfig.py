"""httpov's Celery settings, for `celery` run in a checkout: a re-export of httpov/celeryconfig.py, where they live
with their reasons (e.g. `celery -A httpov --config celeryconfig ...`, or your own app's
`config_from_object("celeryconfig")`).

This file is not installed, and httpov never reads it: `celery -A httpov worker` loads httpov.celeryconfig by its
package name, so a `celeryconfig` of your own on sys.path neither shadows httpov's nor is shadowed by it. Change
the settings in httpov/celeryconfig.py, or name a module of your own tunables in HTTPOV_CELERY_CONFIG.
"""
from httpov.celeryconfig import *  # noqa: F403
