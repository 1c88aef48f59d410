"""httpov: distributed POV-Ray rendering on Celery and Redis."""
from __future__ import annotations

from typing import Any

__all__ = ["app"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`httpov.app`, the render nodes' Celery app (`celery -A httpov worker`), built on first use: a command that
    only talks to Redis (`httpov cancel`, `status`) never imports Celery. Once httpov/app.py is imported the
    attribute `app` is that module; Celery's app finder then asks for `celery`, answered the same way."""
    if name in ("app", "celery"):
        from httpov.app import app

        return app
    raise AttributeError(f"module 'httpov' has no attribute {name!r}")
