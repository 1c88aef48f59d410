"""httpov: distributed POV-Ray rendering on Celery and Redis."""
from __future__ import annotations

from typing import Any

__all__ = ["app"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`httpov.app`, the render nodes' Celery app (`celery -A httpov worker`), built on first use: a command that
    only talks to Redis (`httpov cancel`, `status`) never imports Celery.

    Should httpov/app.py be imported on its own first, the attribute `app` is that module (`from httpov.app import
    app` always gives the app); Celery's app finder then asks for `celery`, answered here too."""
    if name in ("app", "celery"):
        from httpov.app import app

        globals()["app"] = app  # the import of httpov/app.py just set the attribute to the module
        return app
    raise AttributeError(f"module 'httpov' has no attribute {name!r}")
