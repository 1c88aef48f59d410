"""httpov: distributed POV-Ray rendering on Celery and Redis."""
from __future__ import annotations

from httpov.app import app

__all__ = ["app"]
__version__ = "0.1.0"
