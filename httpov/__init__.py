"""httpov: distributed POV-Ray rendering on Celery and Redis (the render nodes' app is httpov.celery.app).

`from httpov import Farm` is the Python API for pipelines (httpov.farm), loaded on first use so that `import httpov`
(and `celery -A httpov worker`, which imports the package first) loads nothing else."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Farm", "Job"]

if TYPE_CHECKING:
    from httpov.farm import Farm, Job


def __getattr__(name: str) -> Any:
    """Farm and Job, imported when first asked for; any other name is no attribute (Celery's app lookup asks for
    `httpov.app` and `httpov.celery`, and must be told so to import httpov.celery)."""
    if name in __all__:
        from httpov.farm import Farm, Job

        return {"Farm": Farm, "Job": Job}[name]
    raise AttributeError(f"module 'httpov' has no attribute {name!r}")
